"""Validate a chat fine-tuning dataset (OpenAI format, one JSON object per line) before any training.

    python -m synthia.validate dataset.jsonl [--strict]

Hard problems are errors (the pipeline stops with exit code 2); soft ones are warnings with counts
(`--strict` turns them into errors). Every message names the file and the 1-based line.
"""

import argparse
import hashlib
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema

DEFAULT_TOOLS_FILE = Path(__file__).with_name("default_tools.json")
CATEGORIES = ("tool_use", "tdd", "debugging", "planning", "refactoring", "code_review", "collaboration")
ROLES = ("system", "user", "assistant", "tool")
MAX_ERRORS_SHOWN = 30

# Warning kinds, each counted separately in the report.
SCHEMA_MISMATCH = "arguments break the tool's JSON Schema"
DUPLICATE = "duplicate example"
BOM = "UTF-8 byte-order mark"
BLANK_LINE = "blank line"
ARGUMENTS_AS_OBJECT = "arguments given as an object instead of a JSON string (normalised)"
TOO_LONG = "longer than max_seq_length"


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    message: str
    kind: str = ""

    def __str__(self):
        return f"{self.path}:{self.line}: {self.message}"


@dataclass
class Example:
    line: int
    record: dict  # normalised: every tool call's `arguments` is a JSON string
    fingerprint: str

    @property
    def category(self):
        return self.record.get("category")

    @property
    def messages(self):
        return self.record["messages"]


@dataclass
class Report:
    path: str
    examples: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    warnings: list = field(default_factory=list)

    def warn(self, line, message, kind):
        self.warnings.append(Problem(self.path, line, message, kind))

    def warning_counts(self):
        return Counter(w.kind for w in self.warnings)


def load_default_tools():
    return json.loads(DEFAULT_TOOLS_FILE.read_text())


def tool_schema_problems(tools):
    """Problems with a `tools` list: each entry must be an OpenAI function schema."""
    if not isinstance(tools, list) or not tools:
        return ["`tools` must be a non-empty list of function schemas"]
    problems = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(fn, dict):
            problems.append(f'{where} must be {{"type": "function", "function": {{...}}}}')
            continue
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            problems.append(f"{where}.function.name must be a non-empty string")
        params = fn.get("parameters", {"type": "object"})
        try:
            jsonschema.validators.validator_for(params).check_schema(params)
        except jsonschema.SchemaError as e:
            problems.append(f"{where}.function.parameters is not a valid JSON Schema: {e.message}")
            continue
        if params.get("type") != "object":
            problems.append(f'{where}.function.parameters must have "type": "object"')
    return problems


def parse_arguments(raw):
    """Return (arguments as dict or None, problem or None, was_object)."""
    if isinstance(raw, dict):
        return raw, None, True
    if not isinstance(raw, str):
        return None, f"arguments must be a JSON string, got {type(raw).__name__}", False
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        return None, f"arguments are not valid JSON ({e.msg} at char {e.pos}): {raw[:60]!r}", False
    if not isinstance(value, dict):
        return None, f"arguments must be a JSON object, got {type(value).__name__}", False
    return value, None, False


def check_tool_call(call, where, tool_schemas):
    """Hard problems and schema-mismatch warnings for one tool call; normalises `arguments`."""
    errors, warnings = [], []
    if not isinstance(call, dict):
        return [f"{where} must be an object"], [], False
    if not isinstance(call.get("id"), str) or not call["id"]:
        errors.append(f"{where} has no id")
    if call.get("type", "function") != "function":
        errors.append(f'{where}.type must be "function", got {call.get("type")!r}')
    fn = call.get("function")
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        return errors + [f"{where}.function.name is missing"], warnings, False
    name = fn["name"]
    args, problem, was_object = parse_arguments(fn.get("arguments"))
    if problem:
        errors.append(f"{where} ({name}): {problem}")
    if name not in tool_schemas:
        errors.append(f"{where} calls unknown tool {name!r} (known: {', '.join(sorted(tool_schemas))})")
    elif args is not None:
        schema_error = jsonschema.validators.validator_for(tool_schemas[name])(tool_schemas[name])
        first = next(iter(schema_error.iter_errors(args)), None)
        if first is not None:
            warnings.append(f"{where} ({name}): {first.message}")
    if args is not None and was_object:
        fn["arguments"] = json.dumps(args, ensure_ascii=False)
    return errors, warnings, was_object


def check_content(message, where):
    content = message.get("content")
    if isinstance(content, str):
        return []
    if content is None and message.get("role") == "assistant" and message.get("tool_calls"):
        return []
    return [f"{where}: content must be a string (null only on an assistant turn with tool_calls)"]


