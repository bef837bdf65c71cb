"""A problem found in one line of a dataset (Finding), and the values its message shows: a field may hold
megabytes, so a message shows a cut-down form."""

import json
from typing import NamedTuple

MAX_PROBLEMS_PER_LINE = 20  # errors (and warnings) kept per line; the rest are counted, memory stays bounded


class Finding(NamedTuple):
    """One problem of one line, before it is tied to a file and line number."""
    field: str  # where in the record ("messages[3].tool_calls[0].id"); "" for the line as a whole
    message: str  # what is wrong, without a final period
    fix: str  # what to do about it
    kind: str = ""  # "" for an error, else the warning kind


def json_type(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def shown(value, limit=60):
    if isinstance(value, str):
        return repr(value[:limit]) + ("..." if len(value) > limit else "")
    if isinstance(value, (dict, list)):
        return "an array" if isinstance(value, list) else "an object"
    text = json.dumps(value) if value is None or isinstance(value, (bool, int, float)) else repr(value)
    return text[:limit] + "..." if len(text) > limit else text


def got(value):
    if isinstance(value, (str, bool, int, float)):
        return f"got {json_type(value)} {shown(value)}"
    return f"got {json_type(value)}"


def cut(text, limit=200):
    return text if len(text) <= limit else text[:limit] + "..."
