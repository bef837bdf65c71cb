"""A stage's life across runs: what a dry run says it will do, what changes a finished stage, resuming at the
step that failed, and --test on a finished stage."""

import json

import pytest

import train_mlx
from tests.sample_data import small_run_config, small_run_workspace, stage_one_args

CONFIG = small_run_config()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return small_run_workspace(tmp_path_factory.mktemp("lifecycle"), CONFIG)


def cli(root, tiny_model_dir, output, *extra):
    return stage_one_args(root, tiny_model_dir, output, 2, *extra)


@pytest.fixture(scope="module")
def finished(root, tiny_model_dir):
    assert train_mlx.main(cli(root, tiny_model_dir, "done")) == 0
    return root / "done"


def test_a_dry_run_says_a_finished_stage_is_skipped(root, tiny_model_dir, finished, capsys):
    assert train_mlx.main(cli(root, tiny_model_dir, "done", "--dry-run")) == 0
    assert "[stage 1] would skip: already done with the same inputs" in capsys.readouterr().out


def test_a_dry_run_of_a_new_stage_says_it_trains(root, tiny_model_dir, capsys):
    assert train_mlx.main(cli(root, tiny_model_dir, "fresh", "--dry-run")) == 0
    assert "[stage 1] would train" in capsys.readouterr().out


def test_a_logging_only_key_does_not_make_a_finished_stage_stale(root, tiny_model_dir, finished, capsys):
    (root / "quiet.yaml").write_text(CONFIG.replace("steps_per_report: 1", "steps_per_report: 2"))
    args = cli(root, tiny_model_dir, "done", "--dry-run") + ["--config", str(root / "quiet.yaml")]
    assert train_mlx.main(args) == 0
    assert "would skip: already done" in capsys.readouterr().out


def test_a_changed_chat_template_makes_a_finished_stage_stale(root, tiny_model_dir, finished, capsys):
    template = (tiny_model_dir / "tokenizer_config.json")
    changed = root / "changed.jinja"
    changed.write_text(json.loads(template.read_text())["chat_template"] + "{# a comment changes the content #}")
    args = cli(root, tiny_model_dir, "done", "--dry-run", "--chat-template", str(changed))
    assert train_mlx.main(args) == 0
    assert "would stop: finished with other inputs; needs --force" in capsys.readouterr().out


def test_test_on_a_finished_stage_runs_only_the_missing_evaluation(root, tiny_model_dir, finished, capsys):
    assert "test" not in json.loads((finished / "stage1" / "run.json").read_text()) or \
        json.loads((finished / "stage1" / "run.json").read_text())["test"] is None
    assert train_mlx.main(cli(root, tiny_model_dir, "done", "--test")) == 0
    out = capsys.readouterr().out
    assert "synthia.train.worker evaluate" in out and "test_job.json" in out
    assert "synthia.train.worker train" not in out and "synthia.train.fuse fuse" not in out
    record = json.loads((finished / "stage1" / "run.json").read_text())
    assert record["test"]["loss"] > 0


def test_a_failed_fuse_resumes_at_the_fuse_step(root, tiny_model_dir, capsys):
    output = root / "fuse-fails"
    output.mkdir()
    (output / "synthia-stage1.partial").write_text("in the way: the fuse cannot create its directory")
    assert train_mlx.main(cli(root, tiny_model_dir, "fuse-fails")) == 1
    assert "stage 1: step 'fuse' failed" in capsys.readouterr().err
    (output / "synthia-stage1.partial").unlink()
    assert train_mlx.main(cli(root, tiny_model_dir, "fuse-fails", "--dry-run")) == 0
    assert "would resume after the train step" in capsys.readouterr().out
    assert train_mlx.main(cli(root, tiny_model_dir, "fuse-fails")) == 0
    out = capsys.readouterr().out
    assert "train: finished by the interrupted attempt; skipping" in out
    assert "synthia.train.worker train" not in out and "synthia.train.fuse fuse" in out
    assert (output / "synthia-stage1" / "config.json").exists()


def test_run_json_names_the_base_model_really_used(finished, tiny_model_dir):
    record = json.loads((finished / "stage1" / "run.json").read_text())
    assert record["config"]["base_model"] == str(tiny_model_dir)


def test_a_finished_stage_whose_weights_changed_is_redone_with_a_warning(root, tiny_model_dir, finished, capsys):
    weights = finished / "synthia-stage1" / "model.safetensors"
    damaged = bytearray(weights.read_bytes())
    damaged[-1] ^= 0xFF  # same size: only the hash can tell
    weights.write_bytes(bytes(damaged))
    assert train_mlx.main(cli(root, tiny_model_dir, "done")) == 0
    captured = capsys.readouterr()
    said = captured.out + captured.err
    assert "model.safetensors: same size but other content" in said and "the stage will be redone" in said
    assert "already done" not in said and "synthia.train.fuse fuse" in said
    assert weights.read_bytes() != bytes(damaged)
    assert train_mlx.main(cli(root, tiny_model_dir, "done", "--dry-run")) == 0
    assert "would skip: already done with the same inputs" in capsys.readouterr().out


def test_files_a_user_put_in_the_fused_directory_survive_a_forced_redo(root, tiny_model_dir, finished):
    note = finished / "synthia-stage1" / "MY_NOTES.txt"
    note.write_text("mine")
    assert train_mlx.main(cli(root, tiny_model_dir, "done", "--force")) == 0
    assert note.read_text() == "mine"
    assert (finished / "synthia-stage1" / "model.safetensors").exists()


