"""The child process that trains or evaluates one stage, so memory returns to the system between stages.

    python -m synthia.train.worker train JOB.json       # LoRA training: our loop, mlx_lm's parts, our loss mask
    python -m synthia.train.worker evaluate JOB.json    # masked loss / perplexity of models on token files
    python -m synthia.train.worker score JOB.json       # tool-calling scorecard of a model, by generation

train_mlx.py writes JOB.json with every setting resolved (this file keeps no defaults); the result goes to
the job's "result" path as JSON. Token files hold one {"tokens": [...], "spans": [[start, end], ...]} per
line: the spans are the token ranges that carry loss (the assistant turns), made by synthia.data.render.
Under `mlx.launch` every rank trains on its rows of each batch; only rank 0 writes files.
"""

import json
import math
import os
import sys
import time
from functools import partial
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten, tree_map, tree_unflatten
from mlx_lm.tuner.callbacks import get_reporting_callbacks
from mlx_lm.tuner.trainer import grad_checkpoint
from mlx_lm.tuner.utils import build_schedule, linear_to_lora_layers
from mlx_lm.utils import load

from synthia.data import token_files
from synthia.pipeline import runstate
from synthia.platform import blas, cpu_backend
from synthia.train.loss import ChunkedLossUnsupported, OutputHead, chunked_summed_loss, trained_positions

PAD_TO = 32  # pad batches to a multiple of this, as mlx_lm does, so compiled shapes repeat
LOSS_SLOTS = 64  # chunked loss: trained positions are padded to a multiple of this, so compiled shapes repeat
BATCH_LOG_VARIABLE = "SYNTHIA_BATCH_LOG"  # a directory: each rank writes rank<N>.jsonl, the examples it trained on


# ---------------------------------------------------------------------------------------------------------
# Data: length-sorted batches; the order of epoch e is a pure function of (seed, e), so a resumed run
# needs only the iteration number to see the same batches as an uninterrupted one.
# ---------------------------------------------------------------------------------------------------------
def load_token_file(path):
    """List of (tokens, mask) numpy pairs; mask[k] is 1 where token k is a training target."""
    examples = []
    for _, tokens, spans in token_files.read(path):
        mask = np.zeros(len(tokens), dtype=np.float32)
        for start, end in spans:
            mask[start:end] = 1.0
        examples.append((tokens, mask))
    return examples


