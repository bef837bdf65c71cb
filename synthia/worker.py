"""The child process that trains and evaluates one stage, so memory returns to the system between stages.

    python -m synthia.worker train JOB.json       # LoRA training with mlx_lm's trainer and our loss mask
    python -m synthia.worker evaluate JOB.json    # loss/perplexity of a model (+ adapters) on token files

train_mlx.py writes JOB.json; the result goes to the job's "result" path as JSON.
Token files hold one {"tokens": [...], "spans": [[start, end], ...]} per line: the spans are the
token ranges that carry loss (the assistant turns), made by synthia.render in the parent.
"""

import json
import math
import shutil
import sys
import time
from functools import partial
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten
from mlx_lm.tuner.callbacks import TrainingCallback, get_reporting_callbacks
from mlx_lm.tuner import trainer
from mlx_lm.tuner.trainer import TrainingArgs, evaluate, train
from mlx_lm.tuner.utils import build_schedule, linear_to_lora_layers, load_adapters
from mlx_lm.utils import load

from synthia import blas

PAD_TO = 32  # pad batches to a multiple of this, as mlx_lm does, so compiled shapes repeat


def load_token_file(path):
    """List of (tokens, mask) numpy pairs; mask[k] is 1 where token k is a training target."""
    examples = []
    for line in Path(path).read_text().splitlines():
        record = json.loads(line)
        tokens = np.asarray(record["tokens"], dtype=np.int32)
        mask = np.zeros(len(tokens), dtype=np.float32)
        for start, end in record["spans"]:
            mask[start:end] = 1.0
        examples.append((tokens, mask))
    return examples


def batch_index_groups(lengths, batch_size, keep_remainder):
    """Indices sorted by length, cut into batches; the short last batch only when asked (evaluation)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    stop = len(order) if keep_remainder else len(order) - batch_size + 1
    return [order[i : i + batch_size] for i in range(0, max(stop, 0), batch_size)]


def pack_batch(examples, rows, max_seq_length):
    """Right-pad a batch into (tokens, mask) arrays; padding carries no loss."""
    longest = max(len(tokens) for tokens, _ in examples)
    width = min(1 + PAD_TO * ((longest + PAD_TO - 1) // PAD_TO), max_seq_length)
    tokens = np.zeros((rows, width), np.int32)
    mask = np.zeros((rows, width), np.float32)
    for row, (t, m) in enumerate(examples):
        n = min(len(t), width)  # examples were fitted to max_seq_length by the parent
        tokens[row, :n], mask[row, :n] = t[:n], m[:n]
    return mx.array(tokens), mx.array(mask)


def iterate_masked_batches(dataset, batch_size, max_seq_length, loop=False, seed=None, comm_group=None, skip=0):
    """mlx_lm's batching (length-sorted batches, shuffled order, split across workers) with loss masks.

    Training loops forever over full batches; evaluation (loop=False) also sees the remainder, so the
    whole split counts. `skip` passes over the first training batches, so a resumed run sees the same
    order as an uninterrupted one.
    """
    rank, world = (comm_group.rank(), comm_group.size()) if comm_group is not None else (0, 1)
    if batch_size % world:
        raise ValueError(f"batch_size {batch_size} must be divisible by the number of workers ({world})")
    if loop and len(dataset) < batch_size:
        raise ValueError(f"the training split has {len(dataset)} examples, fewer than batch_size={batch_size}")
    groups = batch_index_groups([len(t) for t, _ in dataset], batch_size, keep_remainder=not loop)
    if seed is not None:
        np.random.seed(seed)
    rows = batch_size // world
    while True:
        for g in np.random.permutation(len(groups)) if loop else range(len(groups)):
            if skip:
                skip -= 1
                continue
            mine = [dataset[i] for i in groups[g][rank::world]] or [dataset[groups[g][0]]]
            tokens, mask = pack_batch(mine, rows, max_seq_length)
            if not groups[g][rank::world]:
                mask = mx.zeros_like(mask)  # this worker has no share of a short last batch
            yield tokens, mask
        if not loop:
            break


def masked_loss(model, tokens, mask):
    """Mean cross-entropy over the target tokens that the mask marks (the assistant turns)."""
    inputs, targets, weights = tokens[:, :-1], tokens[:, 1:], mask[:, 1:]
    logits = model(inputs)
    ce = nn.losses.cross_entropy(logits, targets) * weights
    ntoks = weights.sum()
    return ce.astype(mx.float32).sum() / mx.maximum(ntoks, 1), ntoks


def make_optimizer(job):
    schedule = job.get("lr_schedule")
    lr = build_schedule(schedule) if schedule else job["learning_rate"]
    optimizers = {"adam": optim.Adam, "adamw": optim.AdamW}
    return optimizers[job.get("optimizer", "adam")](learning_rate=lr)


def adapter_config(job):
    """What mlx_lm's load_adapters and fuse read back."""
    return {
        "fine_tune_type": job.get("fine_tune_type", "lora"),
        "num_layers": job["num_layers"],
        "lora_parameters": job["lora_parameters"],
        "base_model": job["model"],
    }


