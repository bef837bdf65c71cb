"""--bench bfcl: BFCL's entries scored end to end (prompts, generation, parsing, BFCL's judge, rows), the flags, the
scorecard section and bfcl.png. The pipeline run with --bench is in test_pipeline.py (it shares the trained stages)."""

import json

import pytest
from mlx_lm.utils import load_tokenizer

import train_mlx
from synthia.scorecard import bfcl, bfcl_card, bfcl_judge, bfcl_score, card, generation
from tests.bfcl_pairs import load_or_skip, reference_calls

PNG = b"\x89PNG\r\n\x1a\n"


def hermes(calls):
    return "\n".join(f"<tool_call>\n{json.dumps(call)}\n</tool_call>" for call in calls)


class Replay:
    """Answers prompts in order with the texts given: how the scorer treats known outputs, without a model."""

    def __init__(self, texts):
        self.texts = list(texts)
        self.prompts = []

    def generate(self, prompt, max_new_tokens):
        self.prompts.append(prompt)
        return generation.Generation(tokens=[1], text=self.texts.pop(0), truncated=False, prefilled=len(prompt))

    def generate_many(self, prompts, max_new_tokens, on_finished=None):
        return [self.generate(prompt, max_new_tokens) for prompt in prompts]


def answer_text(entry):
    """A correct answer to any entry: the answer's calls; no call for irrelevance; some call for relevance."""
    if entry.category in bfcl.IRRELEVANCE_CATEGORIES:
        return "None of the functions can do that."
    if entry.category in bfcl.RELEVANCE_CATEGORIES:
        return hermes([{"name": entry.tools[0]["function"]["name"], "arguments": {}}])
    return hermes(reference_calls(entry))


def chosen(limit):
    return [e for name in bfcl.CATEGORIES for e in bfcl.select_entries(load_or_skip(name), limit)]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)


def test_correct_answers_pass_every_category_and_the_prompts_carry_each_entrys_tools(tokenizer):
    entries = chosen(3)
    replay = Replay(answer_text(e) for e in entries)
    result = bfcl_score.score_bfcl(replay, tokenizer, 3, progress=False)
    assert [r["id"] for r in result["entries"]] == [e.id for e in entries]
    assert all(r["passed"] for r in result["entries"]), [r for r in result["entries"] if not r["passed"]]
    rows = {r["name"]: r for r in result["rows"] if not r["combine"]}  # the group "irrelevance" shares a name
    assert {name: rows[name]["n"] for name in bfcl.CATEGORIES} == {name: 3 for name in bfcl.CATEGORIES}
    assert [r["name"] for r in result["rows"] if r["combine"]] == [g[0] for g in bfcl_judge.GROUPS]
    assert all(r["rate"] == 1.0 and r["low"] < 1.0 for r in result["rows"])  # 3 entries: a wide interval
    for entry, prompt in zip(entries, replay.prompts):
        text = tokenizer.decode(prompt)
        assert all(tool["function"]["name"] in text for tool in entry.tools)
        assert entry.messages[-1]["content"][:40] in text


def test_no_call_passes_only_irrelevance_and_a_wrong_value_fails_its_entry(tokenizer):
    entries = chosen(2)
    silent = bfcl_score.score_bfcl(Replay("I will not call anything." for _ in entries), tokenizer, 2, progress=False)
    passed = {name: [r["passed"] for r in silent["entries"] if r["category"] == name] for name in bfcl.CATEGORIES}
    assert passed == {name: [name in bfcl.IRRELEVANCE_CATEGORIES] * 2 for name in bfcl.CATEGORIES}
    first = entries[0]  # simple_python_0, one call: change its first argument
    call = reference_calls(first)[0]
    key = next(iter(call["arguments"]))
    wrong = {**call, "arguments": {**call["arguments"], key: "a value no answer accepts"}}
    texts = [hermes([wrong])] + [answer_text(e) for e in entries[1:]]
    result = bfcl_score.score_bfcl(Replay(texts), tokenizer, 2, progress=False)
    assert [r["passed"] for r in result["entries"]] == [False] + [True] * (len(entries) - 1)
    assert key in result["entries"][0]["reason"]


