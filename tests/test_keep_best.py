"""Per-turn weights, the best checkpoint, early stopping and the learning-rate schedule."""

import json

import pytest
from mlx_lm.tuner.utils import build_schedule

import train_mlx
from synthia.train import schedule
from tests.sample_data import write_dataset

BAD_LR_CONFIG = """\
train_bits: null
grad_checkpoint: false
num_layers: -1
steps_per_report: 1
steps_per_eval: 1
learning_rate: 3.0      # far too high: the valid loss climbs after the first updates
warmup: 0
lora_parameters: {rank: 8, scale: 20.0, dropout: 0.0}
"""


def lr_at(schedule, step):
    return build_schedule(schedule)(step).item()


@pytest.mark.parametrize("iters, warmup", [(800, None), (100, 10), (3, 0), (20, 1)])
def test_schedule_warms_up_then_decays_to_lr_min_at_the_last_step(iters, warmup):
    lr = schedule.lr_schedule(iters, 2e-5, warmup=warmup)
    expected_warmup = round(0.05 * iters) if warmup is None else warmup
    assert lr["warmup"] == expected_warmup
    if expected_warmup:
        assert lr_at(lr, 0) == 0.0
    assert lr_at(lr, expected_warmup) == pytest.approx(2e-5)
    assert lr_at(lr, iters - 1) == pytest.approx(2e-6)  # the last update: iters - 1 steps done
    assert lr_at(lr, iters - 2) > lr_at(lr, iters - 1)


def test_schedule_honours_lr_min_and_appears_in_the_plan():
    lr = schedule.lr_schedule(1000, 1.5e-5, warmup=50, lr_min=1e-6)
    assert lr_at(lr, 999) == pytest.approx(1e-6)
    assert lr_at(lr, 25) == pytest.approx(0.75e-5)
    assert schedule.describe_schedule(lr, 1000) == (
        "learning rate: warm-up 50 updates 0 -> 1.5e-05, cosine to 1e-06 at update 1000")


def test_gradient_accumulation_sizes_the_schedule_on_optimizer_updates():
    values = train_mlx.resolve_configs(train_mlx.build_parser().parse_args(["--iters", "800"]), [1])[1]
    values["grad_accumulation_steps"] = 2
    lr = schedule.stage_schedule(values)
    assert schedule.optimizer_updates(values) == 400
    assert lr_at(lr, 399) == pytest.approx(2e-6)  # the 400th and last update reaches lr_min
    assert lr_at(lr, 199) > 1e-5  # halfway is still high


def test_a_stage_with_accumulation_reaches_lr_min_at_its_last_update(tmp_path, tiny_model_dir):
    (tmp_path / "c.yaml").write_text(BAD_LR_CONFIG.replace("learning_rate: 3.0", "learning_rate: 1.0e-3")
                                     + "grad_accumulation_steps: 2\nsave_every: 4\n")
    write_dataset(tmp_path / "data.jsonl", per_category=16, categories=["tool_use"])
    args = ["--base-model", str(tiny_model_dir), "--dataset", str(tmp_path / "data.jsonl"), "--config",
            str(tmp_path / "c.yaml"), "--output-dir", str(tmp_path / "models"), "--stage", "1", "--iters", "8"]
    assert train_mlx.main(args) == 0
    reports = json.loads((tmp_path / "models" / "stage1" / "run.json").read_text())["curves"]["train"]
    assert reports[-1]["iteration"] == 8
    assert reports[-1]["learning_rate"] == pytest.approx(1e-4, rel=1e-3)  # lr_min = lr / 10, after 4 updates


@pytest.fixture(scope="module")
def bad_lr_run(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("keep-best")
    (root / "bad.yaml").write_text(BAD_LR_CONFIG)
    lines = write_dataset(root / "data.jsonl", per_category=16, categories=["tool_use"]).read_text().splitlines()
    first = json.loads(lines[0])
    first["messages"][5]["weight"] = 0  # the middle assistant turn of line 1 teaches nothing
    (root / "data.jsonl").write_text("\n".join([json.dumps(first)] + lines[1:]) + "\n")
    args = ["--base-model", str(tiny_model_dir), "--dataset", str(root / "data.jsonl"), "--config",
            str(root / "bad.yaml"), "--output-dir", str(root / "models"), "--stage", "1", "--iters", "8"]
    assert train_mlx.main(args) == 0
    return root, json.loads((root / "models" / "stage1" / "run.json").read_text())


def test_a_stage_whose_valid_loss_rises_keeps_the_best_iteration(bad_lr_run):
    _, record = bad_lr_run
    valid = {r["iteration"]: r["val_loss"] for r in record["curves"]["valid"]}
    best_iteration = min(valid, key=valid.get)
    assert best_iteration < 8 and valid[8] > valid[best_iteration], valid
    assert record["train"]["kept"] == {"which": "best", "iteration": best_iteration,
                                       "val_loss": valid[best_iteration]}


def test_the_fused_model_equals_base_with_the_best_adapters(bad_lr_run):
    _, record = bad_lr_run
    valid = {r["iteration"]: r["val_loss"] for r in record["curves"]["valid"]}
    fused = record["fuse_check"]["fused_valid_loss"]  # measured on the fused model, in another process
    assert fused == pytest.approx(valid[record["train"]["kept"]["iteration"]], rel=1e-4)
    assert fused != pytest.approx(valid[8], rel=1e-3)  # not the last adapters


def test_run_json_counts_trained_and_untrained_turns(bad_lr_run):
    _, record = bad_lr_run
    counts = {split: (s["trained_turns"], s["untrained_turns"]) for split, s in record["data"].items()}
    assert sum(u for _, u in counts.values()) == 1
    assert sum(t for t, _ in counts.values()) == 16 * 3 - 1
    assert sum(s["untrained_assistant_tokens"] for s in record["data"].values()) > 0


def test_preview_shows_a_weight_zero_turn_untrained(bad_lr_run, tiny_model_dir, capsys):
    root, _ = bad_lr_run
    args = ["--base-model", str(tiny_model_dir), "--dataset", str(root / "data.jsonl"), "--preview", "1", "--json"]
    assert train_mlx.main(args) == 0
    segments = json.loads(capsys.readouterr().out)["segments"]
    trained_text = "".join(s["text"] for s in segments if s["trained"])
    untrained_text = "".join(s["text"] for s in segments if not s["trained"])
    assert "Running the test suite." in untrained_text and "Running the test suite." not in trained_text
    assert '"name": "read"' in trained_text


def test_early_stopping_ends_the_stage_and_says_so(tmp_path, tiny_model_dir, capsys):
    (tmp_path / "c.yaml").write_text(BAD_LR_CONFIG + "early_stop_patience: 2\n")
    write_dataset(tmp_path / "data.jsonl", per_category=16, categories=["tool_use"])
    args = ["--base-model", str(tiny_model_dir), "--dataset", str(tmp_path / "data.jsonl"), "--config",
            str(tmp_path / "c.yaml"), "--output-dir", str(tmp_path / "models"), "--stage", "1", "--iters", "30"]
    assert train_mlx.main(args) == 0
    record = json.loads((tmp_path / "models" / "stage1" / "run.json").read_text())
    stopped = record["train"]["early_stopped"]
    assert stopped is not None and stopped["iteration"] < 30
    assert "2 evaluations without a lower valid loss" in stopped["reason"]
    assert "stopped early at iteration" in capsys.readouterr().out
    assert max(r["iteration"] for r in record["curves"]["valid"]) == stopped["iteration"]
