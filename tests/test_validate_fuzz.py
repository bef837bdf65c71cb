"""Fuzzing the validator: whatever the lines hold (near-valid records, JSON-ish text, NaN, deep nesting, broken
UTF-8, raw bytes), it never raises, every problem sits on a line of the file (0: the file as a whole) with a
message, only standard JSON becomes an example, and the file is left as it was."""

import copy
import json
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from synthia.data import tool_schemas, validate

TOOLS = validate.load_default_tools()
FUZZ = settings(max_examples=150, deadline=None, database=None)  # no .hypothesis/ in the repository

KEYS = ["messages", "tools", "category", "role", "content", "tool_calls", "id", "type", "function", "name",
        "arguments", "tool_call_id", "weight", "parameters", "properties", "function_call", "text"]
WORDS = ["user", "assistant", "tool", "system", "function", "read", "bash", "call_1", "call_2", "tool_use",
         "object", "string", 0, 1]
surrogates = st.integers(0xD800, 0xDFFF).map(chr)
texts = st.one_of(st.text(max_size=12), st.lists(st.text(max_size=3) | surrogates, max_size=4).map("".join))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2, 10**30), st.floats(), texts, st.sampled_from(WORDS))
specials = st.sampled_from(["\ud800", "a\udfffb", float("nan"), float("-inf"), 1e308, [[[[[]]]]], {}, ""])
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.sampled_from(KEYS) | texts, inner, max_size=4), max_leaves=25)


@st.composite
def tool_call(draw):
    arguments = draw(st.one_of(json_values.map(json.dumps),
                               st.just('{"file_path": "a.py"}'), st.just('{"command": "ls"}'), json_values))
    call = {"id": draw(st.sampled_from(["call_1", "call_2", "call_3", "", None, 7])),
            "type": draw(st.sampled_from(["function", "function", "code"])),
            "function": {"name": draw(st.sampled_from(["read", "bash", "nope", None])), "arguments": arguments}}
    for key in draw(st.lists(st.sampled_from(["id", "type", "function"]), max_size=1)):
        del call[key]
    return call


parts = st.lists(st.one_of(texts.map(lambda t: {"type": "text", "text": t}), json_values,
                           st.sampled_from([{"type": "image_url", "image_url": {"url": "x"}}, {"type": "text"}])),
                 max_size=3)


@st.composite
def message(draw):
    role = draw(st.sampled_from(["system", "user", "assistant", "assistant", "tool", "function", "robot"]))
    message = {"role": role, "content": draw(st.one_of(texts, st.none(), st.integers(), parts))}
    if role == "assistant" and draw(st.booleans()):
        message["tool_calls"] = draw(st.lists(tool_call(), max_size=3) | json_values)
    if role == "assistant" and draw(st.integers(0, 3)) == 0:
        message["function_call"] = draw(tool_call().map(lambda call: call.get("function")) | json_values)
    if role == "tool":
        message["tool_call_id"] = draw(st.sampled_from(["call_1", "call_2", "call_3", None]))
    if role == "function" and draw(st.integers(0, 3)):
        message["name"] = draw(st.sampled_from(["read", "bash", None]))
    if draw(st.integers(0, 4)) == 0:
        message["weight"] = draw(st.sampled_from([0, 1, 2, True, "1", None]))
    return message


@st.composite
def record(draw):
    result = {"messages": draw(st.lists(message(), max_size=7) | json_values)}
    if draw(st.booleans()):
        result["category"] = draw(st.sampled_from([*validate.CATEGORIES, "poetry", 3]))
    if draw(st.integers(0, 3)) == 0:
        result["tools"] = draw(st.sampled_from([TOOLS, TOOLS[:2], [], {"read": 1}, [{"type": "function"}]]))
    return result