def test_groups_weigh_live_categories_by_their_full_size_not_the_sample(tokenizer):
    entries = chosen(2)
    texts = [answer_text(e) if e.category != "live_multiple" else "no call" for e in entries]
    rows = {r["name"]: r for r in bfcl_score.score_bfcl(Replay(texts), tokenizer, 2, progress=False)["rows"]
            if r["combine"]}
    sizes = {name: len(load_or_skip(name)) for name in bfcl_judge.GROUPS[1][2]}
    expected = 1 - sizes["live_multiple"] / sum(sizes.values())  # live_multiple fails, the others pass
    assert rows["live_ast"]["rate"] == pytest.approx(expected)
    assert rows["non_live_ast"]["rate"] == 1.0


def result_with(rates):
    """A BFCL result whose categories passed these shares of 20 entries (built by the judge's own row code)."""
    verdicts = {name: [k < round(20 * rate) for k in range(20)] for name, rate in rates.items()}
    sizes = {name: 100 for name in rates}
    rows = [bfcl_score.row_dict(r) for r in bfcl_judge.score_rows(verdicts, sizes)]
    settings = {"bfcl_eval": "test", "limit": 20, "max_new_tokens": 384, "left_out": bfcl_score.LEFT_OUT}
    return {"settings": settings, "sizes": sizes, "rows": rows, "entries": []}


def test_the_scorecard_section_has_a_column_per_model_and_flags_a_drop(tmp_path):
    base = result_with({"simple_python": 0.5, "irrelevance": 0.9})
    stage = result_with({"simple_python": 0.6, "irrelevance": 0.7})
    text = card.scorecard_markdown([], [("base", base), ("stage 1", stage)])
    header = next(line for line in text.splitlines() if line.startswith("| category"))
    assert [c.strip() for c in header.strip("|").split("|")] == ["category", "base", "stage 1"]
    row = next(line for line in text.splitlines() if line.startswith("| irrelevance"))
    assert "90.0% [" in row and "(18/20)" in row and "70.0% [" in row and row.rstrip(" |").endswith("⚠")
    assert "- BFCL, irrelevance: pass base 90.0% → stage 1 70.0% (20.0 points worse)" in text
    assert "simple_python: pass" not in text  # a gain is not a regression
    assert "multi-turn" in text  # what is left out is said where the results are
    assert bfcl_card.plot_bfcl([("base", base), ("stage 1", stage)], tmp_path / "bfcl.png").read_bytes()[:8] == PNG


@pytest.mark.parametrize("flags, message", [
    (["--bench", "bfcl"], "--bench bfcl: scores the models that --test or --evaluate scores"),
    (["--test", "--bench-limit", "3"], "--bench-limit 3: sets how many BFCL entries"),
])
def test_bench_flags_that_cannot_work_are_input_errors(flags, message, capsys):
    assert train_mlx.main(flags) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("limit", ["0", "-2", "some"])
def test_a_bench_limit_that_is_not_a_count_or_all_is_refused_by_the_parser(limit, capsys):
    with pytest.raises(SystemExit) as exited:
        train_mlx.build_parser().parse_args(["--test", "--bench", "bfcl", "--bench-limit", limit])
    assert exited.value.code == 2 and "whole number of at least 1, or all" in capsys.readouterr().err


def test_bench_limit_all_scores_every_entry_and_the_default_is_bench_limit():
    assert train_mlx.bench_limit(None) == train_mlx.BENCH_LIMIT and train_mlx.bench_limit("all") is None
    assert train_mlx.bench_limit(7) == 7


def test_missing_bfcl_data_stops_the_run_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bfcl, "data_dir", lambda: tmp_path / "nowhere")
    out = tmp_path / "out"
    assert train_mlx.main(["--test", "--bench", "bfcl", "--output-dir", str(out)]) == 2
    assert "BFCL_v4_simple_python.json: missing from bfcl-eval" in capsys.readouterr().err
    assert not out.exists()
