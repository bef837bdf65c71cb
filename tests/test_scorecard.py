"""scorecard.md across models, and loss.png."""

import struct

from synthia.scorecard import card, generation


def turns(exact, total=100, category="tdd", truncated=0):
    """`total` single-call turns of which the first `exact` are exact and the first `truncated` hit the cap."""
    return [{"category": category, "calls_expected": 1, "calls_emitted": 1, "valid": True, "names": True,
             "exact": k < exact, "schema_ok": True, "unknown_tool": False, "truncated": k < truncated}
            for k in range(total)]


def result(exact, truncated=0):
    scored = turns(exact, truncated=truncated)
    return {"settings": {"max_new_tokens": 64, "max_prompt_tokens": None, "limit": None},
            "counts": {"conversations": 40, "turns_scored": len(scored), "skipped_prompt_too_long": 0,
                       "prompts_cut": 0, "truncated": truncated},
            "metrics": generation.metrics(scored)}


def row(text, label):
    return next(line for line in text.splitlines() if line.startswith(f"| {label} |"))


def test_a_drop_of_more_than_2_points_is_marked_as_a_possible_regression():
    text = card.scorecard_markdown([("base", result(20)), ("stage 1", result(90)), ("stage 2", result(87))])
    assert row(text, "all turns: exact") == "| all turns: exact | 20.0% (20/100) | 90.0% (90/100) | 87.0% (87/100) ⚠ |"
    assert "- test, all turns: exact stage 1 90.0% → stage 2 87.0% (3.0 points worse)" in text


def test_a_drop_of_2_points_or_less_is_not_marked():
    text = card.scorecard_markdown([("stage 1", result(90)), ("stage 2", result(88))])
    assert "⚠ |" not in text.split("## Possible regressions")[0]
    assert text.rstrip().endswith("none")


def test_more_truncation_is_a_regression_because_lower_is_better():
    text = card.scorecard_markdown([("stage 1", result(90, truncated=1)), ("stage 2", result(90, truncated=5))])
    assert row(text, "all turns: truncated").endswith("5.0% (5/100) ⚠ |")
    assert "(4.0 points worse)" in text


def test_columns_are_the_models_that_exist_and_each_split_has_its_own_table():
    text = card.scorecard_markdown([
        ("base", {"stage1 test": result(10), "stage2 test": result(5)}),
        ("stage 1", {"stage1 test": result(80)}),
        ("stage 2", None),  # not trained yet
    ])
    stage1, stage2 = text.split("## stage1 test")[1].split("## stage2 test")
    assert "| metric | base | stage 1 |" in stage1
    assert "| metric | base |" in stage2 and "stage 1" not in stage2.split("## Possible")[0]
    assert "stage 2" not in text


def test_every_metric_and_group_has_a_row_and_limits_are_shown():
    text = card.scorecard_markdown([("stage 1", result(50))])
    for metric in ("valid", "names", "exact", "schema_ok", "unknown_tool", "truncated", "calls emitted/expected"):
        assert f"| all turns: {metric} |" in text and f"| category tdd: {metric} |" in text
    assert row(text, "parallel-call turns: exact") == "| parallel-call turns: exact | – |"
    assert row(text, "turns scored") == "| turns scored | 100 |"
    assert row(text, "max_new_tokens") == "| max_new_tokens | 64 |"


def test_write_scorecard_writes_the_markdown(tmp_path):
    text = card.write_scorecard([("stage 1", result(50))], tmp_path / "scorecard.md")
    assert (tmp_path / "scorecard.md").read_text() == text


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_loss_png_is_written_as_a_valid_png(tmp_path):
    # Chart input in the worker's report shape; the numbers are only something to draw.
    stages = [(f"stage {s}", [{"iteration": i, "train_loss": 3.0 / s - i / 500} for i in range(10, 101, 10)],
               [{"iteration": i, "val_loss": 3.1 / s - i / 600} for i in (0, 50, 100)]) for s in (1, 2, 3)]
    path = card.plot_losses(stages, tmp_path / "loss.png")
    width, height = png_size(path)
    assert (width, height) == (1100, 550)


def test_a_stage_without_reports_still_gives_a_chart(tmp_path):
    path = card.plot_losses([("stage 1", [], [])], tmp_path / "loss.png")
    assert png_size(path) == (1100, 550)
