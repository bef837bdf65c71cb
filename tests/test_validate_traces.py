"""Traces recorded from a hosted API, and the soft problems that train a model wrong without a word.

The validator accepts what the OpenAI chat format allows (content as text parts, a call id reused once answered,
the legacy function_call and function messages), hands the pipeline the canonical form (which renders and encodes
as the same conversation written in the current format would), refuses what cannot be trained, and warns with the
line about what is allowed but suspect."""

import copy
import json

import pytest
from mlx_lm.utils import load_tokenizer

import train_mlx
from synthia.data import encode, tool_schemas, validate
from tests.sample_data import records as sample_records
from tests.sample_data import small_run_config
from tests.test_validate import call, good_messages

TOOLS = validate.load_default_tools()
LEGACY_NOTE = ("converted: each function_call to a tool call with a made-up id (function_call_N for messages[N]), "
               "each function message to the tool message answering it. Fix: nothing needed; write tool_calls and "
               "tool messages (the current OpenAI format) to silence this")


def report_of(*records):
    return validate.validate_lines([json.dumps(r) for r in records], "d.jsonl", TOOLS)


def problems(report):
    return [str(p) for p in report.errors + report.warnings]


def parts(*texts):
    return [{"type": "text", "text": t} for t in texts]


def legacy_messages(answered_by="read"):
    return [{"role": "user", "content": "What is in a.py?"},
            {"role": "assistant", "content": None,
             "function_call": {"name": "read", "arguments": '{"file_path": "a.py"}'}},
            {"role": "function", "name": answered_by, "content": "1\tx = 1"},
            {"role": "assistant", "content": "It sets x to 1."}]


def converted_legacy_messages():
    return [{"role": "user", "content": "What is in a.py?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "function_call_1", "type": "function",
                 "function": {"name": "read", "arguments": '{"file_path": "a.py"}'}}]},
            {"role": "tool", "tool_call_id": "function_call_1", "content": "1\tx = 1"},
            {"role": "assistant", "content": "It sets x to 1."}]


# -- content as a list of parts --------------------------------------------------------------------------------


def test_text_parts_are_joined_with_no_separator_in_every_role():
    messages = good_messages()
    messages[0]["content"] = parts("You are ", "Synthia.")
    messages[1]["content"] = parts("What is in src/main.rs?")
    messages[2]["content"] = parts()  # beside the tool calls
    messages[3]["content"] = parts("1\t", "fn main() {}")
    messages[4]["content"] = parts("An empty", " main function.")
    report = report_of({"messages": messages})
    assert problems(report) == []
    expected = good_messages()
    expected[2]["content"] = ""
    assert report.examples[0].messages == expected
    assert json.loads(report.examples[0].json_text) == {"messages": expected}  # what the stage data files hold


