"""What the parent hands a worker child: one dataclass per job, written and read by one pair of functions.

The parent builds a job (synthia.pipeline.stage's make_train_job and friends), `write_job` checks and saves it;
the worker reads it with `read_job` and reads nothing else. A missing or unknown field is an error in the parent,
before a model is loaded.
"""

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from synthia import files


REWRITE = "Fix: run the stage again with train_mlx.py, which writes the job file"


class JobError(ValueError):
    """A job that does not match its dataclass, or that the worker cannot run as written (a setting the model does
    not allow, ranks that disagree); the worker prints the message, without a traceback, and exits with 2."""


@dataclass(frozen=True)
class TrainJob:
    """LoRA training of one stage: the resolved settings the loop uses, and where its inputs and outputs are."""

    model: str  # the model directory training starts from
    adapter_dir: str  # adapters, checkpoints and the loss log go here
    train: str  # token files (synthia.data.token_files)
    valid: str
    result: str  # JSON written at the end: losses, the kept adapters, timings
    lr_schedule: dict  # mlx_lm's build_schedule config, over optimizer updates (synthia.train.schedule)
    seed: int
    iters: int
    batch_size: int
    max_seq_length: int
    num_layers: int
    lora_parameters: dict
    fine_tune_type: str
    grad_checkpoint: bool
    optimizer: str
    grad_accumulation_steps: int
    loss_chunk_size: int | None
    steps_per_report: int
    steps_per_eval: int
    val_batches: int
    save_every: int
    keep: str
    early_stop_patience: int | None
    report_to: str | None


@dataclass(frozen=True)
class EvaluateRun:
    """One model's loss on some token files: {split: path}, and the batches per split (-1: all)."""

    label: str
    model: str
    splits: dict
    num_batches: dict


@dataclass(frozen=True)
class EvaluateJob:
    runs: list  # of EvaluateRun
    batch_size: int
    max_seq_length: int
    loss_chunk_size: int | None
    result: str


@dataclass(frozen=True)
class ScoreJob:
    """Tool-calling scores of one model by generation on OpenAI JSONL files {split: path}."""

    model: str
    splits: dict
    chat_template: str | None
    limit: int | None  # conversations per split
    max_new_tokens: int | None  # None: from the longest reference answer
    max_prompt_tokens: int | None
    samples: str | None  # write samples.md here
    bench: str | None  # "bfcl": also score on the Berkeley Function Calling Leaderboard's entries
    bench_limit: int | None  # BFCL entries per category; None: all
    result: str  # {"splits": {split: eval result}, "bfcl": BFCL result or None}


JOBS = {"train": TrainJob, "evaluate": EvaluateJob, "score": ScoreJob}


def checked_fields(cls, values, where):
    """values, a dict, if its keys are exactly cls's fields; else JobError naming the missing and unknown ones."""
    names = {f.name for f in fields(cls)}
    missing, unknown = sorted(names - set(values)), sorted(set(values) - names)
    if missing or unknown:
        parts = [f"missing {', '.join(missing)}" if missing else "", f"unknown {', '.join(unknown)}" if unknown else ""]
        raise JobError(f"{where}: the fields do not match {cls.__name__}: {'; '.join(p for p in parts if p)}")
    return values


def make_job(kind, where=None, **values):
    """A checked job; EvaluateJob's runs may be given as dicts. where: what to call it in an error."""
    where = where or f"the {kind} job being built"
    checked_fields(JOBS[kind], values, where)
    if kind == "evaluate":
        values["runs"] = [run if isinstance(run, EvaluateRun) else
                          EvaluateRun(**checked_fields(EvaluateRun, run, f"{where}, run {number}"))
                          for number, run in enumerate(values["runs"], start=1)]
    return JOBS[kind](**values)


def write_job(path, job):
    """The job as JSON at `path`, written whole or not at all."""
    return files.write_json(path, asdict(job))


def read_job(kind, path):
    """The `kind` job written by write_job."""
    try:
        values = json.loads(Path(path).read_text())
        if not isinstance(values, dict):
            raise JobError(f"{path}: a {kind} job is a JSON object, not {type(values).__name__}")
        return make_job(kind, where=str(path), **values)
    except (OSError, ValueError) as error:  # JobError included
        problem = str(error) if isinstance(error, JobError) else f"{path}: cannot read the {kind} job ({error})"
        raise JobError(f"{problem}. {REWRITE}") from None
