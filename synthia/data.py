"""Stage slices, the deterministic train/valid/test split, and the token files the worker trains on."""

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from synthia import render

SPLITS = ("train", "valid", "test")
UNCATEGORIZED = "(none)"


def split_of_examples(examples, seed, valid_fraction, test_fraction):
    """{line: split}. Each example's split is drawn from the hash of its own content and the seed, against the
    fractions, so it never depends on the other examples: adding or removing lines moves no one, and an example
    lands in the same split in every stage."""
    return {ex.line: split_of(ex.fingerprint, seed, valid_fraction, test_fraction) for ex in examples}


def split_of(fingerprint, seed, valid_fraction, test_fraction):
    draw = int(hashlib.sha256(f"{seed}:{fingerprint}".encode()).hexdigest()[:15], 16) / 16**15  # uniform in [0, 1)
    return "test" if draw < test_fraction else "valid" if draw < test_fraction + valid_fraction else "train"


def in_stage(example, categories):
    """Examples without a category (plain OpenAI data) belong to every stage; None means every category."""
    return categories is None or example.category is None or example.category in categories


def stage_examples(examples, assignment, categories):
    """{split: [examples]} for one stage's slice."""
    out = {split: [] for split in SPLITS}
    for ex in examples:
        if in_stage(ex, categories):
            out[assignment[ex.line]].append(ex)
    return out


@dataclass
class LengthReport:
    """What fitting a split to max_seq_length did."""

    too_long: int = 0  # examples that exceeded the limit
    shortened: int = 0  # kept with whole turns dropped from the end
    dropped_turns: int = 0
    left_out: list = field(default_factory=list)  # (line, needed max_seq_length)


def fit_split(encoded_by_line, examples, max_seq_length):
    """Fit each example of a split to max_seq_length; returns ([(example, encoded)], LengthReport)."""
    kept, report = [], LengthReport()
    for ex in examples:
        encoded = encoded_by_line[ex.line]
        if encoded.trained_turns == 0:
            continue
        fitted = render.fit_to_length(replace(encoded), max_seq_length)
        if len(encoded.tokens) > max_seq_length:
            report.too_long += 1
        if fitted is None:
            report.left_out.append((ex.line, fitted_needed(encoded)))
            continue
        if fitted.dropped_turns:
            report.shortened += 1
            report.dropped_turns += fitted.dropped_turns
        kept.append((ex, fitted))
    return kept, report


def fitted_needed(encoded):
    return encoded.spans[0][1] if encoded.spans else len(encoded.tokens)


def split_stats(pairs):
    """Counts for run.json: examples per category, trained/untrained assistant turns and tokens."""
    return {
        "examples": len(pairs),
        "categories": dict(sorted(Counter(ex.category or UNCATEGORIZED for ex, _ in pairs).items())),
        "tokens": sum(len(e.tokens) for _, e in pairs),
        "trained_turns": sum(e.trained_turns for _, e in pairs),
        "untrained_turns": sum(e.untrained_turns for _, e in pairs),
        "trained_tokens": sum(e.trained_tokens for _, e in pairs),
        "untrained_assistant_tokens": sum(e.untrained_assistant_tokens for _, e in pairs),
    }


def token_file(directory, split):
    return Path(directory) / f"{split}.tokens.jsonl"


def write_split(directory, split, pairs):
    """The split as OpenAI records (for people and other tools) and as token files (for the worker)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f"{split}.jsonl", "w") as records, open(token_file(directory, split), "w") as toks:
        for ex, enc in pairs:
            records.write(json.dumps(ex.record, ensure_ascii=False) + "\n")
            toks.write(json.dumps({"line": ex.line, "tokens": enc.tokens, "spans": enc.spans}) + "\n")
    return token_file(directory, split)


def dataset_fingerprint(examples):
    digest = hashlib.sha256()
    for ex in examples:
        digest.update(ex.fingerprint.encode())
    return digest.hexdigest()[:16]
