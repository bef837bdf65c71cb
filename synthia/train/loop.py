"""The training loop of one stage (the worker's train job): LoRA adapters on the model, length-sorted batches in an
order drawn from (seed, iteration), gradients accumulated as sums and applied as a per-token mean, validation every
steps_per_eval iterations with the best adapters kept, checkpoints to resume from, and early stopping.

Under `mlx.launch` every rank trains on its rows of each batch; only rank 0 writes files.
"""

import json
import os
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_map
from mlx_lm.tuner.callbacks import get_reporting_callbacks
from mlx_lm.tuner.trainer import grad_checkpoint
from mlx_lm.tuner.utils import build_schedule, linear_to_lora_layers
from mlx_lm.utils import load

from synthia.platform import blas
from synthia.train.batches import batch_index_groups, load_token_file, pack_batch, rank_share, training_batch_indices
from synthia.train.checkpoint import (adapter_weights, check_ranks_start_together, newest_whole_checkpoint,
                                      restore_checkpoint, resume_note, save_atomically, save_checkpoint)
from synthia.train.evaluate import evaluate
from synthia.train.loss import loss_and_inputs

BATCH_LOG_VARIABLE = "SYNTHIA_BATCH_LOG"  # a directory: each rank writes rank<N>.jsonl, the examples it trained on


def make_optimizer(job):
    schedule = build_schedule(job.lr_schedule)
    return {"adam": optim.Adam, "adamw": optim.AdamW}[job.optimizer](learning_rate=schedule)


def setup_model(job):
    mx.random.seed(job.seed)
    model, _ = load(job.model)
    model.freeze()
    linear_to_lora_layers(model, job.num_layers, job.lora_parameters, use_dora=job.fine_tune_type == "dora")
    if job.grad_checkpoint:
        grad_checkpoint(model.layers[0])
    return model


def adapter_config(job):
    """What mlx_lm's load_adapters and fuse read back."""
    return {"fine_tune_type": job.fine_tune_type, "num_layers": job.num_layers,
            "lora_parameters": job.lora_parameters, "base_model": job.model}


def eta(seconds):
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{secs:02d}s"


def start_or_resume(job, world, model, optimizer):
    """(record, best adapter weights so far) from the newest whole checkpoint in adapter_dir, or of a first start
    (which writes adapter_config.json). Says which, after naming the damaged checkpoints passed over; those are
    deleted once every rank agrees where to start."""
    rank, out = world.rank(), Path(job.adapter_dir)
    record = {"iteration": 0, "train_reports": [], "val_reports": [], "best": None, "early_stopped": None,
              "pending": {"loss": 0.0, "tokens": 0.0}}
    best_weights = None
    resumed, damaged = newest_whole_checkpoint(out)
    note = resume_note(resumed, damaged)
    if note and (rank == 0 or damaged):  # each machine reads its own disk: every rank names its damaged files
        print(note if rank == 0 else f"rank {rank}: {note}", flush=True)
    if resumed is not None:
        record, best_weights = restore_checkpoint(*resumed[1:], model, optimizer)
    elif rank == 0:
        (out / "adapter_config.json").write_text(json.dumps(adapter_config(job), indent=2))
    check_ranks_start_together(world, record["iteration"], out)
    if rank == 0:
        for path, _ in damaged:  # every rank has read them: gone, so that a damaged file never becomes the previous
            path.unlink(missing_ok=True)
    return record, best_weights