@pytest.mark.parametrize("index, part, message", [
    (1, {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
     "messages[1].content[1]: 'image_url' parts cannot be trained: the model is trained on text only. Fix: remove "
     "the part, or put what it showed into a text part"),
    (3, {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
     "messages[3].content[1]: 'input_audio' parts cannot be trained: the model is trained on text only. Fix: remove "
     "the part, or put what it showed into a text part"),
    (4, {"type": "refusal", "refusal": "I cannot."},
     "messages[4].content[1]: 'refusal' parts cannot be trained: the model is trained on text only. Fix: remove the "
     "part, or put what it showed into a text part"),
    (1, {"type": "text"}, 'messages[1].content[1].text: is missing. Fix: give each part as {"type": "text", "text": '
                          '"..."}, or the whole content as one string'),
    (1, {"text": "b"}, 'messages[1].content[1].type: is missing. Fix: give each part as {"type": "text", "text": '
                       '"..."}, or the whole content as one string'),
    (1, "b", 'messages[1].content[1]: must be a text part {"type": "text", "text": ...}, got string \'b\'. Fix: give '
             'each part as {"type": "text", "text": "..."}, or the whole content as one string'),
])
def test_a_part_that_is_not_text_is_refused_naming_the_part(index, part, message):
    messages = good_messages()
    messages[index]["content"] = parts("a") + [part]
    assert problems(report_of({"messages": messages})) == [f"d.jsonl:1: {message}"]


# -- the legacy function_call format ---------------------------------------------------------------------------


def test_legacy_function_calls_are_converted_with_one_warning_for_the_whole_file():
    modern = {"messages": good_messages()}
    report = report_of({"messages": legacy_messages()}, modern, {"messages": legacy_messages(), "id": 3})
    assert problems(report) == [f"d.jsonl: 2 line(s) use the legacy function_call/function message format "
                                f"(line(s) 1, 3); {LEGACY_NOTE}"]
    assert report.warnings[0].line == 0 and report.warnings[0].kind == validate.LEGACY_FORMAT
    assert [ex.messages for ex in report.examples] == [converted_legacy_messages(), good_messages(),
                                                       converted_legacy_messages()]
    assert not validate.is_ok(report, strict=True)


def test_a_legacy_call_is_checked_like_a_tool_call_at_its_own_field():
    messages = legacy_messages()
    messages[1]["function_call"] = {"name": "read", "arguments": "{oops"}
    assert problems(report_of({"messages": messages})) == [
        "d.jsonl:1: messages[1].function_call.arguments: not valid JSON (Expecting property name enclosed in double "
        "quotes: column 2): '{oops'. Fix: encode the arguments object as a JSON string: \"arguments\": "
        "json.dumps({\"param\": value})"]


def test_a_function_message_must_name_the_function_it_answers():
    assert problems(report_of({"messages": legacy_messages(answered_by="bash")})) == [
        "d.jsonl:1: messages[2].name: 'bash' is not the function: it answers messages[1].function_call, which calls "
        "'read'. Fix: write \"name\": \"read\""]
    messages = legacy_messages()
    del messages[2]["name"]
    assert problems(report_of({"messages": messages})) == [
        "d.jsonl:1: messages[2].name: is missing: it answers messages[1].function_call, which calls 'read'. Fix: "
        "write \"name\": \"read\""]


def test_a_function_message_answering_a_tool_call_is_told_to_become_a_tool_message():
    messages = good_messages()
    messages[3] = {"role": "function", "name": "read", "content": "1\tfn main() {}"}
    assert problems(report_of({"messages": messages})) == [
        "d.jsonl:1: messages[3]: this function message (legacy format) answers no function_call: messages[2] made "
        "tool calls. Fix: write it as the tool message {\"role\": \"tool\", \"tool_call_id\": \"call_1\", "
        "\"content\": ...}"]


@pytest.mark.parametrize("function_call, fix", [
    ({"name": "read", "arguments": '{"file_path": "src/main.rs"}'},
     "delete function_call: tool_calls[0] makes the same call (answered by a tool message)"),
    ({"name": "bash", "arguments": '{"command": "ls"}'},
     'move it into tool_calls as {"id": "call_2", "type": "function", "function": {"name": "bash", "arguments": '
     '"{\\"command\\": \\"ls\\"}"}}, answered by a tool message with "tool_call_id": "call_2", and delete '
     "function_call"),
    ("read src/main.rs", "delete function_call: tool_calls holds the turn's calls"),
])
def test_a_function_call_beside_tool_calls_is_an_error_with_the_exact_fix(function_call, fix):
    messages = good_messages()
    messages[2]["function_call"] = function_call
    assert problems(report_of({"messages": messages})) == [
        f"d.jsonl:1: messages[2].function_call: is given beside tool_calls, which replace it: the call it holds would "
        f"be ignored. Fix: {fix}"]


def test_a_null_function_call_is_no_legacy_call():
    messages = good_messages()
    messages[4]["function_call"] = None  # what an SDK's model_dump() writes
    report = report_of({"messages": messages})
    assert problems(report) == [] and report.examples[0].messages == good_messages()


# -- soft problems: warnings with the line ----------------------------------------------------------------------


def test_an_empty_tool_calls_list_is_a_warning_and_is_dropped():
    messages = good_messages()
    messages[4]["tool_calls"] = []
    report = report_of({"messages": messages})
    assert problems(report) == ["d.jsonl:1: messages[4].tool_calls: is an empty list: the turn calls no tool (the "
                                "key is dropped). Fix: leave tool_calls out of a turn that calls no tool"]
    assert report.examples[0].messages == good_messages()


def tools_with_read_parameters(**schema):
    return [{"type": "function", "function": {"name": "read", "parameters": {"type": "object", **schema}}}]


def with_arguments(arguments, tools=None):
    messages = good_messages()
    messages[2]["tool_calls"] = [call(arguments=arguments)]
    return {"messages": messages, **({"tools": tools} if tools else {})}


def test_an_argument_the_schema_does_not_declare_is_a_warning_when_additional_properties_is_unset():
    tools = tools_with_read_parameters(properties={"file_path": {"type": "string"}, "limit": {"type": "integer"}})
    report = report_of(with_arguments('{"file_path": "a.py", "verbose": true}', tools))
    assert problems(report) == ["d.jsonl:1: messages[2].tool_calls[0].function.arguments: 'verbose' is not a "
                                "parameter of tool 'read' (its parameters: file_path, limit). Fix: remove the "
                                "argument, or declare it in the tool's parameters"]
    assert report.warnings[0].kind == tool_schemas.UNDECLARED_ARGUMENT


def test_an_undeclared_argument_under_additional_properties_false_stays_a_schema_mismatch():
    report = report_of(with_arguments('{"file_path": "a.py", "verbose": true}'))  # the default tools say false
    assert problems(report) == ["d.jsonl:1: messages[2].tool_calls[0].function.arguments: Additional properties are "
                                "not allowed ('verbose' was unexpected) (tool 'read'). Fix: make the arguments match "
                                "the tool's parameters schema"]
    assert report.warnings[0].kind == tool_schemas.SCHEMA_MISMATCH


@pytest.mark.parametrize("schema", [{}, {"properties": {"file_path": {}}, "additionalProperties": True},
                                    {"properties": {"file_path": {}}, "patternProperties": {"^v": {}}}])
def test_a_schema_that_admits_other_arguments_gets_no_undeclared_argument_warning(schema):
    assert problems(report_of(with_arguments('{"file_path": "a.py", "verbose": true}',
                                             tools_with_read_parameters(**schema)))) == []


def test_a_key_written_twice_in_an_arguments_string_is_a_warning():
    report = report_of(with_arguments('{"file_path": "a.py", "file_path": "b.py"}'))
    assert problems(report) == ["d.jsonl:1: messages[2].tool_calls[0].function.arguments: key 'file_path' appears "
                                "more than once in one object; json.loads keeps only the last value. Fix: write "
                                "each key once"]
    nested = report_of(with_arguments('{"file_path": "a.py", "o": {"k": 1, "k": 2}}', tools_with_read_parameters()))
    assert [p.message for p in nested.warnings] == ["key 'k' appears more than once in one object; json.loads keeps "
                                                    "only the last value"]


@pytest.mark.parametrize("content", ["", " \n", parts(" ", "")])
def test_an_empty_final_assistant_turn_is_a_warning(content):
    messages = good_messages()
    messages[4]["content"] = content
    assert problems(report_of({"messages": messages})) == [
        "d.jsonl:1: messages[4].content: the final assistant turn is empty: it trains the model to answer with "
        "nothing. Fix: write the reply the turn should give, or give it \"weight\": 0"]


def test_an_empty_final_turn_that_is_not_trained_or_calls_tools_is_no_warning():
    untrained = good_messages()
    untrained[4] = {"role": "assistant", "content": "", "weight": 0}
    untrained[2]["weight"] = 1
    calling = good_messages()[:3]
    calling[2]["content"] = ""
    assert problems(report_of({"messages": untrained}, {"messages": calling})) == []


# -- the canonical form renders and encodes; errors stop the CLI -------------------------------------------------


def as_trace(record):
    """The same conversation as a hosted API records it: text parts everywhere, the single-call turn as a legacy
    function_call answered by a function message, and a later call reusing the answered id call_1."""
    trace = copy.deepcopy(record)
    messages = trace["messages"]
    for message in messages:
        if isinstance(message["content"], str):
            half = len(message["content"]) // 2
            message["content"] = parts(message["content"][:half], message["content"][half:])
    legacy = messages[5]["tool_calls"].pop()["function"]
    del messages[5]["tool_calls"]
    messages[5]["function_call"] = legacy
    messages[6] = {"role": "function", "name": legacy["name"], "content": messages[6]["content"]}
    for message in messages[7:9]:
        message.update({"tool_call_id": "call_1"} if message["role"] == "tool" else {})
        for tool_call in message.get("tool_calls", []):
            tool_call["id"] = "call_1"
    return trace


def with_a_reread(record):
    """A third tool turn, reading again (call_4: the trace reuses call_1)."""
    record = copy.deepcopy(record)
    path = json.loads(record["messages"][2]["tool_calls"][0]["function"]["arguments"])["file_path"]
    record["messages"][7:7] = [
        {"role": "assistant", "content": None, "tool_calls": [call(arguments=json.dumps({"file_path": path}),
                                                                   call_id="call_4")]},
        {"role": "tool", "tool_call_id": "call_4", "content": "1\t// unchanged"}]
    return record


def test_hosted_api_traces_encode_exactly_as_the_same_conversations_in_the_current_format(tiny_model_dir):
    current = [with_a_reread(r) for r in sample_records(per_category=2, categories=["tool_use", "debugging"])]
    trace_report, current_report = report_of(*map(as_trace, current)), report_of(*current)
    assert current_report.warnings == [] and [w.kind for w in trace_report.warnings] == [validate.LEGACY_FORMAT]
    assert trace_report.errors == [] and len(trace_report.examples) == len(current) == 4
    tokenizer = load_tokenizer(tiny_model_dir)
    encoded_traces, encoded_current = (
        encode.encode_many(tokenizer, [(ex.messages, TOOLS) for ex in report.examples])
        for report in (trace_report, current_report))
    for trace, same in zip(encoded_traces, encoded_current):
        assert (trace.tokens, trace.spans) == (same.tokens, same.spans) and trace.trained_turns == 4


def dry_run(tmp_path, tiny_model_dir, dataset):
    (tmp_path / "c.yaml").write_text(small_run_config())
    return train_mlx.main(["--dry-run", "--stage", "1", "--base-model", str(tiny_model_dir), "--dataset",
                           str(dataset), "--config", str(tmp_path / "c.yaml"), "--output-dir",
                           str(tmp_path / "models")])


def test_a_dataset_of_hosted_api_traces_prepares_canonical_stage_data(tmp_path, tiny_model_dir, capsys):
    dataset = tmp_path / "traces.jsonl"
    traces = [as_trace(with_a_reread(r)) for r in sample_records(per_category=12, categories=["tool_use"])]
    dataset.write_text("".join(json.dumps(r) + "\n" for r in traces))
    assert dry_run(tmp_path, tiny_model_dir, dataset) == 0
    assert "1 x legacy function_call/function format (converted)" in capsys.readouterr().out
    written = [json.loads(line) for split in ("train", "valid", "test")
               for line in (tmp_path / "models" / "stage1" / "data" / f"{split}.jsonl").read_text().splitlines()]
    assert len(written) == 12
    for record in written:
        assert all(m["role"] in validate.ROLES and "function_call" not in m for m in record["messages"])
        assert all(isinstance(m["content"], str) or m["tool_calls"] for m in record["messages"])


def test_a_part_that_cannot_be_trained_stops_the_run_with_exit_status_2(tmp_path, tiny_model_dir, capsys):
    messages = good_messages()
    messages[1]["content"] = parts("What does this show?") + [{"type": "image_url", "image_url": {"url": "x.png"}}]
    dataset = tmp_path / "images.jsonl"
    dataset.write_text(json.dumps({"messages": good_messages()}) + "\n" + json.dumps({"messages": messages}) + "\n")
    assert dry_run(tmp_path, tiny_model_dir, dataset) == 2
    assert capsys.readouterr().err == (
        f"error: 1 error(s) in {dataset}:\n  {dataset}:2: messages[1].content[1]: 'image_url' parts cannot be "
        "trained: the model is trained on text only. Fix: remove the part, or put what it showed into a text part\n")


def test_the_legacy_format_under_strict_is_an_error_exit_status_2(tmp_path, capsys):
    dataset = tmp_path / "legacy.jsonl"
    dataset.write_text(json.dumps({"messages": legacy_messages()}) + "\n")
    assert validate.main([str(dataset)]) == 0
    assert validate.main([str(dataset), "--strict"]) == 2
    assert f"{dataset}: 1 line(s) use the legacy function_call/function message format" in capsys.readouterr().out
