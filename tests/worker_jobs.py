"""Token files and job files for running synthia.train.worker directly, as train_mlx.py writes them."""

import json
import subprocess
from pathlib import Path

import numpy as np

from synthia.data import token_files
from synthia.pipeline.steps import worker_command
from synthia.train import jobs
from synthia.train.schedule import lr_schedule

ROOT = Path(__file__).resolve().parents[1]


def random_examples(count, vocab_size, seed, lengths=(40, 120), spans=2):
    """Token records like synthia.data.render's: random tokens, a few loss spans (assistant turns) per example."""
    rng = np.random.default_rng(seed)
    examples = []
    for _ in range(count):
        length = int(rng.integers(*lengths))
        starts = sorted(rng.choice(np.arange(4, length - 12), spans, replace=False))
        examples.append({"tokens": rng.integers(0, vocab_size, length).tolist(),
                         "spans": [[int(s), int(s + rng.integers(3, 12))] for s in starts]})
    return examples


def write_token_file(path, examples):
    """The examples as train_mlx.py writes a split's token file (line numbers 1, 2, ...)."""
    return str(token_files.write(path, [(k, e["tokens"], e["spans"]) for k, e in enumerate(examples, start=1)]))


def train_job(model_dir, adapter_dir, train, valid, learning_rate=1e-3, **overrides):
    """A TrainJob with small-run values; overrides win, and the schedule peaks at learning_rate. adapter_dir must
    exist."""
    values = {"seed": 7, "model": str(model_dir), "num_layers": -1, "fine_tune_type": "lora",
              "lora_parameters": {"rank": 4, "scale": 10.0, "dropout": 0.0}, "grad_checkpoint": False,
              "optimizer": "adam", "batch_size": 2, "iters": 6, "grad_accumulation_steps": 1, "max_seq_length": 256,
              "steps_per_report": 1, "steps_per_eval": 3, "val_batches": -1, "save_every": 100, "keep": "best",
              "early_stop_patience": None, "report_to": None, "loss_chunk_size": None,
              "adapter_dir": str(adapter_dir), "train": train, "valid": valid,
              "result": str(Path(adapter_dir) / "train_result.json"), **overrides}
    updates = -(-values["iters"] // values["grad_accumulation_steps"])
    values.setdefault("lr_schedule", lr_schedule(updates, learning_rate))
    return jobs.make_job("train", **values)


def run_worker(kind, job, job_file, launcher=(), cwd=ROOT, env=None, timeout=600):
    """Write the job, run the worker's command as train_mlx.py does (under `launcher` if given); the
    CompletedProcess."""
    jobs.write_job(job_file, job)
    return subprocess.run(worker_command(kind, job_file, list(launcher)), cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=timeout)


def result_of(job):
    return json.loads(Path(job.result).read_text())
