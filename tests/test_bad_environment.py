"""Broken models, unwritable outputs and closed pipes end in a clear message and the right exit code."""

import shutil
import subprocess
import sys
from pathlib import Path

import train_mlx
from synthia import runstate
from tests.sample_data import write_dataset

ROOT = Path(__file__).resolve().parents[1]


def run(tmp_path, base, *extra):
    write_dataset(tmp_path / "d.jsonl")
    return train_mlx.main(["--base-model", str(base), "--dataset", str(tmp_path / "d.jsonl"), "--output-dir",
                           str(tmp_path / "models"), "--dry-run", *extra])


def test_an_empty_model_directory_names_what_is_missing(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert run(tmp_path, tmp_path / "empty") == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'empty' / 'config.json'}: missing" in err and "no *.safetensors weight files" in err
    assert "Traceback" not in err


def test_a_truncated_weight_file_is_named(tmp_path, tiny_model_dir, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    assert run(tmp_path, broken) == 2
    err = capsys.readouterr().err
    assert f"{weights}: truncated" in err


def test_a_corrupt_weight_file_is_named(tmp_path, tiny_model_dir, capsys):
    broken = tmp_path / "corrupt"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    assert run(tmp_path, broken) == 2
    assert "model.safetensors: not a safetensors file" in capsys.readouterr().err


def test_an_output_directory_that_cannot_be_made_is_an_environment_error(tmp_path, tiny_model_dir, capsys):
    (tmp_path / "a-file").write_text("not a directory")
    args = ["--base-model", str(tiny_model_dir), "--dataset", str(write_dataset(tmp_path / "d.jsonl")),
            "--output-dir", str(tmp_path / "a-file" / "models"), "--dry-run"]
    assert train_mlx.main(args) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "a-file" / "models") in err and "Traceback" not in err


def test_preview_into_a_closed_pipe_ends_quietly(tmp_path, tiny_model_dir):
    data = write_dataset(tmp_path / "d.jsonl")
    command = (f"{sys.executable} {ROOT / 'train_mlx.py'} --base-model {tiny_model_dir} --dataset {data} "
               f"--preview 1 --json | head -n 1")
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=ROOT)
    assert result.stdout.strip() == "{"
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


def test_a_complete_model_directory_has_no_problems(tiny_model_dir):
    assert runstate.model_dir_problems(tiny_model_dir) == []


def test_a_stage_that_cannot_fit_on_disk_stops_before_training(tmp_path, tiny_model_dir, capsys):
    small = tmp_path / "small-disk"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(small)], capture_output=True)
    if mounted.returncode != 0:
        import pytest

        pytest.skip(f"cannot mount a 4 MB tmpfs here ({mounted.stderr.decode().strip()}); needs root")
    try:
        (tmp_path / "c.yaml").write_text("train_bits: null\nnum_layers: -1\n")
        args = ["--base-model", str(tiny_model_dir), "--dataset", str(write_dataset(tmp_path / "d.jsonl")),
                "--config", str(tmp_path / "c.yaml"), "--output-dir", str(small / "models"), "--stage", "1"]
        assert train_mlx.main(args) == 1
        err = capsys.readouterr().err
        assert "stage 1 needs about 0.02 GB of disk" in err and "GB is free" in err
        assert not (small / "models" / "stage1" / "train_job.json").exists()
    finally:
        subprocess.run(["umount", str(small)])


def test_ctrl_c_stops_the_child_first_and_frees_the_lock(tmp_path, tiny_model_dir):
    import signal

    (tmp_path / "c.yaml").write_text("train_bits: null\nnum_layers: -1\nsteps_per_report: 1\nsteps_per_eval: 50\n"
                                     "grad_checkpoint: false\n")
    command = [sys.executable, str(ROOT / "train_mlx.py"), "--base-model", str(tiny_model_dir), "--dataset",
               str(write_dataset(tmp_path / "d.jsonl")), "--config", str(tmp_path / "c.yaml"), "--output-dir",
               str(tmp_path / "models"), "--stage", "1", "--iters", "200"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    child = None
    for line in process.stdout:
        if "iter 2/200  train" in line:
            child = int(next(iter((Path(f"/proc/{process.pid}/task") / str(process.pid) / "children")
                                  .read_text().split())))
            process.send_signal(signal.SIGINT)
            break
    assert child is not None
    process.stdout.read()
    assert process.wait(timeout=60) == 130
    assert "interrupted: finished stages are kept" in process.stderr.read()
    assert not Path(f"/proc/{child}").exists() or "zombie" in Path(f"/proc/{child}/status").read_text()
    with runstate.output_lock(tmp_path / "models"):
        pass
