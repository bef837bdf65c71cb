"""Validate a chat fine-tuning dataset (OpenAI format, one JSON object per line) before any training.

    python -m synthia.data.validate dataset.jsonl [--strict]

Hard problems are errors (exit code 2); soft ones are warnings, counted by kind (`--strict` makes them
errors). Every problem names the file, the 1-based line (0: the file as a whole), the field
(`messages[3].tool_calls[0].id`), what is wrong and the fix. One broken line never hides the others.

The file:
- is read as bytes and decoded line by line, so a line that is not UTF-8 is an error on that line only;
- may use LF or CRLF line endings; a UTF-8 byte-order mark on line 1 and blank lines are accepted with a
  warning;
- is streamed: a line longer than MAX_LINE_BYTES is refused without being held in memory.

A line holds standard JSON only, and so does a tool call's `arguments` string: NaN, Infinity, a number that
overflows a double, an unpaired surrogate escape and nesting deeper than 100 levels are errors naming their field
(strict_json.py reads them). A record's `tools` are checked and compiled, and arguments checked against them, by
tool_schemas.py.

A conversation (the rules, stated once; tests/test_dataset.py relies on them):
- roles are system (first message only), user, assistant, tool; content is a string, or a list of text parts
  ([{"type": "text", "text": ...}], joined with no separator as the API joins them; other parts are errors), or
  null on an assistant turn that calls tools; `weight` (0 or 1) only on assistant turns, and at least one of them 1;
- a tool call has an id unique among the calls not yet answered (a trace may reuse an id once it is answered),
  calls a tool of the record's `tools` (default: synthia/data/default_tools.json) with a JSON-object `arguments`
  string; arguments that break the tool's JSON Schema, a key written twice, or one its `properties` do not
  declare (when `additionalProperties` is not given) are warnings;
- the tool results follow their assistant turn directly, one per call (no user message in between), and
  every call is answered before the next assistant turn; the last assistant turn may leave calls open;
- the conversation ends with an assistant turn; an empty one is a warning (it trains the model to say nothing).
- the legacy format (an assistant `function_call`, answered by a `function` message with `name` and `content`)
  follows the same rules and is converted: the call to a tool call with a made-up id, its answer to a tool
  message; one warning per file counts the lines. A `function_call` beside `tool_calls` is an error.

A valid record is handed on normalised (`normalise`), in the form render.py and splits.py read: content a string
or null, tool_calls a non-empty list of calls whose `arguments` is a JSON string, tool messages only.
"""

import argparse
import hashlib
import itertools
import json
import math
import os
import stat
import sys
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

from synthia.data.findings import MAX_PROBLEMS_PER_LINE, Finding, cut, got, json_type, shown
from synthia.data.strict_json import (ARGUMENTS_DECODER, FIX_ARGUMENTS, FIX_LINE_JSON, FIX_SURROGATE, encodable,
                                      parse_json, repeated_keys)
from synthia.data.tool_schemas import (ToolSets, canonical_json, load_default_tools, schema_mismatch,
                                       undeclared_arguments)
from synthia.files import size_text
from synthia.platform import forked

CATEGORIES = ("tool_use", "tdd", "debugging", "planning", "refactoring", "code_review", "collaboration")
ROLES = ("system", "user", "assistant", "tool")
LEGACY_ROLE = "function"  # the answer to a legacy function_call; converted to a tool message
KNOWN_ROLES = (*ROLES, LEGACY_ROLE)
MAX_ERRORS_SHOWN = 30
MAX_LINE_BYTES = 8 * 2**20  # ~2M tokens, 1000x a 2048-token context: a longer line is a broken export
READ_CHUNK = 2**20  # bytes read at a time while skipping the rest of an over-long line

# Warning kinds, each counted separately in the report (tool_schemas.py has the two about a tool's schema).
DUPLICATE = "duplicate example"
BOM = "UTF-8 byte-order mark"
BLANK_LINE = "blank line"
ARGUMENTS_AS_OBJECT = "arguments given as an object instead of a JSON string (normalised)"
TOO_LONG = "longer than max_seq_length"
LEGACY_FORMAT = "legacy function_call/function format (converted)"
EMPTY_TOOL_CALLS = "empty tool_calls list (dropped)"
REPEATED_KEY = "key repeated in an arguments JSON string"
EMPTY_LAST_TURN = "empty final assistant turn"

# Fixes shared by several problems.
FIX_CALL = 'give each call as {"id": "call_1", "type": "function", "function": {"name": ..., "arguments": "{...}"}}'
FIX_CALL_ID = ("give each tool call its own non-empty string id, unique among the calls not yet answered "
               "(call_1, call_2, ...)")
