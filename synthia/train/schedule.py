"""A stage's learning-rate schedule, over optimizer updates, as mlx_lm's build_schedule reads it."""


def optimizer_updates(values):
    """Updates in a stage: one every grad_accumulation_steps batches, and one at the last batch."""
    return -(-values["iters"] // values["grad_accumulation_steps"])


def lr_schedule(updates, learning_rate, warmup=None, lr_min=None):
    """mlx_lm's lr_schedule config: linear warm-up from 0, then a cosine reaching lr_min at the last update."""
    warmup = round(0.05 * updates) if warmup is None else warmup
    lr_min = learning_rate / 10 if lr_min is None else lr_min
    # mlx_lm joins the cosine one step after the warm-up ends; the last update uses step updates - 1.
    decay_steps = max(updates - 1 - (warmup + 1 if warmup else 0), 1)
    return {"name": "cosine_decay", "arguments": [learning_rate, decay_steps, lr_min], "warmup": warmup,
            "warmup_init": 0.0}


def stage_schedule(values):
    return lr_schedule(optimizer_updates(values), values["learning_rate"], values["warmup"], values["lr_min"])


def describe_schedule(schedule, updates):
    peak, _, lr_min = schedule["arguments"]
    return (f"learning rate: warm-up {schedule['warmup']} updates 0 -> {peak:g}, cosine to {lr_min:g} at update "
            f"{updates}")
