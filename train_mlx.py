"""Synthia: continue fine-tuning a tool-use coding model with LoRA on MLX, in three curriculum stages.

    python train_mlx.py --stage all                 # stages 1-3, each validated, trained, fused and chained
    python train_mlx.py --stage 1 --test --iters 50 # a smoke run with held-out evaluation
    python train_mlx.py --dry-run                   # validate, prepare the data, print the plan; train nothing
    python train_mlx.py --preview 12                # line 12 of the dataset as the model sees it
    python train_mlx.py --demo                      # the whole pipeline on a tiny model built here, offline

Edit DEFAULTS and STAGES below (or pass --config FILE.yaml) when memory runs short.
"""

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import yaml

from synthia import blas, data, render, runstate, validate

# ---------------------------------------------------------------------------------------------------------
# Configuration: the one place for every default. A YAML file (--config) overrides it (shared keys at the top
# level, per-stage keys under `stages: {1: ...}`), and command-line flags override both.
# ---------------------------------------------------------------------------------------------------------
DEFAULTS = {
    "base_model": "zachswift615/qwen2.5-coder-synthia-tool-use",  # Hugging Face repo or local MLX model dir
    "batch_size": 2,  # examples per step; halve it first when memory runs short
    "max_seq_length": 2048,  # tokens; longer examples lose whole turns from the end, never half a turn
    "num_layers": 16,  # transformer blocks (counted from the top) that get LoRA; -1 = all. Fewer = less memory
    "lora_parameters": {"rank": 8, "scale": 20.0, "dropout": 0.05},  # higher rank: more capacity and memory
    "grad_checkpoint": True,  # recompute activations in the backward pass: ~25% slower, far less memory
    "train_bits": 4,  # train on a 4-bit copy of each stage's base (QLoRA; a 7B fits 16 GB). None: as it is
    "seed": 42,  # data split, data order and LoRA initialisation
    "valid_fraction": 0.1,  # of every category, held out for validation
    "test_fraction": 0.1,  # of every category, held out for --test
    "steps_per_report": 10,  # iterations between train-loss lines
    "steps_per_eval": 100,  # iterations between validation-loss evaluations
    "val_batches": -1,  # validation batches per evaluation; -1 = the whole valid split
    "save_every": 100,  # iterations between resumable checkpoints (a multiple of steps_per_report)
    "warmup": None,  # linear warm-up iterations; None = 5% of the stage's iters
    "lr_min": None,  # the cosine decays to this by the last iteration; None = a tenth of learning_rate
    "keep": "best",  # adapters to fuse: "best" (lowest valid loss) or "last"
    "early_stop_patience": None,  # stop a stage after this many evaluations without a better valid loss
    "fine_tune_type": "lora",  # lora or dora (DoRA: a little better, ~20% slower)
    "optimizer": "adam",  # adam or adamw
    "grad_accumulation_steps": 1,  # with batch_size 1, keeps the effective batch at half the memory
    "report_to": None,  # "wandb" to log there as well (pip install wandb)
}
CHOICES = {"fine_tune_type": ("lora", "dora"), "optimizer": ("adam", "adamw"), "keep": ("best", "last"),
           "report_to": (None, "wandb")}

STAGES = {
    1: {"name": "tool-use", "focus": "tool-use reinforcement: accuracy, parallel calls, error recovery",
        "categories": ["tool_use"], "iters": 800, "learning_rate": 2e-5},
    2: {"name": "agentic", "focus": "agentic skills: TDD, systematic debugging, planning",
        "categories": ["tool_use", "tdd", "debugging", "planning"], "iters": 1000, "learning_rate": 1.5e-5},
    3: {"name": "integration", "focus": "full integration: craftsmanship, collaboration, problem-solving",
        "categories": None, "iters": 1500, "learning_rate": 1e-5},  # None: every category
}

STAGE_KEYS = ("name", "focus", "categories", "iters", "learning_rate")
# --demo: a tiny random-weight model learns fast and is fast in float32 on a CPU.
DEMO_SETTINGS = {"train_bits": None, "learning_rate": 1e-3, "grad_checkpoint": False, "num_layers": -1,
                 "steps_per_eval": 10, "save_every": 10, "steps_per_report": 5,
                 "lora_parameters": {"rank": 8, "scale": 20.0, "dropout": 0.0}}