def train_job(job):
    """Train the job's LoRA adapters (a TrainJob) and write them to adapter_dir; the result the parent reads."""
    world = mx.distributed.init()
    rank, out = world.rank(), Path(job.adapter_dir)
    say = (lambda text: print(text, flush=True)) if rank == 0 else (lambda text: None)
    model = setup_model(job)
    optimizer = make_optimizer(job)
    train_set, valid_set = load_token_file(job.train), load_token_file(job.valid)
    groups = batch_index_groups([len(t) for t, _ in train_set], job.batch_size, keep_remainder=False)
    iters, accumulation = job.iters, job.grad_accumulation_steps
    loss, inputs = loss_and_inputs(model, job.loss_chunk_size)
    loss_and_grad = nn.value_and_grad(model, loss)
    state = [model.state, optimizer.state, mx.random.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(grad_sum, *batch):
        (ce_sum, ntoks), grad = loss_and_grad(model, *batch)
        grad = grad if grad_sum is None else tree_map(mx.add, grad, grad_sum)
        return ce_sum, ntoks, grad

    def update(grad_sum, ntoks_sum):
        # nn.average_gradients divides by the ranks; times ranks over all trained tokens gives a per-token mean.
        scale = world.size() / mx.maximum(mx.distributed.all_sum(ntoks_sum, stream=mx.cpu), 1)
        optimizer.update(model, tree_map(lambda g: g * scale, nn.average_gradients(grad_sum)))

    reporter = (get_reporting_callbacks(job.report_to, project_name="synthia", log_dir=str(out), config=asdict(job))
                if rank == 0 else None)
    log_batch = batch_logger(rank)
    record, best_weights = start_or_resume(job, world, model, optimizer)

    def run_evaluation(iteration):
        nonlocal best_weights
        model.eval()
        started = time.perf_counter()
        loss = evaluate(model, valid_set, job.batch_size, job.max_seq_length, job.val_batches, world,
                        job.loss_chunk_size)
        model.train()
        record["val_reports"].append({"iteration": iteration, "val_loss": loss})
        if reporter:
            reporter.on_val_loss_report(record["val_reports"][-1])
        if record["best"] is None or loss < record["best"]["val_loss"]:
            record["best"], best_weights = {"iteration": iteration, "val_loss": loss}, adapter_weights(model)
        best = record["best"]
        say(f"iter {iteration}/{iters}  valid {loss:.4f}  (best {best['val_loss']:.4f} at {best['iteration']})  "
            f"{time.perf_counter() - started:.1f} s")
        since_best = sum(r["iteration"] > best["iteration"] for r in record["val_reports"])
        if job.early_stop_patience and since_best >= job.early_stop_patience and iteration < iters:
            record["early_stopped"] = {"iteration": iteration, "reason": f"{since_best} evaluations without a lower "
                                       f"valid loss (best {best['val_loss']:.4f} at iteration {best['iteration']})"}

    model.train()
    if record["iteration"] == 0:
        run_evaluation(0)
    started, first, window = time.perf_counter(), record["iteration"], time.perf_counter()
    grad_sum, ntoks_sum, window_tokens = None, mx.array(0.0), 0.0
    for it in range(record["iteration"] + 1, iters + 1):
        if record["early_stopped"]:
            break
        indices = training_batch_indices(groups, job.seed, it)
        tokens, mask = pack_batch(train_set, indices, rank, world.size(), job.max_seq_length)
        mx.random.seed(job.seed * 1_000_003 + it)  # dropout's draws: a pure function of the iteration
        ce_sum, ntoks, grad_sum = step(grad_sum, *inputs(tokens, mask))
        ntoks_sum = ntoks_sum + ntoks
        if it % accumulation == 0 or it == iters:
            update(grad_sum, ntoks_sum)
            grad_sum, ntoks_sum = None, mx.array(0.0)
        mx.eval(state, ce_sum, ntoks, grad_sum, ntoks_sum)
        log_batch(it, rank_share(indices, rank, world.size()), ntoks)
        pending = record["pending"]
        pending["loss"] += mx.distributed.all_sum(ce_sum, stream=mx.cpu).item()
        pending["tokens"] += mx.distributed.all_sum(ntoks, stream=mx.cpu).item()
        window_tokens += mx.distributed.all_sum(ntoks, stream=mx.cpu).item()
        if it % job.steps_per_report == 0 or it == iters:
            now = time.perf_counter()
            report = {"iteration": it, "train_loss": pending["loss"] / max(pending["tokens"], 1),
                      "learning_rate": optimizer.learning_rate.item(),
                      "tokens_per_second": window_tokens / (now - window),
                      "peak_memory": mx.get_peak_memory() / 1e9}
            record["train_reports"].append(report)
            if reporter:
                reporter.on_train_loss_report(report)
            record["pending"], window, window_tokens = {"loss": 0.0, "tokens": 0.0}, now, 0.0
            say(f"iter {it}/{iters}  train {report['train_loss']:.4f}  lr {report['learning_rate']:.3g}  "
                f"{report['tokens_per_second']:.0f} tok/s  peak {report['peak_memory']:.2f} GB  "
                f"ETA {eta((now - started) / (it - first) * (iters - it))}")
        if it % job.steps_per_eval == 0 or it == iters:
            run_evaluation(it)
        record["iteration"] = it
        if rank == 0 and (it % job.save_every == 0 and it < iters and grad_sum is None):
            save_checkpoint(out, model, optimizer, best_weights, record)
            say(f"iter {it}/{iters}  checkpoint saved")
    if record["early_stopped"]:
        say(f"stopping early at iteration {record['early_stopped']['iteration']}: {record['early_stopped']['reason']}")
    if rank == 0:
        finish_training(out, job, model, best_weights, record)
    return training_result(record, time.perf_counter() - started)


def batch_logger(rank):
    """log(iteration, examples, trained tokens) into $SYNTHIA_BATCH_LOG/rank<rank>.jsonl; nothing when unset."""
    directory = os.environ.get(BATCH_LOG_VARIABLE)
    if not directory:
        return lambda iteration, examples, ntoks: None
    path = Path(directory) / f"rank{rank}.jsonl"

    def log(iteration, examples, ntoks):
        line = {"iteration": iteration, "examples": examples, "trained_tokens": ntoks.item()}
        with path.open("a") as file:
            file.write(json.dumps(line) + "\n")

    return log


def finish_training(out, job, model, best_weights, record):
    """Write the last and best adapters, and the kept ones as adapters.safetensors for fusing."""
    save_atomically(out / "last_adapters.safetensors", adapter_weights(model))
    save_atomically(out / "best_adapters.safetensors", best_weights)
    last = record["val_reports"][-1]
    kept = record["best"] if job.keep == "best" else last
    weights = best_weights if job.keep == "best" else adapter_weights(model)
    save_atomically(out / "adapters.safetensors", weights)
    record["kept"] = {"which": job.keep, **kept}


def training_result(record, seconds):
    return {
        "train_seconds": round(seconds, 2),
        "final_train_loss": record["train_reports"][-1]["train_loss"] if record["train_reports"] else None,
        "final_valid_loss": record["val_reports"][-1]["val_loss"],
        "train_reports": record["train_reports"],
        "val_reports": record["val_reports"],
        "best": record["best"],
        "kept": record.get("kept"),
        "early_stopped": record["early_stopped"],
        "peak_memory_gb": mx.get_peak_memory() / 1e9,
        "blas_libraries": blas.loaded_blas_libraries(),
    }
