"""Generation over held-out conversations: KV-cache reuse, prompt cuts, token caps, counts and eval.json."""

import io
import json
from pathlib import Path

import pytest
from mlx_lm import load

from synthia.data import validate
from synthia.scorecard import generation
from synthia.data.validate import load_default_tools
from tests.sample_data import conversation

TOOLS = load_default_tools()
DATASET = Path(__file__).resolve().parents[1] / "dataset.jsonl"
SMALL_CAP = 8  # new tokens per turn: enough to compare outputs, cheap on two cores


def examples_of(records):
    return [validate.Example(line=k, record=r, fingerprint=str(k)) for k, r in enumerate(records, start=1)]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load(tiny_model_dir)


@pytest.fixture(scope="module")
def long_conversation():
    """The shipped dataset's conversation with the most scored assistant turns among its first 40 lines."""
    report = validate.validate_file(DATASET)
    return max(report.examples[:40], key=lambda e: sum(m["role"] == "assistant" for m in e.messages))


def test_reusing_the_kv_cache_gives_the_same_outputs_as_a_fresh_prefill(context_sensitive, long_conversation):
    model, tokenizer = context_sensitive
    runs = {reuse: generation.score_conversations(model, tokenizer, [long_conversation], TOOLS, progress=False,
                                               max_new_tokens=SMALL_CAP, reuse_cache=reuse)
            for reuse in (True, False)}
    outputs = {reuse: [t["output"] for t in run["turns"]] for reuse, run in runs.items()}
    assert len(outputs[True]) >= 5
    assert len(set(outputs[True])) == len(outputs[True]), "the model must answer differently in every context"
    assert outputs[True] == outputs[False]
    reused, fresh = runs[True]["counts"], runs[False]["counts"]
    assert fresh["prefilled_tokens"] == fresh["prompt_tokens"]
    assert reused["prefilled_tokens"] < fresh["prompt_tokens"] / 2
    assert runs[True]["settings"]["reuse_cache"] is True and runs[False]["settings"]["reuse_cache"] is False


def test_the_cache_is_trimmed_to_the_prefix_shared_with_the_previous_prompt_and_generation(context_sensitive):
    model, tokenizer = context_sensitive
    first = generation.encode(tokenizer, "<|im_start|>user\nRead src/main.rs please.<|im_end|>\n<|im_start|>assistant\n")
    second = first[:-6] + generation.encode(tokenizer, "lib.rs instead.<|im_end|>\n<|im_start|>assistant\n")
    reusing = generation.Generator(model, tokenizer, reuse_cache=True)
    reusing.generate(first, SMALL_CAP)
    again = reusing.generate(second, SMALL_CAP)
    assert again.prefilled == len(second) - generation.common_prefix_length(first, second)
    assert again.tokens == generation.Generator(model, tokenizer, reuse_cache=False).generate(second, SMALL_CAP).tokens


def test_the_same_prompt_twice_prefills_one_token_and_repeats_itself(context_sensitive):
    model, tokenizer = context_sensitive
    prompt = generation.encode(tokenizer, "<|im_start|>user\nList the files.<|im_end|>\n<|im_start|>assistant\n")
    generator = generation.Generator(model, tokenizer)
    first = generator.generate(prompt, SMALL_CAP)
    generator.answers.clear()  # forget the answer: the cache alone must give it again
    second = generator.generate(prompt, SMALL_CAP)
    assert second.prefilled == 1 and second.tokens == first.tokens and not second.remembered


def test_a_prompt_answered_before_is_not_generated_again_and_is_cut_to_a_smaller_cap(context_sensitive):
    model, tokenizer = context_sensitive
    prompt = generation.encode(tokenizer, "<|im_start|>user\nRead src/lib.rs.<|im_end|>\n<|im_start|>assistant\n")
    generator = generation.Generator(model, tokenizer)
    first = generator.generate(prompt, 8)
    again = generator.generate(prompt, 8)
    assert again.remembered and again.prefilled == 0 and again.tokens == first.tokens and again.text == first.text
    shorter = generator.generate(prompt, 3)
    fresh = generation.Generator(model, tokenizer).generate(prompt, 3)
    assert shorter.remembered and (shorter.tokens, shorter.text, shorter.truncated) == \
        (fresh.tokens, fresh.text, fresh.truncated)
    if first.truncated:  # cut at 8 tokens: a cap of 12 needs a real generation
        longer = generator.generate(prompt, 12)
        assert not longer.remembered and longer.tokens == generation.Generator(model, tokenizer).generate(prompt, 12).tokens


