"""Batched scoring: several prompts decoded at once give the one-at-a-time answers; the early stop after a turn's
call blocks keeps every verdict."""

from pathlib import Path

import pytest

from synthia.data import validate
from synthia.scorecard import batched, generation, judge

TOOLS = validate.load_default_tools()
DATASET = Path(__file__).resolve().parents[1] / "dataset.jsonl"
CAP = 8  # new tokens per prompt: enough to compare outputs, cheap on two cores
CALL = '<tool_call>\n{"name": "read", "arguments": {"file_path": "src/app.py"}}\n</tool_call>'
OTHER_CALL = '<tool_call>\n{"name": "read", "arguments": {"file_path": "src/lib.py"}}\n</tool_call>'


@pytest.fixture(scope="module")
def prompts(context_sensitive):
    """Prompts of different lengths that share the system prompt and tools: the scored turns of a shipped
    conversation (each one's prompt extends the one before) and two one-turn requests."""
    _, tokenizer = context_sensitive
    example = validate.validate_file(DATASET).examples[0]
    tasks, _ = generation.turn_tasks(tokenizer, [example], TOOLS)
    turns = [generation.fit_prompt(tokenizer, t.messages[: t.index], t.tools)[0] for t in tasks]
    system = example.messages[:1]
    requests = [generation.fit_prompt(tokenizer, system + [{"role": "user", "content": text}], TOOLS)[0]
                for text in ("List the files.", "Read src/main.rs and find every async function in it, please.")]
    return turns[:1] + requests[:1] + turns[1:] + requests[1:]


@pytest.fixture(scope="module")
def one_at_a_time(context_sensitive, prompts):
    model, tokenizer = context_sensitive
    return [generation.Generator(model, tokenizer, reuse_cache=False).generate(p, CAP) for p in prompts]


@pytest.mark.parametrize("batch_size", [1, 3])
def test_batched_answers_are_the_one_at_a_time_answers(context_sensitive, prompts, one_at_a_time, batch_size):
    generator = batched.BatchedGenerator(*context_sensitive, batch_size=batch_size, stop_after_calls=False)
    answers = generator.generate_many(prompts, CAP)
    assert len({len(p) for p in prompts}) == len(prompts) >= 4
    assert len({tuple(a.tokens) for a in one_at_a_time}) == len(prompts), "the model must answer each differently"
    assert [a.tokens for a in answers] == [a.tokens for a in one_at_a_time]
    assert [(a.text, a.truncated) for a in answers] == [(a.text, a.truncated) for a in one_at_a_time]


def test_the_shared_start_is_prefilled_once_and_a_later_turn_starts_from_the_turn_before(context_sensitive, prompts,
                                                                                         monkeypatch):
    monkeypatch.setattr(batched, "MIN_PARENT_GAIN", 1)  # these turns are short: let the second wait for the first
    generator = batched.BatchedGenerator(*context_sensitive, batch_size=3, stop_after_calls=False)
    answers = generator.generate_many(prompts, CAP)
    shared = batched.shared_start(prompts)
    assert shared > 100  # the system prompt and tools
    assert [a.prefilled for a in answers[:2]] == [len(p) - shared for p in prompts[:2]]
    second_turn = prompts[2]
    assert answers[2].prefilled == len(second_turn) - generation.common_prefix_length(
        prompts[0] + answers[0].tokens, second_turn)


def test_without_cache_reuse_every_prompt_is_prefilled_whole(context_sensitive, prompts, one_at_a_time):
    generator = batched.BatchedGenerator(*context_sensitive, batch_size=3, reuse_cache=False, stop_after_calls=False)
    answers = generator.generate_many(prompts, CAP)
    assert [a.prefilled for a in answers] == [len(p) for p in prompts]
    assert [a.tokens for a in answers] == [a.tokens for a in one_at_a_time]


def test_a_prompt_seen_before_is_answered_from_memory_and_cut_to_a_smaller_cap(context_sensitive, prompts):
    generator = batched.BatchedGenerator(*context_sensitive, batch_size=2)
    first, repeated = generator.generate_many([prompts[1], prompts[1]], CAP)
    assert not first.remembered and repeated.remembered and repeated.tokens == first.tokens
    again = generator.generate(prompts[1], 3)
    fresh = generation.Generator(*context_sensitive).generate(prompts[1], 3)
    assert again.remembered and (again.tokens, again.text, again.truncated) == (fresh.tokens, fresh.text,
                                                                                fresh.truncated)


