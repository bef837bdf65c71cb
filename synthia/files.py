"""Small facts about files that several jobs need, each written once: an atomic JSON write, a file's SHA-256
and a size a person reads."""

import hashlib
import json
from pathlib import Path


def write_json(path, value):
    """Write to a temporary name and rename, so a crash never leaves half a file."""
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str))
    tmp.replace(path)
    return Path(path)


def file_sha256(path):
    """The hex SHA-256 of a file's bytes, read in chunks (model weights are gigabytes)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def size_text(size):
    """Bytes as a person reads them: 1.23 GB, 4.56 MB, 7.89 kB, 12 B."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{size} B"
