"""The quick yes for tool-call arguments (synthia/data/quick_schema.py): never a yes that jsonschema would refuse, a yes
for the shipped dataset's calls, and no acceptor at all for schemas with keywords it does not know."""

import json
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synthia.data import quick_schema, tool_schemas, validate

ROOT = Path(__file__).resolve().parents[1]
KEYS = ["a", "b", "path", "n"]
TYPES = list(quick_schema.TYPE_CHECKS)

scalars = st.none() | st.booleans() | st.integers(-3, 3) | st.floats(-3, 3, allow_nan=False) | st.sampled_from(
    ["", "x", "src/a.py", "1"]) | st.sampled_from([1.0, 0.0, 2])
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner,
                                                                                            max_size=4), max_leaves=10)


def schemas(depth=2):
    plain = {"type": st.sampled_from(TYPES) | st.lists(st.sampled_from(TYPES), min_size=1, max_size=3, unique=True),
             "enum": st.lists(scalars, min_size=1, max_size=3), "description": st.just("a parameter"),
             **{key: st.integers(-2, 3) | st.floats(-2, 3, allow_nan=False) for key in quick_schema.BOUNDS}}
    if depth:
        inner = schemas(depth - 1)
        plain.update(properties=st.dictionaries(st.sampled_from(KEYS), inner, max_size=3),
                     required=st.lists(st.sampled_from(KEYS), max_size=2, unique=True),
                     additionalProperties=st.booleans(), items=inner)
    return st.fixed_dictionaries({}, optional=plain)


def check_quick_yes(schema, value):
    accepts = quick_schema.acceptor(schema)
    assert accepts is not None  # every generated schema is plain
    if accepts(value):
        assert jsonschema.validators.validator_for(schema)(schema).is_valid(value), (schema, value)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=schemas(), value=values)
def test_a_quick_yes_is_always_a_yes_of_jsonschema(schema, value):
    check_quick_yes(schema, value)


@settings(max_examples=2000, deadline=None)
@given(schema=schemas(depth=0), value=scalars | st.lists(scalars, max_size=3))
def test_a_quick_yes_is_always_a_yes_of_jsonschema_for_one_value(schema, value):
    check_quick_yes(schema, value)


def test_the_shipped_dataset_calls_get_a_quick_yes():
    tools = {t["function"]["name"]: t["function"]["parameters"] for t in validate.load_default_tools()}
    calls = [(c["function"]["name"], json.loads(c["function"]["arguments"]))
             for ex in validate.validate_file(ROOT / "dataset.jsonl").examples
             for m in ex.messages for c in m.get("tool_calls") or []]
    accepted = [quick_schema.acceptor(tools[name])(arguments) for name, arguments in calls if name in tools]
    assert len(accepted) > 300 and all(accepted)


def test_wrong_arguments_are_left_to_jsonschema_which_words_the_error():
    schema = {"type": "object", "properties": {"path": {"type": "string"}, "n": {"type": "integer"}},
              "required": ["path"], "additionalProperties": False}
    accepts = quick_schema.acceptor(schema)
    assert accepts({"path": "a.py", "n": 3})
    for wrong in [{"n": 3}, {"path": 3}, {"path": "a", "n": 1.0}, {"path": "a", "n": True}, {"path": "a", "x": 1}, []]:
        assert not accepts(wrong), wrong
    check, _ = tool_schemas.schema_validator(schema, "tools[0].function.parameters")
    finding = tool_schemas.schema_mismatch(check, {"path": 3}, "messages[2].tool_calls[0].function.arguments", "read")
    assert finding is not None and "is not of type 'string'" in finding.message


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 2}}},
    {"type": "object", "properties": {"n": {"type": "integer", "minimum": "0"}}},
    {"type": "object", "properties": {"p": {"type": "string", "pattern": "^/"}}},
    {"type": "object", "properties": {"p": {"$ref": "#/$defs/p"}}, "$defs": {"p": {"type": "string"}}},
    {"type": "object", "additionalProperties": {"type": "string"}},
    {"type": "object", "properties": {"p": {"anyOf": [{"type": "string"}, {"type": "null"}]}}},
    {"$schema": "http://json-schema.org/draft-04/schema#", "type": "object"},
    {"type": "object", "properties": {"p": {"enum": [[1, 2]]}}},
])
def test_schemas_with_other_keywords_get_no_quick_yes(schema):
    assert quick_schema.acceptor(schema) is None
