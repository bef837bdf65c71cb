"""Broken models, unwritable outputs and closed pipes end in a clear message and the right exit code."""

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import train_mlx
from synthia.pipeline import runstate
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


@pytest.mark.parametrize("inside", ["", "models"], ids=["the file itself", "a directory inside it"])
def test_an_output_directory_that_is_a_file_is_an_input_error(tmp_path, tiny_model_dir, capsys, inside):
    (tmp_path / "a-file").write_text("not a directory")
    output = tmp_path / "a-file" / inside
    args = ["--base-model", str(tiny_model_dir), "--dataset", str(write_dataset(tmp_path / "d.jsonl")),
            "--output-dir", str(output), "--dry-run"]
    assert train_mlx.main(args) == 2
    where = "it is a file" if not inside else f"{tmp_path / 'a-file'} is a file"
    assert capsys.readouterr().err == f"error: --output-dir {output}: {where}, not a directory. Fix: choose another " \
                                      "--output-dir (a directory, made when missing)\n"


# --- --evaluate, --export and --upload check the model before a child process starts ----------------------
def model_without(tmp_path, tiny_model_dir, *names):
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model_dir, broken)
    for name in names:
        (broken / name).unlink()
    return broken


def cannot_be_loaded(model, flag, *problems):
    return (f"error: the model directory {model} cannot be loaded:\n" + "".join(f"  {p}\n" for p in problems)
            + f"  Fix: point {flag} at a complete MLX model directory (config.json, tokenizer, *.safetensors), or "
              "copy or download it again\n")


@pytest.mark.parametrize("missing, problem", [("model.safetensors", "no *.safetensors weight files"),
                                              ("tokenizer.json", "no tokenizer (tokenizer.json)")])
def test_evaluate_on_a_model_without_weights_or_tokenizer_names_them_and_starts_no_child(tmp_path, tiny_model_dir,
                                                                                         capsys, missing, problem):
    model = model_without(tmp_path, tiny_model_dir, missing)
    args = ["--evaluate", str(model), "--eval-data", str(write_dataset(tmp_path / "d.jsonl")), "--output-dir",
            str(tmp_path / "out")]
    assert train_mlx.main(args) == 2
    assert capsys.readouterr().err == cannot_be_loaded(model, "--evaluate", f"{model}: {problem}")
    assert not (tmp_path / "out").exists()


def test_evaluate_on_something_that_is_not_a_model_is_an_input_error(tmp_path, capsys):
    (tmp_path / "settings").mkdir()
    (tmp_path / "settings" / "config.json").write_text('{"theme": "dark"}')
    args = ["--evaluate", str(tmp_path / "settings"), "--eval-data", str(write_dataset(tmp_path / "d.jsonl"))]
    assert train_mlx.main(args) == 2
    settings = tmp_path / "settings"
    assert capsys.readouterr().err == cannot_be_loaded(
        settings, "--evaluate", f"{settings / 'config.json'}: no \"model_type\" key, so not a model's config",
        f"{settings}: no tokenizer (tokenizer.json)", f"{settings}: no *.safetensors weight files")


def test_evaluate_on_a_model_whose_template_drops_tools_is_stopped_before_scoring(tmp_path, tiny_model_dir, capsys):
    template = tmp_path / "plain.jinja"
    template.write_text("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}")
    args = ["--evaluate", str(tiny_model_dir), "--eval-data", str(write_dataset(tmp_path / "d.jsonl")),
            "--chat-template", str(template), "--output-dir", str(tmp_path / "out")]
    assert train_mlx.main(args) == 2
    assert "the chat template drops tool definitions" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_export_of_a_model_without_a_tokenizer_is_an_input_error(tmp_path, tiny_model_dir, capsys):
    model = model_without(tmp_path, tiny_model_dir, "tokenizer.json")
    assert train_mlx.main(["--export", "gguf", "--model", str(model), "--output-dir", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == cannot_be_loaded(model, "--model", f"{model}: no tokenizer (tokenizer.json)")
    assert not (tmp_path / "out").exists()


def test_model_without_export_or_upload_says_what_it_goes_with(tmp_path, tiny_model_dir, capsys):
    assert train_mlx.main(["--model", str(tiny_model_dir), "--output-dir", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (f"error: --model {tiny_model_dir}: names the model to ship, so it goes with "
                                       "--export gguf or --upload REPO. Fix: add one of them, or use --base-model to "
                                       "train from it\n")


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
    resume = shlex.join(["python", "train_mlx.py", *command[2:]])
    assert process.stderr.read().endswith("\ninterrupted: finished stages are kept, and training resumes from its last "
                                          f"checkpoint. To resume, run: {resume}\n")
    assert not Path(f"/proc/{child}").exists() or "zombie" in Path(f"/proc/{child}/status").read_text()
    with runstate.output_lock(tmp_path / "models"):
        pass
