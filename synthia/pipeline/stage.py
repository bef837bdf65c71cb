"""Running the stages: each stage is skipped when it finished with the same inputs, continued when an interrupted
attempt had the same inputs, and otherwise prepared, trained, fused and evaluated step by step (its plan from
synthia.pipeline.plan), with run.json recording every finished step."""

import json
import shlex
import shutil
from dataclasses import asdict
from pathlib import Path

from synthia.config import fingerprint_view
from synthia.data import stage_data, token_files
from synthia.pipeline import models, reports, runstate, stage_memory, stagedir, steps
from synthia.pipeline.resolve import check_stage_config
from synthia.pipeline.inputs import stage_base
from synthia.pipeline.plan import make_evaluate_job, stage_plan
from synthia.pipeline.run import EXIT_INVALID, PipelineError, log
from synthia.train import jobs, memory_plan, schedule


def train_stages(numbers, configs, base_model, inputs, options, env, blas_note):
    """Each stage runs unless it finished with the same inputs; a finished stage run with --test gets its test loss."""
    redo = False
    for number in numbers:
        base = stage_base(number, options.output_dir, base_model)
        configs[number], memory_lines, memory, over_budget = fit_memory(number, configs[number], inputs, options)
        if redo or not decide_skip(number, configs[number], base, inputs, options):
            if over_budget:
                raise PipelineError(over_budget + "\n" + "\n".join(memory_lines), EXIT_INVALID)
            check_dataset_unchanged(number, options.output_dir, inputs.dataset, options)
            for line in memory_lines:
                log(line, number)
            run_stage(number, configs[number], base, inputs, options, env, blas_note, memory)
            redo = True  # every stage after a (re)trained one must be redone too
        elif options.test:
            paths = stagedir.stage_paths(options.output_dir, number)
            record = stagedir.read_run_json(paths)
            if not (record or {}).get("test"):
                add_missing_test(number, configs[number], paths, record, options, env)


def stage_fingerprint(values, base_model, inputs, settings):
    """What changes a stage's result, and nothing else."""
    return {"config": fingerprint_view(values, settings), "base_model": base_model,
            "base_files": runstate.model_identity(base_model), "dataset": inputs.dataset,
            "chat_template": inputs.template, "default_tools": inputs.tools}


def fingerprint_matches(stored, values, base_model, inputs, settings):
    """Whether a fingerprint read back from JSON is this stage's, for these inputs."""
    return stored == json.loads(json.dumps(stage_fingerprint(values, base_model, inputs, settings), default=str))


def fit_memory(number, values, inputs, options):
    """(settings, lines to print, run.json's memory record, the over-budget problem or None); see
    synthia.pipeline.stage_memory.fit_stage. The caller stops on the problem only for a stage that will run."""
    budget = ((int(options.memory_budget * 1e9), "--memory-budget") if options.memory_budget is not None
              else memory_plan.default_budget())
    try:
        return stage_memory.fit_stage(number, values, inputs, budget, options.auto_fit, options.output_dir,
                                      check=lambda changed: check_stage_config(changed, number, options.settings))
    except memory_plan.DoesNotFit as e:
        raise PipelineError(f"stage {number}: {e}", EXIT_INVALID)


def decide_skip(number, values, base_model, inputs, options):
    """True when the stage already finished with the same inputs; an error when its inputs changed."""
    paths = stagedir.stage_paths(options.output_dir, number)
    done = stagedir.finished_stage(paths, warn=log)
    if done is None:
        return False
    if fingerprint_matches(done["fingerprint"], values, base_model, inputs, options.settings) and not options.force:
        log(f"already done with the same inputs ({paths.fused_dir}); skipping", number)
        return True
    if options.force:
        log(f"--force: redoing it ({paths.fused_dir} is replaced when the new model is ready)", number)
        return False
    raise PipelineError(
        f"stage {number} finished earlier with different inputs (dataset, config, template or base model changed): "
        f"{paths.fused_dir} was kept.\n  Re-run with --force to redo stage {number} and every stage after it: "
        f"{options.rerun_command('--force')}", EXIT_INVALID)


