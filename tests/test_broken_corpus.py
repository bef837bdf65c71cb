"""A corpus of broken dataset files. Each is reported on its exact line (0: the file as a whole) with the field,
the problem and a fix; the lines around it are still validated; the file is left byte for byte as it was; and
`python -m synthia.data.validate FILE` exits 2 without a traceback."""

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, NamedTuple

import pytest

from synthia.data import validate
from tests import sample_data

ROOT = Path(__file__).resolve().parents[1]


def good(i):
    return json.dumps(sample_data.conversation(i, "tool_use"))


def record():
    """sample_data's conversation: messages[2] calls call_1 and call_2 (answered by [3], [4]), [5] calls call_3
    (answered by [6]), [7] is the final answer."""
    return sample_data.conversation(99, "tool_use")


def changed(change):
    r = record()
    change(r)
    return json.dumps(r)


def set_in(*path_and_value):
    *path, key, value = path_and_value

    def change(r):
        target = r
        for step in path:
            target = target[step]
        target[key] = value
    return change


def delete_in(*path):
    def change(r):
        target = r
        for step in path[:-1]:
            target = target[step]
        del target[path[-1]]
    return change


def first_call(r):
    return r["messages"][2]["tool_calls"][0]


def set_call(key, value):
    return lambda r: first_call(r).__setitem__(key, value)


def set_arguments(text):
    return lambda r: first_call(r)["function"].__setitem__("arguments", text)


def reuse_call_1_while_it_is_open(r):
    """An id may come back once its call is answered, not while it is open: which call would a result answer?"""
    r["messages"][2]["tool_calls"][1]["id"] = "call_1"
    del r["messages"][4]


def insert_message(index, message):
    return lambda r: r["messages"].insert(index, message)


class Case(NamedTuple):
    name: str
    build: Callable  # tmp_path -> the path to validate
    line: int  # where the (only) error must be
    fragment: str  # in "field: message"


def between(bad):
    """A file of: good line, `bad` (str or bytes), good line. The bad line is line 2."""
    bad = bad.encode("utf-8") if isinstance(bad, str) else bad

    def build(tmp_path):
        path = tmp_path / "data.jsonl"
        path.write_bytes(good(1).encode() + b"\n" + bad + b"\n" + good(2).encode() + b"\n")
        return path
    return build


def file_of(content):
    def build(tmp_path):
        path = tmp_path / "data.jsonl"
        path.write_bytes(content)
        return path
    return build


def line_case(name, bad, fragment):
    return Case(name, between(bad), 2, fragment)


