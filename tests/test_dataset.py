"""Checks on dataset.jsonl, the starter dataset (regenerate it with `python -m synthia.starter_data`).

Fast: the file is only read and checked, nothing is executed. Whether each line is a valid example is the
validator's job (synthia/data/validate.py states the rules once); this file checks what is particular to this
dataset: its plain file format, its tools, category counts, conversation shapes, lengths and duplicates. The
last tests break shipped records to show the validator rejects them.
"""

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from synthia.data import validate

ROOT = Path(__file__).resolve().parents[1]
DATASET = ROOT / "dataset.jsonl"
TOOLS = validate.load_default_tools()
ERROR_RE = re.compile(r"^(Error: |exit code [1-9]\d*\n)")  # how the generator's tools report a failure
MAX_TOKENS = 2048  # exact Qwen2.5 tokens of the rendered conversation (README, "The dataset")
MAX_ESTIMATED_TOKENS = 2350  # a sanity bound on bytes/3.5, which runs ~10% above the exact count here


@pytest.fixture(scope="module")
def report():
    return validate.validate_file(DATASET)


@pytest.fixture(scope="module")
def records(report):
    return [ex.record for ex in report.examples]


def tool_turns(record):
    return [m for m in record["messages"] if m["role"] == "assistant" and m.get("tool_calls")]


def is_parallel(record):
    return any(len(m["tool_calls"]) > 1 for m in tool_turns(record))


def has_error_and_recovery(record):
    """A tool result reporting a failure, followed by a later assistant turn that calls a tool again."""
    messages = record["messages"]
    for i, m in enumerate(messages):
        if m["role"] == "tool" and ERROR_RE.match(m["content"]):
            if any(later["role"] == "assistant" and later.get("tool_calls") for later in messages[i + 1:]):
                return True
    return False


def estimated_tokens(record):
    from synthia.starter_data.stats import render

    return len(render(record["messages"], record["tools"]).encode("utf-8")) / 3.5


# -- the dataset ---------------------------------------------------------------------------------------------


def test_every_line_passes_the_validator_with_no_warnings(report):
    assert validate.is_ok(report, strict=True), validate.format_report(report, strict=True)
    assert len(report.examples) == report.lines


def test_the_file_is_plain_utf8_lines_ending_in_a_newline():
    """The validator accepts a BOM, CRLF and blank lines; the shipped file has none of them."""
    raw = DATASET.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf") and b"\r" not in raw and raw.endswith(b"\n")
    assert b"\n\n" not in raw


def test_every_record_has_a_category_and_the_default_tools(records):
    assert all(r.get("category") in validate.CATEGORIES for r in records)
    assert all(r["tools"] == TOOLS for r in records)


def test_category_counts(records):
    counts = Counter(r["category"] for r in records)
    assert len(records) >= 300, counts
    assert counts["tool_use"] >= 120, counts
    for category in validate.CATEGORIES:
        assert counts[category] >= 25, counts


def test_multi_turn_parallel_and_recovery_counts(records):
    multi = sum(len(tool_turns(r)) >= 2 for r in records)
    assert multi >= len(records) / 2, multi
    assert sum(is_parallel(r) for r in records) >= 40
    assert sum(has_error_and_recovery(r) for r in records) >= 40


def test_weight_zero_only_on_mistakes_that_are_followed_by_a_fix(records):
    """A weight-0 turn is the assistant's own slip: its call fails, and a weight-1 turn follows."""
    for r in records:
        messages = r["messages"]
        for i, m in enumerate(messages):
            if m.get("weight") == 0:
                results = [t["content"] for t in messages[i + 1:] if t["role"] == "tool"][: len(m["tool_calls"])]
                assert any(ERROR_RE.match(t) for t in results), m
                assert any(n["role"] == "assistant" and n.get("weight", 1) == 1 for n in messages[i + 1:])


def test_no_dialogue_repeats_even_under_another_system_prompt(records):
    """Exact duplicate lines are the validator's (a warning, so the strict test above fails on them)."""
    dialogues = Counter(json.dumps([m for m in r["messages"] if m["role"] != "system"], sort_keys=True)
                        for r in records)
    assert max(dialogues.values()) == 1


def test_lengths(records):
    longest = max(estimated_tokens(r) for r in records)
    assert longest <= MAX_ESTIMATED_TOKENS, longest