def check_messages(messages, tool_schemas):
    """Walk one conversation. Returns (errors, schema warnings, count of object-arguments)."""
    errors, warnings, objects = [], [], 0
    pending = set()  # ids of the latest assistant turn's calls not yet answered
    last_assistant = None
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            errors.append(f"{where} must be an object")
            continue
        role = message.get("role")
        if role not in ROLES:
            errors.append(f"{where}: unknown role {role!r} (known: {', '.join(ROLES)})")
            continue
        errors += check_content(message, where)
        if "weight" in message and role != "assistant":
            errors.append(f"{where}: `weight` is only allowed on assistant messages")
        if role == "system" and i > 0:
            errors.append(f"{where}: a system message may only come first")
        if role == "assistant":
            if pending and last_assistant is not None:
                errors.append(f"{where}: tool call(s) {', '.join(sorted(pending))} of messages[{last_assistant}] "
                              "are not answered before the next assistant turn")
            if message.get("weight", 1) not in (0, 1) or isinstance(message.get("weight"), bool):
                errors.append(f"{where}: weight must be 0 or 1, got {message.get('weight')!r}")
            pending, last_assistant = set(), i
            calls = message.get("tool_calls") or []
            if not isinstance(calls, list):
                errors.append(f"{where}.tool_calls must be a list")
                calls = []
            for j, call in enumerate(calls):
                call_where = f"{where}.tool_calls[{j}]"
                e, w, was_object = check_tool_call(call, call_where, tool_schemas)
                errors, warnings, objects = errors + e, warnings + w, objects + was_object
                call_id = call.get("id") if isinstance(call, dict) else None
                if isinstance(call_id, str) and call_id in pending:
                    errors.append(f"{call_where}: id {call_id!r} is used twice in this assistant turn")
                if isinstance(call_id, str):
                    pending.add(call_id)
        if role == "tool":
            call_id = message.get("tool_call_id")
            if last_assistant is None:
                errors.append(f"{where}: tool message before any assistant tool call")
            elif call_id not in pending:
                errors.append(f"{where}: tool_call_id {call_id!r} answers no open call of messages[{last_assistant}]")
            else:
                pending.discard(call_id)
    if messages and isinstance(messages[-1], dict) and messages[-1].get("role") != "assistant":
        errors.append(f"the conversation must end with an assistant turn, not {messages[-1].get('role')!r}")
    assistants = [m for m in messages if isinstance(m, dict) and m.get("role") == "assistant"]
    if assistants and all(m.get("weight", 1) == 0 for m in assistants):
        errors.append("every assistant turn has weight 0: nothing to learn from this example")
    return errors, warnings, objects


def check_record(record, default_tools):
    """All problems of one parsed line. Returns (errors, schema warnings, object-argument count)."""
    if not isinstance(record, dict):
        return [f"a line must be a JSON object, got {type(record).__name__}"], [], 0
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        return ["`messages` must be a non-empty list"], [], 0
    errors = []
    category = record.get("category")
    if category is not None and category not in CATEGORIES:
        errors.append(f"unknown category {category!r} (known: {', '.join(CATEGORIES)})")
    tools = record.get("tools", default_tools)
    tool_problems = tool_schema_problems(tools)
    if tool_problems:
        return errors + tool_problems, [], 0
    schemas = {t["function"]["name"]: t["function"].get("parameters", {"type": "object"}) for t in tools}
    e, warnings, objects = check_messages(messages, schemas)
    return errors + e, warnings, objects


def fingerprint(record):
    canonical = json.dumps(record, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def validate_lines(lines, path, default_tools=None):
    """Validate an iterable of text lines (the file's lines, in order)."""
    default_tools = default_tools if default_tools is not None else load_default_tools()
    report = Report(str(path))
    seen = {}
    for number, line in enumerate(lines, start=1):
        if number == 1 and line.startswith("\ufeff"):
            report.warn(number, "file starts with a UTF-8 byte-order mark (ignored)", BOM)
            line = line[1:]
        if not line.strip():
            report.warn(number, "blank line (ignored)", BLANK_LINE)
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            report.errors.append(Problem(str(path), number, f"not valid JSON: {e.msg} (column {e.colno})"))
            continue
        errors, schema_warnings, objects = check_record(record, default_tools)
        report.errors += [Problem(str(path), number, e) for e in errors]
        for w in schema_warnings:
            report.warn(number, w, SCHEMA_MISMATCH)
        if objects:
            report.warn(number, f"{objects} tool call(s) give arguments as an object; normalised to a JSON string",
                        ARGUMENTS_AS_OBJECT)
        if errors:
            continue
        key = fingerprint(record)
        if key in seen:
            report.warn(number, f"duplicate of line {seen[key]}", DUPLICATE)
            continue
        seen[key] = number
        report.examples.append(Example(number, record, key))
    return report


def validate_file(path, default_tools=None):
    """Validate a dataset file. A missing or undecodable file is reported as an error at line 0."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        report = Report(str(path))
        report.errors.append(Problem(str(path), 0, "file not found"))
        return report
    except UnicodeDecodeError as e:
        report = Report(str(path))
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        report.errors.append(Problem(str(path), line, f"not UTF-8 text (byte {e.start})"))
        return report
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    return validate_lines(lines, path, default_tools)


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
    report = validate_file(args.dataset)
    print(format_report(report, args.strict))
    return 0 if is_ok(report, args.strict) else 2


if __name__ == "__main__":
    sys.exit(main())
