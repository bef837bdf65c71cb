"""Stage slices, the deterministic train/valid/test split, and the token files the worker trains on."""

import hashlib
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from synthia.data import render, token_files

SPLITS = ("train", "valid", "test")


class DataError(ValueError):
    """A stage's data cannot train as configured; the message names the stage, the split, the counts and the fix."""


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
        fitted = encoded  # the same object in every stage, so its token line is written as JSON once
        if len(encoded.tokens) > max_seq_length:
            report.too_long += 1
            fitted = render.fit_to_length(replace(encoded), max_seq_length)
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


def write_split(directory, split, pairs):
    """The split as OpenAI records (for people and other tools) and as a token file (for the worker)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f"{split}.jsonl", "w") as records:
        records.writelines(ex.json_text + "\n" for ex, _ in pairs)
    legacy = directory / f"{split}{token_files.LEGACY_SUFFIX}"
    legacy.unlink(missing_ok=True)  # an earlier version's, which token_file would otherwise still find
    return token_files.write(directory / f"{split}{token_files.SUFFIX}",
                             [(ex.line, enc.token_array, enc.spans) for ex, enc in pairs])


def dataset_fingerprint(examples):
    digest = hashlib.sha256()
    for ex in examples:
        digest.update(ex.fingerprint.encode())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------------
# A stage's data, checked before anything runs
# ---------------------------------------------------------------------------------------------------------
def prepare_stage_data(number, values, examples, encoded, stage_dir, dataset_path, strict, with_test, write=True,
                       log=print):
    """Write models/stageN/data/*.jsonl (unless write is False); return the per-split token files and the
    statistics. Splits that training or --test cannot do without are errors here, before anything runs."""
    assignment = split_of_examples(examples, values["seed"], values["valid_fraction"], values["test_fraction"])
    splits = stage_examples(examples, assignment, values["categories"])
    files, stats = {}, {}
    for split in SPLITS:
        pairs, lengths = fit_split(encoded, splits[split], values["max_seq_length"])
        report_lengths(number, split, lengths, values["max_seq_length"], dataset_path, strict, log)
        directory = Path(stage_dir) / "data"
        files[split] = str(write_split(directory, split, pairs) if write else token_files.token_file(directory, split))
        stats[split] = split_stats(pairs)
    check_split_sizes(number, values, stats, with_test)
    return files, stats


def check_split_sizes(number, values, stats, with_test):
    counts = ", ".join(f"{s} {stats[s]['examples']}" for s in SPLITS)
    categories = ", ".join(values["categories"]) if values["categories"] else "every category"
    fix = (f"add examples in {categories}, raise valid_fraction/test_fraction (now {values['valid_fraction']}/"
           f"{values['test_fraction']}), or raise max_seq_length if long examples were left out")
    if stats["train"]["examples"] < values["batch_size"]:
        raise DataError(f"stage {number}: {stats['train']['examples']} training examples ({counts}), fewer than "
                        f"batch_size={values['batch_size']}. Fix: {fix}, or lower batch_size")
    if not stats["valid"]["examples"]:
        raise DataError(f"stage {number}: the valid split is empty ({counts}); the best checkpoint and early "
                        f"stopping need a validation loss. Fix: {fix}")
    if with_test and not stats["test"]["examples"]:
        raise DataError(f"stage {number}: the test split is empty ({counts}) and --test scores it. Fix: {fix}, "
                        "or drop --test")


def report_lengths(number, split, lengths, max_seq_length, dataset_path, strict, log):
    if not lengths.too_long:
        return
    message = (f"{split}: {lengths.too_long} example(s) longer than max_seq_length={max_seq_length}: "
               f"{lengths.shortened} kept with {lengths.dropped_turns} turn(s) dropped from the end, "
               f"{len(lengths.left_out)} left out (no complete assistant turn fits)")
    if lengths.left_out:
        needed = max(n for _, n in lengths.left_out)
        lines = ", ".join(str(line) for line, _ in lengths.left_out[:10])
        message += f"; left out: {dataset_path} line(s) {lines}; max_seq_length={needed} would keep them all"
    if strict:
        raise DataError(f"stage {number}: {message}")
    log(f"WARNING: {message}", number)
