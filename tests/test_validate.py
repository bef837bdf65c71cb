"""The validator: every error kind is caught with the right line; soft problems are counted warnings."""

import json

import pytest

from synthia.data import strict_json, tool_schemas, validate


def call(name="read", arguments='{"file_path": "src/main.rs"}', call_id="call_1"):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def good_messages():
    return [
        {"role": "system", "content": "You are Synthia."},
        {"role": "user", "content": "What is in src/main.rs?"},
        {"role": "assistant", "content": None, "tool_calls": [call()]},
        {"role": "tool", "tool_call_id": "call_1", "content": "1\tfn main() {}"},
        {"role": "assistant", "content": "An empty main function."},
    ]


def lines_with(bad_record, before=2):
    """`before` good lines, then the bad one: the bad one is on line before + 1."""
    good = [json.dumps({"category": "tool_use", "messages": good_messages(), "id": i}) for i in range(before)]
    return good + [bad_record if isinstance(bad_record, str) else json.dumps(bad_record)]


def errors_for(bad_record):
    report = validate.validate_lines(lines_with(bad_record), "data.jsonl")
    return report.errors


def with_message(index, **changes):
    messages = good_messages()
    messages[index] = {**messages[index], **changes}
    return {"messages": messages}


def described(problem):
    return f"{problem.field}: {problem.message}"


def assert_one_error_on_line_3(bad_record, fragment):
    errors = errors_for(bad_record)
    assert len(errors) == 1, [str(e) for e in errors]
    assert errors[0].line == 3 and fragment in described(errors[0]), str(errors[0])
    assert str(errors[0]).startswith("data.jsonl:3: ") and ". Fix: " in str(errors[0])


def test_good_dataset_has_no_errors_or_warnings():
    report = validate.validate_lines(lines_with({"messages": good_messages()}), "data.jsonl")
    assert report.errors == [] and report.warnings == []
    assert len(report.examples) == 3


@pytest.mark.parametrize("bad, fragment", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ({"messages": []}, "messages: must be a non-empty list"),
    ({"nothing": 1}, "messages: is missing"),
    ({"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]},
     "messages[0].role: unknown role 'robot'"),
    ({"messages": good_messages(), "category": "poetry"}, "category: unknown category 'poetry'"),
])
def test_record_level_errors_name_the_line(bad, fragment):
    assert_one_error_on_line_3(bad, fragment)


def test_second_system_message_is_rejected():
    messages = good_messages()
    messages.insert(2, {"role": "system", "content": "again"})
    assert_one_error_on_line_3({"messages": messages}, "system message may only come first")


def test_non_string_content_is_rejected():
    assert_one_error_on_line_3(with_message(1, content=5), "messages[1].content: must be a string, got number 5")


def test_null_content_is_only_allowed_on_assistant_with_tool_calls():
    assert_one_error_on_line_3(with_message(4, content=None), "messages[4].content: must be a string, got null")


@pytest.mark.parametrize("bad_call, fragment", [
    ({**call(), "id": ""}, "tool_calls[0].id: must be a non-empty string"),
    ({"type": "function", "function": call()["function"]}, "tool_calls[0].id: is missing"),
    ({**call(), "type": "code"}, 'tool_calls[0].type: must be "function"'),
    ({"id": "call_1", "type": "function", "function": {"arguments": "{}"}}, "tool_calls[0].function.name: is missing"),
    (call(arguments="{oops"), "tool_calls[0].function.arguments: not valid JSON"),
    (call(arguments='["a"]'), "tool_calls[0].function.arguments: must hold a JSON object, got a JSON array"),
    (call(arguments=None), "tool_calls[0].function.arguments: must be a JSON string, got null"),
    (call(name="delete_everything"), "tool_calls[0].function.name: unknown tool 'delete_everything'"),
])
def test_bad_tool_calls_are_rejected(bad_call, fragment):
    assert_one_error_on_line_3(with_message(2, tool_calls=[bad_call]), "messages[2]." + fragment)