FIX_TOOL_RESULT = "answer each call once, with a tool message right after the assistant turn that made it"
FIX_ROLE = f"use one of: {', '.join(ROLES)}"
FIX_TEXT_PART = 'give each part as {"type": "text", "text": "..."}, or the whole content as one string'
FIX_LEGACY_RESULT = ("answer a function_call once, with a function message (name and content) right after the "
                     "assistant turn that made it")

MISSING = object()  # a key that is absent, told apart from one that holds null

@dataclass(frozen=True)
class Problem:
    path: str
    line: int  # 1-based; 0 for the file as a whole
    message: str
    kind: str = ""
    field: str = ""
    fix: str = ""

    def __str__(self):
        where = f"{self.path}:{self.line}" if self.line else self.path
        what = f"{self.field}: {self.message}" if self.field else self.message
        return f"{where}: {what}" + (f". Fix: {self.fix}" if self.fix else "")


@dataclass
class Example:
    line: int
    record: dict  # normalised (`normalise`): the form render.py and splits.py read
    fingerprint: str
    text: str = None  # the line as written, when normalising changed nothing: the record's JSON as is

    @property
    def category(self):
        return self.record.get("category")

    @property
    def messages(self):
        return self.record["messages"]

    @cached_property
    def json_text(self):
        """The normalised record as one JSON line: the line itself, or made once however many stages write it."""
        return self.text or json.dumps(self.record, ensure_ascii=False)


@dataclass
class Report:
    path: str
    examples: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    lines: int = 0  # lines read

    def add(self, line, finding):
        problem = Problem(self.path, line, finding.message, finding.kind, finding.field, finding.fix)
        (self.warnings if finding.kind else self.errors).append(problem)

    def warn(self, line, message, kind, fix=""):
        self.add(line, Finding("", message, fix, kind))

    def warning_counts(self):
        return Counter(w.kind for w in self.warnings)

# ---------------------------------------------------------------------------------------------------------
# Tool calls and their results
# ---------------------------------------------------------------------------------------------------------
class CallPairing:
    """Which calls are open, so every tool message is matched to exactly one call (rules in the docstring)."""

    def __init__(self):
        self.made = set()  # every call id made so far
        self.answered = {}  # call id -> index of the tool message that answered it
        self.open = {}  # call id -> the call's field, until answered
        self.interrupted = set()  # open ids whose results came after another message: reported once
        self.nameless = 0  # open calls without a usable id (reported): each takes one unmatched result quietly
        self.last_assistant = None
        self.legacy_open = None  # (index of the assistant turn, name) of a function_call awaiting its answer
        self.legacy_quiet = False  # this turn's function_call was reported, or its answer came late: not again

    def open_ids(self):
        return ", ".join(shown(i) for i in itertools.islice(self.open, 10)) + (", ..." if len(self.open) > 10 else "")

    def assistant_turn(self, i):
        problems = []
        if self.open:
            problems.append(Finding(f"messages[{i}]", f"tool call(s) {self.open_ids()} of "
                                    f"messages[{self.last_assistant}] are not answered before this assistant turn",
                                    FIX_TOOL_RESULT))
        if self.legacy_open:
            problems.append(Finding(f"messages[{i}]", f"the function_call of messages[{self.legacy_open[0]}] is not "
                                    "answered before this assistant turn", FIX_LEGACY_RESULT))
        self.open, self.last_assistant, self.nameless = {}, i, 0
        self.legacy_open, self.legacy_quiet = None, False
        return problems

    def other_turn(self, i, role):
        if not self.open and not self.legacy_open:
            return ()
        problems = []
        if self.open:
            problems.append(Finding(f"messages[{i}]", f"this {role} message comes between the tool call(s) "
                                    f"{self.open_ids()} of messages[{self.last_assistant}] and their results",
                                    "put the tool results directly after the assistant turn that made the calls, "
                                    f"and the {role} message after them"))
            self.interrupted |= set(self.open)
            self.open = {}
        if self.legacy_open:
            problems.append(Finding(f"messages[{i}]", f"this {role} message comes between the function_call of "
                                    f"messages[{self.legacy_open[0]}] and its function message",
                                    f"put the function message directly after that turn, and the {role} message "
                                    "after it"))
            self.legacy_open, self.legacy_quiet = None, True
        return problems

    def call_without_id(self, count=1):
        self.nameless += count

    def call(self, call_id, where):
        problems = []
        if call_id in self.open:  # reported; its result is not reported a second time
            problems.append(Finding(f"{where}.id", f"{shown(call_id)} is already used by {self.open[call_id]}",
                                    FIX_CALL_ID))
        else:
            self.open[call_id] = where
        self.made.add(call_id)
        self.answered.pop(call_id, None)
        return problems

    def result(self, call_id, i):
        if not isinstance(call_id, str) or not call_id:
            self.take_any_open_call()
            return [Finding(f"messages[{i}].tool_call_id", f"must be the id of the call it answers, {got(call_id)}",
                            FIX_TOOL_RESULT)]
        if self.last_assistant is None:
            return [Finding(f"messages[{i}]", "tool message before any assistant tool call", FIX_TOOL_RESULT)]
        if call_id in self.open or call_id in self.interrupted:
            self.open.pop(call_id, None)
            self.interrupted.discard(call_id)
            self.answered[call_id] = i
            return []
        if self.nameless:
            self.nameless -= 1
            return []
        again = f": messages[{self.answered[call_id]}] answered it already" if call_id in self.answered else ""
        if call_id not in self.made:
            self.take_any_open_call()
        return [Finding(f"messages[{i}].tool_call_id", f"{shown(call_id)} answers no open call of "
                        f"messages[{self.last_assistant}]{again}", FIX_TOOL_RESULT)]

    def take_any_open_call(self):
        """A result with a wrong id was most likely meant for the first open call: it is not reported again.
        Returns that call's id, or None."""
        if not self.open:
            return None
        call_id = next(iter(self.open))
        del self.open[call_id]
        return call_id

    def legacy_call(self, i, name):
        self.legacy_open = (i, name)

    def legacy_call_refused(self):
        self.legacy_quiet = True

    def legacy_result(self, message, i):
        """A function message answers the function_call of the assistant turn before it, and names its function."""
        if self.legacy_open is None:
            meant_for = self.take_any_open_call()
            if self.legacy_quiet:
                return []
            of = f" of messages[{self.last_assistant}]" if self.last_assistant is not None else ""
            if meant_for is not None:
                return [Finding(f"messages[{i}]", f"this function message (legacy format) answers no function_call:"
                                f" messages[{self.last_assistant}] made tool calls", 'write it as the tool message '
                                f'{{"role": "tool", "tool_call_id": {json.dumps(meant_for)}, "content": ...}}')]
            return [Finding(f"messages[{i}]", f"this function message (legacy format) answers no open "
                            f"function_call{of}", FIX_LEGACY_RESULT)]
        turn, called = self.legacy_open
        self.legacy_open = None
        name = message.get("name", MISSING)
        if not isinstance(called, str) or name == called:
            return []
        problem = "is missing" if name is MISSING else f"{shown(name)} is not the function"
        return [Finding(f"messages[{i}].name", f"{problem}: it answers messages[{turn}].function_call, which calls "
                        f"{shown(called)}", f'write "name": {json.dumps(called)}')]