DEMO_ITERS = 30
DEMO_CORPUS_CHARS = 600_000
EXIT_INVALID, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130


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
    """{"shared": {...}, "stages": {n: {...}}} from a YAML file, unknown keys rejected."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise PipelineError(f"{path}: cannot read the config: {e}", EXIT_INVALID)
    stages = raw.pop("stages", {}) or {}
    check_keys(raw, set(DEFAULTS) | {"iters", "learning_rate"}, f"{path}")  # these two then apply to every stage
    for number, overrides in stages.items():
        if str(number) not in map(str, STAGES):
            raise PipelineError(f"{path}: stages.{number}: no such stage (known: 1, 2, 3)", EXIT_INVALID)
        check_keys(overrides, set(DEFAULTS) | set(STAGE_KEYS), f"{path}: stages.{number}")
    return {"shared": raw, "stages": {int(n): v for n, v in stages.items()}}


def check_keys(mapping, known, where):
    unknown = sorted(set(mapping) - known)
    if unknown:
        raise PipelineError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}",
                            EXIT_INVALID)


def check_types(config, number):
    """Each value must have its default's type (an int where a float is expected is fine; None only for keys
    whose default is None or that name a number that may be left to its automatic value)."""
    for key, default in DEFAULTS.items():
        value, expected = config[key], type(default)
        if default is None or value is None and key == "train_bits":
            continue
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            continue
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise PipelineError(f"stage {number}: {key}={value!r} should be of type {expected.__name__} "
                                f"(default {default!r})", EXIT_INVALID)
    categories = config["categories"]
    if categories is not None and (not isinstance(categories, list) or set(categories) - set(validate.CATEGORIES)):
        raise PipelineError(f"stage {number}: categories={categories!r} should be null (every category) or a list "
                            f"of: {', '.join(validate.CATEGORIES)}", EXIT_INVALID)
    for key in ("iters", "learning_rate"):
        if not isinstance(config[key], (int, float)) or isinstance(config[key], bool) or config[key] <= 0:
            raise PipelineError(f"stage {number}: {key}={config[key]!r} should be a positive number", EXIT_INVALID)


def check_choices(config, number):
    check_types(config, number)
    for key, allowed in CHOICES.items():
        if config[key] not in allowed:
            raise PipelineError(f"stage {number}: {key}={config[key]!r}; choose one of {allowed}", EXIT_INVALID)
    if config["save_every"] % config["steps_per_report"]:
        raise PipelineError(f"stage {number}: save_every={config['save_every']} must be a multiple of "
                            f"steps_per_report={config['steps_per_report']} (checkpoints are written at reports)",
                            EXIT_INVALID)
    if config["report_to"] == "wandb":
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise PipelineError("report_to: wandb needs the wandb package: pip install wandb", EXIT_INVALID)


def lr_schedule(iters, learning_rate, warmup=None, lr_min=None):
    """mlx_lm's lr_schedule config: linear warm-up from 0, then a cosine reaching lr_min at the last step."""
    warmup = round(0.05 * iters) if warmup is None else warmup
    lr_min = learning_rate / 10 if lr_min is None else lr_min
    # mlx_lm joins the cosine one step after the warm-up ends; the last update uses step iters - 1.
    decay_steps = max(iters - 1 - (warmup + 1 if warmup else 0), 1)
    return {"name": "cosine_decay", "arguments": [learning_rate, decay_steps, lr_min], "warmup": warmup,
            "warmup_init": 0.0}


def stage_schedule(config):
    return lr_schedule(config["iters"], config["learning_rate"], config["warmup"], config["lr_min"])


def describe_schedule(schedule, iters):
    peak, _, lr_min = schedule["arguments"]
    return f"learning rate: warm-up {schedule['warmup']} iters 0 -> {peak:g}, cosine to {lr_min:g} at iter {iters}"


def resolve_stage_config(number, file_config, cli_overrides):
    """DEFAULTS, then STAGES[n], then the YAML file, then flags. Returns (config, [notes on what overrode what])."""
    layers = [
        ("defaults", DEFAULTS),
        (f"STAGES[{number}]", STAGES[number]),
        ("config file", file_config.get("shared", {})),
        (f"config file stages.{number}", file_config.get("stages", {}).get(number, {})),
        ("command line", cli_overrides),
    ]
    config, source, notes = {}, {}, []
    for name, layer in layers:
        for key, value in layer.items():
            if key in config and config[key] != value and name not in ("defaults", f"STAGES[{number}]"):
                notes.append(f"NOTE: {name} sets {key}={value!r} (was {config[key]!r} from {source[key]})")
            config[key], source[key] = value, name
    return config, notes


# ---------------------------------------------------------------------------------------------------------
# Models and paths
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StagePaths:
    stage_dir: Path  # models/stageN: data, adapters, run.json, logs
    fused_dir: Path  # models/synthia-stageN: the fused model

    @property
    def run_json(self):
        return self.stage_dir / "run.json"