def directory(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text(good(1) + "\n")
    return tmp_path / "data"


def symlink_loop(tmp_path):
    path = tmp_path / "data.jsonl"
    path.symlink_to(path)
    return path


def dangling_symlink(tmp_path):
    path = tmp_path / "data.jsonl"
    path.symlink_to(tmp_path / "gone.jsonl")
    return path


def huge_line(megabytes):
    def build(tmp_path):
        r = record()
        r["messages"][1]["content"] = "x" * (megabytes * 2**20)
        return between(json.dumps(r))(tmp_path)
    return build


def deep(depth):
    return "[" * depth + "]" * depth


FILE_CASES = [
    Case("missing file", lambda tmp_path: tmp_path / "nope.jsonl", 0, "file not found"),
    Case("a directory", directory, 0, "is a directory, not a .jsonl file"),
    Case("a symlink loop", symlink_loop, 0, "cannot be opened: Too many levels of symbolic links"),
    Case("a dangling symlink", dangling_symlink, 0, "is a symbolic link to a missing file"),
    Case("an empty file", file_of(b""), 0, "no examples: the file is empty"),
    Case("only blank lines", file_of(b"\n  \n\r\n"), 0, "no examples: every line is blank"),
    Case("UTF-16", file_of((good(1) + "\n").encode("utf-16")), 0, "is UTF-16 text"),
    Case("gzip", file_of(gzip.compress((good(1) + "\n").encode())), 0, "is gzip-compressed"),
]

LINE_CASES = [
    # the line as a whole
    line_case("not JSON", "{not json", "not valid JSON (Expecting property name"),
    line_case("a truncated line", good(3)[:200], "the line ends before the JSON does"),
    line_case("a JSON array", "[1, 2]", "a line must be a JSON object, got a JSON array"),
    line_case("invalid UTF-8", good(3).encode().replace(b"Task", b"T\xe2sk"), "not valid UTF-8: byte 0xe2 at byte"),
    line_case("a BOM after line 1", b"\xef\xbb\xbf" + good(3).encode(), "Unexpected UTF-8 BOM"),
    line_case("NaN", changed(set_in("score", float("nan"))), "score: NaN is not a JSON number"),
    line_case("Infinity", changed(set_in("messages", 3, "content", float("inf"))),
              "messages[3].content: Infinity is not a JSON number"),
    line_case("-Infinity in arguments", changed(set_arguments('{"file_path": -Infinity}')),
              "messages[2].tool_calls[0].function.arguments.file_path: -Infinity is not a JSON number"),
    line_case("a number beyond a double", good(3).replace('"category"', '"x": 1e999, "category"'),
              "x: 1e999 is not a JSON number"),
    line_case("a 5,000-digit number", good(3).replace('"category"', '"x": ' + "7" * 5000 + ', "category"'),
              "a number is too long to read"),
    line_case("an unpaired surrogate", changed(set_in("messages", 1, "content", "a\ud800b")),
              "messages[1].content: holds an unpaired UTF-16 surrogate escape"),
    line_case("arguments nested 5,000 deep", changed(set_arguments(deep(5000))),
              "messages[2].tool_calls[0].function.arguments: arrays/objects nested more than 100 levels deep"),
    line_case("a line nested 5,000 deep", good(3).replace('"category"', f'"x": {deep(5000)}, "category"'),
              "arrays/objects nested more than 100 levels deep (from column"),
    line_case("a line nested 101 deep", changed(set_in("x", json.loads(deep(100)))),
              "x[0][0][0][0][0]...(91 more)...[0][0][0]: nested more than 100 levels deep"),
    Case("a 9 MB line", huge_line(9), 2, "the line is 9.44 MB, over the limit of 8.39 MB per line"),
    Case("a 30 MB line", huge_line(30), 2, "the line is 31.46 MB"),
    # the record's fields
    line_case("messages missing", changed(delete_in("messages")), "messages: is missing"),
    line_case("messages not a list", changed(set_in("messages", {"role": "user"})),
              "messages: must be a non-empty list, got object"),
    line_case("messages empty", changed(set_in("messages", [])), "messages: must be a non-empty list, got array"),
    line_case("category unknown", changed(set_in("category", "poetry")), "category: unknown category 'poetry'"),
    line_case("category a number", changed(set_in("category", 3)), "category: unknown category 3"),
    line_case("tools not a list", changed(set_in("tools", {"read": {}})),
              "tools: must be a non-empty list of function schemas, got object"),
    line_case("tools empty", changed(set_in("tools", [])), "tools: must be a non-empty list"),
    line_case("a tool without its function", changed(set_in("tools", [{"type": "function"}])),
              'tools[0]: must be {"type": "function", "function": {...}}'),
    line_case("tool parameters an array", changed(set_in("tools", [
        {"type": "function", "function": {"name": "read", "parameters": []}},
        {"type": "function", "function": {"name": "bash"}}])),
        "tools[0].function.parameters: must be a JSON Schema object, got array"),
    line_case("tool parameters an invalid schema", changed(set_in("tools", [
        {"type": "function", "function": {"name": "read", "parameters": {"type": "object", "properties": 5}}},
        {"type": "function", "function": {"name": "bash"}}])),
        "tools[0].function.parameters: is not a valid JSON Schema"),
    # messages
    line_case("a message not an object", changed(set_in("messages", 1, "hello")),
              "messages[1]: must be an object, got string 'hello'"),
    line_case("role wrong", changed(set_in("messages", 1, "role", "robot")), "messages[1].role: unknown role 'robot'"),
    line_case("role missing", changed(delete_in("messages", 1, "role")), "messages[1].role: is missing"),
    line_case("content a number", changed(set_in("messages", 1, "content", 42)),
              "messages[1].content: must be a string, got number 42"),
    line_case("content missing", changed(delete_in("messages", 1, "content")), "messages[1].content: is missing"),
    line_case("a second system message", changed(insert_message(1, {"role": "system", "content": "again"})),
              "messages[1]: a system message may only come first"),
    line_case("ends with a tool message", changed(lambda r: r["messages"].__delitem__(7)),
              "messages[6]: the conversation must end with an assistant turn, not 'tool'"),
    line_case("weight 2", changed(set_in("messages", 7, "weight", 2)),
              "messages[7].weight: must be 0 or 1, got number 2"),
    line_case("weight true", changed(set_in("messages", 7, "weight", True)),
              "messages[7].weight: must be 0 or 1, got boolean true"),
    line_case("weight on a user message", changed(set_in("messages", 1, "weight", 1)),
              "messages[1].weight: is only allowed on assistant messages"),
    line_case("every weight 0", changed(lambda r: [m.__setitem__("weight", 0) for m in r["messages"]
                                                   if m["role"] == "assistant"]),
              "messages: every assistant turn has weight 0"),
    # tool calls
    line_case("tool_calls not a list", changed(set_in("messages", 2, "tool_calls", {"id": "call_1"})),
              "messages[2].tool_calls: must be a list, got object"),
    line_case("tool_calls on a user message", changed(set_in("messages", 1, "tool_calls", [{"id": "x"}])),
              "messages[1].tool_calls: only assistant messages call tools"),
    line_case("a call not an object", changed(set_in("messages", 2, "tool_calls", 0, "read")),
              "messages[2].tool_calls[0]: must be an object, got string 'read'"),
    line_case("a call without id", changed(lambda r: first_call(r).pop("id")),
              "messages[2].tool_calls[0].id: is missing"),
    line_case("a call id a number", changed(set_call("id", 1)),
              "messages[2].tool_calls[0].id: must be a non-empty string, got number 1"),
    line_case("a call of type code", changed(set_call("type", "code")),
              'messages[2].tool_calls[0].type: must be "function", got string \'code\''),
    line_case("a call without function", changed(lambda r: first_call(r).pop("function")),
              "messages[2].tool_calls[0].function: must be an object with name and arguments, got null"),
    line_case("a call without name", changed(lambda r: first_call(r)["function"].pop("name")),
              "messages[2].tool_calls[0].function.name: is missing"),
    line_case("arguments not JSON", changed(set_arguments("{file_path: a}")),
              "messages[2].tool_calls[0].function.arguments: not valid JSON"),
    line_case("arguments a JSON array", changed(set_arguments('["src/main.rs"]')),
              "messages[2].tool_calls[0].function.arguments: must hold a JSON object, got a JSON array"),
    line_case("arguments a number", changed(set_arguments(5)),
              "messages[2].tool_calls[0].function.arguments: must be a JSON string, got number 5"),
    line_case("arguments missing", changed(lambda r: first_call(r)["function"].pop("arguments")),
              "messages[2].tool_calls[0].function.arguments: is missing"),
    line_case("unknown tool", changed(lambda r: first_call(r)["function"].__setitem__("name", "delete_everything")),
              "messages[2].tool_calls[0].function.name: unknown tool 'delete_everything'"),
    # pairing calls and results
    line_case("a tool message answering no call", changed(set_in("messages", 3, "tool_call_id", "call_9")),
              "messages[3].tool_call_id: 'call_9' answers no open call of messages[2]"),
    line_case("a tool message without tool_call_id", changed(delete_in("messages", 3, "tool_call_id")),
              "messages[3].tool_call_id: must be the id of the call it answers, got null"),
    line_case("a tool message before any call", changed(insert_message(1, {"role": "tool", "tool_call_id": "call_1",
                                                                             "content": "early"})),
              "messages[1]: tool message before any assistant tool call"),
    line_case("a call left unanswered", changed(lambda r: r["messages"].__delitem__(4)),
              "messages[4]: tool call(s) 'call_2' of messages[2] are not answered before this assistant turn"),
    line_case("a call id reused while its call is open", changed(reuse_call_1_while_it_is_open),
              "messages[2].tool_calls[1].id: 'call_1' is already used by messages[2].tool_calls[0]"),
    line_case("a user message between a call and its result",
              changed(insert_message(3, {"role": "user", "content": "hurry"})),
              "messages[3]: this user message comes between the tool call(s) 'call_1', 'call_2' of messages[2]"),
]


def described(problem):
    return f"{problem.field}: {problem.message}"


@pytest.mark.parametrize("case", FILE_CASES + LINE_CASES, ids=lambda case: case.name)
def test_broken_input_is_one_clear_error_on_its_line(case, tmp_path):
    path = case.build(tmp_path)
    before = path.read_bytes() if path.is_file() else None
    report = validate.validate_file(path)
    assert [e.line for e in report.errors] == [case.line], validate.format_report(report)
    error = report.errors[0]
    assert case.fragment in described(error), str(error)
    assert str(error).startswith(f"{path}:{case.line}: " if case.line else f"{path}: ") and ". Fix: " in str(error)
    if case.line:
        assert [ex.line for ex in report.examples] == [1, 3]  # validation went on around the broken line
    if before is not None:
        assert path.read_bytes() == before


@pytest.mark.parametrize("case", FILE_CASES + LINE_CASES, ids=lambda case: case.name)
def test_cli_exits_2_with_the_message_and_no_traceback(case, tmp_path):
    path = case.build(tmp_path)
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}  # the dataset's text must not crash a plain terminal
    result = subprocess.run([sys.executable, "-m", "synthia.data.validate", str(path)], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == ""
    assert case.fragment.split(": ")[-1][:30] in result.stdout


def test_every_broken_line_is_reported_and_the_good_ones_kept(tmp_path):
    lines = [good(1).encode().replace(b"Task", b"\xffTask"), good(2).encode(), b"{nope", good(3).encode(),
             changed(set_arguments(deep(5000))).encode(), b"\xc3(", good(4).encode()]
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    report = validate.validate_file(path)
    assert [e.line for e in report.errors] == [1, 3, 5, 6]
    assert [ex.line for ex in report.examples] == [2, 4, 7]


def test_crlf_line_endings_and_a_bom_on_line_1_are_accepted(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"".join(good(i).encode() + b"\r\n" for i in range(3)))
    report = validate.validate_file(path)
    assert report.errors == [] and [ex.line for ex in report.examples] == [1, 2, 3]
    assert report.warning_counts() == {validate.BOM: 1}
    assert report.examples[0].record == json.loads(good(0))


def test_a_last_line_without_newline_is_read(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(good(1) + "\n" + good(2))
    assert [ex.line for ex in validate.validate_file(path).examples] == [1, 2]


def test_the_line_limit_counts_the_line_without_its_newline(tmp_path):
    line = good(1).encode()
    path = tmp_path / "data.jsonl"
    path.write_bytes(line + b"\r\n" + line.replace(b"Task", b"Job") + b"\n" + line.replace(b"Task", b"Work!"))
    report = validate.validate_file(path, max_line_bytes=len(line))
    assert [e.line for e in report.errors] == [3] and "the line is" in report.errors[0].message
    assert [ex.line for ex in report.examples] == [1, 2]