def test_an_interrupted_attempt_with_other_inputs_is_kept_without_force(root, tiny_model_dir, capsys):
    output = root / "interrupted"
    (output / "stage1").mkdir(parents=True)
    (output / "stage1" / "fingerprint.json").write_text('{"other": "inputs"}')
    (output / "stage1" / "checkpoint.safetensors").write_bytes(b"an earlier attempt's checkpoint")
    assert train_mlx.main(cli(root, tiny_model_dir, "interrupted")) == 2
    err = capsys.readouterr().err
    assert "holds an interrupted attempt made with other inputs" in err and "--force" in err
    assert (output / "stage1" / "checkpoint.safetensors").read_bytes() == b"an earlier attempt's checkpoint"


def test_a_later_stage_refuses_a_dataset_that_changed_since_the_stage_it_starts_from(root, tiny_model_dir, finished,
                                                                                       capsys):
    changed = root / "changed.jsonl"
    lines = (root / "data.jsonl").read_text().splitlines(True)
    changed.write_text("".join(lines[1:]))  # one conversation fewer
    args = cli(root, tiny_model_dir, "done") + ["--stage", "2", "--dataset", str(changed)]
    assert train_mlx.main(args) == 2
    err = capsys.readouterr().err
    assert "stage 2: the dataset changed since stage 1 was trained" in err
    assert "--stage all" in err and "--force" in err
    assert not (finished / "stage2").exists()


def test_upload_dry_run_lists_the_newest_finished_model_and_sends_nothing(root, tiny_model_dir, finished, capsys,
                                                                          monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing may leave the machine; a dry run needs no network
    assert train_mlx.main(cli(root, tiny_model_dir, "done", "--upload", "you/synthia-test", "--dry-run")) == 0
    out = capsys.readouterr().out
    assert "[upload] would upload stage 1's model" in out and "you/synthia-test" in out
    assert "model.safetensors" in out and "[upload] dry run: nothing was uploaded" in out


def test_upload_dry_run_of_model_uploads_that_directory_not_the_newest_stage(root, tiny_model_dir, finished, capsys,
                                                                            monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = cli(root, tiny_model_dir, "done", "--upload", "you/synthia-test", "--model", str(tiny_model_dir),
               "--dry-run")
    assert train_mlx.main(args) == 0
    out = capsys.readouterr().out
    assert f"[upload] would upload the model in {tiny_model_dir} to https://huggingface.co/you/synthia-test: " in out
    assert str(finished / "synthia-stage1") not in out and "[upload] dry run: nothing was uploaded" in out


def test_upload_dry_run_of_model_needs_no_stage_and_no_base_model(root, tiny_model_dir, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = ["--upload", "you/synthia-test", "--model", str(tiny_model_dir), "--output-dir", str(root / "nothing-yet"),
            "--dry-run"]
    assert train_mlx.main(args) == 0
    captured = capsys.readouterr()
    assert f"[upload] would upload the model in {tiny_model_dir} to " in captured.out
    assert "[upload] dry run: nothing was uploaded" in captured.out and captured.err == ""


# --- damaged state -----------------------------------------------------------------------------------------
def test_a_run_json_that_is_not_json_is_named_with_its_line_before_the_stage_continues(root, tiny_model_dir, capsys):
    stage_dir = root / "damaged-run-json" / "stage1"
    stage_dir.mkdir(parents=True)
    (stage_dir / "run.json").write_text('{"stage": 1, "status": "running",\n "timings": {"train": 3.2,\n')
    for extra in ("--dry-run",), ():
        assert train_mlx.main(cli(root, tiny_model_dir, "damaged-run-json", *extra)) == 2
        captured = capsys.readouterr()
        assert captured.err == (f"error: {stage_dir / 'run.json'}: not valid JSON (line 3 column 1: Expecting property "
                                "name enclosed in double quotes); it records which steps of the stage finished, with "
                                "their results. Fix: restore it, or delete it: the stage's steps then run again "
                                "(training resumes from its last checkpoint)\n")
        assert "synthia.train.worker" not in captured.out
    (stage_dir / "run.json").unlink()  # the fix the message gives
    assert train_mlx.main(cli(root, tiny_model_dir, "damaged-run-json")) == 0


def test_a_fingerprint_json_that_is_not_an_object_is_named_with_the_fix(root, tiny_model_dir, capsys):
    stage_dir = root / "damaged-fingerprint" / "stage1"
    stage_dir.mkdir(parents=True)
    (stage_dir / "fingerprint.json").write_text("[]")
    assert train_mlx.main(cli(root, tiny_model_dir, "damaged-fingerprint")) == 2
    assert capsys.readouterr().err == (f"error: {stage_dir / 'fingerprint.json'}: not a JSON object (it holds a list); "
                                       "it records the inputs the stage's files were made from. Fix: restore it, or "
                                       "delete it and re-run with --force to start the stage again\n")


def test_upload_gguf_without_an_export_says_to_export_first(root, tiny_model_dir, finished, capsys):
    args = cli(root, tiny_model_dir, "done", "--upload", "you/synthia-test", "--upload-gguf", "--dry-run")
    assert train_mlx.main(args) == 2
    assert "export first with --export gguf" in capsys.readouterr().err
