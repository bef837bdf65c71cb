"""The tools a record may call: each distinct `tools` list checked and compiled once (check_schema is the costly
part), and a call's arguments checked against its tool's JSON Schema (quick_schema.py says yes to plain cases
first, without jsonschema)."""

import json
from functools import cached_property, lru_cache
from pathlib import Path
from typing import NamedTuple

import jsonschema

from synthia.data import quick_schema
from synthia.data.findings import Finding, cut, got, shown

DEFAULT_TOOLS_FILE = Path(__file__).with_name("default_tools.json")

# Warning kinds (validate.py lists the others).
SCHEMA_MISMATCH = "arguments break the tool's JSON Schema"
UNDECLARED_ARGUMENT = "argument the tool's schema does not declare"

FIX_TOOLS = ('give "tools" as a non-empty list of {"type": "function", "function": {"name", "parameters"}}, '
             f"or leave it out to use {DEFAULT_TOOLS_FILE.name}")


def load_default_tools():
    return json.loads(DEFAULT_TOOLS_FILE.read_text())


class ToolSet(NamedTuple):
    problems: tuple  # Findings
    validators: dict  # tool name -> SchemaCheck (None when its schema is broken); {} if unusable


class SchemaCheck(NamedTuple):
    validator: object  # jsonschema's, for the verdict and its wording
    accepts: object  # quick_schema.acceptor: a quick yes for plain schemas, or None
    declared: frozenset = None  # the parameter names, where the schema lets others through without saying so


def canonical_json(value):
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


class ToolSets:
    """The tool sets of one validation run: the default tools' made once, and a record's own `tools` compiled once
    per distinct list (compiled_tool_set). The list's canonical JSON, the key, is most of a line's cost: it is made
    once per line although both the line's tool set and its fingerprint need it."""

    def __init__(self, default_tools):
        self.default_tools = default_tools
        # The tools list last seen, held so that `is` cannot match another list (validation never changes a record's
        # tools), and its canonical JSON.
        self.line_tools, self.line_json = None, None

    @cached_property
    def default(self):
        return self.of(self.default_tools)

    def of(self, tools):
        if not isinstance(tools, list) or not tools:
            return ToolSet((Finding("tools", f"must be a non-empty list of function schemas, {got(tools)}",
                                    FIX_TOOLS),), {})
        return compiled_tool_set(self.canonical(tools))

    def canonical(self, tools):
        """canonical_json(tools), made once for consecutive calls with the same list."""
        if self.line_tools is not tools:
            self.line_tools, self.line_json = tools, canonical_json(tools)
        return self.line_json


@lru_cache(maxsize=256)
def compiled_tool_set(canonical_tools):
    problems, validators, where_defined = [], {}, {}
    for i, tool in enumerate(json.loads(canonical_tools)):
        where = f"tools[{i}]"
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(fn, dict):
            problems.append(Finding(where, 'must be {"type": "function", "function": {...}}', FIX_TOOLS))
            continue
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            problems.append(Finding(f"{where}.function.name", f"must be a non-empty string, {got(name)}",
                                    "name the tool"))
            continue
        if name in where_defined:
            problems.append(Finding(f"{where}.function.name", f"{shown(name)} is already defined by "
                                    f"{where_defined[name]}", "give each tool its own name"))
            continue
        where_defined[name] = where
        validators[name], problem = schema_validator(fn.get("parameters", {"type": "object"}),
                                                     f"{where}.function.parameters")
        if problem:
            problems.append(problem)
    return ToolSet(tuple(problems), validators)


def schema_validator(schema, where):
    """(SchemaCheck, None) or (None, Finding)."""
    fix = 'give a JSON Schema with "type": "object" and "properties" (https://json-schema.org)'
    if not isinstance(schema, dict):
        return None, Finding(where, f"must be a JSON Schema object, {got(schema)}", fix)
    try:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
    except jsonschema.SchemaError as e:
        return None, Finding(where, f"is not a valid JSON Schema: {cut(e.message)}", fix)
    except Exception as e:  # jsonschema cannot even pick a draft (say "$schema": 5)
        return None, Finding(where, f"is not a usable JSON Schema: {cut(str(e))}", fix)
    if schema.get("type") != "object":
        return None, Finding(where, f'must have "type": "object", {got(schema.get("type"))}', fix)
    return SchemaCheck(cls(schema), quick_schema.acceptor(schema), declared_parameters(schema)), None


# Keywords under which a schema admits or declares parameters beyond its own "properties".
OPEN_KEYWORDS = frozenset({"additionalProperties", "patternProperties", "unevaluatedProperties", "allOf", "anyOf",
                           "oneOf", "$ref", "if", "dependentSchemas"})


def declared_parameters(schema):
    """Names in "properties" when nothing else admits a parameter and additionalProperties is unset (so any other
    name passes unseen); None otherwise ("additionalProperties": false already refuses the others)."""
    properties = schema.get("properties")
    if not isinstance(properties, dict) or not OPEN_KEYWORDS.isdisjoint(schema):
        return None
    return frozenset(properties)


def schema_mismatch(check, arguments, where, name):
    if check.accepts is not None and check.accepts(arguments):
        return None
    try:
        error = next(iter(check.validator.iter_errors(arguments)), None)
    except Exception as e:  # the schema fails only when used: an unresolvable $ref, say
        return Finding(where, f"tool {name!r}'s schema cannot check them: {cut(str(e))}",
                       "keep the tool's schema self-contained ($ref only to #/...)")
    if error is None:
        return None
    return Finding(where, f"{cut(error.message)} (tool {name!r})",
                   "make the arguments match the tool's parameters schema", SCHEMA_MISMATCH)


def undeclared_arguments(arguments, declared, where, name):
    for key in arguments:
        if key not in declared:
            yield Finding(where, f"{shown(key)} is not a parameter of tool {name!r} (its parameters: "
                          f"{cut(', '.join(sorted(declared)), 100) or 'none'})",
                          "remove the argument, or declare it in the tool's parameters", UNDECLARED_ARGUMENT)
