"""An interrupted stage resumes exactly: killed at a checkpoint (dropout on, keep: best, save_every not a multiple
of steps_per_eval), it ends with the adapters, best iteration and loss curves of an uninterrupted run; so does one
whose newest checkpoint was then truncated (it resumes from the checkpoint before), and one stopped by SIGTERM."""

import contextlib
import io
import json
import shutil
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import pytest

import train_mlx
from synthia.pipeline import runstate
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


def run_terminating_the_pipeline_after(cmd, checkpoint_iteration):
    """Run the pipeline; SIGTERM it (not its child) once the child saved the checkpoint of `checkpoint_iteration`.
    Returns (exit code, stdout, stderr, the training child's pid)."""
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    output, child = [], None
    for line in process.stdout:
        output.append(line)
        if f"iter {checkpoint_iteration}/{ITERS}  checkpoint saved" in line:
            child = children(process.pid)[0]
            process.send_signal(signal.SIGTERM)
            break
    output.append(process.stdout.read())
    return process.wait(timeout=60), "".join(output), process.stderr.read(), child


def truncate_newest_checkpoint(stage_dir):
    """Cut the newest checkpoint in half, as a full disk or a broken copy leaves it; (bytes left, bytes before)."""
    newest = stage_dir / "checkpoint.safetensors"
    size = newest.stat().st_size
    newest.write_bytes(newest.read_bytes()[: size // 2])
    return size // 2, size


def dry_run_status(cmd):
    said = io.StringIO()
    with contextlib.redirect_stdout(said):
        assert train_mlx.main([*cmd[2:], "--dry-run"]) == 0
    return next(line for line in said.getvalue().splitlines() if line.startswith("[stage 1] would "))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("resume")
    (root / "c.yaml").write_text(CONFIG)
    write_dataset(root / "data.jsonl", per_category=16, categories=["tool_use"])
    straight = subprocess.run(command(root, tiny_model_dir, "straight"), capture_output=True, text=True, cwd=ROOT)
    assert straight.returncode == 0, straight.stdout[-2000:] + straight.stderr[-2000:]
    code, killed_output = run_killing_the_worker_after(command(root, tiny_model_dir, "killed"), 6)
    kept = {name: runstate.checkpoint_iteration(root / "killed" / "stage1" / name) for name in runstate.CHECKPOINTS}
    # Copies of the killed attempt (checkpoints of iterations 6 and 3) whose newest checkpoint is truncated; in
    # one, the checkpoint before it is gone too.
    sizes = {}
    for name in ("truncated", "truncated-alone"):
        shutil.copytree(root / "killed", root / name)
        sizes[name] = truncate_newest_checkpoint(root / name / "stage1")
    (root / "truncated-alone" / "stage1" / "checkpoint.prev.safetensors").unlink()
    shutil.copytree(root / "killed", root / "forced")  # resumed by the same command with --force
    statuses = {name: dry_run_status(command(root, tiny_model_dir, name)) for name in ("truncated", "truncated-alone")}
    terminated = run_terminating_the_pipeline_after(command(root, tiny_model_dir, "terminated"), 6)
    resumed = {name: subprocess.run(command(root, tiny_model_dir, name) + (["--force"] if name == "forced" else []),
                                    capture_output=True, text=True, cwd=ROOT)
               for name in ("killed", "truncated", "truncated-alone", "terminated", "forced")}
    return {"root": root, "code": code, "killed_output": killed_output, "kept": kept, "resumed": resumed,
            "sizes": sizes, "statuses": statuses, "terminated": terminated}


def record(root, output):
    return json.loads((root / output / "stage1" / "run.json").read_text())


def assert_same_as_uninterrupted(root, output):
    straight, resumed = record(root, "straight"), record(root, output)
    assert resumed["train"]["best"]["iteration"] == straight["train"]["best"]["iteration"]
    assert [r["iteration"] for r in resumed["curves"]["valid"]] == [0, 4, 8, 12]
    for a, b in zip(straight["curves"]["valid"] + straight["curves"]["train"],
                    resumed["curves"]["valid"] + resumed["curves"]["train"], strict=True):
        assert a["iteration"] == b["iteration"]
        loss = "val_loss" if "val_loss" in a else "train_loss"
        assert b[loss] == pytest.approx(a[loss], rel=1e-5, abs=1e-6)
    for name in ("adapters", "last_adapters", "best_adapters"):
        a = mx.load(str(root / "straight" / "stage1" / f"{name}.safetensors"))
        b = mx.load(str(root / output / "stage1" / f"{name}.safetensors"))
        assert a.keys() == b.keys()
        for key in a:
            assert mx.allclose(a[key], b[key], atol=1e-5, rtol=1e-4).item(), (name, key)


def test_a_killed_training_child_fails_the_stage_with_a_message(runs):
    assert runs["code"] == 1
    assert "stage 1: step 'train' failed (exit code -9)" in runs["killed_output"]


def test_rerunning_resumes_from_the_checkpoint(runs):
    resumed = runs["resumed"]["killed"]
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert "continuing the interrupted attempt" in resumed.stdout
    assert "[stage 1] resuming from iteration 6 (checkpoint.safetensors)\n" in resumed.stdout
    first_trained = int(resumed.stdout.split("  train ")[0].rsplit("iter ", 1)[1].split("/")[0])
    assert first_trained == 7


def test_the_log_of_the_killed_run_is_complete_to_its_last_line(runs):
    log = (runs["root"] / "killed" / "stage1" / "stage.log").read_text()
    assert f"iter 6/{ITERS}  checkpoint saved" in log


def test_resumed_run_equals_an_uninterrupted_one(runs):
    assert_same_as_uninterrupted(runs["root"], "killed")


def test_force_resumes_an_interrupted_attempt_with_the_same_inputs(runs):
    resumed = runs["resumed"]["forced"]
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "[stage 1] resuming from iteration 6 (checkpoint.safetensors)\n" in resumed.stdout
    assert_same_as_uninterrupted(runs["root"], "forced")


def test_dropout_was_on_so_the_random_state_mattered(runs):
    assert record(runs["root"], "straight")["config"]["lora_parameters"]["dropout"] == 0.05


def test_a_new_checkpoint_keeps_the_one_before_it(runs):
    assert runs["kept"] == {"checkpoint.safetensors": 6, "checkpoint.prev.safetensors": 3}


# --- a damaged newest checkpoint -------------------------------------------------------------------------
def test_a_dry_run_resumes_from_the_checkpoint_before_a_truncated_one(runs):
    assert runs["statuses"]["truncated"] == "[stage 1] would resume training at iteration 3"
    assert runs["statuses"]["truncated-alone"] == "[stage 1] would train"


def test_a_truncated_newest_checkpoint_is_named_and_the_one_before_it_resumes(runs):
    resumed, stage_dir = runs["resumed"]["truncated"], runs["root"] / "truncated" / "stage1"
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    left, whole = runs["sizes"]["truncated"]
    assert f"[stage 1] {stage_dir / 'checkpoint.safetensors'} is damaged (truncated: {left} bytes, its header " \
           f"describes {whole}); resuming from iteration 3 (checkpoint.prev.safetensors)\n" in resumed.stdout
    first_trained = int(resumed.stdout.split("  train ")[0].rsplit("iter ", 1)[1].split("/")[0])
    assert first_trained == 4 and "Traceback" not in resumed.stdout + resumed.stderr


def test_the_run_resumed_from_the_checkpoint_before_equals_an_uninterrupted_one(runs):
    assert_same_as_uninterrupted(runs["root"], "truncated")


def test_a_truncated_only_checkpoint_starts_the_stage_again_and_says_so(runs):
    resumed, stage_dir = runs["resumed"]["truncated-alone"], runs["root"] / "truncated-alone" / "stage1"
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    left, whole = runs["sizes"]["truncated-alone"]
    assert f"[stage 1] {stage_dir / 'checkpoint.safetensors'} is damaged (truncated: {left} bytes, its header " \
           f"describes {whole}); no earlier checkpoint: the stage starts again from iteration 0\n" in resumed.stdout
    assert f"[stage 1] iter 1/{ITERS}  train " in resumed.stdout
    assert_same_as_uninterrupted(runs["root"], "truncated-alone")


# --- SIGTERM ---------------------------------------------------------------------------------------------
def test_sigterm_stops_the_child_frees_the_lock_and_prints_the_command_that_resumes(runs, tiny_model_dir):
    code, _, stderr, child = runs["terminated"]
    assert code == 143
    resume = shlex.join(["python", "train_mlx.py", *command(runs["root"], tiny_model_dir, "terminated")[2:]])
    assert stderr.endswith("\nterminated (SIGTERM): finished stages are kept, and training resumes from its last "
                           f"checkpoint. To resume, run: {resume}\n")
    assert "Traceback" not in stderr
    assert not Path(f"/proc/{child}").exists() or "zombie" in Path(f"/proc/{child}/status").read_text()
    with runstate.output_lock(runs["root"] / "terminated"):
        pass


def test_a_run_stopped_by_sigterm_resumes_and_equals_an_uninterrupted_one(runs):
    resumed = runs["resumed"]["terminated"]
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "[stage 1] resuming from iteration " in resumed.stdout
    assert_same_as_uninterrupted(runs["root"], "terminated")