def stage_paths(output_dir, number):
    return StagePaths(Path(output_dir) / f"stage{number}", Path(output_dir) / f"synthia-stage{number}")


def stage_base(number, output_dir, base_model):
    """Stage 1 starts from the base model; every later stage from the previous stage's fused model."""
    return base_model if number == 1 else str(stage_paths(output_dir, number - 1).fused_dir)


def resolve_model_dir(name_or_path):
    """A local model directory for `name_or_path`, downloading from the Hugging Face Hub when needed."""
    if Path(name_or_path).exists():
        return Path(name_or_path)
    try:
        from huggingface_hub import snapshot_download
        from mlx_lm.utils import DEFAULT_ALLOW_PATTERNS

        return Path(snapshot_download(name_or_path, allow_patterns=DEFAULT_ALLOW_PATTERNS))
    except Exception as e:  # offline, unknown repo, gated model: all end the same way for the user
        raise PipelineError(
            f"cannot get the model {name_or_path!r}: it is not a local directory and the Hugging Face Hub "
            f"download failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}).\n"
            f"  Offline? Pass a local MLX model directory with --base-model PATH, or download it first with "
            f"`huggingface-cli download {name_or_path}` (then HF_HUB_OFFLINE=1 uses the cache).")


def load_tokenizer(model_dir, chat_template_file=None):
    from mlx_lm.utils import load_tokenizer as mlx_load_tokenizer

    tokenizer = mlx_load_tokenizer(Path(model_dir))
    if chat_template_file:
        try:
            tokenizer._tokenizer.chat_template = Path(chat_template_file).read_text()
        except OSError as e:
            raise PipelineError(f"--chat-template {chat_template_file}: cannot read it ({e.strerror})", EXIT_INVALID)
    if not getattr(tokenizer._tokenizer, "chat_template", None):
        raise PipelineError(f"{model_dir} has no chat template; pass one with --chat-template FILE", EXIT_INVALID)
    problems = render.template_problems(tokenizer)
    if problems:
        raise PipelineError(
            f"the chat template of {model_dir} cannot train tool use: " + "; ".join(problems)
            + ".\n  Fix: pass a tool-calling template with --chat-template FILE "
              "(for Qwen2.5 models: synthia/chat_templates/qwen2.5-tools.jinja).", EXIT_INVALID)
    return tokenizer


def is_quantized(model_dir):
    """False for a model that does not exist yet: the stages' fused models are full precision."""
    config_file = Path(model_dir) / "config.json"
    if not config_file.exists():
        return False
    config = json.loads(config_file.read_text())
    return "quantization" in config or "quantization_config" in config


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
    encoded, errors = {}, []
    for ex in examples:
        try:
            encoded[ex.line] = render.encode(tokenizer, ex.messages, ex.record.get("tools", default_tools))
        except Exception as e:
            errors.append(f"line {ex.line}: the chat template failed: {e}")
    if errors:
        raise PipelineError("\n".join(errors[:20]), EXIT_INVALID)
    misaligned = sum(e.misaligned for e in encoded.values())
    if misaligned:
        log(f"WARNING: {misaligned} assistant-turn edge(s) fall inside a token; those tokens are trained")
    return encoded


def prepare_stage_data(number, config, examples, encoded, paths, dataset_path, strict, write=True):
    """Write models/stageN/data/*.jsonl (unless write is False); return the per-split token files and the
    statistics."""
    assignment = data.split_of_examples(examples, config["seed"], config["valid_fraction"], config["test_fraction"])
    splits = data.stage_examples(examples, assignment, config["categories"])
    files, stats = {}, {}
    for split in data.SPLITS:
        pairs, lengths = data.fit_split(encoded, splits[split], config["max_seq_length"])
        report_lengths(number, split, lengths, config["max_seq_length"], dataset_path, strict)
        directory = paths.stage_dir / "data"
        files[split] = str(data.write_split(directory, split, pairs) if write else data.token_file(directory, split))
        stats[split] = data.split_stats(pairs)
    if stats["train"]["examples"] < config["batch_size"]:
        raise PipelineError(f"stage {number}: {stats['train']['examples']} training examples, fewer than "
                            f"batch_size={config['batch_size']}", EXIT_INVALID)
    return files, stats


