"""The memory plan before each stage: printed with its budget, a stage over budget stops before it starts, and
--auto-fit applies the cheapest change that fits and records it."""

import json
import re

import pytest

import train_mlx
from synthia.pipeline import inputs, models, resolve, stage_memory
from synthia.pipeline.plan import stage_plan
from synthia.train import memory_plan, schedule
from tests.sample_data import small_run_config, small_run_workspace, stage_one_args

CONFIG = small_run_config(batch_size=4, save_every=4, steps_per_report=10)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return small_run_workspace(tmp_path_factory.mktemp("memory"), CONFIG)


def cli(root, model, output, *extra):
    return stage_one_args(root, model, output, 4, *extra)


def planned_totals(text):
    """{step: total GB} from the printed plan."""
    rows = re.findall(r"\[stage 1\] (train|fuse|evaluate)\s+.*?\s([\d.]+)\s+(?:yes|NO)", text)
    return {step: float(total) for step, total in rows}


def test_the_dry_run_prints_each_steps_peak_against_the_budget_and_the_disk(root, tiny_model_dir, capsys):
    assert train_mlx.main(cli(root, tiny_model_dir, "dry", "--dry-run", "--memory-budget", "100")) == 0
    out = capsys.readouterr().out
    assert "memory plan: budget 100.0 GB (--memory-budget)" in out
    assert set(planned_totals(out)) == {"train", "fuse", "evaluate"}
    assert re.search(r"\[stage 1\] disk plan: fused model [\d.]+ GB, checkpoints [\d.]+ GB; .* free in .*: fits", out)


def stage_plan_inputs(root, model):
    """The plan's inputs as the pipeline builds them, from the same settings, data and model."""
    args = train_mlx.build_parser().parse_args(cli(root, model, "x"))
    values = train_mlx.resolve_configs(args, [1])[1]
    examples = inputs.validate_dataset(str(root / "data.jsonl"), False)
    tokenizer = models.load_tokenizer(model)
    from synthia.data.validate import load_default_tools
    encoded = inputs.encode_examples(tokenizer, examples, load_default_tools())
    config = json.loads((model / "config.json").read_text())
    return values, stage_memory.plan_inputs(values, config, stage_memory.split_lengths(values, examples, encoded))


def test_a_stage_over_budget_stops_before_it_starts_and_names_the_changes_that_fit(root, tiny_model_dir, capsys):
    from pathlib import Path
    _, inputs = stage_plan_inputs(root, Path(tiny_model_dir))
    peak = max(step.total for step in memory_plan.plan(inputs).values())
    budget_gb = (peak - 1e6) / 1e9
    assert train_mlx.main(cli(root, tiny_model_dir, "over", "--memory-budget", f"{budget_gb:.6f}")) == 2
    err = capsys.readouterr().err
    assert "would need more memory than the" in err and "Changes that fit, best first:" in err and "--auto-fit" in err
    assert re.search(r"  1\. \w+: ", err)
    assert not (root / "over" / "stage1" / "checkpoint.safetensors").exists()
    assert not (root / "over" / "synthia-stage1").exists()


def test_auto_fit_applies_the_cheapest_single_change_that_fits_and_records_it(root, tiny_model_dir, capsys):
    from pathlib import Path
    values, inputs = stage_plan_inputs(root, Path(tiny_model_dir))
    peak = max(step.total for step in memory_plan.plan(inputs).values())
    budget = peak - 1e6
    candidates = memory_plan.candidate_changes(inputs, stage_memory.SETTING_CHANGES)
    fitting_singles = [c for c in candidates if memory_plan.fits(memory_plan.apply_changes(inputs, [c]), budget)]
    assert fitting_singles, "the test needs a budget that one change can meet"
    expected = fitting_singles[0]
    assert train_mlx.main(cli(root, tiny_model_dir, "fit", "--memory-budget", f"{budget / 1e9:.6f}",
                              "--auto-fit")) == 0
    out = capsys.readouterr().out
    assert f"--auto-fit changed {expected}" in out
    record = json.loads((root / "fit" / "stage1" / "run.json").read_text())
    assert record["memory"]["auto_fit"] == [str(expected)]
    setting = {"chunked_loss": "loss_chunk_size"}.get(expected.setting, expected.setting)
    assert record["config"][setting] != values[setting]
    if expected.setting == "batch_size":  # the same examples per update, and as many updates
        assert record["config"]["batch_size"] * record["config"]["grad_accumulation_steps"] == values["batch_size"]
        assert record["config"]["iters"] * record["config"]["batch_size"] == values["iters"] * values["batch_size"]


