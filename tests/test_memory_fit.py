"""The memory plan before each stage: printed with its budget, a stage over budget stops before it starts, and
--auto-fit applies the cheapest change that fits and records it."""

import json
import re

import pytest

import train_mlx
from synthia import memory_plan, stage_memory
from tests.sample_data import write_dataset

CONFIG = """\
train_bits: null
grad_checkpoint: false
batch_size: 4
num_layers: -1
steps_per_eval: 2
save_every: 4
lora_parameters: {rank: 4, scale: 10.0, dropout: 0.0}
valid_fraction: 0.2
test_fraction: 0.2
"""


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("memory")
    (root / "c.yaml").write_text(CONFIG)
    write_dataset(root / "data.jsonl", per_category=12, categories=["tool_use"])
    return root


def cli(root, model, output, *extra):
    return ["--base-model", str(model), "--dataset", str(root / "data.jsonl"), "--config", str(root / "c.yaml"),
            "--output-dir", str(root / output), "--stage", "1", "--iters", "4", *extra]


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
    examples = train_mlx.validate_dataset(str(root / "data.jsonl"), False)
    tokenizer = train_mlx.load_tokenizer(model)
    from synthia.validate import load_default_tools
    encoded = train_mlx.encode_examples(tokenizer, examples, load_default_tools())
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
    if expected.setting == "batch_size":  # the effective batch is kept
        assert record["config"]["batch_size"] * record["config"]["grad_accumulation_steps"] == values["batch_size"]