def report_lengths(number, split, lengths, max_seq_length, dataset_path, strict):
    if not lengths.too_long:
        return
    message = (f"{split}: {lengths.too_long} example(s) longer than max_seq_length={max_seq_length}: "
               f"{lengths.shortened} kept with {lengths.dropped_turns} turn(s) dropped from the end, "
               f"{len(lengths.left_out)} left out (no complete assistant turn fits)")
    if lengths.left_out:
        needed = max(n for _, n in lengths.left_out)
        lines = ", ".join(str(line) for line, _ in lengths.left_out[:10])
        message += f"; left out: {dataset_path} line(s) {lines}; max_seq_length={needed} would keep them all"
    if strict:
        raise PipelineError(f"stage {number}: {message}", EXIT_INVALID)
    log(f"WARNING: {message}", number)


# ---------------------------------------------------------------------------------------------------------
# Commands: each external step is a list[str], shown with shlex.join before it runs (and by --dry-run)
# ---------------------------------------------------------------------------------------------------------
def quantize_command(model_dir, out_dir, bits):
    return [sys.executable, "-m", "mlx_lm", "convert", "--hf-path", str(model_dir), "--mlx-path", str(out_dir),
            "-q", "--q-bits", str(bits)]


def worker_command(kind, job_file):
    return [sys.executable, "-m", "synthia.worker", kind, str(job_file)]


def fuse_command(model_dir, adapter_dir, save_path, dequantize):
    command = [sys.executable, "-m", "mlx_lm", "fuse", "--model", str(model_dir), "--adapter-path",
               str(adapter_dir), "--save-path", str(save_path)]
    return command + ["--dequantize"] if dequantize else command


def train_job(config, base_dir, files, paths):
    keys = ("batch_size", "iters", "learning_rate", "max_seq_length", "num_layers", "lora_parameters",
            "grad_checkpoint", "seed", "steps_per_report", "steps_per_eval", "val_batches", "save_every",
            "fine_tune_type", "optimizer", "grad_accumulation_steps", "keep", "early_stop_patience", "report_to")
    return {**{k: config[k] for k in keys}, "lr_schedule": stage_schedule(config), "model": str(base_dir),
            "adapter_dir": str(paths.stage_dir),
            "train": files["train"], "valid": files["valid"], "project_name": "synthia",
            "result": str(paths.stage_dir / "train_result.json")}


def evaluate_job(config, base_dir, train_base_dir, files, paths, with_test):
    """Valid loss of the stage's base, of the trained model (base + adapters) and of the fused model."""
    fused_splits = {"valid": files["valid"], **({"test": files["test"]} if with_test else {})}
    return {"batch_size": config["batch_size"], "max_seq_length": config["max_seq_length"],
            "runs": [{"label": "base", "model": str(base_dir), "splits": {"valid": files["valid"]}},
                     {"label": "adapters", "model": str(train_base_dir), "adapter_dir": str(paths.stage_dir),
                      "splits": {"valid": files["valid"]}},
                     {"label": "fused", "model": str(fused_tmp(paths)), "splits": fused_splits}],
            "result": str(paths.stage_dir / "eval_result.json")}


def stage_plan(number, config, base_dir, files, paths, with_test):
    """The steps of one stage: (name, command, job or None, the path it produces or None)."""
    train_base = base_dir
    steps = []
    if config["train_bits"] and not is_quantized(base_dir):
        train_base = paths.stage_dir / f"train-base-q{config['train_bits']}"
        steps.append(("quantize", quantize_command(base_dir, partial_path(train_base), config["train_bits"]),
                      None, train_base))
    steps.append(("train", worker_command("train", paths.stage_dir / "train_job.json"),
                  train_job(config, train_base, files, paths), None))
    # Fusing into a quantized base would re-quantize it and round small updates away: fuse into the
    # full-precision base (dequantized if the user's base was quantized), so the chain keeps every update.
    steps.append(("fuse", fuse_command(base_dir, paths.stage_dir, fused_tmp(paths), is_quantized(base_dir)),
                  None, None))
    steps.append(("evaluate", worker_command("evaluate", paths.stage_dir / "eval_job.json"),
                  evaluate_job(config, base_dir, train_base, files, paths, with_test), None))
    return steps


def fused_tmp(paths):
    return partial_path(paths.fused_dir)


# ---------------------------------------------------------------------------------------------------------
# Running a step in a child process
# ---------------------------------------------------------------------------------------------------------
OOM_SIGNS = ("out of memory", "insufficient memory", "bad_alloc", "memoryerror", "failed to allocate")


