"""(label, calls) pairs to judge a BFCL entry with: the answer's own calls, then near misses made from them."""

from functools import lru_cache

import pytest

from synthia.scorecard import bfcl
from synthia.scorecard.bfcl import tool_name


@lru_cache(maxsize=None)
def load_or_skip(category):
    """A category's entries (loaded once per session; tests must not change them), or a skip naming the fix."""
    try:
        return bfcl.load_category(category)
    except bfcl.BFCLUnavailable as e:
        pytest.skip(str(e))


def entry_by_id(entry_id):
    category = entry_id.rsplit("_", 1)[0]
    return next(e for e in load_or_skip(category) if e.id == entry_id)


def first_values(answer, required=()):
    """Each key's first accepted value; a first value of "" (may be omitted) leaves the key out unless required."""
    chosen = {}
    for key, accepted in answer.items():
        given = [value for value in accepted if value != ""]
        if given and (accepted[0] != "" or key in required):
            chosen[key] = given[0]
    return chosen


def concrete(value, schema):
    """An accepted value as a model would write it: a dict parameter's answer lists accepted values per key."""
    if schema.get("type") == "dict" and isinstance(value, dict):
        return first_values(value)
    if schema.get("items", {}).get("type") == "dict" and isinstance(value, list):
        return [first_values(item) if isinstance(item, dict) else item for item in value]
    return value


def reference_call(expected, function):
    (name, answer), = expected.items()
    parameters = function["parameters"]
    arguments = first_values(answer, parameters["required"])
    properties = parameters["properties"]
    return {"name": tool_name(name),
            "arguments": {key: concrete(value, properties.get(key, {})) for key, value in arguments.items()}}


def reference_calls(entry):
    functions = {f["name"]: f for f in entry.functions}
    return [reference_call(expected, functions[next(iter(expected))]) for expected in entry.answer]


def wrong(value):
    """A value of the same type that no answer should accept."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + (1 if isinstance(value, int) else 1.5)
    if isinstance(value, str):
        return value + " zz"
    if isinstance(value, list):
        return value + value[:1] if value else ["zz"]
    if isinstance(value, dict):
        return {**value, "zz": 1}
    return "zz"


def of_type(schema):
    """Some value of the parameter's BFCL type (its default when it has one)."""
    if "default" in schema:
        return schema["default"]
    return {"integer": 1, "float": 1.5, "boolean": True, "array": [], "tuple": [], "dict": {}}.get(schema["type"], "x")


def argument_misses(value):
    """(label, new value) near misses of one argument: the types BFCL is strict about, its string normalisation,
    element-wise lists and dicts."""
    yield "wrong value", wrong(value)
    if type(value) is int:
        yield '"5" for 5', str(value)
        yield "5.0 for 5", float(value)
    if type(value) is float:
        yield "5 for 5.0", int(value)
        yield '"5.0" for 5.0', str(value)
    if type(value) is str:
        yield "upper case with spaces and punctuation", f" {value.upper()},./-_*^ "
        yield "quotes swapped", value.replace('"', "'")
    if type(value) is bool:
        yield '"true" for true', str(value).lower()
    if isinstance(value, list):
        yield "reversed", value[::-1]
        yield "items as strings", [str(item) for item in value]
        yield "empty list", []
        if value and all(type(item) is str for item in value):
            yield "items upper case", [item.upper() for item in value]
        if value and all(type(item) is float for item in value):
            yield "int items for floats", [int(item) for item in value]
    if isinstance(value, dict):
        yield "empty dict", {}
    if isinstance(value, dict) and value:
        yield "a dict key dropped", dict(list(value.items())[1:])
        yield "dict values upper case", {k: v.upper() if isinstance(v, str) else v for k, v in value.items()}


def call_misses(call, expected, function):
    """(label, call) near misses of one call against its expected call."""
    (original_name, answer), = expected.items()
    arguments, properties = call["arguments"], function["parameters"]["properties"]

    def with_arguments(new):
        return {"name": call["name"], "arguments": new}

    yield "wrong function name", {"name": call["name"] + "_v2", "arguments": arguments}
    if "." in original_name:
        yield "dotted name as in BFCL's data", {"name": original_name, "arguments": arguments}
    yield "unknown parameter", with_arguments({**arguments, "synthia_unknown": 1})
    for parameter, value in arguments.items():
        rest = {k: v for k, v in arguments.items() if k != parameter}
        yield f"{parameter}: left out", with_arguments(rest)
        for label, new in argument_misses(value):
            yield f"{parameter}: {label}", with_arguments({**rest, parameter: new})
    for parameter, schema in properties.items():
        if parameter not in arguments:
            yield f"{parameter}: given", with_arguments({**arguments, parameter: of_type(schema)})
    for parameter, accepted in answer.items():
        others = [value for value in accepted if value != "" and value != arguments.get(parameter)]
        if others:
            yield f"{parameter}: another accepted value", with_arguments({**arguments, parameter: others[-1]})


def pairs(entry):
    """(label, calls) to judge `entry` with. Irrelevance and relevance: no call, and a call to each tool."""
    if entry.answer is None:
        yield "no call", []
        for tool in entry.tools:
            yield f"calls {tool['function']['name']}", [{"name": tool["function"]["name"], "arguments": {}}]
        return
    calls = reference_calls(entry)
    functions = {f["name"]: f for f in entry.functions}
    yield "the answer", calls
    yield "no call", []
    yield "one call too many", calls + calls[:1]
    for index, (call, expected) in enumerate(zip(calls, entry.answer)):
        for label, miss in call_misses(call, expected, functions[next(iter(expected))]):
            yield f"call {index + 1}, {label}", calls[:index] + [miss] + calls[index + 1:]
    if len(calls) > 1:
        yield "calls reversed", calls[::-1]
        yield "one call short", calls[1:]
        yield "the first call twice", calls[:1] + calls[:-1]
    others = [f for f in entry.functions if tool_name(f["name"]) != calls[0]["name"]]
    for function in others[:2]:
        yield f"calls {function['name']} instead", [{**calls[0], "name": tool_name(function["name"])}] + calls[1:]