def test_tool_calls_must_be_a_list():
    assert_one_error_on_line_3(with_message(2, tool_calls={"id": "call_1"}), "messages[2].tool_calls: must be a list")


def test_tool_calls_on_a_user_message_are_rejected():
    assert_one_error_on_line_3(with_message(1, tool_calls=[call()]), "messages[1].tool_calls: only assistant")


def test_tool_message_must_answer_a_call_of_the_previous_assistant_turn():
    assert_one_error_on_line_3(with_message(3, tool_call_id="call_9"), "'call_9' answers no open call of messages[2]")


def test_tool_message_must_name_its_call():
    assert_one_error_on_line_3(with_message(3, tool_call_id=["call_1"]), "messages[3].tool_call_id: must be the id")


def test_a_call_answered_twice_is_rejected():
    messages = good_messages()
    messages.insert(4, dict(messages[3]))
    assert_one_error_on_line_3({"messages": messages}, "messages[4].tool_call_id: 'call_1' answers no open call "
                                                       "of messages[2]: messages[3] answered it already")


def test_tool_message_before_any_call_is_rejected():
    messages = [{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "x", "content": "r"},
                {"role": "assistant", "content": "ok"}]
    assert_one_error_on_line_3({"messages": messages}, "before any assistant tool call")


def test_unanswered_call_before_next_assistant_turn_is_rejected():
    messages = good_messages()
    messages[2]["tool_calls"].append(call(call_id="call_2"))
    assert_one_error_on_line_3({"messages": messages}, "messages[4]: tool call(s) 'call_2' of messages[2] are "
                                                       "not answered before this assistant turn")


def test_final_assistant_turn_may_end_with_unanswered_calls():
    messages = good_messages()[:3]
    report = validate.validate_lines(lines_with({"messages": messages}), "data.jsonl")
    assert report.errors == []


def test_conversation_must_end_with_assistant():
    assert_one_error_on_line_3({"messages": good_messages()[:4]}, "must end with an assistant turn")


def test_a_call_id_used_twice_in_one_turn_is_rejected():
    messages = good_messages()
    messages[2]["tool_calls"].append(call(call_id="call_1"))
    assert_one_error_on_line_3({"messages": messages}, "messages[2].tool_calls[1].id: 'call_1' is already used by "
                                                       "messages[2].tool_calls[0]")


def test_a_call_id_reused_in_a_later_turn_after_its_answer_is_accepted():
    """Traces recorded from hosted APIs do this: an id need only be unique among the calls still open."""
    reused = good_messages()
    reused[4:4] = [{"role": "assistant", "content": None, "tool_calls": [call()]},
                   {"role": "tool", "tool_call_id": "call_1", "content": "again"}]
    report = validate.validate_lines(lines_with({"messages": reused}), "data.jsonl")
    assert report.errors == [] and report.warnings == []
    assert [m.get("tool_call_id") for m in report.examples[-1].messages] == [None, None, None, "call_1", None,
                                                                              "call_1", None]


def test_a_second_answer_to_a_reused_id_is_still_rejected():
    reused = good_messages()
    reused[4:4] = [{"role": "assistant", "content": None, "tool_calls": [call()]},
                   {"role": "tool", "tool_call_id": "call_1", "content": "again"},
                   {"role": "tool", "tool_call_id": "call_1", "content": "and again"}]
    assert_one_error_on_line_3({"messages": reused}, "messages[6].tool_call_id: 'call_1' answers no open call of "
                                                     "messages[4]: messages[5] answered it already")


def test_a_user_message_between_a_call_and_its_result_is_rejected_once():
    messages = good_messages()
    messages.insert(3, {"role": "user", "content": "and hurry"})
    assert_one_error_on_line_3({"messages": messages}, "messages[3]: this user message comes between the tool "
                                                       "call(s) 'call_1' of messages[2] and their results")


