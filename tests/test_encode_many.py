"""A whole dataset at once (encode.encode_many): the same token ids and loss spans as one conversation at a time
(render.encode, prefix renders), whichever shortcut it takes, in one process or in forked ones."""

import dataclasses
import json
from pathlib import Path

import pytest
from mlx_lm.utils import load_tokenizer

from synthia.data import encode, pieces, render
from synthia.pipeline import inputs
from synthia.pipeline.run import PipelineError
from synthia.platform import forked
from synthia.data.validate import load_default_tools, validate_file
from tests.sample_data import tool_call

ROOT = Path(__file__).resolve().parents[1]
TOOLS = load_default_tools()


@pytest.fixture(scope="module")
def shipped():
    report = validate_file(ROOT / "dataset.jsonl")
    return [(ex.messages, ex.record.get("tools", TOOLS)) for ex in report.examples]


def one_at_a_time(tokenizer, conversations):
    out = []
    for messages, tools in conversations:
        try:
            out.append(dataclasses.astuple(render.encode(tokenizer, messages, tools)))
        except Exception as e:
            out.append(("error", str(e)))
    return out


def all_at_once(tokenizer, conversations):
    return [("error", str(r)) if isinstance(r, Exception) else dataclasses.astuple(r)
            for r in encode.encode_many(tokenizer, conversations)]


def test_the_shipped_dataset_encodes_as_one_conversation_at_a_time(qwen, shipped):
    shortcuts = encode.checked_shortcuts(qwen, shipped)
    assert shortcuts.prompt == "<|im_start|>assistant\n" and shortcuts.template is not None  # both shortcuts taken
    assert sum(encode.located_turns(render.render(qwen, m, t), m, shortcuts.prompt, shortcuts.marker) is not None
               for m, t in shipped) == len(shipped)
    assert all_at_once(qwen, shipped) == one_at_a_time(qwen, shipped)


def test_forked_processes_give_the_same_encodings_in_the_same_order(qwen, shipped, two_processes):
    assert forked.processes(len(shipped)) == 2
    assert all_at_once(qwen, shipped) == one_at_a_time(qwen, shipped)


def conversation(user_text="Read main.rs.", weight=1, opening_assistant=False):
    messages = [{"role": "system", "content": "You are Synthia."}, {"role": "user", "content": user_text},
                {"role": "assistant", "content": None, "weight": weight,
                 "tool_calls": [tool_call("a", "read", {"file_path": "src/main.rs"})]},
                {"role": "tool", "tool_call_id": "a", "content": "1\tfn main() {}"},
                {"role": "assistant", "content": "It is empty."}]
    if opening_assistant:
        messages = [{"role": "assistant", "content": "Hello, what shall we build?"}] + messages[1:]
    return messages, TOOLS


def test_conversations_the_shortcut_cannot_read_take_the_prefix_renders(qwen):
    """A user quoting the generation prompt (one prompt too many in the text), a weight-0 turn, a conversation
    opening with the assistant: each encodes exactly as one conversation at a time would."""
    quoting = conversation("Why does my log show <|im_start|>assistant\n twice?")
    shortcuts = encode.checked_shortcuts(qwen, [quoting])
    text = render.render(qwen, *quoting)
    assert encode.located_turns(text, quoting[0], shortcuts.prompt, shortcuts.marker) is None
    cases = [quoting, conversation(weight=0), conversation(opening_assistant=True), conversation()] * 3
    assert all_at_once(qwen, cases) == one_at_a_time(qwen, cases)
    weightless = encode.encode_many(qwen, [conversation(weight=0)])[0]
    assert (weightless.trained_turns, weightless.untrained_turns) == (1, 1)