def failure_hint(returncode, tail):
    text = "\n".join(tail).lower()
    if returncode in (-9, 137) or any(sign in text for sign in OOM_SIGNS):
        return ("This looks like running out of memory. In order of cost to quality: set grad_checkpoint: true; "
                "lower batch_size (2 -> 1); lower max_seq_length (only if few examples are that long); "
                "lower num_layers (16 -> 8); keep train_bits: 4. Edit DEFAULTS in train_mlx.py or pass --config.")
    return "Read the output above; fix the cause and re-run the same command (finished stages are skipped)."


def run_step(number, name, command, env, log_file):
    """Run one command, streaming its output to the terminal and to log_file."""
    log(f"{name}: {shlex.join(command)}", number)
    tail = deque(maxlen=25)
    started = time.perf_counter()
    with open(log_file, "a") as logf:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                   bufsize=1)
        for line in process.stdout:
            print(f"[stage {number}] {line}", end="", flush=True)
            logf.write(line)
            tail.append(line.rstrip("\n"))
        returncode = process.wait()
    if returncode != 0:
        raise PipelineError(
            f"stage {number}: step '{name}' failed (exit code {returncode}).\n  command: {shlex.join(command)}\n"
            f"  last lines of its output (full log: {log_file}):\n"
            + "\n".join(f"    {line}" for line in tail) + f"\n  {failure_hint(returncode, tail)}")
    return round(time.perf_counter() - started, 2)


# ---------------------------------------------------------------------------------------------------------
# A stage
# ---------------------------------------------------------------------------------------------------------
def stage_fingerprint(config, base_model, dataset_fp, chat_template):
    return {"config": config, "base_model": base_model, "base_files": runstate.model_identity(base_model),
            "dataset": dataset_fp, "chat_template": chat_template}


def finished_stage(paths):
    """run.json of a stage that completed (fused model in place), else None."""
    if not (paths.run_json.exists() and paths.fused_dir.exists()):
        return None
    record = json.loads(paths.run_json.read_text())
    return record if record.get("status") == "done" else None


def run_stage(number, config, base_model, examples, encoded, args, env, blas_note):
    """Validate-prepare-train-fuse-evaluate one stage; returns its run.json record."""
    paths = stage_paths(args.output_dir, number)
    fingerprint = stage_fingerprint(config, base_model, data.dataset_fingerprint(examples), args.chat_template)
    prepare_stage_dir(number, paths, fingerprint, args.force)
    base_dir = resolve_model_dir(base_model)
    files, stats = prepare_stage_data(number, config, examples, encoded, paths, args.dataset, args.strict)
    log_stage_summary(number, config, stats)
    record = {"stage": number, "status": "running", "config": config, "base_model": base_model,
              "base_model_dir": str(base_dir), "fingerprint": fingerprint, "data": stats, "blas": blas_note,
              "commands": [], "timings": {}}
    for name, command, job, produces in stage_plan(number, config, base_dir, files, paths, args.test):
        if produces is not None and produces.exists():
            log(f"{name}: {produces} is already there", number)
            continue
        if job is not None:
            Path(command[-1]).write_text(json.dumps(job, indent=2))
        record["commands"].append(shlex.join(command))
        record["timings"][name] = run_step(number, name, command, env, paths.stage_dir / "stage.log")
        if produces is not None:
            partial_path(produces).rename(produces)
    finish_fused_model(paths, args.chat_template)
    record.update(collect_results(paths))
    record["status"] = "done"
    runstate.write_json(paths.run_json, record)
    report_stage(number, record)
    return record


def prepare_stage_dir(number, paths, fingerprint, force):
    """Keep an interrupted attempt with the same inputs (training resumes from its last checkpoint); clear
    anything else. Finished stages never get here without --force."""
    marker = paths.stage_dir / "fingerprint.json"
    same = marker.exists() and json.loads(marker.read_text()) == json.loads(json.dumps(fingerprint, default=str))
    if same and not force:
        log(f"continuing the interrupted attempt in {paths.stage_dir}", number)
    elif paths.stage_dir.exists():
        shutil.rmtree(paths.stage_dir)
    shutil.rmtree(fused_tmp(paths), ignore_errors=True)
    paths.stage_dir.mkdir(parents=True, exist_ok=True)
    runstate.write_json(marker, fingerprint)


def partial_path(path):
    return path.with_name(path.name + ".partial")


def finish_fused_model(paths, chat_template_file):
    """Carry a --chat-template override into the fused model, then move it into place in one rename."""
    tmp = fused_tmp(paths)
    if chat_template_file:
        config_file = tmp / "tokenizer_config.json"
        tokenizer_config = json.loads(config_file.read_text())
        tokenizer_config["chat_template"] = Path(chat_template_file).read_text()
        runstate.write_json(config_file, tokenizer_config)
        (tmp / "chat_template.jinja").unlink(missing_ok=True)
    if paths.fused_dir.exists():
        shutil.rmtree(paths.fused_dir)
    tmp.rename(paths.fused_dir)


