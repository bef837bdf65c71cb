"""Read tool calls out of generated text and judge one assistant turn against its reference.

The verdicts form a funnel, each needing the one before it:
  valid  every call block parses into {"name": str, "arguments": object}; a call turn made at least
         one call and a text turn made none
  names  the multiset of called names equals the reference's
  exact  names and arguments equal as parsed JSON (5 == 5.0, key order and call order ignored)
Beside the funnel: schema_ok (arguments satisfy the tool's JSON Schema), unknown_tool, and the
number of calls emitted and expected. For a text turn `exact` only means "made no call": the
scorecard measures tool calling, not prose.
"""

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import jsonschema
from mlx_lm.tool_parsers import json_tools


@dataclass(frozen=True)
class CallFormat:
    """Where a tool call starts and ends in generated text, and how the text between is parsed."""

    start: str
    end: str
    parse: Callable  # (text between the tags, tools) -> a call dict, or a list of them


# Qwen2.5 / Hermes: <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>
HERMES = CallFormat(json_tools.tool_call_start, json_tools.tool_call_end, json_tools.parse_tool_call)


def call_format(tokenizer):
    """The tokenizer's own tool-call format when mlx_lm recognised one from its template, else Hermes JSON."""
    start, end = getattr(tokenizer, "tool_call_start", None), getattr(tokenizer, "tool_call_end", None)
    parse = getattr(tokenizer, "tool_parser", None)
    if start and end and parse:
        return CallFormat(start, end, parse)
    return HERMES


@dataclass
class ParsedOutput:
    text: str  # everything outside the call blocks
    calls: list  # [{"name": str, "arguments": dict}] in the order emitted
    problems: list  # why a block did not give a usable call


@dataclass
class Verdict:
    valid: bool
    names: bool
    exact: bool
    schema_ok: bool | None  # None when no call was parsed
    unknown_tool: bool
    calls_emitted: int
    calls_expected: int
    problems: list = field(default_factory=list)


def call_blocks(text, fmt=HERMES):
    """(text outside the blocks, [block bodies], [problems]) for every start...end pair in `text`."""
    outside, bodies, problems = [], [], []
    position = 0
    while True:
        start = text.find(fmt.start, position)
        stray_end = text.find(fmt.end, position)
        if stray_end != -1 and (start == -1 or stray_end < start):
            problems.append(f"{fmt.end} at char {stray_end} closes no {fmt.start}")
        if start == -1:
            outside.append(text[position:])
            break
        outside.append(text[position:start])
        body_start = start + len(fmt.start)
        end = text.find(fmt.end, body_start)
        if end == -1:
            problems.append(f"{fmt.start} at char {start} is never closed by {fmt.end}")
            break
        bodies.append(text[body_start:end])
        position = end + len(fmt.end)
    return "".join(outside), bodies, problems


def checked_call(value):
    """(call, None) when `value` has the shape the template asks for, else (None, problem)."""
    if not isinstance(value, dict):
        return None, f"a call must be a JSON object, got {type(value).__name__}"
    name, arguments = value.get("name"), value.get("arguments", {})
    if not isinstance(name, str) or not name:
        return None, "a call has no string `name`"
    if isinstance(arguments, str):
        # An agent runtime (mlx_lm's server among them) json.dumps `arguments`, so a string arrives double-encoded.
        return None, f"{name}: `arguments` is a JSON string, not an object"
    if not isinstance(arguments, dict):
        return None, f"{name}: `arguments` must be an object, got {type(arguments).__name__}"
    return {"name": name, "arguments": arguments}, None


def parse_output(text, fmt=HERMES, tools=None):
    """Every tool call in a generated turn, and what was wrong with the blocks that gave none."""
    outside, bodies, problems = call_blocks(text, fmt)
    calls = []
    for body in bodies:
        try:
            parsed = fmt.parse(body, tools)
        except (ValueError, KeyError, IndexError, AttributeError, TypeError) as e:  # json.JSONDecodeError is a ValueError
            problems.append(f"a call block does not parse ({type(e).__name__}: {e}): {body.strip()[:80]!r}")
            continue
        for value in parsed if isinstance(parsed, list) else [parsed]:
            call, problem = checked_call(value)
            calls += [call] if call else []
            problems += [problem] if problem else []
    return ParsedOutput(outside, calls, problems)


def reference_calls(message):
    """The calls of a dataset assistant message as {"name", "arguments" (object)} dicts."""
    calls = []
    for call in message.get("tool_calls") or []:
        fn = call["function"]
        arguments = fn.get("arguments", {})
        calls.append({"name": fn["name"], "arguments": json.loads(arguments) if isinstance(arguments, str) else arguments})
    return calls


def canonical(value):
    """A JSON value with integral floats as ints, so 5 and 5.0 compare equal while true and 1 do not."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def call_key(call):
    return json.dumps([call["name"], canonical(call["arguments"])], sort_keys=True)


def tool_schemas(tools):
    """Tool name -> its parameters' JSON Schema."""
    return {t["function"]["name"]: t["function"].get("parameters", {"type": "object"}) for t in tools or []}


def schema_problems(calls, schemas):
    """The first JSON Schema violation of every call to a known tool."""
    problems = []
    for call in calls:
        schema = schemas.get(call["name"])
        if schema is None:
            continue
        error = next(iter(jsonschema.validators.validator_for(schema)(schema).iter_errors(call["arguments"])), None)
        if error is not None:
            problems.append(f"{call['name']}: {error.message}")
    return problems


def judge(parsed, expected, schemas):
    """The verdict on one generated turn (`parsed`) against the reference calls (`expected`, [] for a text turn)."""
    emitted = parsed.calls
    problems = list(parsed.problems)
    if expected and not emitted:
        problems.append(f"no call where {len(expected)} were due")
    if not expected and emitted:
        problems.append(f"{len(emitted)} call(s) where a text answer was due")
    unknown = sorted({c["name"] for c in emitted} - set(schemas))
    problems += [f"unknown tool {name!r}" for name in unknown]
    violations = schema_problems(emitted, schemas)
    valid = not parsed.problems and bool(emitted) == bool(expected)
    names = valid and Counter(c["name"] for c in emitted) == Counter(c["name"] for c in expected)
    exact = names and Counter(map(call_key, emitted)) == Counter(map(call_key, expected))
    return Verdict(
        valid=valid, names=names, exact=exact,
        schema_ok=(not unknown and not violations) if emitted else None,
        unknown_tool=bool(unknown), calls_emitted=len(emitted), calls_expected=len(expected),
        problems=problems + violations,
    )
