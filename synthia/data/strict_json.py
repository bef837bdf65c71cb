"""The strict JSON reader: standard JSON only, nesting bounded, text that UTF-8 can hold; each problem names its field.

Python's json also reads NaN, Infinity and -Infinity, numbers that overflow a double and unpaired surrogate
escapes; here each is an error naming its field (a model learns to write what it is shown, and other parsers
reject those). So is nesting deeper than MAX_NESTING. validate.py reads each line, and each tool call's
`arguments` string (with ARGUMENTS_DECODER, which also notes a key written twice), with `parse_json`.
"""

import json
import math
import re
from dataclasses import dataclass

from synthia.data.findings import MAX_PROBLEMS_PER_LINE, Finding, cut, shown

MAX_NESTING = 100  # arrays/objects; a record needs ~10 levels, and deep values overflow recursive code later

FIX_LINE_JSON = "write each example as one complete JSON object on one line (json.dumps(record))"
FIX_ARGUMENTS = 'encode the arguments object as a JSON string: "arguments": json.dumps({"param": value})'
FIX_NON_FINITE = "write null, a finite number or a string instead (json.dumps(..., allow_nan=False) catches it)"
FIX_DEEP = f"flatten the value: at most {MAX_NESTING} levels of nested arrays/objects"
FIX_SURROGATE = "write the character itself, or a complete surrogate pair (json.dumps does this)"


@dataclass(frozen=True)
class NonFinite:
    """Stands in for NaN, Infinity, -Infinity or an overflowing number while parsing, so its field is found."""
    text: str


JSON_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


_ODD_NUMBERS = []  # NaN, Infinity and overflowing floats the last parse_json met
_REPEATED_KEYS = []  # keys written twice in one object, the last time parse_json read arguments


def _constant(name):
    _ODD_NUMBERS.append(name)
    return NonFinite(name)


def _number(digits):
    value = float(digits)
    if math.isinf(value):
        _ODD_NUMBERS.append(digits)
        return NonFinite(digits)
    return value


def _object(pairs):
    value = dict(pairs)
    if len(value) < len(pairs):
        seen = set()
        _REPEATED_KEYS.extend(key for key, _ in pairs if key in seen or seen.add(key))
    return value


# One decoder for every parse: json.loads with hooks makes a new one per call, which cost as much as the decoding.
_DECODER = json.JSONDecoder(parse_constant=_constant, parse_float=_number)
# Arguments are small: keeping their pairs to find a key written twice costs a third of a microsecond per call.
ARGUMENTS_DECODER = json.JSONDecoder(parse_constant=_constant, parse_float=_number, object_pairs_hook=_object)


def parse_json(text, root="", decoder=_DECODER):
    """(value, []) or (None, findings). `root` names the field the text sits in ("" for a whole line)."""
    _ODD_NUMBERS.clear()
    _REPEATED_KEYS.clear()
    try:
        if text.startswith("\ufeff"):  # json.loads refuses it before decoding; the decoder alone would not say why
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        value = decoder.decode(text)
    except json.JSONDecodeError as e:
        return None, [syntax_finding(e, root)]
    except RecursionError:  # Python's parser gives up near 1,000 levels
        column = deepest_column(text)
        return None, [Finding(root, f"arrays/objects nested more than {MAX_NESTING} levels deep"
                              + (f" (from column {column})" if column else ""), FIX_DEEP)]
    except ValueError as e:  # an integer longer than sys.get_int_max_str_digits()
        return None, [Finding(root, f"a number is too long to read: {cut(str(e).split(';')[0], 100)}",
                              "write very long numbers as strings")]
    strings = SURROGATE_ESCAPE.search(text) is not None
    if _ODD_NUMBERS or strings or (text.count("[") + text.count("{") > MAX_NESTING and nested_too_deep(value)):
        findings = value_problems(value, root, strings)
        if findings:
            return None, findings
    return value, []


