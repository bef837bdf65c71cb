"""The shipped dataset through the pipeline's own checks: the validator, and a dry run on the tiny model."""

from pathlib import Path

import train_mlx
from synthia.data import validate

DATASET = Path(__file__).resolve().parents[1] / "dataset.jsonl"


def test_validator_passes_the_shipped_dataset_with_no_errors_or_warnings():
    report = validate.validate_file(DATASET)
    assert report.errors == [] and report.warnings == [], validate.format_report(report)
    assert len(report.examples) >= 300


def test_dry_run_plans_all_three_stages_on_the_shipped_dataset(tmp_path, tiny_model_dir, capsys):
    (tmp_path / "c.yaml").write_text("train_bits: null\nnum_layers: -1\n")  # the tiny model has 2 layers
    args = ["--dry-run", "--strict", "--base-model", str(tiny_model_dir), "--dataset", str(DATASET),
            "--config", str(tmp_path / "c.yaml"), "--output-dir", str(tmp_path / "models"),
            "--max-seq-length", "8192"]  # the tiny model's small vocabulary needs more tokens than Qwen's
    assert train_mlx.main(args) == 0
    out = capsys.readouterr().out
    for stage in (1, 2, 3):
        assert f"[stage {stage}] data: train" in out
    stage1 = (tmp_path / "models" / "stage1" / "data" / "train.jsonl").read_text().splitlines()
    stage3 = (tmp_path / "models" / "stage3" / "data" / "train.jsonl").read_text().splitlines()
    assert stage1 and all('"category": "tool_use"' in line for line in stage1) and len(stage3) > len(stage1)
