"""A stage's plan: its steps in order, each a command (synthia.pipeline.steps) and, for the worker's steps, the
typed job it reads (synthia.train.jobs). --dry-run prints this plan; run_stage carries it out."""

from dataclasses import fields
from pathlib import Path

from synthia.pipeline import runstate, stagedir, steps
from synthia.train import jobs, schedule

JOB_PATHS = {"model", "adapter_dir", "train", "valid", "result", "lr_schedule"}


def make_train_job(values, base_dir, files, paths):
    """The worker keeps no defaults of its own: every setting the loop reads comes from the resolved stage."""
    setting_names = [f.name for f in fields(jobs.TrainJob) if f.name not in JOB_PATHS]
    return jobs.make_job("train", **{name: values[name] for name in setting_names},
                         lr_schedule=schedule.stage_schedule(values), model=str(base_dir),
                         adapter_dir=str(paths.stage_dir), train=files["train"], valid=files["valid"],
                         result=str(paths.stage_dir / "train_result.json"))


def make_evaluate_job(values, runs, result):
    """runs: [{label, model, splits}]. The valid split is measured as training measured it (val_batches), so the
    fused model's loss compares with the adapters'; the test split whole."""
    runs = [{**run, "num_batches": {split: values["val_batches"] if split == "valid" else -1 for split in run["splits"]}}
            for run in runs]
    return jobs.make_job("evaluate", runs=runs, batch_size=values["batch_size"],
                         max_seq_length=values["max_seq_length"], loss_chunk_size=values["loss_chunk_size"],
                         result=str(result))


def evaluation_copy(stage_dir, bits):
    """Where a stage keeps the quantized copy of its fused model that it evaluated (memory too short for full
    precision); the next stage trains on it instead of quantizing the same model again."""
    return Path(stage_dir) / f"fused-q{bits}"


def stage_plan(number, values, base_dir, files, paths, with_test, evaluate_bits=None):
    """The steps of one stage: (name, command, job or None, the path it produces or None). evaluate_bits: evaluate
    a quantized copy of the fused model (the memory plan found full precision over budget)."""
    train_base = base_dir
    plan = []
    previous_copy = evaluation_copy(stagedir.stage_paths(paths.stage_dir.parent, number - 1).stage_dir,
                                    values["train_bits"]) if number > 1 and values["train_bits"] else None
    if previous_copy is not None and previous_copy.is_dir():
        train_base = previous_copy
    elif values["train_bits"] and not runstate.is_quantized(base_dir):
        train_base = paths.stage_dir / f"train-base-q{values['train_bits']}"
        plan.append(("quantize", steps.quantize_command(base_dir, stagedir.partial_path(train_base),
                                                        values["train_bits"]), None, train_base))
    plan.append(("train", steps.worker_command("train", paths.stage_dir / "train_job.json"),
                 make_train_job(values, train_base, files, paths), None))
    # Fusing into a quantized base would re-quantize it and round small updates away: fuse into the
    # full-precision base (dequantized if the user's base was quantized), so the chain keeps every update.
    fuse = steps.fuse_command(base_dir, paths.stage_dir, stagedir.fused_tmp(paths), runstate.is_quantized(base_dir))
    plan.append(("fuse", fuse, None, None))
    # Training measured its own base (iteration 0) and the kept adapters; only a quantized copy's full-precision
    # base, and the fused model, still need a loss.
    evaluated = stagedir.fused_tmp(paths)
    if evaluate_bits:
        evaluated = evaluation_copy(paths.stage_dir, evaluate_bits)
        plan.append(("quantize-fused", steps.quantize_command(stagedir.fused_tmp(paths), stagedir.partial_path(evaluated),
                                                              evaluate_bits), None, evaluated))
    runs = [{"label": "fused", "model": str(evaluated),
             "splits": {"valid": files["valid"], **({"test": files["test"]} if with_test else {})}}]
    if train_base != base_dir and not evaluate_bits:
        runs.insert(0, {"label": "base", "model": str(base_dir), "splits": {"valid": files["valid"]}})
    plan.append(("evaluate", steps.worker_command("evaluate", paths.stage_dir / "eval_job.json"),
                 make_evaluate_job(values, runs, paths.stage_dir / "eval_result.json"), None))
    return plan
