"""A stage's files: where they live, run.json, and moving a fused model into place without touching what a
user put beside it. Nothing here decides what to run; train_mlx.py does."""

import json
import os
from dataclasses import dataclass
from pathlib import Path

from synthia.files import file_sha256
from synthia.pipeline import runstate


@dataclass(frozen=True)
class StagePaths:
    stage_dir: Path  # models/stageN: data, adapters, run.json, logs
    fused_dir: Path  # models/synthia-stageN: the fused model

    @property
    def run_json(self):
        return self.stage_dir / "run.json"


def stage_paths(output_dir, number):
    return StagePaths(Path(output_dir) / f"stage{number}", Path(output_dir) / f"synthia-stage{number}")


def fused_tmp(paths):
    return partial_path(paths.fused_dir)


class DamagedState(ValueError):
    """A file that records a stage's progress does not parse; the message names it, where and the fix."""

    exit_code = 2


def read_state(path, what, fix):
    """A JSON object the pipeline wrote, or None when the file is missing. A file that does not parse is an error
    naming it, where it breaks, what it records (`what`) and `fix`: guessing past it would redo or skip the wrong
    steps."""
    try:
        value = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as e:
        problem = f"not valid JSON (line {e.lineno} column {e.colno}: {e.msg})"
    except ValueError as e:  # bytes that are not UTF-8
        problem = f"not valid JSON ({e})"
    else:
        if isinstance(value, dict):
            return value
        problem = f"not a JSON object (it holds a {type(value).__name__})"
    raise DamagedState(f"{path}: {problem}; it records {what}. Fix: {fix}")


def read_run_json(paths):
    return read_state(paths.run_json, "which steps of the stage finished, with their results",
                      "restore it, or delete it: the stage's steps then run again (training resumes from its last "
                      "checkpoint)")


def read_fingerprint(paths):
    return read_state(paths.stage_dir / "fingerprint.json", "the inputs the stage's files were made from",
                      "restore it, or delete it and re-run with --force to start the stage again")


def fused_files(directory):
    return {f.name: f.stat().st_size for f in sorted(Path(directory).iterdir()) if f.is_file()}


def finished_stage(paths, warn=print):
    """run.json of a stage that completed and whose fused model is intact, else None (damage is said)."""
    record = read_run_json(paths)
    if not record or record.get("status") != "done":
        return None
    problems = fused_model_problems(paths, record.get("fused_files", {}))
    if problems:
        warn(f"WARNING: {paths.fused_dir} does not match what was recorded when it was made "
             f"({'; '.join(problems)}); the stage will be redone")
        return None
    return record


# ---------------------------------------------------------------------------------------------------------
# Verifying a finished model: sizes from run.json, SHA-256 from the manifest
# ---------------------------------------------------------------------------------------------------------
# The manifest holds, per file the pipeline put in the fused directory, its bytes, SHA-256, mtime_ns and ctime_ns.
# A file whose bytes, mtime_ns and ctime_ns all still match is trusted without rehashing (a 15 GB model is read
# once, when it is made); any other file is rehashed and must match. ctime is in the key because the kernel sets it
# on every write and on every os.utime, so an edit that restores the old mtime still forces a rehash; only someone
# who also resets the clock or edits the raw disk gets past it. A run.json written before manifests existed has
# no manifest beside it: its sizes are checked, as that version did, and nothing is rehashed.
MANIFEST = "fused_manifest.json"


def attempt_status(paths, matches, force, warn=print):
    """What a real run would do with this stage, for --dry-run. matches(stored fingerprint): whether a fingerprint
    read back from the stage directory is this run's."""
    done = finished_stage(paths, warn=warn)
    if done is not None:
        if matches(done["fingerprint"]) and not force:
            return "skip: already done with the same inputs"
        return "redo (--force)" if force else "stop: finished with other inputs; needs --force"
    fingerprint = read_fingerprint(paths)
    if fingerprint is not None and matches(fingerprint):
        finished = list((read_run_json(paths) or {}).get("timings", {}))
        iteration = runstate.resume_iteration(paths.stage_dir)
        if "train" in finished:
            return f"resume after the {finished[-1]} step"
        if iteration:
            return f"resume training at iteration {iteration}"
    return "train"


def manifest_path(paths):
    return paths.stage_dir / MANIFEST


def file_entry(path, sha256=None):
    status = path.stat()
    return {"bytes": status.st_size, "sha256": sha256 or file_sha256(path), "mtime_ns": status.st_mtime_ns,
            "ctime_ns": status.st_ctime_ns}


