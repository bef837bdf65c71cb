"""An interrupted stage resumes exactly: killed at a checkpoint (dropout on, keep: best, save_every not a multiple
of steps_per_eval), it ends with the adapters, best iteration and loss curves of an uninterrupted run."""

import json
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import pytest

from tests.sample_data import write_dataset

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """\
train_bits: null
grad_checkpoint: false
num_layers: -1
steps_per_report: 1
steps_per_eval: 4
save_every: 3
keep: best
learning_rate: 1.0e-3
lora_parameters: {rank: 4, scale: 10.0, dropout: 0.05}
valid_fraction: 0.2
"""
ITERS = 12


def command(root, tiny_model_dir, output):
    return [sys.executable, str(ROOT / "train_mlx.py"), "--stage", "1", "--iters", str(ITERS), "--base-model",
            str(tiny_model_dir), "--dataset", str(root / "data.jsonl"), "--config", str(root / "c.yaml"),
            "--output-dir", str(root / output)]


def children(pid):
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def run_killing_the_worker_after(cmd, checkpoint_iteration):
    """Run the pipeline; SIGKILL its training child once it saved the checkpoint of `checkpoint_iteration`."""
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    output = []
    for line in process.stdout:
        output.append(line)
        if f"iter {checkpoint_iteration}/{ITERS}  checkpoint saved" in line:
            for child in children(process.pid):
                subprocess.run(["kill", "-9", str(child)])
    return process.wait(), "".join(output)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("resume")
    (root / "c.yaml").write_text(CONFIG)
    write_dataset(root / "data.jsonl", per_category=16, categories=["tool_use"])
    straight = subprocess.run(command(root, tiny_model_dir, "straight"), capture_output=True, text=True, cwd=ROOT)
    assert straight.returncode == 0, straight.stdout[-2000:] + straight.stderr[-2000:]
    code, killed_output = run_killing_the_worker_after(command(root, tiny_model_dir, "killed"), 6)
    resumed = subprocess.run(command(root, tiny_model_dir, "killed"), capture_output=True, text=True, cwd=ROOT)
    return root, code, killed_output, resumed


def record(root, output):
    return json.loads((root / output / "stage1" / "run.json").read_text())


def test_a_killed_training_child_fails_the_stage_with_a_message(runs):
    _, code, output, _ = runs
    assert code == 1
    assert "stage 1: step 'train' failed (exit code -9)" in output


def test_rerunning_resumes_from_the_checkpoint(runs):
    root, _, _, resumed = runs
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert "continuing the interrupted attempt" in resumed.stdout
    assert "resuming from iteration 6" in resumed.stdout
    first_trained = int(resumed.stdout.split("  train ")[0].rsplit("iter ", 1)[1].split("/")[0])
    assert first_trained == 7


def test_the_log_of_the_killed_run_is_complete_to_its_last_line(runs):
    root, *_ = runs
    log = (root / "killed" / "stage1" / "stage.log").read_text()
    assert f"iter 6/{ITERS}  checkpoint saved" in log


def test_resumed_run_equals_an_uninterrupted_one(runs):
    root, *_ = runs
    straight, resumed = record(root, "straight"), record(root, "killed")
    assert resumed["train"]["best"]["iteration"] == straight["train"]["best"]["iteration"]
    assert [r["iteration"] for r in resumed["curves"]["valid"]] == [0, 4, 8, 12]
    for a, b in zip(straight["curves"]["valid"] + straight["curves"]["train"],
                    resumed["curves"]["valid"] + resumed["curves"]["train"]):
        assert a["iteration"] == b["iteration"]
        loss = "val_loss" if "val_loss" in a else "train_loss"
        assert b[loss] == pytest.approx(a[loss], rel=1e-5, abs=1e-6)
    for name in ("adapters", "last_adapters", "best_adapters"):
        a = mx.load(str(root / "straight" / "stage1" / f"{name}.safetensors"))
        b = mx.load(str(root / "killed" / "stage1" / f"{name}.safetensors"))
        assert a.keys() == b.keys()
        for key in a:
            assert mx.allclose(a[key], b[key], atol=1e-5, rtol=1e-4).item(), (name, key)


def test_dropout_was_on_so_the_random_state_mattered(runs):
    root, *_ = runs
    assert record(root, "straight")["config"]["lora_parameters"]["dropout"] == 0.05