def check_stage_inputs(numbers, options):
    """A later stage started alone needs the previous stage's fused model, made from the same dataset."""
    first = numbers[0]
    if first == 1:
        return
    previous = stagedir.stage_paths(options.output_dir, first - 1)
    if stagedir.finished_stage(previous, warn=log) is None:
        command = options.rerun_command().replace(f"--stage {first}", f"--stage {first - 1}")
        raise PipelineError(
            f"--stage {first} starts from {previous.fused_dir}, which is missing or unfinished.\n"
            f"  Run stage {first - 1} first ({command}), or --stage all.", EXIT_INVALID)


def check_dataset_unchanged(number, output_dir, dataset_fp, options):
    """A stage must not train on data that differs from what the stage it starts from trained on: examples
    that stage trained on could now be held out here."""
    if number == 1:
        return
    previous = stagedir.read_run_json(stagedir.stage_paths(output_dir, number - 1)) or {}
    trained_on = previous.get("fingerprint", {}).get("dataset")
    if trained_on and trained_on != dataset_fp:
        raise PipelineError(
            f"stage {number}: the dataset changed since stage {number - 1} was trained (fingerprint {trained_on} "
            f"then, {dataset_fp} now), so its training examples may sit in this stage's held-out splits.\n"
            f"  Redo the chain from stage {number - 1}: "
            f"{options.rerun_command('--force').replace(f'--stage {number}', f'--stage all')}", EXIT_INVALID)


def run_stage(number, values, base_model, inputs, options, env, blas_note, memory=None):
    """Prepare-train-fuse-evaluate one stage, skipping steps an interrupted attempt finished; returns run.json."""
    paths = stagedir.stage_paths(options.output_dir, number)
    fingerprint = stage_fingerprint(values, base_model, inputs, options.settings)
    previous = prepare_stage_dir(number, paths, fingerprint, options)
    base_dir = models.resolve_model_dir(base_model)
    disk_problem = stage_memory.disk_problem(number, base_dir, values, options.output_dir)
    if disk_problem:
        raise PipelineError(disk_problem)
    files, stats = stage_data.prepare_stage_data(number, values, inputs.examples, inputs.encoded, paths.stage_dir,
                                             options.dataset, options.strict, options.test, log=log)
    log_stage_summary(number, values, stats)
    record = previous or {"stage": number, "status": "running", "config": {**values, "base_model": base_model},
                          "base_model": base_model, "base_model_dir": str(base_dir), "fingerprint": fingerprint,
                          "data": stats, "blas": blas_note, "memory": memory, "commands": {}, "timings": {}}
    for name, command, job, produces in stage_plan(number, values, base_dir, files, paths, options.test,
                                                   (memory or {}).get("evaluate_bits")):
        if name in record["timings"] or (produces is not None and produces.exists()):
            log(f"{name}: finished by the interrupted attempt; skipping", number)
            continue
        if job is not None:
            jobs.write_job(command[-1], job)
            Path(job.result).unlink(missing_ok=True)  # a result from before must not pass for this run's
        if name == "fuse":
            shutil.rmtree(stagedir.fused_tmp(paths), ignore_errors=True)  # a fuse that was cut off
        record["commands"][name] = shlex.join(command)
        record["timings"][name] = steps.run_step(number, name, command, env, paths.stage_dir / "stage.log",
                                                 options.rerun_command())
        if job is not None and not Path(job.result).exists():  # mlx.launch exits 0 even when a rank failed
            raise steps.StepFailed(f"stage {number}: step '{name}' ended without writing {job.result}; under a "
                                   f"launcher ($SYNTHIA_LAUNCHER) a failed rank does not fail the launcher: see "
                                   f"{paths.stage_dir / 'stage.log'}")
        if produces is not None:
            stagedir.partial_path(produces).rename(produces)
        runstate.write_json(paths.run_json, record)
    stagedir.finish_fused_model(paths, options.chat_template)
    record.update(reports.collect_results(paths), status="done", fused_files=stagedir.fused_files(paths.fused_dir))
    runstate.write_json(paths.run_json, record)
    reports.report_stage(record, lambda message: log(message, number))
    return record