def test_splits_holding_the_same_conversations_share_one_generator_and_score_alike(context_sensitive,
                                                                                   long_conversation):
    model, tokenizer = context_sensitive
    generator = generation.Generator(model, tokenizer)
    runs = [generation.score_conversations(model, tokenizer, [long_conversation], TOOLS, progress=False,
                                        max_new_tokens=SMALL_CAP, generator=generator) for _ in range(2)]
    assert runs[0]["counts"]["remembered_turns"] == 0
    assert runs[1]["counts"]["remembered_turns"] == runs[1]["counts"]["turns_scored"] >= 5
    assert runs[1]["counts"]["generated_tokens"] == 0 and runs[1]["counts"]["prefilled_tokens"] == 0
    assert runs[0]["turns"] == runs[1]["turns"]


def test_every_weight_1_assistant_turn_is_scored_and_weight_0_turns_are_context(tiny):
    record = conversation(3, "tdd")
    record["messages"][5]["weight"] = 0
    result = generation.score_conversations(*tiny, examples_of([record]), TOOLS, max_new_tokens=4, progress=False)
    assert [(t["line"], t["message"]) for t in result["turns"]] == [(1, 2), (1, 7)]
    assert result["counts"]["context_only_turns"] == 1
    assert result["turns"][1]["prompt_tokens"] > result["turns"][0]["prompt_tokens"]


def test_each_turn_record_carries_its_reference_as_the_template_renders_it(tiny):
    result = generation.score_conversations(*tiny, examples_of([conversation(1, "tdd")]), TOOLS, max_new_tokens=4,
                                         progress=False)
    first, _, last = result["turns"]
    assert first["reference"] == ('<tool_call>\n{"name": "read", "arguments": {"file_path": "app/server.py"}}\n'
                                  '</tool_call>\n<tool_call>\n{"name": "read", "arguments": {"file_path": '
                                  '"lib/cache.ts"}}\n</tool_call>')
    assert (first["calls_expected"], last["calls_expected"]) == (2, 0)
    assert last["reference"] == "Both files are at version 1 and all 1 tests pass."
    json.dumps(result)  # eval.json content is plain JSON


