"""A finished stage is trusted only while its fused model's files are the ones the pipeline wrote: sizes from
run.json, SHA-256 from the manifest, rehashing only files whose size or times moved."""

import json
import os
import shutil

import pytest

from synthia.pipeline import runstate, stagedir


@pytest.fixture
def stage(tmp_path, tiny_model_dir):
    """A finished stage 1 as run_stage leaves it: the model moved into place by finish_fused_model (which records
    the manifest), then run.json written with status done and the files' sizes."""
    paths = stagedir.stage_paths(tmp_path / "models", 1)
    paths.stage_dir.mkdir(parents=True)
    shutil.copytree(tiny_model_dir, stagedir.fused_tmp(paths))
    stagedir.finish_fused_model(paths, chat_template_file=None)
    runstate.write_json(paths.run_json, {"stage": 1, "status": "done",
                                         "fused_files": stagedir.fused_files(paths.fused_dir)})
    return paths


def later_ctime(paths):
    """Wait until the kernel's file clock has moved past the manifest's times, so a change made now gets a ctime
    of its own (the clock is coarse: two writes a millisecond apart can share one)."""
    newest = max(entry["ctime_ns"] for entry in stagedir.read_manifest(paths).values())
    probe = paths.stage_dir / "clock-probe"
    while True:
        probe.write_bytes(b"")
        if probe.stat().st_ctime_ns > newest:
            probe.unlink()
            return


def check(paths):
    warnings = []
    return stagedir.finished_stage(paths, warn=warnings.append), " ".join(warnings)


def flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_an_intact_finished_stage_is_trusted(stage):
    record, warnings = check(stage)
    assert record is not None and record["status"] == "done" and warnings == ""


def test_the_manifest_records_every_model_file_with_its_sha256(stage, tiny_model_dir):
    manifest = stagedir.read_manifest(stage)
    assert sorted(manifest) == sorted(f.name for f in tiny_model_dir.iterdir() if f.is_file())
    weights = manifest["model.safetensors"]
    assert weights["bytes"] == (tiny_model_dir / "model.safetensors").stat().st_size
    assert weights["sha256"] == stagedir.file_sha256(tiny_model_dir / "model.safetensors")
    assert weights["mtime_ns"] == (stage.fused_dir / "model.safetensors").stat().st_mtime_ns


def test_a_truncated_file_is_named_with_both_sizes(stage):
    weights = stage.fused_dir / "model.safetensors"
    size = weights.stat().st_size
    os.truncate(weights, size - 100)
    record, warnings = check(stage)
    assert record is None
    assert f"model.safetensors: {size - 100} bytes, recorded {size}" in warnings
    assert str(stage.fused_dir) in warnings and "the stage will be redone" in warnings


def test_a_deleted_file_is_named_as_missing(stage):
    (stage.fused_dir / "config.json").unlink()
    record, warnings = check(stage)
    assert record is None and "config.json: missing" in warnings


def test_a_deleted_model_directory_is_said(stage):
    shutil.rmtree(stage.fused_dir)
    record, warnings = check(stage)
    assert record is None and "the directory is missing" in warnings


def test_a_flipped_byte_of_the_same_size_is_caught_by_the_hash(stage):
    later_ctime(stage)
    flip_byte(stage.fused_dir / "model.safetensors", 5000)
    record, warnings = check(stage)
    assert record is None
    assert "model.safetensors: same size but other content (SHA-256" in warnings


def test_a_flipped_byte_with_its_old_mtime_restored_is_still_rehashed_and_caught(stage):
    # An edit that puts the recorded mtime back: ctime, which os.utime cannot set, gives it away.
    weights = stage.fused_dir / "model.safetensors"
    entry = stagedir.read_manifest(stage)["model.safetensors"]
    later_ctime(stage)
    flip_byte(weights, 5000)
    os.utime(weights, ns=(entry["mtime_ns"], entry["mtime_ns"]))
    assert weights.stat().st_mtime_ns == entry["mtime_ns"] and weights.stat().st_size == entry["bytes"]
    record, warnings = check(stage)
    assert record is None and "model.safetensors: same size but other content" in warnings


def test_a_touched_file_with_the_same_content_is_rehashed_passes_and_is_trusted_from_then_on(stage):
    config = stage.fused_dir / "config.json"
    before = stagedir.read_manifest(stage)["config.json"]
    later_ctime(stage)
    config.touch()
    assert config.stat().st_mtime_ns != before["mtime_ns"]
    record, warnings = check(stage)
    assert record is not None and warnings == ""
    after = stagedir.read_manifest(stage)["config.json"]
    assert after["mtime_ns"] == config.stat().st_mtime_ns and after["sha256"] == before["sha256"]


def test_a_file_whose_size_and_times_match_is_trusted_without_rehashing(stage):
    # The shortcut that spares reading 15 GB on every run: a wrong recorded hash goes unnoticed while the file's
    # size, mtime and ctime are the recorded ones.
    manifest = stagedir.read_manifest(stage)
    manifest["model.safetensors"]["sha256"] = "0" * 64
    stagedir.manifest_path(stage).write_text(json.dumps(manifest))
    assert check(stage)[0] is not None


def test_a_run_json_from_before_hashes_were_recorded_is_checked_by_size_only(stage):
    later_ctime(stage)
    stagedir.manifest_path(stage).unlink()
    flip_byte(stage.fused_dir / "model.safetensors", 5000)
    assert check(stage)[0] is not None  # what that version promised, no more
    os.truncate(stage.fused_dir / "model.safetensors", 10)
    assert check(stage)[0] is None


def test_a_forced_redo_removes_the_manifest_with_the_pipeline_files():
    assert stagedir.MANIFEST in stagedir.PIPELINE_FILES


def test_a_redone_model_is_hashed_but_files_a_user_added_beside_it_are_not(stage, tiny_model_dir):
    (stage.fused_dir / "MY_NOTES.txt").write_text("mine")
    shutil.copytree(tiny_model_dir, stagedir.fused_tmp(stage))
    stagedir.finish_fused_model(stage, chat_template_file=None)
    manifest = stagedir.read_manifest(stage)
    assert "MY_NOTES.txt" not in manifest and "model.safetensors" in manifest
    assert (stage.fused_dir / "MY_NOTES.txt").read_text() == "mine"
