"""Tool calls read back from generated text, and the per-turn verdict funnel."""

import json
from pathlib import Path

from mlx_lm.utils import load_tokenizer

from synthia.data import validate
from synthia.scorecard import generation, judge
from synthia.data.validate import load_default_tools

TOOLS = load_default_tools()
SCHEMAS = judge.tool_schemas(TOOLS)
DATASET = Path(__file__).resolve().parents[1] / "dataset.jsonl"

READ_MAIN = {"name": "read", "arguments": {"file_path": "src/main.rs", "limit": 5}}
READ_LIB = {"name": "read", "arguments": {"file_path": "src/lib.rs"}}


def block(call):
    return f"<tool_call>\n{json.dumps(call)}\n</tool_call>"


def verdict_of(output, expected):
    return judge.judge(judge.parse_output(output), expected, SCHEMAS)


def funnel(verdict):
    return verdict.valid, verdict.names, verdict.exact


def test_a_correct_call_is_exact_and_satisfies_its_schema():
    verdict = verdict_of("Reading it.\n" + block(READ_MAIN), [READ_MAIN])
    assert funnel(verdict) == (True, True, True)
    assert verdict.schema_ok is True and not verdict.unknown_tool and verdict.problems == []
    assert (verdict.calls_emitted, verdict.calls_expected) == (1, 1)


def test_a_call_to_the_wrong_tool_is_valid_but_fails_names():
    verdict = verdict_of(block({"name": "grep", "arguments": {"pattern": "fn main"}}), [READ_MAIN])
    assert funnel(verdict) == (True, False, False)
    assert verdict.schema_ok is True


def test_a_wrong_argument_value_passes_names_but_not_exact():
    verdict = verdict_of(block({"name": "read", "arguments": {"file_path": "src/main.rs", "limit": 6}}), [READ_MAIN])
    assert funnel(verdict) == (True, True, False)


def test_the_same_number_written_as_5_and_5_0_is_exact():
    output = '<tool_call>\n{"name": "read", "arguments": {"limit": 5.0, "file_path": "src/main.rs"}}\n</tool_call>'
    assert funnel(verdict_of(output, [READ_MAIN])) == (True, True, True)


def test_true_is_not_the_number_1():
    expected = [{"name": "edit", "arguments": {"file_path": "a", "old_string": "x", "new_string": "y",
                                               "replace_all": True}}]
    output = block({"name": "edit", "arguments": {"file_path": "a", "old_string": "x", "new_string": "y",
                                                  "replace_all": 1}})
    verdict = verdict_of(output, expected)
    assert funnel(verdict) == (True, True, False)
    assert verdict.schema_ok is False  # replace_all must be a boolean


def test_parallel_calls_in_another_order_are_exact():
    verdict = verdict_of(block(READ_LIB) + "\n" + block(READ_MAIN), [READ_MAIN, READ_LIB])
    assert funnel(verdict) == (True, True, True)
    assert (verdict.calls_emitted, verdict.calls_expected) == (2, 2)


def test_one_of_two_parallel_calls_missing_fails_names():
    verdict = verdict_of(block(READ_MAIN), [READ_MAIN, READ_LIB])
    assert funnel(verdict) == (True, False, False)
    assert (verdict.calls_emitted, verdict.calls_expected) == (1, 2)


def test_malformed_json_in_a_call_block_is_invalid():
    verdict = verdict_of('<tool_call>\n{"name": "read", "arguments": {"file_path": "src/main.rs"}\n</tool_call>',
                         [READ_MAIN])
    assert funnel(verdict) == (False, False, False)
    assert verdict.schema_ok is None and verdict.calls_emitted == 0
    assert any("does not parse" in p for p in verdict.problems)


def test_one_malformed_block_beside_a_good_one_makes_the_turn_invalid():
    verdict = verdict_of(block(READ_MAIN) + "\n<tool_call>\n{oops}\n</tool_call>", [READ_MAIN])
    assert funnel(verdict) == (False, False, False)
    assert verdict.calls_emitted == 1


def test_an_unclosed_tag_is_invalid():
    verdict = verdict_of('<tool_call>\n{"name": "read", "arguments": {"file_path": "src/main.rs", "limit": 5}}',
                         [READ_MAIN])
    assert funnel(verdict) == (False, False, False)
    assert any("never closed" in p for p in verdict.problems)


def test_a_closing_tag_without_an_opening_one_is_invalid():
    verdict = verdict_of(json.dumps(READ_MAIN) + "\n</tool_call>", [READ_MAIN])
    assert funnel(verdict) == (False, False, False)


def test_text_where_a_call_was_due_is_invalid():
    verdict = verdict_of("I would read src/main.rs now.", [READ_MAIN])
    assert funnel(verdict) == (False, False, False)
    assert verdict.schema_ok is None
    assert verdict.problems == ["no call where 1 were due"]


def test_a_call_where_text_was_due_is_invalid():
    verdict = verdict_of(block(READ_MAIN), [])
    assert funnel(verdict) == (False, False, False)
    assert (verdict.calls_emitted, verdict.calls_expected) == (1, 0)


def test_text_where_text_was_due_is_exact():
    assert funnel(verdict_of("All tests pass.", [])) == (True, True, True)


def test_a_call_to_an_unknown_tool_is_flagged_and_fails_its_schema():
    verdict = verdict_of(block({"name": "delete_everything", "arguments": {}}), [READ_MAIN])
    assert funnel(verdict) == (True, False, False)
    assert verdict.unknown_tool and verdict.schema_ok is False


def test_arguments_given_as_a_json_string_are_invalid():
    output = block({"name": "read", "arguments": json.dumps(READ_MAIN["arguments"])})
    verdict = verdict_of(output, [READ_MAIN])
    assert funnel(verdict) == (False, False, False)
    assert any("JSON string" in p for p in verdict.problems)


def test_arguments_that_break_the_schema_are_flagged_beside_the_funnel():
    call = {"name": "read", "arguments": {"file_path": "src/main.rs", "limit": 0}}
    verdict = verdict_of(block(call), [call])
    assert funnel(verdict) == (True, True, True)
    assert verdict.schema_ok is False
    assert any("minimum" in p or "less than" in p for p in verdict.problems)


def test_the_tiny_models_tokenizer_gives_the_hermes_format(tiny_model_dir):
    fmt = judge.call_format(load_tokenizer(tiny_model_dir))
    assert (fmt.start, fmt.end) == ("<tool_call>", "</tool_call>")


def test_every_reference_turn_of_the_shipped_dataset_scores_exact_against_itself(tiny_model_dir):
    report = validate.validate_file(DATASET)
    assert report.errors == []
    tokenizer = load_tokenizer(tiny_model_dir)  # renders with synthia/chat_templates/qwen2.5-tools.jinja
    fmt = judge.call_format(tokenizer)
    tasks, _ = generation.turn_tasks(tokenizer, report.examples, TOOLS)
    failures = []
    for task in tasks:
        parsed = judge.parse_output(task.reference, fmt, task.tools)
        expected = judge.reference_calls(task.messages[task.index])
        verdict = judge.judge(parsed, expected, judge.tool_schemas(task.tools))
        if not (verdict.exact and verdict.schema_ok in (True, None)):
            failures.append((task.example.line, task.index, verdict.problems))
    assert len(tasks) > 1000
    assert sum(t.messages[t.index].get("tool_calls") is not None and len(t.messages[t.index]["tool_calls"]) > 1
               for t in tasks) > 100
    assert failures == []