def batch_index_groups(lengths, batch_size, keep_remainder):
    """Indices sorted by length, cut into batches; the short last batch only when asked (evaluation)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    stop = len(order) if keep_remainder else len(order) - batch_size + 1
    return [order[i : i + batch_size] for i in range(0, max(stop, 0), batch_size)]


def training_batch_indices(groups, seed, iteration):
    """The batch of 1-based `iteration`: epochs visit every batch once, in an order drawn from (seed, epoch)."""
    epoch, position = divmod(iteration - 1, len(groups))
    return groups[np.random.default_rng([seed, epoch]).permutation(len(groups))[position]]


def rank_share(indices, rank, world):
    """The examples of a batch that one rank trains on: every world-th, from its rank."""
    return indices[rank::world]


def pack_batch(dataset, indices, rank, world, max_seq_length):
    """This rank's rows of a batch, right-padded into (tokens, mask); padding and missing rows carry no loss."""
    rows = max(1, -(-len(indices) // world))
    mine = [dataset[i] for i in rank_share(indices, rank, world)]
    longest = max((len(t) for t, _ in mine), default=1)
    width = min(1 + PAD_TO * ((longest + PAD_TO - 1) // PAD_TO), max_seq_length)
    tokens, mask = np.zeros((rows, width), np.int32), np.zeros((rows, width), np.float32)
    for row, (t, m) in enumerate(mine):
        n = min(len(t), width)  # examples were fitted to max_seq_length by the parent
        tokens[row, :n], mask[row, :n] = t[:n], m[:n]
    return mx.array(tokens), mx.array(mask)


def evaluation_batches(dataset, batch_size, max_seq_length, num_batches=-1, rank=0, world=1):
    """Every example once, length-sorted, the short last batch included; the first `num_batches` (-1: all)."""
    groups = batch_index_groups([len(t) for t, _ in dataset], batch_size, keep_remainder=True)
    for indices in groups if num_batches < 0 else groups[:num_batches]:
        yield pack_batch(dataset, indices, rank, world, max_seq_length)


# ---------------------------------------------------------------------------------------------------------
# Loss and evaluation
# ---------------------------------------------------------------------------------------------------------
def summed_loss(model, tokens, mask):
    """(sum of cross-entropy over the targets the mask marks, their count). Sums, not means, so that batches,
    accumulation steps and ranks with different numbers of trained tokens combine into one per-token mean."""
    inputs, targets, weights = tokens[:, :-1], tokens[:, 1:], mask[:, 1:]
    ce = nn.losses.cross_entropy(model(inputs), targets) * weights
    return ce.astype(mx.float32).sum(), weights.sum()


def masked_loss(model, tokens, mask):
    """Mean cross-entropy over the trained targets, and their count."""
    ce_sum, ntoks = summed_loss(model, tokens, mask)
    return ce_sum / mx.maximum(ntoks, 1), ntoks


class JobError(ValueError):
    """A job this worker cannot run as written; main prints the message (no traceback) and exits with 2."""


def loss_and_inputs(model, chunk_size):
    """The summed masked loss a job asks for, and how a batch becomes its inputs: loss(model, *inputs(tokens,
    mask)). chunk_size None: summed_loss, logits of every position at once. A number: synthia.train.loss,
    logits only at the trained positions (found on the host), chunk_size of them at a time."""
    if chunk_size is None:
        return summed_loss, lambda tokens, mask: (tokens, mask)
    try:
        OutputHead(model)
    except ChunkedLossUnsupported as error:
        raise JobError(f"loss_chunk_size {chunk_size}: {error}") from None

    def loss(model, tokens, mask, positions):
        return chunked_summed_loss(model, tokens, mask, chunk_size, positions)

    return loss, lambda tokens, mask: (tokens, mask, trained_positions(mask, LOSS_SLOTS))


def evaluate(model, dataset, batch_size, max_seq_length, num_batches=-1, world=None, chunk_size=None):
    """Per-token mean loss over a split (its first `num_batches` batches, or all with -1), every example once."""
    rank, size = (world.rank(), world.size()) if world else (0, 1)
    loss, inputs = loss_and_inputs(model, chunk_size)
    total, count = mx.array(0.0), mx.array(0.0)
    for tokens, mask in evaluation_batches(dataset, batch_size, max_seq_length, num_batches, rank, size):
        ce_sum, ntoks = loss(model, *inputs(tokens, mask))
        total, count = total + ce_sum, count + ntoks
        mx.eval(total, count)
    if world:
        total, count = mx.distributed.all_sum(total, stream=mx.cpu), mx.distributed.all_sum(count, stream=mx.cpu)
    return (total / count).item() if count.item() else None


# ---------------------------------------------------------------------------------------------------------
# Checkpoints: one file with everything a resumed run needs. A new one is checked before it replaces the newest,
# which is kept as the previous one (runstate.CHECKPOINTS): a damaged newest file still leaves one to resume from.
# ---------------------------------------------------------------------------------------------------------
def adapter_weights(model):
    return dict(tree_flatten(model.trainable_parameters()))


def save_checkpoint(out, model, optimizer, best_weights, record):
    arrays = {**{f"adapters/{k}": v for k, v in adapter_weights(model).items()},
              **{f"best/{k}": v for k, v in (best_weights or {}).items()},
              **{f"optimizer/{k}": v for k, v in tree_flatten(optimizer.state)}}
    newest, previous = (out / name for name in runstate.CHECKPOINTS)
    save_atomically(newest, arrays, metadata={"record": json.dumps(record)}, keep_as=previous)


def save_atomically(path, arrays, metadata=None, keep_as=None):
    """Write to a temporary name, check that the file is whole, then rename: a full disk or a kill never leaves a
    half-written file under the real name (MLX's own error names no file, so this one does). keep_as: where the
    file being replaced goes, in the moment before the new one takes its name."""
    tmp = path.with_name(path.stem + ".tmp.safetensors")
    try:
        mx.save_safetensors(str(tmp), arrays, metadata=metadata or {})
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())  # on disk before the rename makes it the one to resume from
    except (RuntimeError, OSError) as e:
        tmp.unlink(missing_ok=True)
        raise OSError(f"cannot write {path}: {e}") from None
    problem = runstate.safetensors_problem(tmp)
    if problem:
        tmp.unlink(missing_ok=True)
        raise OSError(f"cannot write {path}: the file written was {problem}")
    if keep_as is not None and path.exists():
        os.replace(path, keep_as)
    os.replace(tmp, path)


class DamagedCheckpoint(Exception):
    """A checkpoint file that cannot be resumed from; the message says why."""


def read_checkpoint(path):
    """(arrays, record) of a checkpoint file, checked whole before MLX reads it."""
    problem = runstate.safetensors_problem(path)
    if problem:
        raise DamagedCheckpoint(problem)
    try:
        arrays, metadata = mx.load(str(path), return_metadata=True)
        return arrays, json.loads(metadata["record"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise DamagedCheckpoint(f"it does not load: {e}") from None


def newest_whole_checkpoint(out):
    """(path, arrays, record) of the newest checkpoint that loads, or None; and [(path, why)] of the damaged ones
    passed over on the way."""
    damaged = []
    for path in (out / name for name in runstate.CHECKPOINTS):
        if not path.exists():
            continue
        try:
            return (path, *read_checkpoint(path)), damaged
        except DamagedCheckpoint as e:
            damaged.append((path, str(e)))
    return None, damaged


def resume_note(resumed, damaged):
    """The line a training run starts with when there was a checkpoint: where it resumes, after the damaged files it
    passed over (each named, with why); None for a first start."""
    said = [f"{path} is damaged ({why})" for path, why in damaged]
    if resumed is not None:
        said.append(f"resuming from iteration {resumed[2]['iteration']} ({resumed[0].name})")
    elif damaged:
        said.append(f"{'no earlier checkpoint: ' if len(damaged) == 1 else ''}the stage starts again from iteration 0")
    return "; ".join(said) or None


def restore_checkpoint(arrays, record, model, optimizer):
    """Adapters and optimizer state from a checkpoint's arrays; returns (record, best adapter weights). The random
    state needs no saving: each iteration seeds it from (seed, iteration)."""
    part = lambda prefix: {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}  # noqa: E731
    optimizer.init(model.trainable_parameters())
    model.load_weights(list(part("adapters/").items()), strict=False)
    optimizer.state = tree_unflatten(list(part("optimizer/").items()))
    return record, part("best/") or None


# ---------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------
def optimizer_updates(iters, accumulation):
    return -(-iters // accumulation)


def make_optimizer(job):
    schedule = build_schedule(job["lr_schedule"])
    return {"adam": optim.Adam, "adamw": optim.AdamW}[job["optimizer"]](learning_rate=schedule)


def setup_model(job):
    mx.random.seed(job["seed"])
    model, _ = load(job["model"])
    model.freeze()
    linear_to_lora_layers(model, job["num_layers"], job["lora_parameters"], use_dora=job["fine_tune_type"] == "dora")
    if job["grad_checkpoint"]:
        grad_checkpoint(model.layers[0])
    return model


def adapter_config(job):
    """What mlx_lm's load_adapters and fuse read back."""
    return {"fine_tune_type": job["fine_tune_type"], "num_layers": job["num_layers"],
            "lora_parameters": job["lora_parameters"], "base_model": job["model"]}


def eta(seconds):
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{secs:02d}s"


def train_job(job):
    world = mx.distributed.init()
    rank, out = world.rank(), Path(job["adapter_dir"])
    say = (lambda text: print(text, flush=True)) if rank == 0 else (lambda text: None)
    model = setup_model(job)
    optimizer = make_optimizer(job)
    train_set, valid_set = load_token_file(job["train"]), load_token_file(job["valid"])
    groups = batch_index_groups([len(t) for t, _ in train_set], job["batch_size"], keep_remainder=False)
    iters, accumulation = job["iters"], job["grad_accumulation_steps"]
    loss, inputs = loss_and_inputs(model, job["loss_chunk_size"])
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

    record = {"iteration": 0, "train_reports": [], "val_reports": [], "best": None, "early_stopped": None,
              "pending": {"loss": 0.0, "tokens": 0.0}}
    best_weights = None
    reporter = (get_reporting_callbacks(job["report_to"], project_name="synthia", log_dir=str(out), config=job)
                if rank == 0 else None)
    log_batch = batch_logger(rank)
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

    def run_evaluation(iteration):
        nonlocal best_weights
        model.eval()
        started = time.perf_counter()
        loss = evaluate(model, valid_set, job["batch_size"], job["max_seq_length"], job["val_batches"], world,
                        job["loss_chunk_size"])
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
        if job["early_stop_patience"] and since_best >= job["early_stop_patience"] and iteration < iters:
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
        indices = training_batch_indices(groups, job["seed"], it)
        tokens, mask = pack_batch(train_set, indices, rank, world.size(), job["max_seq_length"])
        mx.random.seed(job["seed"] * 1_000_003 + it)  # dropout's draws: a pure function of the iteration
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
        if it % job["steps_per_report"] == 0 or it == iters:
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
        if it % job["steps_per_eval"] == 0 or it == iters:
            run_evaluation(it)
        record["iteration"] = it
        if rank == 0 and (it % job["save_every"] == 0 and it < iters and grad_sum is None):
            save_checkpoint(out, model, optimizer, best_weights, record)
            say(f"iter {it}/{iters}  checkpoint saved")
    if record["early_stopped"]:
        say(f"stopping early at iteration {record['early_stopped']['iteration']}: {record['early_stopped']['reason']}")
    if rank == 0:
        finish_training(out, job, model, best_weights, record)
    return training_result(record, time.perf_counter() - started)


def check_ranks_start_together(world, iteration, out):
    """Under mlx.launch every rank must resume from the same iteration; a checkpoint on only one machine's disk (or
    damaged on one machine only) would have them train different steps (and wait on each other forever)."""
    if world.size() == 1:
        return
    starts = mx.distributed.all_gather(mx.array([iteration]), stream=mx.cpu).tolist()
    if len(set(starts)) > 1:
        raise JobError(f"the ranks would resume from iterations {starts} (by rank): {out} does not hold the same "
                       "checkpoints on every machine. Fix: copy it to the same path on every machine, or delete its "
                       f"{' and '.join(runstate.CHECKPOINTS)} everywhere to train from the start.")


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
    kept = record["best"] if job["keep"] == "best" else last
    weights = best_weights if job["keep"] == "best" else adapter_weights(model)
    save_atomically(out / "adapters.safetensors", weights)
    record["kept"] = {"which": job["keep"], **kept}


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


def evaluate_job(job):
    """Each run: a model on its splits. {label: {split: {loss, perplexity}}}."""
    results = {}
    for run in job["runs"]:
        model, _ = load(run["model"])
        model.eval()
        results[run["label"]] = {}
        for split, path in run["splits"].items():
            loss = evaluate(model, load_token_file(path), job["batch_size"], job["max_seq_length"],
                            run["num_batches"][split], chunk_size=job["loss_chunk_size"])
            results[run["label"]][split] = {"loss": loss, "perplexity": math.exp(loss)}
            print(f"{run['label']} {split}: loss {loss:.4f}  ppl {math.exp(loss):.3f}", flush=True)
        del model
        mx.clear_cache()  # the next run loads another copy of the model
    return results


def score_job(job):
    """Tool-calling scores of one model on held-out files, by generation: {split label: eval result}."""
    from synthia.data import validate
    from synthia.scorecard import generation

    model, tokenizer = load(job["model"])
    if job["chat_template"]:
        tokenizer._tokenizer.chat_template = Path(job["chat_template"]).read_text()
    tools, results = validate.load_default_tools(), {}
    generator = generation.Generator(model, tokenizer)  # shared: nested splits hold the same conversations
    for label, path in job["splits"].items():
        examples = validate.validate_file(path).examples
        results[label] = generation.score_conversations(
            model, tokenizer, examples, tools, max_new_tokens=job["max_new_tokens"],
            max_prompt_tokens=job["max_prompt_tokens"], limit=job["limit"], progress=False, label=label,
            generator=generator)
        overall = results[label]["metrics"]["overall"]
        print(f"{label}: {results[label]['counts']['turns_scored']} turns, exact {overall['exact']['rate'] or 0:.1%}, "
              f"valid {overall['valid']['rate'] or 0:.1%}", flush=True)
    if job["samples"]:
        held_out = generation.pick_held_out(next(iter(results.values()))) if results else ()
        generation.write_samples(model, tokenizer, tools, job["samples"], held_out=held_out)
    return results


def main(argv=None):
    command, job_path = sys.argv[1:] if argv is None else argv
    job = json.loads(Path(job_path).read_text())
    cpu_backend.configure()
    try:
        result = {"train": train_job, "evaluate": evaluate_job, "score": score_job}[command](job)
    except JobError as error:
        print(f"error: {job_path}: {error}", file=sys.stderr, flush=True)
        return 2
    if mx.distributed.init().rank() == 0:
        tmp = Path(job["result"] + ".tmp")
        tmp.write_text(json.dumps(result, indent=2))
        tmp.replace(job["result"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