def collect_results(paths):
    trained = json.loads((paths.stage_dir / "train_result.json").read_text())
    evaluated = json.loads((paths.stage_dir / "eval_result.json").read_text())
    return {
        "train": {k: v for k, v in trained.items() if k not in ("train_reports", "val_reports")},
        "curves": {"train": trained["train_reports"], "valid": trained["val_reports"]},
        "fuse_check": fuse_check(*(evaluated[k]["valid"]["loss"] for k in ("base", "adapters", "fused"))),
        "test": evaluated["fused"].get("test"),
    }


def fuse_check(base_loss, adapters_loss, fused_loss):
    """How closely the fused model matches base + adapters, and how much of the stage's gain it keeps."""
    gain = base_loss - adapters_loss
    return {"base_valid_loss": base_loss, "adapters_valid_loss": adapters_loss, "fused_valid_loss": fused_loss,
            "relative_difference": abs(fused_loss - adapters_loss) / adapters_loss,
            "gain_retained": (base_loss - fused_loss) / gain if gain > 0 else None}


def log_stage_summary(number, config, stats):
    counts = ", ".join(f"{s} {stats[s]['examples']}" for s in data.SPLITS)
    log(f"data: {counts}; trained tokens (train) {stats['train']['trained_tokens']} of "
        f"{stats['train']['tokens']}", number)
    log(describe_schedule(stage_schedule(config), config["iters"]), number)


def report_stage(number, record):
    train, check = record["train"], record["fuse_check"]
    kept = train["kept"]
    log(f"fused the {kept['which']} adapters" + (f" (iteration {kept['iteration']}, valid loss "
        f"{kept['val_loss']:.4f})" if "iteration" in kept else ""), number)
    if train.get("early_stopped"):
        log(f"stopped early at iteration {train['early_stopped']['iteration']}: {train['early_stopped']['reason']}",
            number)
    log(f"done: final train loss {train['final_train_loss']:.4f}, valid loss {train['final_valid_loss']:.4f}; "
        f"fused valid loss {check['fused_valid_loss']:.4f} ({100 * check['relative_difference']:.2f}% from "
        f"base+adapters)", number)
    if check["gain_retained"] is not None:
        log(f"valid loss {check['base_valid_loss']:.4f} before the stage; the fused model keeps "
            f"{100 * check['gain_retained']:.0f}% of the gain", number)
    if check["relative_difference"] > 0.01:
        quantized = record["config"]["train_bits"]
        log(f"WARNING: the fused model differs from base+adapters by more than 1%"
            + (f" (it is full precision, trained on a {quantized}-bit copy: the difference is that copy's "
               "quantization error)" if quantized else ""), number)
    if record.get("test"):
        log(f"test loss {record['test']['loss']:.4f}, perplexity {record['test']['perplexity']:.3f}", number)


# ---------------------------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------------------------
def selected_stages(stage_arg):
    return sorted(STAGES) if stage_arg == "all" else [int(stage_arg)]


def cli_overrides(args):
    flags = {"base_model": args.base_model, "iters": args.iters, "batch_size": args.batch_size,
             "max_seq_length": args.max_seq_length, "learning_rate": args.learning_rate}
    overrides = {k: v for k, v in flags.items() if v is not None}
    if args.demo:
        overrides = {**DEMO_SETTINGS, "iters": DEMO_ITERS, **overrides}
    return overrides


def check_stage_inputs(numbers, output_dir, base_model):
    """A later stage started alone needs the previous stage's fused model."""
    first = numbers[0]
    if first > 1 and not stage_paths(output_dir, first - 1).fused_dir.exists():
        raise PipelineError(
            f"--stage {first} starts from {stage_paths(output_dir, first - 1).fused_dir}, which does not exist.\n"
            f"  Run stage {first - 1} first (python train_mlx.py --stage {first - 1}), or --stage all.")


def decide_skip(number, config, base_model, dataset_fp, args):
    """True when the stage already finished with the same inputs; an error when its inputs changed."""
    paths = stage_paths(args.output_dir, number)
    done = finished_stage(paths)
    if done is None:
        return False
    if done["fingerprint"] == stage_fingerprint(config, base_model, dataset_fp, args.chat_template):
        log(f"already done with the same inputs ({paths.fused_dir}); skipping", number)
        return True
    if args.force:
        log(f"inputs changed since {paths.fused_dir} was made; --force: redoing it", number)
        return False
    raise PipelineError(
        f"stage {number} finished earlier with different inputs (dataset, config or base model changed): "
        f"{paths.fused_dir} was kept.\n  Re-run with --force to redo stage {number} and every stage after it.")


