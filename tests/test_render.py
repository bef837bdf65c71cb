"""Rendering with the model's template, and the token-level loss mask."""

import json

import pytest
from mlx_lm.utils import load_tokenizer

from synthia.data import pieces, preview, render, template_check
from synthia.data.validate import load_default_tools, validate_lines
from synthia.train.batches import loss_mask
from tests.sample_data import tool_call

TOOLS = load_default_tools()


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)


def parallel_conversation(weight_of_middle_turn=1):
    return [
        {"role": "system", "content": "You are Synthia."},
        {"role": "user", "content": "Read main.rs and lib.rs, then test."},
        {"role": "assistant", "content": None, "tool_calls": [
            tool_call("a", "read", {"file_path": "src/main.rs"}), tool_call("b", "read", {"file_path": "src/lib.rs"})]},
        {"role": "tool", "tool_call_id": "a", "content": "1\tfn main() {}"},
        {"role": "tool", "tool_call_id": "b", "content": "1\tpub fn f() {}"},
        {"role": "assistant", "content": "Running the tests.", "weight": weight_of_middle_turn,
         "tool_calls": [tool_call("c", "bash", {"command": "cargo test"})]},
        {"role": "tool", "tool_call_id": "c", "content": "exit code 0"},
        {"role": "assistant", "content": "Both files are tiny and the tests pass."},
    ]


EXPECTED_TURNS = [
    '<tool_call>\n{"name": "read", "arguments": {"file_path": "src/main.rs"}}\n</tool_call>\n'
    '<tool_call>\n{"name": "read", "arguments": {"file_path": "src/lib.rs"}}\n</tool_call><|im_end|>',
    'Running the tests.\n<tool_call>\n{"name": "bash", "arguments": {"command": "cargo test"}}\n</tool_call><|im_end|>',
    "Both files are tiny and the tests pass.<|im_end|>",
]


def test_tool_call_arguments_render_as_json_objects_not_strings(tokenizer):
    text = render.render(tokenizer, parallel_conversation(), TOOLS)
    assert '{"name": "read", "arguments": {"file_path": "src/main.rs"}}' in text
    assert '\\"file_path\\"' not in text


def test_template_messages_leaves_the_caller_data_untouched():
    messages = parallel_conversation()
    render.template_messages(messages)
    assert isinstance(messages[2]["tool_calls"][0]["function"]["arguments"], str)
    assert messages[5]["weight"] == 1


def test_trained_tokens_are_exactly_the_assistant_turns(tokenizer):
    encoded = render.encode(tokenizer, parallel_conversation(), TOOLS)
    assert encoded.misaligned == 0
    assert [tokenizer.decode(encoded.tokens[s:e]) for s, e in encoded.spans] == EXPECTED_TURNS
    mask = loss_mask(len(encoded.tokens), encoded.spans)  # as the trainer reads the token file
    untrained = [t for t, m in zip(encoded.tokens, mask) if not m]
    untrained_text = tokenizer.decode(untrained)
    for prompt_part in ("You are Synthia.", "Read main.rs and lib.rs", "<tool_response>\n1\tfn main() {}",
                        "exit code 0", "<|im_start|>assistant\n"):
        assert prompt_part in untrained_text
    assert "# Tools" in untrained_text  # the tool definitions are context
    assert '"arguments": {"command": "cargo test"}' not in untrained_text
    assert encoded.trained_tokens == mask.sum()


def test_mask_covers_the_end_of_turn_token_but_not_the_header(tokenizer):
    encoded = render.encode(tokenizer, parallel_conversation(), TOOLS)
    im_end, im_start = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|im_start|>"])
    mask = loss_mask(len(encoded.tokens), encoded.spans)
    for start, end in encoded.spans:
        assert encoded.tokens[end - 1] == im_end and mask[end - 1] == 1
        header = max(k for k in range(start) if encoded.tokens[k] == im_start)
        assert tokenizer.decode(encoded.tokens[header:start]) == "<|im_start|>assistant\n"
        assert sum(mask[header:start]) == 0


def test_weight_zero_turn_stays_in_context_but_carries_no_loss(tokenizer):
    encoded = render.encode(tokenizer, parallel_conversation(weight_of_middle_turn=0), TOOLS)
    assert [tokenizer.decode(encoded.tokens[s:e]) for s, e in encoded.spans] == [EXPECTED_TURNS[0], EXPECTED_TURNS[2]]
    assert (encoded.trained_turns, encoded.untrained_turns) == (2, 1)
    (start, end), = encoded.untrained_spans
    assert tokenizer.decode(encoded.tokens[start:end]) == EXPECTED_TURNS[1]
    assert loss_mask(len(encoded.tokens), encoded.spans)[start:end].sum() == 0