def test_exact_token_lengths(records):
    """Runs when Qwen2.5's tokenizer is cached (the generator builds it: synthia/starter_data/tokenizer.py)."""
    from synthia.starter_data import stats, tokenizer

    try:
        tok = tokenizer.load(fetch=False)
    except tokenizer.TokenizerUnavailable as e:
        pytest.skip(str(e))
    stats.use_tokenizer(tok)
    try:
        longest = max(stats.qwen_tokens(r) for r in records)
    finally:
        stats.use_tokenizer(None)
    assert longest <= MAX_TOKENS, longest


# -- the validator rejects broken shipped records ------------------------------------------------------------


def shipped_record(multi_turn=False):
    """A fresh copy of the first shipped record (with two tool-calling turns if `multi_turn`)."""
    with open(DATASET, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if not multi_turn or len(tool_turns(record)) >= 2:
                return record
    raise AssertionError("no multi-turn record in the dataset")


def problems(record):
    """["field: message", ...] for the errors and warnings of one record."""
    report = validate.validate_lines([json.dumps(record)], "dataset.jsonl", TOOLS)
    return [f"{p.field}: {p.message}" for p in report.errors + report.warnings]


def first_call(record):
    return tool_turns(record)[0]["tool_calls"][0]


def index_of(record, message):
    return next(i for i, m in enumerate(record["messages"]) if m is message)


def test_a_shipped_record_is_clean_before_it_is_broken():
    assert problems(shipped_record()) == [] and problems(shipped_record(multi_turn=True)) == []


def test_validator_catches_schema_violations_in_a_shipped_record():
    record = shipped_record()
    call = first_call(record)
    args = json.loads(call["function"]["arguments"])
    call["function"]["arguments"] = json.dumps({**args, "unexpected": 1})
    assert any("Additional properties are not allowed" in p for p in problems(record))
    call["function"]["arguments"] = args  # an object instead of a JSON string: normalised, with a warning
    assert any("give arguments as an object" in p for p in problems(record))
    call["function"]["name"] = "delete_everything"
    assert any("unknown tool 'delete_everything'" in p for p in problems(record))


def test_validator_catches_structure_violations_in_a_shipped_record():
    record = shipped_record()
    record["messages"] = [m for m in record["messages"] if m["role"] != "tool"]
    assert any("are not answered before this assistant turn" in p for p in problems(record))
    record = shipped_record()
    record["messages"].append({"role": "user", "content": "thanks"})
    assert any("must end with an assistant turn" in p for p in problems(record))
    record = shipped_record()
    for m in record["messages"]:
        if m["role"] == "assistant":
            m["weight"] = 0
    assert any("nothing to learn" in p for p in problems(record))
    record = shipped_record()
    next(m for m in record["messages"] if m["role"] == "user")["weight"] = 0
    assert any("only allowed on assistant messages" in p for p in problems(record))


def test_validator_accepts_a_call_id_reused_after_its_answer_in_a_shipped_record():
    """Traces from hosted APIs reuse ids: an id need only be unique among the calls still open."""
    record = shipped_record(multi_turn=True)
    first, second = tool_turns(record)[:2]
    old_id, new_id = second["tool_calls"][0]["id"], first["tool_calls"][0]["id"]
    second["tool_calls"][0]["id"] = new_id
    next(m for m in record["messages"] if m.get("tool_call_id") == old_id)["tool_call_id"] = new_id
    assert problems(record) == []
    second["tool_calls"].append(dict(second["tool_calls"][0]))  # open twice at once: ambiguous
    assert problems(record)[0] == (f"messages[{index_of(record, second)}].tool_calls[{len(second['tool_calls']) - 1}]"
                                   f".id: {new_id!r} is already used by messages[{index_of(record, second)}]"
                                   ".tool_calls[0]")


def test_validator_rejects_a_user_message_between_a_call_and_its_result_in_a_shipped_record():
    record = shipped_record()
    turn = tool_turns(record)[0]
    at = index_of(record, turn) + 1
    record["messages"].insert(at, {"role": "user", "content": "also check the README"})
    assert len(problems(record)) == 1 and f"messages[{at}]: this user message comes between" in problems(record)[0]


def test_error_detection():
    record = {"messages": [
        {"role": "user", "content": "run it"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "bash", "arguments": "{\"command\": \"x\"}"}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "exit code 127\nbash: line 1: x: command not found"},
        {"role": "assistant", "content": "x is not installed."},
    ]}
    assert not has_error_and_recovery(record)  # no tool call after the error
    record["messages"][-1] = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_b", "type": "function", "function": {"name": "bash", "arguments": "{\"command\": \"y\"}"}}]}
    record["messages"] += [{"role": "tool", "tool_call_id": "call_b", "content": "exit code 0\nok"},
                           {"role": "assistant", "content": "Done."}]
    assert has_error_and_recovery(record)
