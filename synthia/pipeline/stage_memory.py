"""A stage's memory plan from its resolved settings (synthia.train.memory_plan does the arithmetic), and the
settings that --auto-fit changes.

    values, lines, record, problem = fit_stage(number, values, run_inputs, (budget, source), auto_fit, output_dir,
                                               check)
    problem = disk_problem(number, base_dir, values, output_dir)
"""

import shutil
from dataclasses import replace
from pathlib import Path

from synthia.data import stage_data
from synthia.pipeline import runstate
from synthia.train import memory_plan
from synthia.train.loss import DEFAULT_CHUNK_SIZE
from synthia.train.memory_plan import DEFAULT_LORA_KEYS, ModelShape, PlanInputs

# memory_plan's changes that map onto a setting; its other levers (smaller fuse shards, scoring 4-bit copies)
# are not settings of the pipeline.
SETTING_CHANGES = ("chunked_loss", "grad_checkpoint", "batch_size", "train_bits", "num_layers", "max_seq_length")


def split_lengths(values, examples, encoded):
    """{split: [tokens per example after fitting to max_seq_length]}: what the stage's batches are made of."""
    assignment = stage_data.split_of_examples(examples, values["seed"], values["valid_fraction"], values["test_fraction"])
    splits = stage_data.stage_examples(examples, assignment, values["categories"])
    return {split: [len(fitted.tokens) for _, fitted in stage_data.fit_split(encoded, splits[split],
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
    _, changes = memory_plan.auto_fit(inputs, budget, allowed=SETTING_CHANGES)
    return changed_settings(values, changes), changes


def options_text(inputs, budget, limit=3):
    """The changes that would fit, best first, one line each ('' when none does)."""
    options = memory_plan.fitting_options(inputs, budget, allowed=SETTING_CHANGES)[:limit]
    return "\n".join(f"  {n}. " + "; ".join(str(change) for change in changes)
                     for n, (changes, _) in enumerate(options, start=1))


def stage_plan_inputs(number, values, inputs):
    lengths = split_lengths(values, inputs.examples, inputs.encoded)
    return plan_inputs(values, inputs.model_config, lengths, full_precision=number > 1)


def with_quantized_evaluation(plan_in, values, budget):
    """(plan inputs, bits or None): evaluate the fused model's train_bits copy when only that fits the budget."""
    if values["train_bits"] and "evaluate" in memory_plan.over_budget(memory_plan.plan(plan_in), budget):
        quantized = replace(plan_in, eval_bits=values["train_bits"])
        if "evaluate" not in memory_plan.over_budget(memory_plan.plan(quantized), budget):
            return quantized, values["train_bits"]
    return plan_in, None


def fit_stage(number, values, inputs, budget_and_source, auto_fit, output_dir, check):
    """(settings, lines to print, run.json's memory record, problem) for a stage. inputs: examples, encoded and the
    base model's config (train_mlx.RunInputs). Over budget: auto_fit changes the settings (said and recorded;
    `check` validates them); otherwise `problem` names the changes that would fit (None when everything fits)."""
    try:
        plan_in = stage_plan_inputs(number, values, inputs)
    except (KeyError, TypeError, ValueError) as e:  # an architecture the plan does not know: no plan, say so
        return values, [f"memory plan: not available for this model ({type(e).__name__}: {e})"], None, None
    budget, source = budget_and_source
    plan_in, evaluate_bits = with_quantized_evaluation(plan_in, values, budget)
    changes = []
    if memory_plan.over_budget(memory_plan.plan(plan_in), budget) and auto_fit:
        values, changes = fit_settings(values, plan_in, budget)
        check(values)
        plan_in, evaluate_bits = with_quantized_evaluation(stage_plan_inputs(number, values, inputs), values, budget)
    steps_plan = memory_plan.plan(plan_in)
    over = memory_plan.over_budget(steps_plan, budget)
    lines = memory_plan.format_plan(steps_plan, budget, source).splitlines()
    lines += [f"--auto-fit changed {change}" for change in changes]
    if evaluate_bits:
        lines.append(f"evaluate: the full-precision fused model does not fit; its {evaluate_bits}-bit copy is "
                     "evaluated and tested instead (made once: the next stage trains on it)")
    lines.append(memory_plan.format_disk(memory_plan.disk_plan(plan_in), output_dir))
    problem = None
    if over and not auto_fit:
        options = options_text(plan_in, budget)
        problem = (f"stage {number}: {', '.join(over)} would need more memory than the {budget / 1e9:.1f} GB budget "
                   f"({source}).\n  Changes that fit, best first:\n{options or '  (none)'}\n  Fix: set them in the "
                   "config, or pass --auto-fit to apply the first; --memory-budget GB if the budget is wrong")
    record = {"budget_gb": round(budget / 1e9, 2), "budget_from": source,
              "peaks_gb": {name: round(step.total / 1e9, 2) for name, step in steps_plan.items()},
              "auto_fit": [str(change) for change in changes], "evaluate_bits": evaluate_bits}
    return values, lines, record, problem


def stage_disk_bytes(base_dir, values):
    """What a stage writes: the fused model (full precision), a quantized training copy, data and checkpoints."""
    model_bytes = sum(f.stat().st_size for f in Path(base_dir).glob("*.safetensors"))
    quantization = (runstate.read_model_config(base_dir) or {}).get("quantization") or {}
    fused = model_bytes * 16 / quantization["bits"] if quantization.get("bits") else model_bytes
    copy = fused * values["train_bits"] / 16 if values["train_bits"] and not quantization else 0
    return int(fused + copy + 16e6)  # + data, adapters and checkpoints


def disk_problem(number, base_dir, values, output_dir):
    """What to tell the user when the stage would not fit on the disk, else None."""
    needed, free = stage_disk_bytes(base_dir, values), shutil.disk_usage(output_dir).free
    if needed <= free:
        return None
    return (f"stage {number} needs about {needed / 1e9:.2f} GB of disk in {output_dir} (the fused model, a quantized "
            f"training copy, data and checkpoints) but {free / 1e9:.2f} GB is free.\n  Fix: free some space, or "
            "choose another --output-dir")