def repeated_keys():
    """The keys written twice in one object, each once, in the last parse_json that used ARGUMENTS_DECODER."""
    return list(dict.fromkeys(_REPEATED_KEYS))


def nested_too_deep(value):
    """The quick test; value_problems then names the field. Only containers are visited."""
    stack = [(value, 1)] if type(value) in (dict, list) else []
    while stack:
        container, level = stack.pop()
        if level > MAX_NESTING:
            return True
        items = container.values() if type(container) is dict else container
        stack += [(child, level + 1) for child in items if type(child) in (dict, list)]
    return False


def syntax_finding(e, root):
    if root:
        return Finding(root, f"not valid JSON ({e.msg}: column {e.colno}): {shown(e.doc, 40)}", FIX_ARGUMENTS)
    if e.pos >= len(e.doc.rstrip()) or e.msg.startswith("Unterminated string"):
        return Finding("", f"not valid JSON ({e.msg}: column {e.colno}): the line ends before the JSON does "
                           "(truncated, or split over several lines)", FIX_LINE_JSON)
    near = shown(e.doc[max(0, e.pos - 20):e.pos + 20])
    return Finding("", f"not valid JSON ({e.msg}: column {e.colno}), near {near}", FIX_LINE_JSON)


def deepest_column(text):
    """1-based column where nesting first exceeds MAX_NESTING, skipping strings; None if it never does."""
    depth = 0
    for match in JSON_STRING_OR_BRACKET.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > MAX_NESTING:
                return match.start() + 1
        elif token in "]}":
            depth -= 1
    return None


def field_name(root, crumbs):
    """'messages[3].content' from the root's name and the linked (key, parent) crumbs of a walk."""
    parts = []
    while crumbs is not None:
        key, crumbs = crumbs
        if isinstance(key, int):
            parts.append(f"[{key}]")
        else:
            parts.append(f".{key}" if key.isidentifier() else f"[{json.dumps(key)}]")
    parts.reverse()
    if len(parts) > 12:  # a value nested 100 deep: the start and the end say where
        parts = parts[:6] + [f"...({len(parts) - 9} more)..."] + parts[-3:]
    return (root + "".join(parts)).lstrip(".")


def encodable(text):
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def children(container):
    return iter(container.items()) if isinstance(container, dict) else enumerate(container)


def value_problems(value, root="", strings=False):
    """Non-standard numbers, nesting beyond MAX_NESTING and (if `strings`) unpaired surrogates, with fields.

    Depth-first with one iterator per open container, so memory follows the depth, not the size."""
    findings = []

    def note(crumbs, message, fix):
        findings.append(Finding(field_name(root, crumbs), message, fix))

    def scalar(item, crumbs):
        if isinstance(item, NonFinite):
            note(crumbs, f"{item.text} is not a JSON number", FIX_NON_FINITE)
        elif strings and isinstance(item, str) and not encodable(item):
            note(crumbs, "holds an unpaired UTF-16 surrogate escape (no UTF-8 text can hold it)", FIX_SURROGATE)

    if not isinstance(value, (dict, list)):
        scalar(value, None)
        return findings
    stack = [(children(value), 2, None)]  # (children, their nesting level, the container's crumbs)
    while stack and len(findings) < MAX_PROBLEMS_PER_LINE:
        pairs, level, crumbs = stack[-1]
        pair = next(pairs, None)
        if pair is None:
            stack.pop()
            continue
        key, child = pair
        if strings and isinstance(key, str) and not encodable(key):
            note(crumbs, f"key {shown(key)} holds an unpaired UTF-16 surrogate escape", FIX_SURROGATE)
        if isinstance(child, (dict, list)):
            if level > MAX_NESTING:
                note((key, crumbs), f"nested more than {MAX_NESTING} levels deep", FIX_DEEP)
            else:
                stack.append((children(child), level + 1, (key, crumbs)))
        else:
            scalar(child, (key, crumbs))
    if stack:
        findings.append(Finding(root, "... and perhaps more on this line (the search stopped here)", "see above"))
    return findings
