"""A stage's files: where they live, run.json, and moving a fused model into place without touching what a
user put beside it. Nothing here decides what to run; train_mlx.py does."""

import json
import os
from dataclasses import dataclass
from pathlib import Path


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


def read_run_json(paths):
    try:
        return json.loads(paths.run_json.read_text())
    except (OSError, ValueError):
        return None


def fused_files(directory):
    return {f.name: f.stat().st_size for f in sorted(Path(directory).iterdir()) if f.is_file()}


def finished_stage(paths, warn=print):
    """run.json of a stage that completed and whose fused model is intact, else None (damage is said)."""
    record = read_run_json(paths)
    if not record or record.get("status") != "done":
        return None
    expected = record.get("fused_files", {})
    actual = fused_files(paths.fused_dir) if paths.fused_dir.is_dir() else {}
    damaged = sorted(name for name, size in expected.items() if actual.get(name) != size)
    if damaged or not expected:
        warn(f"WARNING: {paths.fused_dir} does not match what run.json recorded (missing or changed: "
             f"{', '.join(damaged) or 'the whole model'}); the stage will be redone")
        return None
    return record


# What the pipeline writes in models/stageN: only these are ever removed (with --force).
PIPELINE_FILES = ("data", "stage.log", "run.json", "fingerprint.json", "train_job.json", "eval_job.json",
                  "train_result.json", "eval_result.json", "adapter_config.json", "adapters.safetensors",
                  "best_adapters.safetensors", "last_adapters.safetensors", "checkpoint.safetensors",
                  "test_job.json", "test_result.json")
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
    if not paths.fused_dir.exists():
        tmp.rename(paths.fused_dir)
        return
    for stale in (f for pattern in MODEL_FILE_PATTERNS for f in paths.fused_dir.glob(pattern)):
        stale.unlink()  # an old shard left beside new ones would be loaded with them
    for item in tmp.iterdir():
        os.replace(item, paths.fused_dir / item.name)
    tmp.rmdir()