def parse_arguments(raw, where):
    """(arguments as a dict or None, findings)."""
    if raw is MISSING:
        return None, [Finding(where, "is missing", FIX_ARGUMENTS)]
    if isinstance(raw, dict):
        return raw, []  # normalised to a JSON string later, with a warning
    if not isinstance(raw, str):
        return None, [Finding(where, f"must be a JSON string, {got(raw)}", FIX_ARGUMENTS)]
    value, problems = parse_json(raw, where, ARGUMENTS_DECODER)
    if problems:
        return None, problems
    if not isinstance(value, dict):
        return None, [Finding(where, f"must hold a JSON object, got a JSON {json_type(value)}",
                              'put the arguments in an object keyed by parameter name: {"param": value}')]
    return value, [Finding(where, f"key {shown(key)} appears more than once in one object; json.loads keeps only "
                           "the last value", "write each key once", REPEATED_KEY) for key in repeated_keys()]


def call_problems(call, where, validators, pairing):
    if not isinstance(call, dict):
        yield Finding(where, f"must be an object, {got(call)}", FIX_CALL)
        pairing.call_without_id()
        return
    call_id = call.get("id", MISSING)
    if not isinstance(call_id, str) or not call_id:
        yield Finding(f"{where}.id", "is missing" if call_id is MISSING else
                      f"must be a non-empty string, {got(call_id)}", FIX_CALL_ID)
        pairing.call_without_id()
    else:
        yield from pairing.call(call_id, where)
    if call.get("type", "function") != "function":
        yield Finding(f"{where}.type", f'must be "function", {got(call.get("type"))}', 'write "type": "function"')
    fn = call.get("function")
    if not isinstance(fn, dict):
        yield Finding(f"{where}.function", f"must be an object with name and arguments, {got(fn)}", FIX_CALL)
        return
    yield from function_problems(fn, f"{where}.function", validators)