def prepare_stage_dir(number, paths, fingerprint, options):
    """Continue an interrupted attempt with the same inputs (returns its run.json record), even under --force, so
    that the command that was stopped resumes; an attempt with other inputs, or a finished stage, is discarded only
    with --force, and then only the files the pipeline wrote."""
    marker = paths.stage_dir / "fingerprint.json"
    stored = stagedir.read_fingerprint(paths)
    same = stored is not None and stored == json.loads(json.dumps(fingerprint, default=str))
    record = stagedir.read_run_json(paths) if same else None
    if same and not (options.force and (record or {}).get("status") == "done"):
        log(f"continuing the interrupted attempt in {paths.stage_dir}", number)
        runstate.write_json(marker, fingerprint)
        return record if record and record.get("status") == "running" else None
    attempt = [name for name in stagedir.PIPELINE_FILES if (paths.stage_dir / name).exists()]
    attempt += [p.name for p in [*paths.stage_dir.glob("train-base-q*"), *paths.stage_dir.glob("fused-q*")]]
    if attempt and not options.force and stagedir.finished_stage(paths, warn=log) is None:
        raise PipelineError(
            f"stage {number}: {paths.stage_dir} holds an interrupted attempt made with other inputs (dataset, "
            f"config, template or base model changed); it was kept.\n  Re-run with --force to discard it and train "
            f"again: {options.rerun_command('--force')}", EXIT_INVALID)
    for name in attempt:
        target = paths.stage_dir / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    shutil.rmtree(stagedir.fused_tmp(paths), ignore_errors=True)
    paths.stage_dir.mkdir(parents=True, exist_ok=True)
    runstate.write_json(marker, fingerprint)
    return None


def log_stage_summary(number, values, stats):
    counts = ", ".join(f"{s} {stats[s]['examples']}" for s in stage_data.SPLITS)
    log(f"data: {counts}; trained tokens (train) {stats['train']['trained_tokens']} of "
        f"{stats['train']['tokens']}", number)
    log(schedule.describe_schedule(schedule.stage_schedule(values), schedule.optimizer_updates(values)), number)


def add_missing_test(number, values, paths, record, options, env):
    """--test on a finished stage: score its fused model on the stage's test split, nothing else."""
    test_file = token_files.token_file(paths.stage_dir / "data", "test")
    job = make_evaluate_job(values, [{"label": "fused", "model": str(paths.fused_dir),
                                      "splits": {"test": str(test_file)}}], paths.stage_dir / "test_result.json")
    command = steps.worker_command("evaluate", paths.stage_dir / "test_job.json")
    jobs.write_job(command[-1], job)
    steps.run_step(number, "test", command, env, paths.stage_dir / "stage.log", options.rerun_command())
    record["test"] = json.loads((paths.stage_dir / "test_result.json").read_text())["fused"]["test"]
    runstate.write_json(paths.run_json, record)
    reports.report_stage(record, lambda message: log(message, number))


def print_plan(number, values, base_model, inputs, options):
    """--dry-run: what the stage would do, with every command and job, and its memory plan."""
    paths = stagedir.stage_paths(options.output_dir, number)
    values, memory_lines, memory, over_budget = fit_memory(number, values, inputs, options)
    memory_lines += [f"would stop: {over_budget}"] if over_budget else []
    base_dir = Path(base_model) if number > 1 else models.resolve_model_dir(base_model)
    status = stagedir.attempt_status(
        paths, lambda stored: fingerprint_matches(stored, values, base_model, inputs, options.settings),
        options.force, warn=log)
    # A finished stage's data stays as it was trained on; an unfinished one gets its data to look at.
    files, stats = stage_data.prepare_stage_data(number, values, inputs.examples, inputs.encoded, paths.stage_dir,
                                             options.dataset, options.strict, options.test, write=status == "train",
                                             log=log)
    log(f"{values['name']}: {values['focus']}", number)
    log(f"would {status}", number)
    log(f"base model: {base_model}; iters {values['iters']}, learning_rate {values['learning_rate']}, "
        f"batch_size {values['batch_size']}, max_seq_length {values['max_seq_length']}", number)
    log_stage_summary(number, values, stats)
    for line in memory_lines:
        log(line, number)
    for name, command, job, _ in stage_plan(number, values, base_dir, files, paths, options.test,
                                            (memory or {}).get("evaluate_bits")):
        log(f"would run {name}: {shlex.join(command)}", number)
        if job is not None:
            log(f"  with {command[-1]}: {json.dumps(asdict(job))}", number)
