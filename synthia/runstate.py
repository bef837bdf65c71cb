"""Bookkeeping that makes runs safe to interrupt and repeat: a lock per output directory, atomic JSON
writes, and a cheap identity for the model a stage starts from."""

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout


class RunLocked(Exception):
    """Another live run holds the output directory."""


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


def write_json(path, value):
    """Write to a temporary name and rename, so a crash never leaves half a file."""
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str))
    tmp.replace(path)


def checkpoint_iteration(path):
    """The iteration a training checkpoint was written at, read from its safetensors header; 0 when there is none.
    (The parent never imports MLX, so it reads the header itself: 8 bytes of length, then JSON.)"""
    try:
        with open(path, "rb") as f:
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        return json.loads(header["__metadata__"]["record"])["iteration"]
    except (OSError, ValueError, KeyError):
        return 0