def function_problems(fn, where, validators):
    """[Finding] for the name and arguments of a call's `function` (or of a legacy `function_call`) at `where`.
    A list, not a generator: one per call, and most calls have none."""
    name, arguments_field = fn.get("name", MISSING), f"{where}.arguments"
    named = isinstance(name, str) and name
    problems = [] if named else [Finding(f"{where}.name", "is missing" if name is MISSING else
                                         f"must be a non-empty string, {got(name)}", "name the tool to call")]
    arguments, argument_problems = parse_arguments(fn.get("arguments", MISSING), arguments_field)
    problems += argument_problems
    if not named or not validators:
        return problems
    check = validators.get(name, MISSING)
    if check is MISSING:
        known = ", ".join(itertools.islice(sorted(validators), 20))
        problems.append(Finding(f"{where}.name", f"unknown tool {shown(name)} (known: {known})",
                                "call a tool of the record's \"tools\" (or add it there)"))
    elif arguments is not None and check is not None:
        mismatch = schema_mismatch(check, arguments, arguments_field, name)
        if mismatch:
            problems.append(mismatch)
        if check.declared is not None:
            problems += undeclared_arguments(arguments, check.declared, arguments_field, name)
    return problems

# ---------------------------------------------------------------------------------------------------------
# Messages and records
# ---------------------------------------------------------------------------------------------------------
def message_problems(message, i):
    """Field-level problems of one message whose role is known (pairing is checked by CallPairing)."""
    where, role = f"messages[{i}]", message["role"]
    content = message.get("content", MISSING)
    if type(content) is not str:
        yield from content_problems(content, where, role == "assistant" and (
            bool(message.get("tool_calls")) or message.get("function_call") is not None))
    if "weight" in message:
        weight = message["weight"]
        if role != "assistant":
            yield Finding(f"{where}.weight", "is only allowed on assistant messages", "remove it: only assistant "
                          "turns are trained")
        elif isinstance(weight, bool) or weight not in (0, 1):
            yield Finding(f"{where}.weight", f"must be 0 or 1, {got(weight)}",
                          "write 0 (do not train this turn) or 1, or leave it out (1)")
    if role == "system" and i > 0:
        yield Finding(where, "a system message may only come first", "move it to the start, or merge it there")
    if role != "assistant":
        calls = message.get("tool_calls")
        if calls == []:
            yield empty_tool_calls(where)
        elif calls is not None or message.get("function_call") is not None:
            yield Finding(f"{where}.{'function_call' if calls is None else 'tool_calls'}",
                          f"only assistant messages call tools, this is a {role} message",
                          "move the calls to an assistant turn")


def empty_tool_calls(where):
    return Finding(f"{where}.tool_calls", "is an empty list: the turn calls no tool (the key is dropped)",
                   "leave tool_calls out of a turn that calls no tool", EMPTY_TOOL_CALLS)


def content_problems(content, where, may_be_null):
    if content is None and may_be_null:
        return ()
    if type(content) is list:
        return [problem for k, part in enumerate(content) if (problem := part_problem(part, f"{where}.content[{k}]"))]
    problem = "is missing" if content is MISSING else f"must be a string, {got(content)}"
    return [Finding(f"{where}.content", problem + " (null only on an assistant turn with tool_calls)",
                    "give the message's text as a string")]


def part_problem(part, where):
    """A content part must be text: {"type": "text", "text": "..."}."""
    kind = part.get("type", MISSING) if isinstance(part, dict) else None
    if kind == "text":
        text = part.get("text", MISSING)
        return None if isinstance(text, str) else Finding(
            f"{where}.text", "is missing" if text is MISSING else f"must be a string, {got(text)}", FIX_TEXT_PART)
    if isinstance(kind, str) and kind:
        return Finding(where, f"{shown(kind)} parts cannot be trained: the model is trained on text only",
                       "remove the part, or put what it showed into a text part")
    if kind is None:
        return Finding(where, f'must be a text part {{"type": "text", "text": ...}}, {got(part)}', FIX_TEXT_PART)
    return Finding(f"{where}.type", "is missing" if kind is MISSING else f'must be "text", {got(kind)}', FIX_TEXT_PART)


def legacy_call_problems(message, i, validators, pairing):
    """An assistant turn's function_call (legacy format): one call, or an error beside tool_calls."""
    where = f"messages[{i}]"
    calls, legacy_call = message.get("tool_calls"), message["function_call"]
    if calls:
        pairing.legacy_call_refused()
        if isinstance(calls, list):
            yield Finding(f"{where}.function_call", "is given beside tool_calls, which replace it: the call it "
                          "holds would be ignored", legacy_call_fix(legacy_call, calls))
    elif not isinstance(legacy_call, dict):
        pairing.legacy_call(i, None)
        yield Finding(f"{where}.function_call", f"must be an object with name and arguments, {got(legacy_call)}",
                      'write "function_call": {"name": ..., "arguments": "{...}"}, or use tool_calls')
    else:
        pairing.legacy_call(i, legacy_call.get("name"))
        yield from function_problems(legacy_call, f"{where}.function_call", validators)


