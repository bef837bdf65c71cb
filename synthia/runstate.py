"""Bookkeeping that makes runs safe to interrupt and repeat: a lock per output directory, atomic JSON
writes, and a cheap identity for the model a stage starts from."""

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path


class RunLocked(Exception):
    """Another live run holds the output directory."""


@contextmanager
def output_lock(output_dir):
    """One run per output directory; a lock left by a dead process is taken over."""
    output_dir.mkdir(parents=True, exist_ok=True)
    lock = output_dir / ".synthia.lock"
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        holder = int(lock.read_text().strip() or 0)
        if holder and process_alive(holder):
            raise RunLocked(f"another run (pid {holder}) is using {output_dir}; wait for it to finish, or use "
                            f"another --output-dir")
        print(f"taking over the lock of a run that is gone (pid {holder})")
        lock.unlink()
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True


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