def test_scoring_with_the_batched_generator_gives_the_one_at_a_time_records(context_sensitive):
    model, tokenizer = context_sensitive
    examples = validate.validate_file(DATASET).examples[:2]
    runs = [generation.score_conversations(model, tokenizer, examples, TOOLS, max_new_tokens=CAP, progress=False,
                                           generator=generator)
            for generator in (generation.Generator(model, tokenizer), batched.BatchedGenerator(model, tokenizer))]
    assert runs[0]["turns"] == runs[1]["turns"] and len(runs[0]["turns"]) >= 4
    assert runs[1]["settings"]["batch_size"] == batched.DEFAULT_BATCH_SIZE
    assert runs[0]["counts"]["prompt_tokens"] == runs[1]["counts"]["prompt_tokens"]
    assert runs[1]["counts"]["prefilled_tokens"] < runs[1]["counts"]["prompt_tokens"] / 2


# ---------------------------------------------------------------- the early stop


@pytest.mark.parametrize("text", [
    CALL + "\nDone.",
    CALL + "\n" + OTHER_CALL + "\n\nNow I",
    CALL + "<tool_x",  # not the start of a block
])
def test_the_calls_are_over_after_a_closed_block_followed_by_text(text):
    assert batched.calls_are_over(text, judge.HERMES, "<|im_end|>")


@pytest.mark.parametrize("text", [
    "",
    "The tests pass.",  # a text turn
    CALL[:30],  # inside a block
    CALL,  # right after a block
    CALL + "\n \n",
    CALL + "\n<tool_",  # between parallel blocks
    CALL + "\n" + OTHER_CALL[:40],  # inside the second of two blocks
    CALL + "\n<|im_",  # the end-of-turn marker, spelled out
])
def test_the_calls_are_not_over_inside_between_or_right_after_blocks(text):
    assert not batched.calls_are_over(text, judge.HERMES, "<|im_end|>")


def cut_where_calls_are_over(text):
    """`text` cut at the first character where the early stop would end the turn."""
    return next((text[:k] for k in range(len(text) + 1) if batched.calls_are_over(text[:k], judge.HERMES)), text)


def verdict(text, reference_calls):
    parsed = judge.parse_output(text, judge.HERMES, TOOLS)
    return judge.judge(parsed, reference_calls, judge.tool_schemas(TOOLS))


@pytest.mark.parametrize("full", [
    CALL + "\nI will read it now and then tell you what I find.",
    CALL + "\n" + OTHER_CALL + "\nBoth files read. Next I will run the tests.",
    '<tool_call>\n{"name": "read", "arguments": {"path": 5}}\n</tool_call>\nOops, wrong argument.',  # schema problem
    '<tool_call>\n{"name": "nope"}\n</tool_call>\nsome words',  # unknown tool
    "<tool_call>\nnot json\n</tool_call>\nThat was not JSON.",  # a block that does not parse
])
def test_the_early_stop_keeps_every_verdict(full):
    cut = cut_where_calls_are_over(full)
    assert len(cut) < len(full)
    for reference in ([], [{"name": "read", "arguments": {"file_path": "src/app.py"}}]):
        assert verdict(cut, reference) == verdict(full, reference)


def test_a_block_after_text_is_not_waited_for():
    """The limit of the early stop: a turn that goes on with text and then opens another block is cut before it."""
    full = CALL + "\nAnd one more:\n" + OTHER_CALL
    cut = cut_where_calls_are_over(full)
    assert cut == CALL + "\nA"
    assert verdict(cut, []).calls_emitted == 1 and verdict(full, []).calls_emitted == 2


def test_a_prompt_waits_for_an_earlier_one_only_when_that_saves_enough_prefill():
    floor, gain = 10, batched.MIN_PARENT_GAIN
    common = list(range(floor))
    first = common + [500] * (gain + 5) + [1]
    near = common + [500] * (gain - 1) + [2]  # shares too little beyond the floor: starts at once
    far = common + [500] * (gain + 5) + [3]  # shares enough: starts from the first's cache
    assert batched.parents([first, near, far], floor) == [None, None, 0]