def legacy_call_fix(legacy_call, calls):
    if not isinstance(legacy_call, dict):
        return "delete function_call: tool_calls holds the turn's calls"
    same = next((j for j, call in enumerate(calls) if isinstance(call, dict) and same_call(call.get("function"),
                                                                                          legacy_call)), None)
    if same is not None:
        return f"delete function_call: tool_calls[{same}] makes the same call (answered by a tool message)"
    ids = {call.get("id") for call in calls if isinstance(call, dict)}
    new_id = next(f"call_{n}" for n in itertools.count(len(calls) + 1) if f"call_{n}" not in ids)
    return (f'move it into tool_calls as {{"id": "{new_id}", "type": "function", "function": '
            f"{cut(json.dumps(legacy_call, ensure_ascii=False), 100)}}}, answered by a tool message with "
            f'"tool_call_id": "{new_id}", and delete function_call')


def same_call(fn, other):
    """Two {name, arguments} objects that make the same call, whether arguments are strings or objects."""
    if not isinstance(fn, dict) or fn.get("name") != other.get("name"):
        return False
    try:
        return loaded(fn.get("arguments")) == loaded(other.get("arguments"))
    except (ValueError, RecursionError):  # arguments that cannot be read are reported where they are checked
        return fn.get("arguments") == other.get("arguments")


def loaded(arguments):
    return json.loads(arguments) if isinstance(arguments, str) else arguments


def conversation_problems(messages, validators):
    pairing = CallPairing()
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            yield Finding(where, f"must be an object, {got(message)}", 'write {"role": ..., "content": ...}')
            continue
        role = message.get("role", MISSING)
        if not isinstance(role, str) or role not in KNOWN_ROLES:
            problem = "is missing" if role is MISSING else f"unknown role {shown(role)}"
            yield Finding(f"{where}.role", f"{problem} (known: {', '.join(ROLES)})", FIX_ROLE)
            continue
        yield from message_problems(message, i)
        if role == "assistant":
            yield from pairing.assistant_turn(i)
            calls = message.get("tool_calls")
            if calls is not None and not isinstance(calls, list):
                yield Finding(f"{where}.tool_calls", f"must be a list, {got(calls)}", FIX_CALL)
                pairing.call_without_id(math.inf)  # its results cannot be matched: they are not reported
            elif calls:
                for j, call in enumerate(calls):
                    yield from call_problems(call, f"{where}.tool_calls[{j}]", validators, pairing)
            elif calls == []:
                yield empty_tool_calls(where)
            if message.get("function_call") is not None:
                yield from legacy_call_problems(message, i, validators, pairing)
        elif role == "tool":
            yield from pairing.result(message.get("tool_call_id"), i)
        elif role == LEGACY_ROLE:
            yield from pairing.legacy_result(message, i)
        else:
            yield from pairing.other_turn(i, role)
    yield from ending_problems(messages)


def ending_problems(messages):
    last = messages[-1]
    role = last.get("role") if isinstance(last, dict) else None
    if role == "assistant":
        content = last.get("content")
        if (content == "" or (content.isspace() if type(content) is str else is_blank(content))) \
                and last.get("weight", 1) == 1 and not last.get("tool_calls") and last.get("function_call") is None:
            yield Finding(f"messages[{len(messages) - 1}].content", "the final assistant turn is empty: it trains "
                          "the model to answer with nothing", 'write the reply the turn should give, or give it '
                          '"weight": 0', EMPTY_LAST_TURN)
    elif role in KNOWN_ROLES:
        yield Finding(f"messages[{len(messages) - 1}]", f"the conversation must end with an assistant turn, not "
                      f"{shown(role)}", "end it with the assistant turn to train")
    assistants = [m for m in messages if isinstance(m, dict) and m.get("role") == "assistant"]
    if assistants and all(m.get("weight", 1) == 0 for m in assistants):
        yield Finding("messages", "every assistant turn has weight 0: nothing to learn from this example",
                      "give at least one assistant turn weight 1 (or no weight)")


def is_blank(parts):
    """Text parts that hold whitespace only (a content with other faults is not blank, but wrong)."""
    return type(parts) is list and all(isinstance(part, dict) and type(part.get("text")) is str
                                       and (part["text"] == "" or part["text"].isspace()) for part in parts)