def save_adapters(model, path):
    mx.save_safetensors(str(path), dict(tree_flatten(model.trainable_parameters())))


class EarlyStop(Exception):
    def __init__(self, iteration, reason):
        super().__init__(reason)
        self.iteration, self.reason = iteration, reason


class QuietTrainUI(trainer.TrainUI):
    """mlx_lm's progress display with its printing off: EvalTracker prints one plain line per event."""

    def __init__(self, total_iters, rank=0):
        super().__init__(total_iters, rank=1)


class EvalTracker(TrainingCallback):
    """Records every loss report, keeps the adapters with the lowest validation loss, and writes resumable
    checkpoints (adapters, optimizer state, this record) every `save_every` iterations."""

    def __init__(self, model, optimizer, adapter_dir, job, wrapped=None):
        self.model, self.optimizer, self.adapter_dir, self.wrapped = model, optimizer, adapter_dir, wrapped
        self.iters, self.patience, self.save_every = job["iters"], job.get("early_stop_patience"), job["save_every"]
        self.start = 0  # iterations done before this process started (a resumed run)
        self.train_reports, self.val_reports = [], []
        self.best = None  # {"iteration", "val_loss"}

    def on_train_loss_report(self, info):
        info = {**info, "iteration": info["iteration"] + self.start}
        self.train_reports.append(info)
        print(f"iter {info['iteration']}/{self.iters}  train {info['train_loss']:.4f}  lr {info['learning_rate']:.3g}  "
              f"{info['tokens_per_second']:.0f} tok/s  peak {info['peak_memory']:.2f} GB", flush=True)
        if self.wrapped:
            self.wrapped.on_train_loss_report(info)
        if info["iteration"] % self.save_every == 0 and info["iteration"] < self.iters:
            self.save_checkpoint(info["iteration"])

    def on_val_loss_report(self, info):
        # The trainer evaluates before step `it`, so these weights are those after `iteration` updates.
        info = {**info, "iteration": info["iteration"] + self.start}
        if any(r["iteration"] == info["iteration"] for r in self.val_reports):
            return  # a resumed run evaluates its starting point again
        self.val_reports.append(info)
        print(f"iter {info['iteration']}/{self.iters}  valid {info['val_loss']:.4f}", flush=True)
        if self.best is None or info["val_loss"] < self.best["val_loss"]:
            self.best = {"iteration": info["iteration"], "val_loss": info["val_loss"]}
            save_adapters(self.model, self.adapter_dir / "best_adapters.safetensors")
        if self.wrapped:
            self.wrapped.on_val_loss_report(info)
        stopping = self.patience is not None and self.evaluations_since_best() >= self.patience
        if stopping and info["iteration"] < self.iters:
            raise EarlyStop(info["iteration"], f"{self.patience} evaluations without a lower valid loss "
                                               f"(best {self.best['val_loss']:.4f} at iteration {self.best['iteration']})")

    def evaluations_since_best(self):
        return sum(1 for r in self.val_reports if r["iteration"] > self.best["iteration"])

    def save_checkpoint(self, iteration):
        """mlx_lm's adapter checkpoint plus what resuming needs; the state file is written last."""
        stem = self.adapter_dir / f"{iteration:07d}"
        save_adapters(self.model, f"{stem}_adapters.safetensors")
        mx.save_safetensors(f"{stem}_optimizer.safetensors", dict(tree_flatten(self.optimizer.state)))
        record = {"iteration": iteration, "best": self.best, "train_reports": self.train_reports,
                  "val_reports": self.val_reports}
        Path(f"{stem}_state.json.tmp").write_text(json.dumps(record))
        Path(f"{stem}_state.json.tmp").replace(f"{stem}_state.json")
        print(f"iter {iteration}/{self.iters}  checkpoint {stem.name}_adapters.safetensors", flush=True)

    def resume(self, adapter_dir):
        """Load the latest complete checkpoint into the model, optimizer and this record; its iteration, or 0."""
        states = sorted(adapter_dir.glob("*_state.json"))
        if not states:
            return 0
        record = json.loads(states[-1].read_text())
        stem = adapter_dir / f"{record['iteration']:07d}"
        self.model.load_weights(f"{stem}_adapters.safetensors", strict=False)
        self.optimizer.init(self.model.trainable_parameters())
        self.optimizer.state = tree_unflatten(list(mx.load(f"{stem}_optimizer.safetensors").items()))
        self.start, self.best = record["iteration"], record["best"]
        self.train_reports, self.val_reports = record["train_reports"], record["val_reports"]
        print(f"resuming from iteration {self.start} ({stem.name}_adapters.safetensors)", flush=True)
        return self.start


def full_evaluation(model, dataset, job):
    """Masked loss over every example of a split."""
    if not dataset:
        return None
    return evaluate(model=model, dataset=dataset, batch_size=job["batch_size"], num_batches=-1,
                    max_seq_length=job["max_seq_length"], loss=masked_loss, iterate_batches=iterate_masked_batches)


