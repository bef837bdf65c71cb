"""Scoring a model's tool calls in a child process (synthia.train.worker's score job), with each split's result kept
in out_dir/eval.json beside the digest of the file it came from, so a model is never scored twice on the same
file (the base model's splits are shared by every stage); BFCL's result is kept in out_dir/bfcl.json beside what
it was scored with."""

import json
from pathlib import Path

from synthia.files import file_sha256
from synthia.pipeline import runstate, steps
from synthia.scorecard import bfcl, bfcl_score
from synthia.train import jobs


def bfcl_key(model_dir, settings):
    """What a BFCL result depends on besides the model's weights: scored again when any of it changes."""
    return {"model": str(model_dir), "chat_template": settings["chat_template"], "limit": settings["bench_limit"],
            "bfcl_eval": bfcl.installed_version(), "max_new_tokens": bfcl_score.MAX_NEW_TOKENS}


def forget_scores_of_another_file(model_path, out_dir):
    """A model file (a GGUF) written again since out_dir's scores were made: its old scores are removed. (A model
    directory's scores live in its stage's directory, which is redone with the stage.)"""
    if not model_path.is_file():
        return
    stamp_file = out_dir / "model_stamp.json"
    stamp = {"path": str(model_path), "bytes": model_path.stat().st_size, "mtime_ns": model_path.stat().st_mtime_ns}
    if stamp_file.exists() and json.loads(stamp_file.read_text()) != stamp:
        for name in ("eval.json", "bfcl.json"):
            (out_dir / name).unlink(missing_ok=True)
    runstate.write_json(stamp_file, stamp)


def read_bfcl(out_dir):
    """The BFCL result kept in out_dir/bfcl.json, or None."""
    path = out_dir / "bfcl.json"
    return json.loads(path.read_text()) if path.exists() else None


def score_model(label, model_dir, splits, out_dir, settings, env, rerun, log):
    """{split: result} for `model_dir` on `splits` ({name: OpenAI JSONL file}); writes out_dir/eval.json and, with
    settings["samples"], samples.md; with settings["bench"] == "bfcl", BFCL's result in out_dir/bfcl.json.
    settings: chat_template, limit, max_prompt_tokens, samples, bench, bench_limit."""
    out_dir.mkdir(parents=True, exist_ok=True)
    forget_scores_of_another_file(Path(model_dir), out_dir)
    eval_file = out_dir / "eval.json"
    cached = json.loads(eval_file.read_text()) if eval_file.exists() else {}
    digests = {name: file_sha256(path)[:16] for name, path in splits.items()}
    todo = {name: path for name, path in splits.items() if cached.get(name, {}).get("file_digest") != digests[name]}
    key = bfcl_key(model_dir, settings)
    bench_todo = settings["bench"] == "bfcl" and (read_bfcl(out_dir) or {}).get("key") != key
    if not todo and not bench_todo:
        log(f"score: {out_dir} already holds these scores; skipping", label)
        return {name: cached[name] for name in splits}
    job = jobs.make_job("score", model=str(model_dir), splits=todo, chat_template=settings["chat_template"],
                        limit=settings["limit"], max_new_tokens=None, max_prompt_tokens=settings["max_prompt_tokens"],
                        samples=str(out_dir / "samples.md") if settings["samples"] and todo else None,
                        bench="bfcl" if bench_todo else None, bench_limit=settings["bench_limit"],
                        result=str(out_dir / "scores.json"))
    command = steps.worker_command("score", out_dir / "score_job.json")
    jobs.write_job(command[-1], job)
    steps.run_step(label, "score", command, env, out_dir / "score.log", rerun)
    fresh = json.loads((out_dir / "scores.json").read_text())
    cached.update({name: {**result, "file_digest": digests[name]} for name, result in fresh["splits"].items()})
    runstate.write_json(eval_file, cached)
    if fresh["bfcl"] is not None:
        runstate.write_json(out_dir / "bfcl.json", {"key": key, **fresh["bfcl"]})
    return {name: cached[name] for name in splits}