def record_problems(record, tool_sets):
    """Every error and warning of one parsed line, as Findings."""
    if not isinstance(record, dict):
        yield Finding("", f"a line must be a JSON object, got a JSON {json_type(record)}", FIX_LINE_JSON)
        return
    category = record.get("category")
    if category is not None and (not isinstance(category, str) or category not in CATEGORIES):
        yield Finding("category", f"unknown category {shown(category)} (known: {', '.join(CATEGORIES)})",
                      "use one of those, or leave category out")
    tools = tool_sets.of(record["tools"]) if "tools" in record else tool_sets.default
    yield from tools.problems
    messages = record.get("messages", MISSING)
    if not isinstance(messages, list) or not messages:
        problem = "is missing" if messages is MISSING else f"must be a non-empty list, {got(messages)}"
        yield Finding("messages", problem + " (a non-empty list is needed)",
                      'give the example as {"messages": [{"role": "user", "content": ...}, ...]}')
        return
    yield from conversation_problems(messages, tools.validators)


class Changes(NamedTuple):
    """What `normalise` did to a record."""
    any: bool = False
    object_arguments: int = 0  # calls whose arguments were an object
    legacy: bool = False  # function_call / function messages converted


def legacy_call_id(i):
    """The made-up id of the call converted from messages[i].function_call (a turn holds one such call)."""
    return f"function_call_{i}"


def normalise(record):
    """Put a record without errors in the form the rest of the pipeline reads (see the module docstring)."""
    changed, objects, legacy_ids = False, 0, []
    messages = record["messages"]
    for i, message in enumerate(messages):
        if (type(message.get("content")) is list or message.get("tool_calls", MISSING) == []
                or "function_call" in message or message["role"] == LEGACY_ROLE):
            messages[i] = message = canonical_message(message, i, legacy_ids)
            changed = True
        for call in message.get("tool_calls") or ():
            if type(call["function"]["arguments"]) is dict:
                call["function"]["arguments"] = json.dumps(call["function"]["arguments"], ensure_ascii=False)
                objects += 1
    return Changes(changed or objects > 0, objects, bool(legacy_ids))


def canonical_message(message, i, legacy_ids):
    """The message with its content a string (or null), without an empty tool_calls, and in the current format: a
    function_call becomes a tool call (its made-up id is appended to legacy_ids), a function message the tool
    message answering the last of them."""
    if type(message.get("content")) is list:
        message["content"] = "".join(part["text"] for part in message["content"])
    if message.get("tool_calls", MISSING) == []:
        del message["tool_calls"]
    legacy_call = message.pop("function_call", None)
    if legacy_call is not None:
        legacy_ids.append(legacy_call_id(i))
        message["tool_calls"] = [{"id": legacy_ids[-1], "type": "function", "function": legacy_call}]
    if message["role"] != LEGACY_ROLE:
        return message
    return {"role": "tool", "tool_call_id": legacy_ids[-1],
            **{key: value for key, value in message.items() if key not in ("role", "name", "tool_call_id")}}


def fingerprint(record, canonical_tools=canonical_json):
    """A digest of the record's canonical JSON (sorted keys): the same content gives the same fingerprint.
    `canonical_tools` gives the tools' part (ToolSets.canonical: the one its tool set was made from)."""
    if not isinstance(record.get("tools"), list):
        canonical = canonical_json(record)
    else:  # canonical_json(record), with the tools' part made once
        canonical = "{" + ", ".join(f"{canonical_json(key)}: "
                                    f"{canonical_tools(value) if key == 'tools' else canonical_json(value)}"
                                    for key, value in sorted(record.items())) + "}"
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------------
# Lines
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TooLong:
    size: int  # bytes, without the newline


@dataclass(frozen=True)
class ReadFailed:
    reason: str


def line_text(raw, number, max_line_bytes):
    """(text or None, findings): decoding, the per-line limit, CRLF, a BOM on line 1, blank lines."""
    if isinstance(raw, ReadFailed):
        return None, [Finding("", f"reading stopped here: {raw.reason}", "check the disk and copy the file again")]
    if isinstance(raw, str) and len(raw) * 4 > max_line_bytes:
        raw = raw.encode("utf-8", "surrogatepass")  # only to measure it
    if isinstance(raw, bytes) and len(raw.removesuffix(b"\n").removesuffix(b"\r")) > max_line_bytes:
        raw = TooLong(len(raw))
    if isinstance(raw, TooLong):
        return None, [Finding("", f"the line is {size_text(raw.size)}, over the limit of {size_text(max_line_bytes)}"
                              " per line", "shorten or split the conversation: the limit is 1000x any context "
                              "length trained here, so such a line is almost surely a broken export")]
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            return None, [Finding("", f"not valid UTF-8: byte 0x{raw[e.start]:02x} at byte {e.start + 1} of the "
                                  f"line ({e.reason})", "re-save the file as UTF-8 (e.g. iconv -f LATIN1 -t UTF-8)")]
    elif not encodable(raw):
        return None, [Finding("", "holds an unpaired surrogate character, which UTF-8 cannot hold", FIX_SURROGATE)]
    text = raw.removesuffix("\n").removesuffix("\r")  # LF and CRLF files read the same
    findings = []
    if number == 1 and text.startswith("\ufeff"):
        findings.append(Finding("", "file starts with a UTF-8 byte-order mark (ignored)",
                                "nothing needed; save without BOM to silence this", BOM))
        text = text[1:]
    if not text.strip():
        return None, findings + [Finding("", "blank line (ignored)", "remove it", BLANK_LINE)]
    return text, findings