def test_a_smaller_batch_keeps_the_examples_per_update_and_the_number_of_updates():
    values = {**train_mlx.DEFAULTS, **train_mlx.STAGES[1]}
    change = memory_plan.Change("batch_size", 2, 1, "")
    changed = stage_memory.changed_settings(values, [change])
    assert (changed["batch_size"], changed["grad_accumulation_steps"]) == (1, 2)
    assert schedule.optimizer_updates(changed) == schedule.optimizer_updates(values) == 800
    assert (changed["iters"], changed["steps_per_eval"], changed["save_every"]) == (1600, 200, 200)
    resolve.check_stage_config(changed, 1, train_mlx.SETTINGS)


# ---------------------------------------------------------------------------------------------------------
# Evaluating a quantized copy when the full-precision fused model does not fit
# ---------------------------------------------------------------------------------------------------------
QWEN_7B_CONFIG = {"model_type": "qwen2", "hidden_size": 3584, "num_hidden_layers": 28, "intermediate_size": 18944,
                  "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
                  "tie_word_embeddings": False, "torch_dtype": "bfloat16"}


def seven_b_stage_two(**overrides):
    values = {**train_mlx.DEFAULTS, **train_mlx.STAGES[2], "loss_chunk_size": 128, "batch_size": 1,
              "grad_accumulation_steps": 2, **overrides}
    lengths = {"train": [2048] * 40, "valid": [2048] * 4}
    return values, stage_memory.plan_inputs(values, QWEN_7B_CONFIG, lengths, full_precision=True)


def test_a_7b_with_a_16_gb_budget_evaluates_the_4_bit_copy_of_its_fused_model_because_full_precision_does_not_fit():
    values, inputs = seven_b_stage_two()
    budget = 16e9
    plain = memory_plan.plan(inputs)
    assert plain["evaluate"].total > budget, "bf16 7B weights alone are 15 GB"
    assert plain["train"].total <= budget and plain["fuse"].total <= budget
    fitted, bits = stage_memory.with_quantized_evaluation(inputs, values, budget)
    assert bits == 4 and fitted.eval_bits == 4
    assert memory_plan.plan(fitted)["evaluate"].total <= budget
    assert stage_memory.with_quantized_evaluation(inputs, values, 40e9) == (inputs, None)  # fits: left alone
    assert stage_memory.with_quantized_evaluation(inputs, {**values, "train_bits": None}, budget)[1] is None


def test_the_stage_plan_evaluates_the_copy_it_quantizes_once_and_the_next_stage_trains_on_it(tmp_path, tiny_model_dir):
    from synthia.pipeline import stagedir
    values = {**train_mlx.DEFAULTS, **train_mlx.STAGES[1], "train_bits": 4}
    files = {"train": "t", "valid": "v", "test": "x"}
    one = stagedir.stage_paths(tmp_path, 1)
    plan = stage_plan(1, values, tiny_model_dir, files, one, True, evaluate_bits=4)
    names = [name for name, *_ in plan]
    assert names == ["quantize", "train", "fuse", "quantize-fused", "evaluate"]
    copy = one.stage_dir / "fused-q4"
    quantize_fused = plan[3]
    assert quantize_fused[3] == copy and str(stagedir.fused_tmp(one)) in quantize_fused[1]
    evaluate_job = plan[4][2]
    assert [run.model for run in evaluate_job.runs] == [str(copy)]  # no full-precision run at all
    # Stage 2 starts from stage 1's fused model: with the copy present it trains on it, quantizing nothing.
    two = stagedir.stage_paths(tmp_path, 2)
    without_copy = [name for name, *_ in stage_plan(2, values, one.fused_dir, files, two, False)]
    assert without_copy[0] == "quantize"
    copy.mkdir(parents=True)
    plan_two = stage_plan(2, values, one.fused_dir, files, two, False)
    assert [name for name, *_ in plan_two][:2] == ["train", "fuse"]
    assert plan_two[0][2].model == str(copy)


def test_a_finished_stage_is_skipped_whatever_the_budget(root, tiny_model_dir, capsys):
    assert train_mlx.main(cli(root, tiny_model_dir, "done", "--memory-budget", "100")) == 0
    capsys.readouterr()
    assert train_mlx.main(cli(root, tiny_model_dir, "done", "--memory-budget", "0.001")) == 0
    out = capsys.readouterr().out
    assert "already done" in out and "memory plan" not in out
