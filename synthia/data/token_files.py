"""The token files the worker trains on: one split's examples as token ids and the spans that carry loss.

One .npz per split (numpy's uncompressed zip of arrays): every example's ids end to end as int32, their lengths,
their dataset line numbers, and their trained spans. Written and read as whole arrays: 4 million ids as JSON text
cost more than the rest of preparing them. Token files of earlier versions (.tokens.jsonl, one JSON object per
example) are still read.
"""

import json
from pathlib import Path

import numpy as np

SUFFIX = ".tokens.npz"
LEGACY_SUFFIX = ".tokens.jsonl"


def token_file(directory, split):
    """The split's token file: the .npz, or an earlier version's .jsonl where only that one exists."""
    path = Path(directory) / f"{split}{SUFFIX}"
    legacy = Path(directory) / f"{split}{LEGACY_SUFFIX}"
    return legacy if legacy.exists() and not path.exists() else path


def write(path, examples):
    """examples: [(line, token ids: an int32 array or a list, spans: [(start, end)])]."""
    ids = [np.asarray(tokens, dtype=np.int32) for _, tokens, _ in examples]
    spans = [span for _, _, example_spans in examples for span in example_spans]
    with open(path, "wb") as handle:  # a file object: np.savez would add .npz to a name without it
        np.savez(handle, tokens=np.concatenate(ids) if ids else np.zeros(0, dtype=np.int32),
                 lengths=np.array([len(t) for t in ids], dtype=np.int64),
                 lines=np.array([line for line, _, _ in examples], dtype=np.int64),
                 spans=np.array(spans, dtype=np.int64).reshape(-1, 2),
                 span_counts=np.array([len(s) for _, _, s in examples], dtype=np.int64))
    return Path(path)


def read(path):
    """[(line, int32 ids, [(start, end)])] in the file's order; line is None in files that did not keep it."""
    if str(path).endswith(LEGACY_SUFFIX):
        records = [json.loads(line) for line in Path(path).read_text().splitlines()]
        return [(r.get("line"), np.asarray(r["tokens"], dtype=np.int32), [tuple(s) for s in r["spans"]])
                for r in records]
    with np.load(path) as arrays:
        tokens, lengths, lines = arrays["tokens"], arrays["lengths"], arrays["lines"]
        spans, span_counts = arrays["spans"].tolist(), arrays["span_counts"]
    token_ends, span_ends = np.cumsum(lengths).tolist(), np.cumsum(span_counts).tolist()
    token_starts, span_starts = [0] + token_ends[:-1], [0] + span_ends[:-1]
    return [(line, tokens[a:b], [tuple(s) for s in spans[c:d]])
            for line, a, b, c, d in zip(lines.tolist(), token_starts, token_ends, span_starts, span_ends)]