def kept(findings):
    """At most MAX_PROBLEMS_PER_LINE errors and as many warnings, then a count of the rest."""
    errors, warnings, dropped = [], [], Counter()
    for finding in findings:
        bucket = warnings if finding.kind else errors
        if len(bucket) < MAX_PROBLEMS_PER_LINE:
            bucket.append(finding)
        else:
            dropped[finding.kind] += 1
    for kind, count in dropped.items():
        (warnings if kind else errors).append(Finding("", f"... and {count} more on this line", "see above", kind))
    return errors, warnings


def check_line(text, tool_sets):
    """(normalised record or None, errors, warnings, Changes) of one line's text."""
    record, problems = parse_json(text)
    if problems:
        return None, problems, [], Changes()  # at most MAX_PROBLEMS_PER_LINE + 1
    errors, warnings = kept(record_problems(record, tool_sets))
    if errors:
        return None, errors, warnings, Changes()
    changes = normalise(record)
    if changes.object_arguments:
        warnings.append(Finding("", f"{changes.object_arguments} tool call(s) give arguments as an object; "
                                "normalised to a JSON string", "encode them with json.dumps to silence this",
                                ARGUMENTS_AS_OBJECT))
    return record, errors, warnings, changes


def validate_lines(lines, path, default_tools=None, max_line_bytes=MAX_LINE_BYTES):
    """Validate the lines of a file, in order: str or bytes, with or without their newline."""
    default_tools = default_tools if default_tools is not None else load_default_tools()
    with forked.collector_paused():
        return checked_report(lines, path, default_tools, max_line_bytes)


def checked_report(lines, path, default_tools, max_line_bytes):
    report, tool_sets = Report(str(path)), ToolSets(default_tools)
    seen, legacy_lines = {}, []
    for number, raw in enumerate(lines, start=1):
        report.lines = number
        text, findings = line_text(raw, number, max_line_bytes)
        record = None
        if text is not None:
            record, errors, warnings, changes = check_line(text, tool_sets)
            findings += errors + warnings
        for finding in findings:
            report.add(number, finding)
        if record is None:
            continue
        if changes.legacy:
            legacy_lines.append(number)
        key = fingerprint(record, tool_sets.canonical)
        if key in seen:
            report.warn(number, f"duplicate of line {seen[key]}", DUPLICATE, "remove the repeated line")
            continue
        seen[key] = number
        report.examples.append(Example(number, record, key, None if changes.any else text.strip()))
    if legacy_lines:
        report.add(0, legacy_warning(legacy_lines))
    if not report.examples and not report.errors:
        problem = "the file is empty" if report.lines == 0 else "every line is blank"
        report.add(0, Finding("", f"no examples: {problem}", "add examples, one JSON object per line"))
    return report


def legacy_warning(lines):
    """One warning for the whole file: a dataset in the legacy format has it on most lines."""
    shown_lines = ", ".join(map(str, lines[:5])) + (", ..." if len(lines) > 5 else "")
    return Finding("", f"{len(lines)} line(s) use the legacy function_call/function message format (line(s) "
                   f"{shown_lines}); converted: each function_call to a tool call with a made-up id "
                   f"({legacy_call_id('N')} for messages[N]), each function message to the tool message answering "
                   "it", "nothing needed; write tool_calls and tool messages (the current OpenAI format) to "
                   "silence this", LEGACY_FORMAT)


# ---------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------
def raw_lines(handle, max_line_bytes):
    """Each line's bytes; TooLong for a line over the limit (skipped in chunks: memory stays bounded);
    ReadFailed if the disk fails mid-file."""
    try:
        while True:
            line = handle.readline(max_line_bytes + 2)  # room for CRLF
            if not line:
                return
            if line.endswith(b"\n") or len(line) <= max_line_bytes:
                yield line
                continue
            size = len(line)
            while not line.endswith(b"\n"):
                line = handle.readline(READ_CHUNK)
                if not line:
                    break
                size += len(line)
            yield TooLong(size - line.endswith(b"\n"))
    except OSError as e:
        yield ReadFailed(e.strerror or str(e))


