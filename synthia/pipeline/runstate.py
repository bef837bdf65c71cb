"""Bookkeeping that makes runs safe to interrupt and repeat: a lock per output directory, SIGTERM stopping a run as
Ctrl-C does, atomic JSON writes, a cheap identity for the model a stage starts from, what a model directory's
config.json says, and which training checkpoint a stage resumes from."""

import hashlib
import json
import os
import signal
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout


class RunLocked(Exception):
    """Another live run holds the output directory."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, a job scheduler, a closed session), raised where the run is so that it stops the way Ctrl-C
    stops it: the running step's child first (synthia.pipeline.steps), then the lock, then the command that resumes."""


@contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM raises Terminated; the previous handler is back afterwards."""
    def stop(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def output_lock(output_dir):
    """One run per output directory. An OS lock (filelock): the system releases it when the process dies, so
    there is no stale lock to take over and no race between two runs that find one."""
    output_dir.mkdir(parents=True, exist_ok=True)
    lock, owner = FileLock(output_dir / ".synthia.lock"), output_dir / ".synthia.owner"
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = owner.read_text().strip() if owner.exists() else "unknown"
        raise RunLocked(f"another run (pid {holder}) is using {output_dir}; wait for it to finish, or use "
                        f"another --output-dir") from None
    try:
        owner.write_text(str(os.getpid()))
        yield
    finally:
        owner.unlink(missing_ok=True)
        lock.release()


def model_identity(name_or_path):
    """Changes when a local model's files do (a redone earlier stage); a Hub name stands for itself."""
    path = Path(name_or_path)
    if not path.is_dir():
        return name_or_path
    files = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in path.iterdir() if f.is_file())
    return hashlib.sha256(json.dumps(files).encode()).hexdigest()[:16]


def read_model_config(model_dir):
    """A model directory's config.json, or None when it has none (yet) or it is unreadable."""
    try:
        return json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return None


def model_layer_count(model_dir):
    model_config = read_model_config(model_dir)
    if model_config is None:
        return None
    text_config = model_config.get("text_config", model_config)
    return text_config.get("num_hidden_layers", text_config.get("n_layer"))


def is_quantized(model_dir):
    """False for a model that does not exist yet: the stages' fused models are full precision."""
    config = read_model_config(model_dir) or {}
    return "quantization" in config or "quantization_config" in config


def write_json(path, value):
    """Write to a temporary name and rename, so a crash never leaves half a file."""
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str))
    tmp.replace(path)


def safetensors_header(path):
    """The JSON header of a safetensors file (8 bytes of length, then JSON), read without MLX."""
    with open(path, "rb") as f:
        return json.loads(f.read(int.from_bytes(f.read(8), "little")))


def safetensors_problem(path):
    """Why a safetensors file cannot be loaded (unreadable, not safetensors, shorter than its header says), or None."""
    try:
        with open(path, "rb") as f:
            header_length = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(header_length))
        data_end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        size = Path(path).stat().st_size
    except OSError as e:
        return f"cannot read it ({e.strerror})"
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return "not a safetensors file (its header does not parse)"
    if size < 8 + header_length + data_end:
        return f"truncated: {size} bytes, its header describes {8 + header_length + data_end}"
    return None


def model_dir_problems(path):
    """What keeps a local model directory from loading: config.json, the tokenizer, every weight file."""
    path = Path(path)
    if not path.is_dir():
        return [f"{path}: {'a file, not a directory' if path.exists() else 'no such directory'}"]
    problems = []
    try:
        config = json.loads((path / "config.json").read_text())
        if not isinstance(config, dict) or "model_type" not in config:
            problems.append(f"{path / 'config.json'}: no \"model_type\" key, so not a model's config")
    except FileNotFoundError:
        problems.append(f"{path / 'config.json'}: missing")
    except (OSError, ValueError) as e:
        problems.append(f"{path / 'config.json'}: unreadable or not JSON ({e})")
    if not any((path / name).is_file() for name in ("tokenizer.json", "tokenizer.model", "vocab.json")):
        problems.append(f"{path}: no tokenizer (tokenizer.json)")
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        problems.append(f"{path}: no *.safetensors weight files")
    problems += [f"{w}: {problem}" for w in weights if (problem := safetensors_problem(w))]
    return problems


# A stage's training checkpoints, newest first: a new one is written under a temporary name and checked before the
# one it replaces becomes the previous, so a damaged newest checkpoint still leaves one to resume from.
CHECKPOINTS = ("checkpoint.safetensors", "checkpoint.prev.safetensors")


def resume_iteration(stage_dir):
    """The iteration training resumes at: that of the newest checkpoint whose file is whole (0 when none is)."""
    for name in CHECKPOINTS:
        path = Path(stage_dir) / name
        if path.exists() and safetensors_problem(path) is None and (iteration := checkpoint_iteration(path)):
            return iteration
    return 0


def checkpoint_iteration(path):
    """The iteration a training checkpoint was written at, read from its safetensors header; 0 when there is none.
    (The parent never imports MLX, so it reads the header itself: 8 bytes of length, then JSON.)"""
    try:
        return json.loads(safetensors_header(path)["__metadata__"]["record"])["iteration"]
    except (OSError, ValueError, KeyError):
        return 0
