"""A stage's memory plan from its resolved settings (synthia.memory_plan does the arithmetic), and the
settings that --auto-fit changes.

    inputs = plan_inputs(values, model_config, lengths)      # lengths: {"train": [...], "valid": [...]}
    fitted_values, changes = fit_settings(values, inputs, budget)
"""

from dataclasses import replace

from synthia import data, memory_plan
from synthia.chunked_loss import DEFAULT_CHUNK_SIZE
from synthia.memory_plan import DEFAULT_LORA_KEYS, ModelShape, PlanInputs

# memory_plan's changes that map onto a setting; its other levers (smaller fuse shards, scoring 4-bit copies)
# are not settings of the pipeline.
SETTING_CHANGES = ("chunked_loss", "grad_checkpoint", "batch_size", "train_bits", "num_layers", "max_seq_length")


def split_lengths(values, examples, encoded):
    """{split: [tokens per example after fitting to max_seq_length]}: what the stage's batches are made of."""
    assignment = data.split_of_examples(examples, values["seed"], values["valid_fraction"], values["test_fraction"])
    splits = data.stage_examples(examples, assignment, values["categories"])
    return {split: [len(fitted.tokens) for _, fitted in data.fit_split(encoded, splits[split],
                                                                     values["max_seq_length"])[0]]
            for split in ("train", "valid")}


def plan_inputs(values, model_config, lengths, full_precision=False):
    """memory_plan's inputs for a stage. full_precision: the stage starts from a fused (dequantized) model."""
    shape = ModelShape.from_config(model_config)
    if full_precision:
        shape = replace(shape, bits=None)
    lora = values["lora_parameters"]
    return PlanInputs(
        model=shape, lengths=tuple(lengths["train"]), eval_lengths=tuple(lengths["valid"]) or None,
        batch_size=values["batch_size"], max_seq_length=values["max_seq_length"], lora_rank=lora["rank"],
        num_layers=values["num_layers"], lora_keys=tuple(lora.get("keys") or DEFAULT_LORA_KEYS),
        fine_tune_type=values["fine_tune_type"], grad_checkpoint=values["grad_checkpoint"],
        grad_accumulation_steps=values["grad_accumulation_steps"], train_bits=values["train_bits"],
        chunked_loss=values["loss_chunk_size"] is not None, chunk_size=values["loss_chunk_size"] or DEFAULT_CHUNK_SIZE,
        iters=values["iters"], save_every=values["save_every"])


def changed_settings(values, changes):
    """The settings after memory_plan's changes. A smaller batch keeps the training as it was: the same examples per
    optimizer update (accumulation), and as many updates (iters, steps_per_eval and save_every count batches)."""
    values = dict(values)
    for change in changes:
        if change.setting == "chunked_loss":
            values["loss_chunk_size"] = DEFAULT_CHUNK_SIZE
        elif change.setting == "batch_size":
            factor = values["batch_size"] // change.new
            values.update(batch_size=change.new, grad_accumulation_steps=values["grad_accumulation_steps"] * factor,
                          iters=values["iters"] * factor, steps_per_eval=values["steps_per_eval"] * factor,
                          save_every=values["save_every"] * factor)
        else:
            values[change.setting] = change.new
    return values


def fit_settings(values, inputs, budget):
    """(settings, [Change]) that fit the budget: unchanged when they already do. Raises memory_plan.DoesNotFit."""
    fitted, changes = memory_plan.auto_fit(inputs, budget, allowed=SETTING_CHANGES)
    return changed_settings(values, changes), changes


def options_text(inputs, budget, limit=3):
    """The changes that would fit, best first, one line each ('' when none does)."""
    options = memory_plan.fitting_options(inputs, budget, allowed=SETTING_CHANGES)[:limit]
    return "\n".join(f"  {n}. " + "; ".join(str(change) for change in changes)
                     for n, (changes, _) in enumerate(options, start=1))