def test_the_default_token_cap_covers_the_longest_reference_turn_plus_a_margin(tiny):
    _, tokenizer = tiny
    tasks, _ = generation.turn_tasks(tokenizer, examples_of([conversation(2, "tdd")]), TOOLS)
    longest = max(len(generation.encode(tokenizer, t.reference + "<|im_end|>")) for t in tasks)
    assert generation.default_max_new_tokens(tokenizer, tasks) == longest + max(32, longest // 4)


def test_hitting_the_token_cap_is_counted_as_truncated(tiny):
    result = generation.score_conversations(*tiny, examples_of([conversation(1, "tdd")]), TOOLS, max_new_tokens=3,
                                         progress=False)
    assert all(t["truncated"] for t in result["turns"])  # the tiny model never says <|im_end|> in 3 tokens
    assert result["counts"]["truncated"] == 3 and result["metrics"]["overall"]["truncated"]["rate"] == 1.0
    assert result["settings"]["max_new_tokens"] == 3 and result["settings"]["max_new_tokens_from"] == "argument"


def test_a_prompt_too_long_for_the_context_loses_its_earliest_turns_after_the_system_message(tiny):
    _, tokenizer = tiny
    messages = conversation(4, "tdd")["messages"]
    last_prompt = messages[:7]
    full, _ = generation.fit_prompt(tokenizer, last_prompt, TOOLS)
    without_user_turn, _ = generation.fit_prompt(tokenizer, messages[:1] + messages[2:7], TOOLS)
    tokens, dropped = generation.fit_prompt(tokenizer, last_prompt, TOOLS, max_prompt_tokens=len(full) - 1)
    assert (tokens, dropped) == (without_user_turn, 1)
    text = tokenizer.decode(tokens)
    assert "You are Synthia, a careful coding agent." in text and "Task 4" not in text


def test_cut_prompts_and_prompts_that_cannot_fit_are_counted(tiny):
    _, tokenizer = tiny
    messages = conversation(5, "tdd")["messages"]
    second_turn_prompt, _ = generation.fit_prompt(tokenizer, messages[:5], TOOLS)
    result = generation.score_conversations(*tiny, examples_of([conversation(5, "tdd")]), TOOLS, max_new_tokens=2,
                                         max_prompt_tokens=len(second_turn_prompt) - 1, progress=False)
    counts = result["counts"]
    assert counts["turns_scored"] + counts["skipped_prompt_too_long"] == 3
    assert counts["prompts_cut"] >= 1 and counts["messages_dropped"] >= 1
    assert [t["dropped_messages"] for t in result["turns"]][0] == 0
    assert all(s["reason"] == "prompt too long" for s in result["skipped_turns"])


def test_a_context_smaller_than_the_system_prompt_skips_every_turn(tiny):
    result = generation.score_conversations(*tiny, examples_of([conversation(6, "tdd")]), TOOLS, max_new_tokens=2,
                                         max_prompt_tokens=20, progress=False)
    assert result["counts"]["turns_scored"] == 0 and result["counts"]["skipped_prompt_too_long"] == 3
    assert result["metrics"]["overall"]["exact"] == {"count": 0, "total": 0, "rate": None}


def test_limit_scores_only_the_first_conversations_and_says_how_many_there_were(tiny):
    records = [conversation(i, "tdd") for i in range(3)]
    result = generation.score_conversations(*tiny, examples_of(records), TOOLS, max_new_tokens=1, limit=1,
                                         progress=False)
    assert result["counts"]["conversations"] == 1 and result["counts"]["conversations_available"] == 3
    assert {t["line"] for t in result["turns"]} == {1}
    assert result["settings"]["limit"] == 1


def turn(category, expected, emitted, exact, valid=True, truncated=False):
    return {"category": category, "calls_expected": expected, "calls_emitted": emitted, "valid": valid,
            "names": exact, "exact": exact, "schema_ok": True if emitted else None, "unknown_tool": False,
            "truncated": truncated}


def test_metrics_are_counted_overall_per_category_for_parallel_calls_and_for_text_turns():
    turns = [turn("tdd", 2, 2, True), turn("tdd", 1, 1, False), turn("debugging", 0, 0, True),
             turn("debugging", 2, 0, False, valid=False, truncated=True)]
    m = generation.metrics(turns)
    assert m["overall"]["exact"] == {"count": 2, "total": 4, "rate": 0.5}
    assert m["overall"]["schema_ok"] == {"count": 2, "total": 2, "rate": 1.0}
    assert m["overall"]["truncated"]["count"] == 1
    assert (m["overall"]["calls_emitted"], m["overall"]["calls_expected"]) == (3, 5)
    assert m["per_category"]["tdd"]["exact"]["count"] == 1 and m["per_category"]["debugging"]["turns"] == 2
    assert m["parallel"]["turns"] == 2 and m["parallel"]["valid"]["count"] == 1
    assert m["text"]["turns"] == 1 and m["text"]["exact"]["rate"] == 1.0


def test_plain_progress_lines_carry_counts_and_an_eta():
    stream = io.StringIO()
    bar = generation.TurnProgress(20, "stage 1", stream=stream)
    for _ in range(20):
        bar.advance()
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("[stage 1] turn 2/20") and "ETA" in lines[0]


def test_samples_md_has_the_four_fixed_prompts_and_the_held_out_turns(tiny, tmp_path):
    result = generation.score_conversations(*tiny, examples_of([conversation(1, "tdd")]), TOOLS, max_new_tokens=2,
                                         progress=False)
    held_out = generation.pick_held_out(result)
    assert [t["calls_expected"] for t in held_out] == [2, 1, 0]
    text = generation.write_samples(*tiny, TOOLS, tmp_path / "samples.md", held_out=held_out, max_new_tokens=4)
    assert (tmp_path / "samples.md").read_text() == text
    assert all(prompt in text for prompt in generation.SAMPLE_PROMPTS)
    assert "async functions" in text and "divide" in text and "500" in text and "Refactor" in text
    assert text.count("Reference:") == 3 and "dataset line 1, message 2 (tdd)" in text