BASE = {"category": "tool_use", "messages": [
    {"role": "system", "content": "You are Synthia."},
    {"role": "user", "content": "Look at a.py and run the tests."},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "read", "arguments": '{"file_path": "a.py"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "bash", "arguments": '{"command": "make"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "1\tx = 1"},
    {"role": "tool", "tool_call_id": "call_2", "content": "exit code 0"},
    {"role": "assistant", "content": "All good.", "weight": 1}]}
TRACE = {"messages": [  # as a hosted API records it: text parts, the legacy function_call, an id used again
    {"role": "user", "content": [{"type": "text", "text": "Look at "}, {"type": "text", "text": "a.py."}]},
    {"role": "assistant", "content": None, "function_call": {"name": "read", "arguments": '{"file_path": "a.py"}'}},
    {"role": "function", "name": "read", "content": "1\tx = 1"},
    {"role": "assistant", "content": [], "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "bash", "arguments": '{"command": "make"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "exit code 0"}]},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "bash", "arguments": '{"command": "make"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "exit code 0"},
    {"role": "assistant", "content": [{"type": "text", "text": "All good."}], "tool_calls": []}]}


def places(value, path=()):
    """Every (path) to a dict value or list item inside `value`."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield path + (key,)
        yield from places(child, path + (key,))


@st.composite
def mutated_record(draw):
    """The valid BASE or TRACE with up to three changes: a field replaced by a random or odd value, deleted, or a
    string field with an odd character spliced in."""
    result = copy.deepcopy(draw(st.sampled_from([BASE, TRACE])))
    for _ in range(draw(st.integers(0, 3))):
        choices = list(places(result))
        if not choices:  # everything was deleted
            break
        path = draw(st.sampled_from(choices))
        parent = result
        for key in path[:-1]:
            parent = parent[key]
        old, kind = parent[path[-1]], draw(st.sampled_from(["replace", "delete", "splice"]))
        if kind == "splice" and isinstance(old, str):
            at = draw(st.integers(0, len(old)))
            parent[path[-1]] = old[:at] + draw(st.sampled_from(["\ud800", "\udfff", "\x00", "\u2028", "\""])) + old[at:]
        elif kind == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(draw(json_values | specials))  # no shared, no cyclic values
    return result


def deep(n):
    return '{"messages": ' + "[" * n + "]" * n + "}"


text_lines = st.one_of(
    mutated_record().map(json.dumps),
    record().map(json.dumps),
    json_values.map(json.dumps),
    st.tuples(record().map(json.dumps), st.integers(0, 300)).map(lambda t: t[0][:t[1]]),  # truncated
    st.sampled_from([0, 1, 99, 100, 101, 5000]).map(deep),  # around MAX_NESTING, and past Python's parser
    st.sampled_from(["", "  ", "\ufeff{}", "NaN", "[Infinity]", '{"messages": -Infinity}', "1e999", "\r"]),
    texts,
)
byte_lines = st.one_of(
    text_lines.map(lambda line: line.encode("utf-8", "surrogatepass")),
    st.binary(max_size=40),
    st.tuples(record().map(lambda r: json.dumps(r).encode()), st.binary(min_size=1, max_size=3), st.integers(0, 200))
    .map(lambda t: t[0][:t[2]] + t[1] + t[0][t[2]:]),  # a few stray bytes inside a record
)


def assert_well_formed(report, line_count):
    refused_whole = report.lines == 0 and [e.line for e in report.errors] == [0]  # say, a UTF-16 file
    assert report.lines == line_count or refused_whole
    for problem in report.errors + report.warnings:
        assert 0 <= problem.line <= line_count, problem
        assert problem.message and str(problem)
    error_lines = {e.line for e in report.errors}
    for example in report.examples:
        assert 1 <= example.line <= line_count and example.line not in error_lines
        json.dumps(example.record, allow_nan=False).encode("utf-8")  # standard JSON, encodable as UTF-8
        assert_canonical(example.messages)
    assert report.examples or report.errors  # a file with nothing to train on is an error


def assert_canonical(messages):
    """What render.py and splits.py read: the four roles, string content (null beside calls), no legacy fields,
    no empty tool_calls, arguments as JSON strings."""
    for message in messages:
        assert message["role"] in validate.ROLES and "function_call" not in message, message
        calls = message.get("tool_calls", "absent")
        assert calls != [] and (calls == "absent" or calls is None or all(
            isinstance(call["function"]["arguments"], str) for call in calls)), message
        assert isinstance(message["content"], str) or message["content"] is None and calls, message


ODD_VALUES = [None, True, 0, -1, 2.5, "", "x", "\ud800", [], [1], ["call_1"], {}, {"a": 1}, float("nan"),
              json.loads("[" * 120 + "]" * 120)]


def test_every_field_replaced_by_every_kind_of_value_or_deleted_is_reported_not_raised():
    """Exhaustive where the random tests are not: each place of a valid record, each JSON type (and odd ones)."""
    lines = []
    for path in places(BASE):
        for value in ODD_VALUES + [MISSING]:
            record = copy.deepcopy(BASE)
            parent = record
            for key in path[:-1]:
                parent = parent[key]
            if value is MISSING:
                parent.pop(path[-1])
            else:
                parent[path[-1]] = copy.deepcopy(value)
            lines.append(json.dumps(record))
    report = validate.validate_lines(lines, "fuzz.jsonl", TOOLS)
    assert_well_formed(report, len(lines))
    assert len(report.examples) < len(lines) / 2  # most changes break the record, and are reported


MISSING = object()


@FUZZ
@given(st.lists(mutated_record().map(json.dumps), min_size=1, max_size=4))
def test_validate_lines_never_raises_on_records_one_change_away_from_valid(lines):
    report = validate.validate_lines(lines, "fuzz.jsonl", TOOLS)
    assert_well_formed(report, len(lines))


@FUZZ
@given(st.lists(text_lines | byte_lines, max_size=6))
def test_validate_lines_never_raises_and_places_every_problem_on_a_line(lines):
    report = validate.validate_lines(lines, "fuzz.jsonl", TOOLS)
    assert_well_formed(report, len(lines))
    validate.format_report(report, strict=True)


@FUZZ
@given(st.lists(byte_lines, max_size=6), st.sampled_from([b"\n", b"\r\n"]), st.booleans(),
       st.sampled_from([validate.MAX_LINE_BYTES, 16, 64]))
def test_validate_file_never_raises_and_leaves_the_file_unchanged(lines, newline, final_newline, max_line_bytes):
    lines = [line.replace(b"\n", b" ") for line in lines]
    content = newline.join(lines) + (newline if final_newline and lines else b"")
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "fuzz.jsonl"
        path.write_bytes(content)
        report = validate.validate_file(path, TOOLS, max_line_bytes=max_line_bytes)
        assert path.read_bytes() == content
    line_count = len(content.split(b"\n")) - content.endswith(b"\n") if content else 0
    assert_well_formed(report, line_count)


def utf8_encodable(record):  # lone surrogates never pass validation, so never reach a fingerprint
    try:
        return bool(json.dumps(record, ensure_ascii=False).encode())
    except UnicodeEncodeError:
        return False


@FUZZ
@given(records=st.lists(st.dictionaries(st.sampled_from(KEYS) | texts, json_values, min_size=1, max_size=5)
                        .map(lambda r: {**r, "tools": r.get("tools", [{"name": "x"}])}).filter(utf8_encodable),
                        min_size=1, max_size=3))
def test_a_fingerprint_is_the_digest_of_the_records_sorted_json(records):
    """fingerprint() builds the canonical JSON from parts (the tools' part is shared with the tool set); it must
    stay byte for byte what json.dumps gives, or every example's split would move."""
    import hashlib

    tool_sets = tool_schemas.ToolSets(None)
    for record in records:
        tool_sets.of(record["tools"])
        expected = json.dumps(record, sort_keys=True, ensure_ascii=False)
        assert validate.fingerprint(record, tool_sets.canonical) == hashlib.sha256(expected.encode()).hexdigest()[:16]