REWRITING_TEMPLATE = (  # marks the last message: every earlier turn renders differently once more follows
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}{% if loop.last %} (latest){% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_a_template_that_rewrites_earlier_turns_is_still_refused(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    tokenizer._tokenizer.chat_template = REWRITING_TEMPLATE
    cases = [conversation(f"question {k}") for k in range(5)]
    assert encode.checked_shortcuts(tokenizer, cases) == encode.Shortcuts()
    results = encode.encode_many(tokenizer, cases)
    assert all(isinstance(r, render.TemplateError) and "as a continuation" in str(r) for r in results)


def test_a_direct_render_that_differs_from_the_tokenizers_is_not_used(qwen, shipped, monkeypatch):
    template, arguments = encode.compiled_template(qwen)

    class Drifting:
        def render(self, **kwargs):
            return template.render(**kwargs).replace("You are", "You're")

    monkeypatch.setattr(encode, "compiled_template", lambda _tokenizer: (Drifting(), arguments))
    shortcuts = encode.checked_shortcuts(qwen, shipped[:40])
    assert shortcuts.template is None and shortcuts.prompt is not None
    assert all_at_once(qwen, shipped[:40]) == one_at_a_time(qwen, shipped[:40])


RAISING_TEMPLATE = (
    "{% for m in messages %}{% if m.content and 'boom' in m.content %}{{ raise_exception('boom found') }}{% endif %}"
    "<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.mark.parametrize("processes", [1, 2])
def test_a_template_error_is_reported_for_its_conversation_only(tiny_model_dir, monkeypatch, processes):
    tokenizer = load_tokenizer(tiny_model_dir)
    tokenizer._tokenizer.chat_template = RAISING_TEMPLATE
    monkeypatch.setattr(forked, "processes", lambda _count: processes)
    cases = [conversation(f"question {k}") for k in range(70)]
    cases[33] = conversation("boom")  # not among the sample the shortcuts are checked on (every 2nd)
    assert encode.checked_shortcuts(tokenizer, cases).prompt is not None
    results = all_at_once(tokenizer, cases)
    assert [k for k, r in enumerate(results) if r[0] == "error"] == [33] and "boom found" in results[33][1]
    assert results == one_at_a_time(tokenizer, cases)


def test_token_positions_match_a_whole_offsets_list_at_every_character(qwen, shipped):
    import bisect

    text = render.render(qwen, *shipped[0])
    tokenized = pieces.tokenize(qwen, text)
    offsets = tokenized.offsets
    starts = [s for s, _ in offsets]
    whole = qwen._tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    assert tokenized.ids == whole["input_ids"] and offsets == [tuple(o) for o in whole["offset_mapping"]]
    for position in range(0, len(text) + 2):
        assert tokenized.tokens_before(position) == bisect.bisect_left(starts, position), position
    edges = [(s, e) for s, e in zip(starts, starts[1:])][:200] + [(3, 9), (0, len(text))]
    for start, end in edges:
        first, last = bisect.bisect_left(starts, start), bisect.bisect_left(starts, end)
        aligned = first < len(offsets) and offsets[first][0] == start and (
            last == len(offsets) or offsets[last][0] == end) and offsets[last - 1][1] == end
        assert tokenized.token_range(start, end) == (first, last, aligned)


def test_the_pipeline_reads_a_template_error_with_its_line(tiny_model_dir, tmp_path):
    tokenizer = load_tokenizer(tiny_model_dir)
    tokenizer._tokenizer.chat_template = REWRITING_TEMPLATE
    dataset = tmp_path / "data.jsonl"
    dataset.write_text("".join(json.dumps({"messages": conversation(f"q{k}")[0]}) + "\n" for k in range(3)))
    examples = validate_file(dataset).examples
    with pytest.raises(PipelineError, match=r"line 1: the chat template failed: .*as a continuation"):
        inputs.encode_examples(tokenizer, examples, TOOLS)


SANDBOX_PROBES = [
    "{% set ns = namespace(n=0) %}{% for m in messages %}{{ loop.index0 }}{{ loop.last }}{{ m.role }}"
    "{{ m.items is defined }}{{ m.get('role') }}{{ ns.n }}{{ m.missing is defined }}{% set ns.n = ns.n + 1 %}"
    "{% endfor %}{{ ns.n }}{{ ns.missing is defined }}",
    "{% for m in messages %}{{ m.items() | list | length }}{{ m['items'] if 'items' in m }}{% endfor %}",
    "{{ messages.__class__ }}", "{% set ns = namespace(a=1) %}{{ ns._Namespace__attrs }}",
    "{% for m in messages %}{{ loop.__class__ }}{% endfor %}", "{{ messages[0].role.__class__.__mro__ }}",
    "{% for m in messages %}{{ m.pop('role') }}{% endfor %}", "{{ messages.append(1) }}",
]


def outcome(template, messages):
    try:
        return template.render(messages=messages)
    except Exception as e:
        return type(e).__name__, str(e)


@pytest.mark.parametrize("source", SANDBOX_PROBES)
def test_the_faster_sandbox_renders_and_refuses_as_transformers_sandbox_does(source):
    from transformers.utils.chat_template_utils import _compile_jinja_template

    plain = _compile_jinja_template(source)
    fast = encode.with_dict_keys_first(plain, source)
    assert type(fast.environment) is encode.DictKeysFirstSandbox
    messages = [{"role": "user", "items": "mine", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert outcome(fast, [dict(m) for m in messages]) == outcome(plain, [dict(m) for m in messages])