def test_a_user_message_after_all_results_is_fine():
    messages = good_messages()
    messages[4:4] = [{"role": "user", "content": "go on"}]
    assert validate.validate_lines(lines_with({"messages": messages}), "d").errors == []


def test_tools_must_be_function_schemas():
    bad_tools = [{"type": "function", "function": {"name": "read", "parameters": {"type": "object",
                                                                                   "properties": 5}}}]
    assert_one_error_on_line_3({"messages": good_messages(), "tools": bad_tools},
                               "tools[0].function.parameters: is not a valid JSON Schema")
    assert_one_error_on_line_3({"messages": good_messages(), "tools": bad_tools[:0]}, "tools: must be a non-empty list")
    assert_one_error_on_line_3({"messages": good_messages(), "tools": {"read": {}}},
                               "tools: must be a non-empty list of function schemas, got object")


def test_a_broken_tool_list_still_lets_the_conversation_be_checked():
    record = {"messages": good_messages()[:4], "tools": [{"name": "read"}]}
    described_errors = [described(e) for e in errors_for(record)]
    assert described_errors == ['tools[0]: must be {"type": "function", "function": {...}}',
                                "messages[3]: the conversation must end with an assistant turn, not 'tool'"]


def test_a_tool_defined_twice_is_rejected():
    tools = validate.load_default_tools()
    assert_one_error_on_line_3({"messages": good_messages(), "tools": tools + tools[:1]},
                               f"tools[{len(tools)}].function.name: 'read' is already defined by tools[0]")


def test_a_schema_whose_ref_cannot_be_resolved_is_an_error_when_used():
    tools = [{"type": "function", "function": {"name": "read", "parameters": {
        "type": "object", "properties": {"file_path": {"$ref": "https://example.com/nowhere.json"}}}}}]
    assert_one_error_on_line_3({"messages": good_messages(), "tools": tools}, "schema cannot check them")


def test_tool_names_are_checked_against_the_examples_own_tools():
    tools = [{"type": "function", "function": {"name": "open_file", "parameters": {"type": "object"}}}]
    assert_one_error_on_line_3({"messages": good_messages(), "tools": tools}, "unknown tool 'read'")


@pytest.mark.parametrize("weight", [2, -1, "0", 0.5, True])
def test_bad_weight_is_rejected(weight):
    assert_one_error_on_line_3(with_message(4, weight=weight), "messages[4].weight: must be 0 or 1")


def test_weight_on_a_non_assistant_message_is_rejected():
    assert_one_error_on_line_3(with_message(1, weight=0), "messages[1].weight: is only allowed on assistant messages")


def test_all_assistant_turns_weight_zero_is_rejected():
    messages = good_messages()
    messages[2]["weight"] = 0
    messages[4]["weight"] = 0
    assert_one_error_on_line_3({"messages": messages}, "nothing to learn")


def test_all_errors_are_reported_at_once_and_capped_in_the_summary():
    lines = ["{bad"] * 40 + [json.dumps({"messages": good_messages()})]
    report = validate.validate_lines(lines, "data.jsonl")
    assert [e.line for e in report.errors] == list(range(1, 41))
    text = validate.format_report(report)
    assert "40 error(s)" in text and f"and {40 - validate.MAX_ERRORS_SHOWN} more" in text


def test_schema_mismatch_is_a_warning_and_strict_makes_it_an_error():
    record = with_message(2, tool_calls=[call(arguments='{"file_path": 7}')])
    report = validate.validate_lines(lines_with(record), "d.jsonl")
    assert report.errors == []
    assert report.warning_counts() == {tool_schemas.SCHEMA_MISMATCH: 1}
    assert report.warnings[0].line == 3
    assert validate.is_ok(report) and not validate.is_ok(report, strict=True)


def test_object_arguments_are_normalised_to_a_json_string_with_a_warning():
    record = with_message(2, tool_calls=[call(arguments={"file_path": "a.py"})])
    report = validate.validate_lines(lines_with(record), "d.jsonl")
    assert report.warning_counts() == {validate.ARGUMENTS_AS_OBJECT: 1}
    normalised = report.examples[-1].messages[2]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(normalised) == {"file_path": "a.py"} and isinstance(normalised, str)


