"""BFCL's single-turn AST categories as prompts: the leaderboard's own entries, read from the `bfcl-eval` package.

Only the package's data files are read (BFCL_v4_<category>.json and possible_answer/), never its code, so it is
installed with --no-deps. Each entry becomes its messages and its functions as OpenAI tools; bfcl_judge.py judges
the calls a model makes against the entry's possible answer.
"""

import importlib.util
import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

VERSION = "2026.3.23"
INSTALL = f"pip install --no-deps bfcl-eval=={VERSION}"

AST_CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple",
                  "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple")
IRRELEVANCE_CATEGORIES = ("irrelevance", "live_irrelevance")  # passes when no call is made
RELEVANCE_CATEGORIES = ("live_relevance",)  # passes when at least one call is made
CATEGORIES = AST_CATEGORIES + IRRELEVANCE_CATEGORIES + RELEVANCE_CATEGORIES

# BFCL's type names that JSON Schema spells differently; BFCL's OpenAI handler maps them the same way.
JSON_SCHEMA_TYPES = {"dict": "object", "float": "number", "tuple": "array", "any": "string"}
# BFCL appends this to every Python function's description when it builds its prompts.
PYTHON_HINT = " Note that the provided function is in Python 3 syntax."


class BFCLUnavailable(Exception):
    """BFCL's data cannot be read; the message says why and what to do."""

    exit_code = 2


@dataclass(frozen=True)
class Entry:
    id: str
    category: str
    messages: list  # [{"role": "system" | "user" | "assistant", "content": str}], BFCL's one turn
    tools: list  # the functions as OpenAI tools, as the model sees them
    functions: list  # BFCL's own function docs, whose types the judge checks values against
    answer: list | None  # [{function name: {parameter: [accepted values]}}]; None for (ir)relevance


def tool_name(name):
    """The name a function is offered under: OpenAI-style names allow no dots (^[a-zA-Z0-9_-]{1,64}$)."""
    return name.replace(".", "_")


def json_schema(schema):
    """A copy of BFCL's parameter schema with JSON Schema's type names, nested properties and items included."""
    converted = dict(schema)
    if "type" in converted:
        converted["type"] = JSON_SCHEMA_TYPES.get(converted["type"], converted["type"])
    if isinstance(converted.get("properties"), dict):
        converted["properties"] = {key: json_schema(value) for key, value in converted["properties"].items()}
    if isinstance(converted.get("items"), dict):
        converted["items"] = json_schema(converted["items"])
    return converted


def openai_tool(function):
    return {"type": "function", "function": {
        "name": tool_name(function["name"]),
        "description": function.get("description", "") + PYTHON_HINT,
        "parameters": json_schema(function["parameters"]),
    }}


def data_dir():
    """bfcl_eval/data, found without importing bfcl_eval (its code needs dependencies --no-deps leaves out)."""
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        raise BFCLUnavailable(f"--bench bfcl reads BFCL's data from the bfcl-eval package, which is not installed. "
                              f"Fix: {INSTALL}")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def installed_version():
    try:
        return metadata.version("bfcl-eval")
    except metadata.PackageNotFoundError:
        return "unknown"


def read_jsonl(path):
    if not path.is_file():
        raise BFCLUnavailable(f"{path}: missing from bfcl-eval {installed_version()}. Fix: {INSTALL}")
    records = []
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise BFCLUnavailable(f"{path}:{line_number}: not JSON ({e.msg}). Fix: {INSTALL} "
                                          "--force-reinstall") from None
    return records


def entry_from(record, answer, category, path):
    turns = record["question"]
    if len(turns) != 1:
        raise BFCLUnavailable(f"{path}: entry {record['id']} has {len(turns)} turns, expected 1 "
                              f"(only single-turn categories are supported). Fix: {INSTALL} --force-reinstall")
    messages = [{"role": m["role"], "content": m["content"]} for m in turns[0]]
    return Entry(id=record["id"], category=category, messages=messages,
                 tools=[openai_tool(f) for f in record["function"]], functions=record["function"],
                 answer=answer)


def load_category(name):
    """Every entry of one BFCL category, in the file's order."""
    if name not in CATEGORIES:
        raise BFCLUnavailable(f"unknown BFCL category {name!r}. Fix: use one of {', '.join(CATEGORIES)}")
    data = data_dir()
    path = data / f"BFCL_v4_{name}.json"
    records = read_jsonl(path)
    answers = [None] * len(records)
    if name in AST_CATEGORIES:
        answer_path = data / "possible_answer" / path.name
        answer_records = read_jsonl(answer_path)
        ids = [r["id"] for r in records]
        if [a["id"] for a in answer_records] != ids:
            raise BFCLUnavailable(f"{answer_path}: its ids do not follow {path.name}'s one for one. "
                                  f"Fix: {INSTALL} --force-reinstall")
        answers = [a["ground_truth"] for a in answer_records]
    return [entry_from(r, a, name, path) for r, a in zip(records, answers)]


def select_entries(entries, limit):
    """`limit` entries spread evenly over the list (the first included), the same ones on every call; all when
    `limit` is None or at least the list's length."""
    if limit is None or limit >= len(entries):
        return list(entries)
    if limit < 1:
        raise ValueError(f"--bench-limit must be at least 1, got {limit}")
    return [entries[k * len(entries) // limit] for k in range(limit)]


def check_available(categories=CATEGORIES):
    """Read every category once, so missing or damaged data stops a run before anything is trained or scored."""
    for name in categories:
        load_category(name)