FOREIGN_FORMATS = {  # leading bytes -> (what the file is, the fix)
    b"\xff\xfe": ("UTF-16 text (little-endian), not UTF-8", "re-save it as UTF-8 (iconv -f UTF-16 -t UTF-8)"),
    b"\xfe\xff": ("UTF-16 text (big-endian), not UTF-8", "re-save it as UTF-8 (iconv -f UTF-16 -t UTF-8)"),
    b"\x1f\x8b": ("gzip-compressed", "decompress it first (gunzip -k FILE)"),
}


def unreadable(path):
    """A Finding for a path that is not a readable UTF-8-ish regular file, else None."""
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            return Finding("", "is a directory, not a .jsonl file", directory_fix(path))
        if not stat.S_ISREG(mode):
            return Finding("", "is not a regular file (a pipe or a device?)", "pass the path of a .jsonl file")
        with open(path, "rb") as handle:
            start = handle.read(2)
    except FileNotFoundError:
        if os.path.islink(path):
            return Finding("", "is a symbolic link to a missing file", "point the link at the dataset, or pass it")
        return Finding("", "file not found", "check the path (the dataset is one .jsonl file)")
    except PermissionError:
        return Finding("", "cannot be read: permission denied", "make it readable (chmod u+r FILE)")
    except OSError as e:  # ELOOP (a symlink loop), ENAMETOOLONG, ENOTDIR, EIO, ...
        return Finding("", f"cannot be opened: {e.strerror or e}", "pass the path of a readable .jsonl file; "
                       "a symbolic link must lead to one")
    except ValueError as e:  # a NUL character in the path
        return Finding("", f"is not a usable path: {e}", "pass the path of a .jsonl file")
    if start in FOREIGN_FORMATS:
        return Finding("", f"is {FOREIGN_FORMATS[start][0]}", FOREIGN_FORMATS[start][1])
    return None


def directory_fix(path):
    try:
        names = sorted(itertools.islice((e.name for e in os.scandir(path) if e.name.endswith(".jsonl")), 100))
    except OSError:
        names = []
    if names:
        return "pass one of its .jsonl files: " + ", ".join(str(Path(path) / n) for n in names[:3])
    return "pass the path of the .jsonl file itself"


def validate_file(path, default_tools=None, max_line_bytes=MAX_LINE_BYTES):
    """Validate a dataset file, streaming it line by line. A file that cannot be read is an error at line 0."""
    problem = unreadable(path)
    if problem is None:
        try:
            with open(path, "rb") as handle:
                return validate_lines(raw_lines(handle, max_line_bytes), path, default_tools, max_line_bytes)
        except OSError as e:  # it went away between the check and the open
            problem = Finding("", f"cannot be opened: {e.strerror or e}", "pass the path of a readable .jsonl file")
    report = Report(str(path))
    report.add(0, problem)
    return report


def format_report(report, strict=False, limit=MAX_ERRORS_SHOWN):
    """Human-readable summary: errors (capped, with a count), then warnings counted by kind."""
    out = []
    errors = report.errors + (report.warnings if strict else [])
    if errors:
        out.append(f"{len(errors)} error(s) in {report.path}:")
        out += [f"  {p}" for p in errors[:limit]]
        if len(errors) > limit:
            out.append(f"  ... and {len(errors) - limit} more")
    if report.warnings and not strict:
        out.append(f"{len(report.warnings)} warning(s) in {report.path} (--strict makes them errors):")
        for kind, count in report.warning_counts().most_common():
            first = next(w for w in report.warnings if w.kind == kind)
            out.append(f"  {count} x {kind}, first: {first}")
    if not errors:
        out.append(f"{report.path}: {len(report.examples)} valid example(s)")
    return "\n".join(out)


def is_ok(report, strict=False):
    return not report.errors and not (strict and report.warnings)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Validate a chat fine-tuning dataset (JSONL).")
    parser.add_argument("dataset", help="path to the .jsonl file")
    parser.add_argument("--strict", action="store_true", help="treat warnings as errors")
    args = parser.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):  # a dataset's text must not crash an ASCII-only terminal
        sys.stdout.reconfigure(errors="backslashreplace")
    report = validate_file(args.dataset)
    print(format_report(report, args.strict))
    return 0 if is_ok(report, args.strict) else 2


if __name__ == "__main__":
    sys.exit(main())
