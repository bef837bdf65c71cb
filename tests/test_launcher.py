"""Training under a launcher ($SYNTHIA_LAUNCHER, e.g. mlx.launch): a launcher that exits 0 while its ranks did not
finish must not pass for a finished step."""

import pytest

import train_mlx
from tests.sample_data import small_run_config, write_dataset

CONFIG = small_run_config(steps_per_report=10)


@pytest.fixture()
def root(tmp_path):
    (tmp_path / "c.yaml").write_text(CONFIG)
    write_dataset(tmp_path / "data.jsonl", per_category=8, categories=["tool_use"])
    return tmp_path


def test_a_launcher_that_exits_0_without_a_training_result_fails_the_step(root, tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setenv("SYNTHIA_LAUNCHER", "sh -c true")  # exits 0 and runs nothing, as mlx.launch does when a rank dies
    args = ["--base-model", str(tiny_model_dir), "--dataset", str(root / "data.jsonl"), "--config",
            str(root / "c.yaml"), "--output-dir", str(root / "m"), "--stage", "1", "--iters", "2"]
    assert train_mlx.main(args) == 1
    err = capsys.readouterr().err
    assert "step 'train' ended without writing" in err and "train_result.json" in err
    assert not (root / "m" / "synthia-stage1").exists()
    run_json = root / "m" / "stage1" / "run.json"
    assert not run_json.exists() or '"status": "running"' in run_json.read_text()
