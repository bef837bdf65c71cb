"""An interrupted stage resumes from its last checkpoint and ends where an uninterrupted run would."""

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
save_every: 4
keep: last
learning_rate: 1.0e-3
lora_parameters: {rank: 4, scale: 10.0, dropout: 0.0}
"""
ITERS = 12


def command(root, tiny_model_dir, output):
    return [sys.executable, str(ROOT / "train_mlx.py"), "--stage", "1", "--iters", str(ITERS), "--base-model",
            str(tiny_model_dir), "--dataset", str(root / "data.jsonl"), "--config", str(root / "c.yaml"),
            "--output-dir", str(root / output)]


def run_killing_the_worker_at(cmd, iteration):
    """Run the pipeline; SIGKILL its training child once it reports `iteration`. Returns (exit code, output)."""
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    output = []
    for line in process.stdout:
        output.append(line)
        if f"iter {iteration}/{ITERS}  train" in line:
            subprocess.run(["pkill", "-9", "-f", f"synthia.worker train {cmd[-1]}/stage1/train_job.json"])
    return process.wait(), "".join(output)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("resume")
    (root / "c.yaml").write_text(CONFIG)
    write_dataset(root / "data.jsonl", per_category=12, categories=["tool_use"])
    straight = subprocess.run(command(root, tiny_model_dir, "straight"), capture_output=True, text=True, cwd=ROOT)
    assert straight.returncode == 0, straight.stdout[-2000:] + straight.stderr[-2000:]
    code, killed_output = run_killing_the_worker_at(command(root, tiny_model_dir, "killed"), 6)
    resumed = subprocess.run(command(root, tiny_model_dir, "killed"), capture_output=True, text=True, cwd=ROOT)
    return root, code, killed_output, resumed


def test_a_killed_training_child_fails_the_stage_with_a_message(runs):
    _, code, output, _ = runs
    assert code == 1
    assert "stage 1: step 'train' failed (exit code -9)" in output


def test_rerunning_resumes_from_the_last_checkpoint(runs):
    root, _, _, resumed = runs
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert "continuing the interrupted attempt" in resumed.stdout
    start = int(resumed.stdout.split("resuming from iteration ")[1].split()[0])
    assert start in (4, 8)
    first_trained = int(resumed.stdout.split("  train ")[0].rsplit("iter ", 1)[1].split("/")[0])
    assert first_trained == start + 1  # at most save_every iterations are repeated
    assert (root / "killed" / "synthia-stage1" / "config.json").exists()


def test_resumed_adapters_equal_an_uninterrupted_run(runs):
    root, *_ = runs
    straight = mx.load(str(root / "straight" / "stage1" / "adapters.safetensors"))
    resumed = mx.load(str(root / "killed" / "stage1" / "adapters.safetensors"))
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert mx.allclose(straight[name], resumed[name], atol=1e-5, rtol=1e-4).item(), name