def test_segments_concatenate_to_the_rendered_text(tokenizer):
    messages = parallel_conversation(weight_of_middle_turn=0)
    text, ranges = render.assistant_char_ranges(tokenizer, messages, TOOLS)
    segments = preview.trained_segments(text, ranges)
    assert "".join(s.text for s in segments) == text == render.render(tokenizer, messages, TOOLS)
    assert [s.text for s in segments if s.trained] == [EXPECTED_TURNS[0], EXPECTED_TURNS[2]]


def test_fit_to_length_drops_whole_turns_from_the_end(tokenizer):
    encoded = render.encode(tokenizer, parallel_conversation(), TOOLS)
    limit = encoded.spans[1][1] + 3  # room for two turns, not the third
    fitted = render.fit_to_length(encoded, limit)
    assert fitted.spans == encoded.spans[:2] and fitted.dropped_turns == 1
    assert len(fitted.tokens) == encoded.spans[1][1] <= limit
    assert fitted.tokens == encoded.tokens[: encoded.spans[1][1]]


def test_fit_to_length_gives_up_when_no_trained_turn_fits(tokenizer):
    encoded = render.encode(tokenizer, parallel_conversation(), TOOLS)
    assert render.fit_to_length(encoded, encoded.spans[0][1] - 1) is None
    assert render.fit_to_length(encoded, len(encoded.tokens)) is encoded


def test_probe_finds_nothing_wrong_with_a_tool_calling_template(tokenizer):
    assert template_check.template_problems(tokenizer) == []


def test_probe_names_what_a_template_without_tools_drops(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    tokenizer._tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content or '' }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    problems = template_check.template_problems(tokenizer)
    assert "the chat template drops tool definitions" in problems
    assert "the chat template drops tool-call arguments" in problems


def test_probe_catches_double_encoded_arguments(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    template = tokenizer._tokenizer.chat_template.replace("tool_call.arguments | tojson",
                                                          "(tool_call.arguments | tojson) | tojson")
    assert template != tokenizer._tokenizer.chat_template
    tokenizer._tokenizer.chat_template = template
    assert any("quoted JSON string" in p for p in template_check.template_problems(tokenizer))


def test_probe_conversation_is_valid_data():
    messages, tools = template_check.probe_conversation()
    report = validate_lines([json.dumps({"messages": messages, "tools": tools})], "probe.jsonl")
    assert report.errors == [] and len(report.examples) == 1
    assert json.loads(messages[1]["tool_calls"][0]["function"]["arguments"]) == {"query": template_check.PROBE_ARGUMENT}


def test_a_conversation_opening_with_the_assistant_trains_no_system_text(tokenizer):
    messages = [{"role": "assistant", "content": "Hello, what shall we build?"},
                {"role": "user", "content": "A parser."},
                {"role": "assistant", "content": "Starting with the grammar."}]
    encoded = render.encode(tokenizer, messages, TOOLS)
    trained = [tokenizer.decode(encoded.tokens[s:e]) for s, e in encoded.spans]
    assert trained == ["Hello, what shall we build?<|im_end|>", "Starting with the grammar.<|im_end|>"]
    text = render.render(tokenizer, messages, TOOLS)
    assert text.startswith("<|im_start|>system\n")  # the template's default system prompt: context only


def test_probe_rejects_a_template_that_renders_arguments_as_a_python_dict(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    template = tokenizer._tokenizer.chat_template.replace("tool_call.arguments | tojson", "tool_call.arguments")
    assert template != tokenizer._tokenizer.chat_template
    tokenizer._tokenizer.chat_template = template
    assert "{'query': 'probe-argument-7f3a'}" in render.render(tokenizer, *template_check.probe_conversation())
    assert any("not JSON (such as a Python dict" in p for p in template_check.template_problems(tokenizer))


def test_tokenizing_piece_by_piece_equals_one_whole_text_call(tokenizer):
    """Special tokens in odd places (glued to words, doubled, at both ends), repeated pieces served from memory,
    and a whole list at once."""
    hf = tokenizer._tokenizer
    assert pieces.piece_tokenizer(hf) is not None  # the piece path is the one under test
    texts = ["<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nhi<|im_end|><|im_end|>x",
             "word<|im_start|>assistant\n<tool_call>\n{\"name\": \"read\"}\n</tool_call><|im_end|>",
             "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nhi again<|im_end|>\n", "", "plain"]
    for text, tokenized in zip(texts * 3, [pieces.tokenize(tokenizer, t) for t in texts * 2]
                               + pieces.tokenize_many(tokenizer, texts)):  # the second round comes from memory
        whole = hf(text, add_special_tokens=False, return_offsets_mapping=True)
        assert tokenized.ids == list(whole["input_ids"])
        assert tokenized.offsets == [tuple(o) for o in whole["offset_mapping"]]