def record_manifest(paths, names):
    """Hash the fused model's files now, while they are known to be the ones the pipeline wrote."""
    runstate.write_json(manifest_path(paths), {name: file_entry(paths.fused_dir / name) for name in sorted(names)})


def read_manifest(paths):
    try:
        return json.loads(manifest_path(paths).read_text())
    except (OSError, ValueError):
        return None


def unchanged_since_recorded(status, entry):
    return (status.st_size, status.st_mtime_ns, status.st_ctime_ns) == \
        (entry.get("bytes"), entry.get("mtime_ns"), entry.get("ctime_ns"))


def size_problems(directory, sizes):
    if not sizes:
        return ["run.json lists no model files"]
    if not directory.is_dir():
        return ["the directory is missing"]
    actual = fused_files(directory)
    return [f"{name}: missing" if name not in actual else f"{name}: {actual[name]} bytes, recorded {size}"
            for name, size in sorted(sizes.items()) if actual.get(name) != size]


def hash_problems(paths, manifest):
    """What differs from the manifest (rehashing only files whose size or times moved); when everything matches,
    the rehashed files' new times are recorded so the next run trusts them without reading them again."""
    problems, refreshed = [], {}
    for name, entry in sorted(manifest.items()):
        path = paths.fused_dir / name
        try:
            status = path.stat()
            if unchanged_since_recorded(status, entry):
                continue
            digest = file_sha256(path)
        except OSError as e:
            problems.append(f"{name}: unreadable ({e.strerror})")
            continue
        if status.st_size != entry.get("bytes"):
            problems.append(f"{name}: {status.st_size} bytes, recorded {entry.get('bytes')}")
        elif digest != entry.get("sha256"):
            problems.append(f"{name}: same size but other content (SHA-256 {digest[:12]}..., recorded "
                            f"{str(entry.get('sha256'))[:12]}...)")
        else:
            refreshed[name] = file_entry(path, sha256=digest)
    if refreshed and not problems:
        try:
            runstate.write_json(manifest_path(paths), {**manifest, **refreshed})
        except OSError:
            pass  # a read-only output directory: the files are rehashed again next time, nothing worse
    return problems


def fused_model_problems(paths, sizes):
    """Why the fused model is not the one recorded (each file named, with what differs); [] when it is."""
    problems = size_problems(paths.fused_dir, sizes)
    manifest = read_manifest(paths)
    if problems or manifest is None:
        return problems
    return hash_problems(paths, manifest)


# What the pipeline writes in models/stageN: only these are ever removed (with --force).
PIPELINE_FILES = ("data", "stage.log", "run.json", "fingerprint.json", "train_job.json", "eval_job.json",
                  "train_result.json", "eval_result.json", "adapter_config.json", "adapters.safetensors",
                  "best_adapters.safetensors", "last_adapters.safetensors", *runstate.CHECKPOINTS,
                  "checkpoint.tmp.safetensors", "test_job.json", "test_result.json", MANIFEST)
# A fused model's own files: replaced when a stage is redone; anything else in the directory stays.
MODEL_FILE_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "config.json", "generation_config.json",
                       "tokenizer*", "special_tokens_map.json", "chat_template.jinja", "vocab.json", "merges.txt",
                       "added_tokens.json")


def partial_path(path):
    return path.with_name(path.name + ".partial")


def finish_fused_model(paths, chat_template_file):
    """Carry a --chat-template override into the fused model, then move it into place. Files a user put in the
    fused directory stay; the previous model's files are replaced."""
    tmp = fused_tmp(paths)
    if chat_template_file:
        config_file = tmp / "tokenizer_config.json"
        tokenizer_config = json.loads(config_file.read_text())
        tokenizer_config["chat_template"] = Path(chat_template_file).read_text()
        config_file.write_text(json.dumps(tokenizer_config, indent=2))
        (tmp / "chat_template.jinja").unlink(missing_ok=True)
    made = [item.name for item in tmp.iterdir() if item.is_file()]
    if not paths.fused_dir.exists():
        tmp.rename(paths.fused_dir)
    else:
        for stale in (f for pattern in MODEL_FILE_PATTERNS for f in paths.fused_dir.glob(pattern)):
            stale.unlink()  # an old shard left beside new ones would be loaded with them
        for item in tmp.iterdir():
            os.replace(item, paths.fused_dir / item.name)
        tmp.rmdir()
    record_manifest(paths, made)


