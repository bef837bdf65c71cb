"""A disk that fills up while a stage's child process writes (a checkpoint, the fused model) or while the parent
logs it: exit 1 with the stage, the step, "the disk is full" with the path, what to do, and the child's last lines
without its traceback; nothing is left looking finished, and the same command finishes the stage once there is room.

The disks are real tmpfs mounts (root only; skipped elsewhere), placed where the stage writes, after the free-disk
check before the stage (which looks at --output-dir) has passed. Sizes measured with the tiny model, 12 tool_use
conversations, --iters 4, save_every 2: data 132 KB on tmpfs (9 files), the iteration-2 checkpoint ~140 KB, the
fused model 630 KB (model.safetensors 562 KB)."""

import errno
import json
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from synthia.pipeline import stagedir, steps
from tests.sample_data import small_run_config, write_dataset

ROOT = Path(__file__).resolve().parents[1]
CONFIG = small_run_config()


@contextmanager
def tmpfs(path, size):
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a {size} tmpfs here ({mounted.stderr.decode().strip()}); needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)])


def grow(path, size):
    """Make room: the files on the tmpfs stay, as when a user deletes something else on a full disk."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


def train(root, tiny_model_dir):
    command = [sys.executable, str(ROOT / "train_mlx.py"), "--base-model", str(tiny_model_dir), "--dataset",
               str(root / "data.jsonl"), "--config", str(root / "c.yaml"), "--output-dir", str(root / "models"),
               "--stage", "1", "--iters", "4"]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)


@pytest.fixture
def root(tmp_path):
    (tmp_path / "c.yaml").write_text(CONFIG)
    write_dataset(tmp_path / "data.jsonl", per_category=12, categories=["tool_use"])
    return tmp_path


def assert_disk_full_message(result, step, where):
    assert result.returncode == 1, result.stderr
    err = result.stderr
    assert err.startswith(f"error: stage 1: step '{step}' failed (exit code 1).")
    assert f"The disk is full: the step could not write to {where}" in err
    assert "Free some space there, or choose another --output-dir" in err and "--iters 4" in err
    assert "Unable to write" in err  # the child's own last line, the cause
    assert "Traceback" not in err and 'File "' not in err


def test_a_checkpoint_that_does_not_fit_stops_the_stage_and_the_same_command_finishes_it(root, tiny_model_dir):
    paths = stagedir.stage_paths(root / "models", 1)
    with tmpfs(paths.stage_dir, "256k"):
        result = train(root, tiny_model_dir)
        assert_disk_full_message(result, "train", paths.stage_dir)
        assert "iter 2/4  valid" in result.stderr  # the tail of the child's output
        assert (paths.stage_dir / "data" / "train.jsonl").exists()  # data preparation fitted
        assert not (paths.stage_dir / "checkpoint.safetensors").exists()  # only its .tmp file, never trusted
        log = (paths.stage_dir / "stage.log").read_text()
        assert f"OSError: cannot write {paths.stage_dir / 'checkpoint.safetensors'}: [write] Unable to write" in log
        assert stagedir.finished_stage(paths) is None and not paths.fused_dir.exists()

        grow(paths.stage_dir, "8m")
        resumed = train(root, tiny_model_dir)
        assert resumed.returncode == 0, resumed.stderr
        assert "continuing the interrupted attempt" in resumed.stdout
        assert stagedir.finished_stage(paths)["status"] == "done"


def test_a_fused_model_that_does_not_fit_stops_at_the_fuse_and_resumes_there(root, tiny_model_dir):
    paths = stagedir.stage_paths(root / "models", 1)
    with tmpfs(stagedir.fused_tmp(paths), "300k"):
        result = train(root, tiny_model_dir)
        assert_disk_full_message(result, "fuse", stagedir.fused_tmp(paths))
        record = json.loads(paths.run_json.read_text())
        assert record["status"] == "running" and "train" in record["timings"] and "fuse" not in record["timings"]
        assert not paths.fused_dir.exists() and stagedir.finished_stage(paths) is None
    resumed = train(root, tiny_model_dir)  # the small disk is gone: the fused model goes to the roomy one
    assert resumed.returncode == 0, resumed.stderr
    assert "train: finished by the interrupted attempt; skipping" in resumed.stdout
    assert stagedir.finished_stage(paths)["status"] == "done"


def fill(disk):
    try:
        with open(disk / "filler", "wb", buffering=0) as f:
            while True:
                f.write(b"x" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC


def test_a_log_that_cannot_be_written_still_ends_in_the_steps_own_failure(tmp_path):
    disk = tmp_path / "full"
    with tmpfs(disk, "64k"):
        fill(disk)
        child = ("import sys\nfor i in range(3000): print('working', i)\n"
                 "raise OSError(28, 'No space left on device', '/data/out/shard-1.safetensors')")
        with pytest.raises(steps.StepFailed) as failed:
            steps.run_step(1, "fuse", [sys.executable, "-c", child], None, disk / "stage.log", "python train_mlx.py")
    message = str(failed.value)
    assert f"{disk / 'stage.log'} could not be written past some point: No space left on device" in message
    assert "working 2999" in message and "OSError: [Errno 28] No space left on device" in message
    assert "The disk is full: the step could not write to /data/out" in message and "Traceback" not in message
