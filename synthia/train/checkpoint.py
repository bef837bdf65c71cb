"""Checkpoints: one file with everything a resumed run needs (adapters, the best adapters so far, the optimizer
state, the loss curves). A new one is checked before it replaces the newest, which is kept as the previous one
(runstate.CHECKPOINTS): a damaged newest file still leaves one to resume from."""

import json
import os

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

from synthia.pipeline import runstate
from synthia.train.jobs import JobError


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
