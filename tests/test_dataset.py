"""Checks on dataset.jsonl, the starter dataset (regenerate it with `python -m synthia.starter_data`).

Fast: the file is only read and checked, nothing is executed. Each check is a function of the parsed
records, and the last tests feed deliberately broken records to those functions to show they can fail.
"""

import copy
import json
import re
from collections import Counter
from pathlib import Path

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATASET = ROOT / "dataset.jsonl"
TOOLS = json.loads((ROOT / "synthia" / "default_tools.json").read_text())
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
CATEGORIES = ("tool_use", "tdd", "debugging", "planning", "refactoring", "code_review", "collaboration")
ERROR_RE = re.compile(r"^(Error: |exit code [1-9]\d*\n)")  # how the generator's tools report a failure
MAX_TOKENS = 2048  # exact Qwen2.5 tokens of the rendered conversation (README, "The dataset")
MAX_ESTIMATED_TOKENS = 2350  # a sanity bound on bytes/3.5, which runs ~10% above the exact count here


def load(path=DATASET):
    raw = path.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf"), "the file starts with a byte-order mark"
    lines = raw.decode("utf-8").split("\n")
    assert lines[-1] == "", "the file must end with a newline"
    assert all(line.strip() for line in lines[:-1]), "blank line in the dataset"
    return [json.loads(line) for line in lines[:-1]]


@pytest.fixture(scope="module")
def records():
    return load()


# -- checks (each returns a list of problems) --------------------------------------------------------------


def call_problems(record):
    """Tool calls: known tool, arguments a JSON string holding an object valid against the schema."""
    problems = []
    names = [t["function"]["name"] for t in record["tools"]]
    if record["tools"] != TOOLS:
        problems.append("tools differ from synthia/default_tools.json")
    for m in record["messages"]:
        for call in m.get("tool_calls") or []:
            fn = call["function"]
            if fn["name"] not in names:
                problems.append(f"unknown tool {fn['name']}")
                continue
            if not isinstance(fn["arguments"], str):
                problems.append("arguments must be a JSON string")
                continue
            args = json.loads(fn["arguments"])
            if not isinstance(args, dict):
                problems.append("arguments must be an object")
                continue
            for error in jsonschema.Draft202012Validator(SCHEMAS[fn["name"]]).iter_errors(args):
                problems.append(f"{fn['name']}: {error.message}")
    return problems


def structure_problems(record):
    """Roles, content types, answering every call before the next assistant turn, ids, the last turn."""
    problems = []
    messages = record["messages"]
    if record.get("category") not in CATEGORIES:
        problems.append(f"bad category {record.get('category')!r}")
    for i, m in enumerate(messages):
        if m["role"] not in ("system", "user", "assistant", "tool"):
            problems.append(f"unknown role {m['role']}")
        if m["role"] == "system" and i != 0:
            problems.append("system message not first")
        content = m.get("content")
        if not (isinstance(content, str) or (content is None and m["role"] == "assistant" and m.get("tool_calls"))):
            problems.append(f"messages[{i}] content must be a string")
        if "weight" in m and (m["role"] != "assistant" or m["weight"] not in (0, 1) or isinstance(m["weight"], bool)):
            problems.append(f"messages[{i}] bad weight")
    seen_ids, pending = set(), set()
    for i, m in enumerate(messages):
        if m["role"] == "assistant":
            if pending:
                problems.append(f"calls {sorted(pending)} unanswered before messages[{i}]")
            pending = set()
            for call in m.get("tool_calls") or []:
                if call["id"] in seen_ids:
                    problems.append(f"tool-call id {call['id']} used twice")
                seen_ids.add(call["id"])
                pending.add(call["id"])
        elif m["role"] == "tool":
            if m["tool_call_id"] not in pending:
                problems.append(f"messages[{i}] answers no open call of the preceding assistant turn")
            pending.discard(m["tool_call_id"])
        elif pending:
            problems.append(f"calls {sorted(pending)} unanswered before messages[{i}]")
            pending = set()
    if messages[-1]["role"] != "assistant":
        problems.append("does not end with an assistant turn")
    assistants = [m for m in messages if m["role"] == "assistant"]
    if not any(m.get("weight", 1) == 1 for m in assistants):
        problems.append("no weight-1 assistant turn")
    return problems


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


def test_category_counts(records):
    counts = Counter(r["category"] for r in records)
    assert len(records) >= 300, counts
    assert counts["tool_use"] >= 120, counts
    for category in CATEGORIES:
        assert counts[category] >= 25, counts


def test_tool_calls_match_their_schemas(records):
    problems = [(i + 1, p) for i, r in enumerate(records) for p in call_problems(r)]
    assert not problems, problems[:10]


def test_conversation_structure(records):
    problems = [(i + 1, p) for i, r in enumerate(records) for p in structure_problems(r)]
    assert not problems, problems[:10]


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


def test_no_exact_duplicates(records):
    keys = Counter(json.dumps(r, sort_keys=True) for r in records)
    assert max(keys.values()) == 1
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


# -- the checks reject bad data -----------------------------------------------------------------------------


def _sample():
    return copy.deepcopy(load()[0])


def _first_call(record):
    return next(m for m in record["messages"] if m.get("tool_calls"))["tool_calls"][0]


def test_checks_catch_schema_violations():
    record = _sample()
    call = _first_call(record)
    args = json.loads(call["function"]["arguments"])
    args["unexpected"] = 1
    call["function"]["arguments"] = json.dumps(args)
    assert call_problems(record)
    call["function"]["arguments"] = args  # an object instead of a JSON string
    assert call_problems(record)
    call["function"]["name"] = "delete_everything"
    assert call_problems(record)


def test_checks_catch_structure_violations():
    record = _sample()
    record["messages"] = [m for m in record["messages"] if m["role"] != "tool"]
    assert any("unanswered" in p for p in structure_problems(record))
    record = _sample()
    record["messages"].append({"role": "user", "content": "thanks"})
    assert "does not end with an assistant turn" in structure_problems(record)
    record = _sample()
    for m in record["messages"]:
        if m["role"] == "assistant":
            m["weight"] = 0
    assert "no weight-1 assistant turn" in structure_problems(record)
    record = _sample()
    next(m for m in record["messages"] if m["role"] == "user")["weight"] = 0
    assert structure_problems(record)


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