def keep_adapters(adapter_dir, keep, best, last):
    """Copy the adapters to fuse (the best by validation loss, or the last) to adapters.safetensors."""
    which, chosen = ("best", best) if keep == "best" else ("last", last)
    shutil.copyfile(adapter_dir / f"{which}_adapters.safetensors", adapter_dir / "adapters.safetensors")
    return {"which": which, **chosen}


def training_args(job, adapter_file, iters):
    # Checkpoints come from EvalTracker (mlx_lm's hold no optimizer state and count from 1 after a resume).
    return TrainingArgs(
        batch_size=job["batch_size"], iters=iters, val_batches=job.get("val_batches", -1),
        steps_per_report=job["steps_per_report"], steps_per_eval=job["steps_per_eval"],
        steps_per_save=iters + 1, max_seq_length=job["max_seq_length"], adapter_file=adapter_file,
        grad_checkpoint=job["grad_checkpoint"], grad_accumulation_steps=job.get("grad_accumulation_steps", 1),
    )


def train_job(job):
    mx.random.seed(job["seed"])
    np.random.seed(job["seed"])
    adapter_dir = Path(job["adapter_dir"])
    adapter_dir.mkdir(parents=True, exist_ok=True)
    model, _ = load(job["model"])
    model.freeze()
    if job["num_layers"] > len(model.layers):
        raise ValueError(f"num_layers={job['num_layers']} but the model has {len(model.layers)} layers")
    linear_to_lora_layers(model, job["num_layers"], job["lora_parameters"],
                          use_dora=job.get("fine_tune_type") == "dora")
    (adapter_dir / "adapter_config.json").write_text(json.dumps(adapter_config(job), indent=2))
    train_set, valid_set = load_token_file(job["train"]), load_token_file(job["valid"])
    reporter = get_reporting_callbacks(job.get("report_to"), project_name=job.get("project_name"),
                                       log_dir=str(adapter_dir), config=job)
    optimizer = make_optimizer(job)
    tracker = EvalTracker(model, optimizer, adapter_dir, job, reporter)
    done = tracker.resume(adapter_dir)
    trainer.TrainUI = QuietTrainUI
    last_file = adapter_dir / "last_adapters.safetensors"
    started, early_stopped = time.perf_counter(), None
    try:
        if done < job["iters"]:
            train(model=model, optimizer=optimizer, train_dataset=train_set, val_dataset=valid_set,
                  args=training_args(job, last_file, job["iters"] - done), loss=masked_loss,
                  iterate_batches=partial(iterate_masked_batches, skip=done), training_callback=tracker)
        # The trainer's last evaluation comes before the last update: evaluate the final weights too.
        tracker.start = 0
        tracker.on_val_loss_report({"iteration": job["iters"], "val_loss": full_evaluation(model, valid_set, job)})
    except EarlyStop as stop:
        early_stopped = {"iteration": stop.iteration, "reason": stop.reason}
        print(f"stopping early at iteration {stop.iteration}: {stop.reason}", flush=True)
    save_adapters(model, last_file)
    seconds = time.perf_counter() - started
    last = tracker.val_reports[-1]
    kept = keep_adapters(adapter_dir, job.get("keep", "last"), tracker.best,
                         {"iteration": last["iteration"], "val_loss": last["val_loss"]})
    return {
        "train_seconds": round(seconds, 2),
        "final_train_loss": tracker.train_reports[-1]["train_loss"] if tracker.train_reports else None,
        "final_valid_loss": last["val_loss"],
        "train_reports": tracker.train_reports,
        "val_reports": tracker.val_reports,
        "best": tracker.best,
        "kept": kept,
        "early_stopped": early_stopped,
        "peak_memory_gb": mx.get_peak_memory() / 1e9,
        "blas_libraries": blas.loaded_blas_libraries() if Path("/proc/self/maps").exists() else None,
    }


def evaluate_job(job):
    """Each run: a model (with adapters if given) on its splits. {label: {split: {loss, perplexity}}}."""
    results = {}
    for run in job["runs"]:
        model, _ = load(run["model"])
        if run.get("adapter_dir"):
            load_adapters(model, run["adapter_dir"])
        model.eval()
        results[run["label"]] = {}
        for split, path in run["splits"].items():
            loss = full_evaluation(model, load_token_file(path), job)
            results[run["label"]][split] = {"loss": loss, "perplexity": math.exp(loss) if loss is not None else None}
            if loss is not None:
                print(f"{run['label']} {split}: loss {loss:.4f}  ppl {math.exp(loss):.3f}", flush=True)
        del model
        mx.clear_cache()  # the next run loads another copy of the model
    return results


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    command, job_path = argv
    job = json.loads(Path(job_path).read_text())
    result = {"train": train_job, "evaluate": evaluate_job}[command](job)
    Path(job["result"]).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