def print_plan(number, config, base_model, examples, encoded, args):
    paths = stage_paths(args.output_dir, number)
    base_dir = Path(base_model) if number > 1 else resolve_model_dir(base_model)
    # A finished stage's data stays as it was trained on; an unfinished one gets its data to look at.
    files, stats = prepare_stage_data(number, config, examples, encoded, paths, args.dataset, args.strict,
                                      write=finished_stage(paths) is None)
    log(f"{config['name']}: {config['focus']}", number)
    log(f"base model: {base_model}; iters {config['iters']}, learning_rate {config['learning_rate']}, "
        f"batch_size {config['batch_size']}, max_seq_length {config['max_seq_length']}", number)
    log_stage_summary(number, config, stats)
    for name, command, job, _ in stage_plan(number, config, base_dir, files, paths, args.test):
        log(f"would run {name}: {shlex.join(command)}", number)
        if job is not None:
            log(f"  with {command[-1]}: {json.dumps(job)}", number)


def run_pipeline(args):
    numbers = selected_stages(args.stage)
    configs = resolve_configs(args, numbers)
    examples = validate_dataset(args.dataset, args.strict)
    base_model = build_demo_model(args.output_dir, args.dataset) if args.demo else configs[numbers[0]]["base_model"]
    if not args.dry_run:
        check_stage_inputs(numbers, args.output_dir, base_model)
    tokenizer = load_tokenizer(resolve_model_dir(tokenizer_source(numbers[0], args.output_dir, base_model)),
                               args.chat_template)
    encoded = encode_examples(tokenizer, examples, validate.load_default_tools())
    env, blas_note = child_process_blas(args.blas)
    if args.dry_run:
        for number in numbers:
            print_plan(number, configs[number], stage_base(number, args.output_dir, base_model), examples, encoded,
                       args)
        log("dry run: nothing was trained")
        return
    with runstate.output_lock(Path(args.output_dir)):
        redo = False
        for number in numbers:
            base = stage_base(number, args.output_dir, base_model)
            if redo or not decide_skip(number, configs[number], base, data.dataset_fingerprint(examples), args):
                run_stage(number, configs[number], base, examples, encoded, args, env, blas_note)
                redo = True  # every stage after a (re)trained one must be redone too


def resolve_configs(args, numbers):
    """{stage: resolved config}, checked, with every override said once."""
    file_config = load_yaml_config(args.config) if args.config else {"shared": {}, "stages": {}}
    configs, notes = {}, {}
    for number in numbers:
        configs[number], notes[number] = resolve_stage_config(number, file_config, cli_overrides(args))
        check_choices(configs[number], number)
    log_overrides(notes)
    return configs


def tokenizer_source(first_stage, output_dir, base_model):
    """Fused models carry their base's tokenizer; a dry run may plan stage 2 before stage 1 exists."""
    first_base = stage_base(first_stage, output_dir, base_model)
    return first_base if Path(first_base).exists() else base_model


def child_process_blas(mode):
    """The environment for MLX child processes, with the BLAS log line (and a warning when one is missing)."""
    choice = blas.choose_blas(mode)
    env, note = blas.child_environment(choice=choice)
    log(note)
    warning = blas.missing_blas_warning(choice=choice)
    if warning:
        log(warning)
    return env, note


def log_overrides(notes_by_stage):
    """Say what overrode a default: once when every stage shares the note, else per stage."""
    shared = set.intersection(*(set(n) for n in notes_by_stage.values()))
    for note in dict.fromkeys(n for notes in notes_by_stage.values() for n in notes if n in shared):
        log(note)
    for number, notes in notes_by_stage.items():
        for note in dict.fromkeys(n for n in notes if n not in shared):
            log(note, number)


def build_demo_model(output_dir, dataset_path):
    """A tiny random-weight Qwen2 whose tokenizer also learned the dataset's text, so examples stay short."""
    from synthia.tiny_model import build_tiny_model, default_corpus_texts

    path = Path(output_dir) / "demo-base"
    if not (path / "config.json").exists():
        log(f"demo: building a tiny random-weight Qwen2 model in {path}")
        dataset_text = Path(dataset_path).read_text(encoding="utf-8", errors="replace")[:DEMO_CORPUS_CHARS]
        build_tiny_model(path, vocab_size=4096, corpus_texts=default_corpus_texts() + [dataset_text])
    return str(path)