def test_duplicates_bom_and_blank_lines_are_warnings():
    line = json.dumps({"messages": good_messages()})
    report = validate.validate_lines(["\ufeff" + line, "", line], "d.jsonl")
    assert report.errors == []
    assert report.warning_counts() == {validate.BOM: 1, validate.BLANK_LINE: 1, validate.DUPLICATE: 1}
    assert [w.line for w in report.warnings] == [1, 2, 3]
    assert len(report.examples) == 1


def test_missing_file_is_an_error_not_a_traceback(tmp_path):
    report = validate.validate_file(tmp_path / "nope.jsonl")
    assert "file not found" in validate.format_report(report)


def test_cli_exit_codes(tmp_path):
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    good.write_text(json.dumps({"messages": good_messages()}) + "\n")
    bad.write_text("{bad\n")
    assert validate.main([str(good)]) == 0
    assert validate.main([str(bad)]) == 2


def test_a_line_with_a_thousand_problems_keeps_twenty_and_counts_the_rest():
    calls = [call(name="nope", call_id=f"call_{i}") for i in range(1000)]
    record = {"messages": [{"role": "user", "content": "go"}, {"role": "assistant", "content": None,
                                                                "tool_calls": calls}]}
    errors = errors_for(record)
    assert len(errors) == validate.MAX_PROBLEMS_PER_LINE + 1
    assert errors[-1].message == f"... and {1000 - validate.MAX_PROBLEMS_PER_LINE} more on this line"


def test_a_line_full_of_nan_stops_listing_after_twenty():
    record = {"messages": good_messages(), "scores": [float("nan")] * 10_000}
    errors = errors_for(record)
    assert len(errors) == validate.MAX_PROBLEMS_PER_LINE + 1 and "perhaps more" in errors[-1].message
    assert errors[0].field == "scores[0]" and errors[0].message == "NaN is not a JSON number"


def test_nesting_up_to_the_limit_is_accepted_and_one_level_more_is_not():
    def nested(levels):  # the record is level 1, so `x` adds levels - 1
        return {"messages": good_messages(), "x": json.loads("[" * (levels - 1) + "]" * (levels - 1))}
    assert errors_for(nested(strict_json.MAX_NESTING)) == []
    assert "nested more than 100 levels deep" in errors_for(nested(strict_json.MAX_NESTING + 1))[0].message


def test_a_valid_surrogate_pair_is_accepted():
    assert errors_for(with_message(1, content="\U0001F600 emoji")) == []  # json.dumps writes \ud83d\ude00


def test_each_distinct_tools_list_is_compiled_once():
    tool_schemas.compiled_tool_set.cache_clear()
    tools = validate.load_default_tools()
    lines = [json.dumps({"messages": good_messages(), "tools": tools, "n": i}) for i in range(50)]
    lines.append(json.dumps({"messages": good_messages(), "tools": tools[:3]}))
    report = validate.validate_lines(lines, "d.jsonl", tools)
    assert report.errors == [] and len(report.examples) == 51
    assert tool_schemas.compiled_tool_set.cache_info().misses == 2


def test_a_record_without_tools_is_checked_against_the_default_tools_after_one_with_its_own():
    own_tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    messages = with_message(2, tool_calls=[call("lookup", "{}")])["messages"]
    lines = [json.dumps({"messages": messages, "tools": own_tools}), json.dumps({"messages": messages})]
    report = validate.validate_lines(lines, "data.jsonl")
    assert [str(e) for e in report.errors] == ["data.jsonl:2: messages[2].tool_calls[0].function.name: unknown tool "
                                               "'lookup' (known: bash, edit, glob, grep, list_dir, read, write). Fix: "
                                               "call a tool of the record's \"tools\" (or add it there)"]