def preview(args):
    """Print dataset line N as the model sees it, trained spans marked."""
    report = validate.validate_file(args.dataset)
    errors = [e for e in report.errors if e.line == args.preview]
    if errors:
        raise PipelineError("\n".join(str(e) for e in errors), EXIT_INVALID)
    example = next((ex for ex in report.examples if ex.line == args.preview), None)
    if example is None:
        raise PipelineError(f"{args.dataset}:{args.preview}: no example on that line", EXIT_INVALID)
    config, _ = resolve_stage_config(1, load_yaml_config(args.config) if args.config else {}, cli_overrides(args))
    model = build_demo_model(args.output_dir, args.dataset) if args.demo else config["base_model"]
    tokenizer = load_tokenizer(resolve_model_dir(model), args.chat_template)
    tools = example.record.get("tools", validate.load_default_tools())
    text, ranges = render.assistant_char_ranges(tokenizer, example.messages, tools)
    encoded = render.encode(tokenizer, example.messages, tools)
    segments = render.segments(text, ranges)
    if args.json:
        print(json.dumps({"segments": [{"text": s.text, "trained": s.trained} for s in segments],
                          "tokens": len(encoded.tokens), "trained_tokens": encoded.trained_tokens},
                         ensure_ascii=False, indent=2))
        return
    colour = sys.stdout.isatty()
    for s in segments:
        print(s.text if not s.trained else f"\033[32m{s.text}\033[0m" if colour else f"[[{s.text}]]", end="")
    print(f"\n--- {args.dataset}:{args.preview}: {len(encoded.tokens)} tokens, {encoded.trained_tokens} trained "
          f"({encoded.trained_turns} assistant turn(s) trained, {encoded.untrained_turns} with weight 0); "
          f"trained text {'green' if colour else 'in [[brackets]]'}")


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------
def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_argument_group("what to run")
    what.add_argument("--stage", choices=["1", "2", "3", "all"], default="all",
                      help="stage to run; 2 and 3 start from the previous stage's fused model (default: all)")
    what.add_argument("--test", action="store_true", help="after each stage, test loss and perplexity on its test split")
    what.add_argument("--dry-run", action="store_true",
                      help="validate, prepare the data and print the plan with every command; train nothing")
    what.add_argument("--preview", type=int, metavar="N", help="show dataset line N as the model sees it and exit")
    what.add_argument("--json", action="store_true", help="with --preview: print segments as JSON")
    what.add_argument("--demo", action="store_true",
                      help=f"build a tiny local model and run on it with {DEMO_ITERS} iterations a stage (offline)")
    inputs = p.add_argument_group("inputs and outputs")
    inputs.add_argument("--base-model", help=f"model for stage 1 (default: {DEFAULTS['base_model']})")
    inputs.add_argument("--dataset", default="dataset.jsonl", help="chat JSONL file (default: dataset.jsonl)")
    inputs.add_argument("--output-dir", default="models", help="where stages and fused models go (default: models)")
    inputs.add_argument("--config", help="YAML file overriding DEFAULTS (top level) and STAGES (under stages:)")
    inputs.add_argument("--chat-template", help="Jinja chat template to use instead of the model's own")
    knobs = p.add_argument_group("overrides (every stage)")
    knobs.add_argument("--iters", type=int, help="iterations per stage, e.g. 3 for a smoke run")
    knobs.add_argument("--batch-size", type=int, help="examples per step")
    knobs.add_argument("--max-seq-length", type=int, help="longest example in tokens")
    knobs.add_argument("--learning-rate", type=float, help="peak learning rate")
    safety = p.add_argument_group("safety")
    safety.add_argument("--force", action="store_true",
                        help="redo a finished stage whose inputs changed (and every stage after it)")
    safety.add_argument("--strict", action="store_true", help="treat dataset warnings as errors")
    safety.add_argument("--blas", choices=["auto", "bundled"], default=None,
                        help="Linux CPU: 'auto' preloads the system OpenBLAS into child processes (default; "
                             "or SYNTHIA_BLAS), 'bundled' keeps the mlx[cpu] wheel's slow reference BLAS")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.preview is not None:
            preview(args)
        else:
            run_pipeline(args)
    except (PipelineError, runstate.RunLocked) as e:
        print(f"error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", EXIT_FAILED)
    except KeyboardInterrupt:
        print("\ninterrupted: finished stages are kept; re-run the same command to resume from the last checkpoint",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
