"""Data-parallel training: `mlx.launch -n 2 --backend ring` runs the training worker as two ranks on this machine,
each in its own working directory (as on two machines, each with its own disk for outputs). They train on the two
halves of every batch and end with the losses and adapters of one process on the whole batch, even when one rank
holds 30 times the other's trained tokens; only rank 0 writes files."""

import json
import os
import shutil
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from synthia.pipeline.steps import worker_command
from synthia.train import jobs
from synthia.train.loop import BATCH_LOG_VARIABLE
from tests.worker_jobs import ROOT, run_worker, train_job, write_token_file

MLX_LAUNCH = str(Path(sys.executable).parent / "mlx.launch")
# Each rank starts in <dir>/rank<N>: relative output paths in the job then land on that rank's own "disk".
TWO_RANKS = [MLX_LAUNCH, "-n", "2", "--backend", "ring", "--", "bash", "-c", 'cd "$0/rank$MLX_RANK" && exec "$@"']
ITERS = 6


def uneven_examples(count, seed):
    """Examples sorted by length as the worker batches them; with batches of 4 split over 2 ranks, rank 0 gets the
    even ones (1 trained token each) and rank 1 the odd ones (30 each)."""
    rng = np.random.default_rng(seed)
    examples = []
    for i in range(count):
        length = 40 + 4 * i
        span = [10, 11] if i % 2 == 0 else [5, 35]
        examples.append({"tokens": rng.integers(0, 1024, length).tolist(), "spans": [span]})
    return examples


def launch(root, name, launcher, model_dir, token_files, env):
    """A training run whose outputs are relative to each rank's working directory <root>/<name>/rank<N>."""
    run_dir = root / name
    for rank in (0, 1):
        (run_dir / f"rank{rank}" / "adapters").mkdir(parents=True)
    (run_dir / "batches").mkdir()
    job = train_job(model_dir, "adapters", *token_files, batch_size=4, iters=ITERS, steps_per_eval=3, save_every=2,
                    result="adapters/train_result.json")
    launcher = [*launcher, str(run_dir)] if launcher else []
    done = run_worker("train", job, run_dir / "train_job.json", launcher, cwd=run_dir / "rank0",
                      env={**env, BATCH_LOG_VARIABLE: str(run_dir / "batches")})
    return run_dir, done


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("data-parallel")
    token_files = (write_token_file(root / "train.tokens.npz", uneven_examples(16, seed=1)),
                   write_token_file(root / "valid.tokens.npz", uneven_examples(5, seed=2)))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    found = {}
    for name, launcher in (("one", []), ("two", TWO_RANKS)):
        run_dir, done = launch(root, name, launcher, tiny_model_dir, token_files, env)
        assert done.returncode == 0 and (run_dir / "rank0/adapters/train_result.json").exists(), done.stdout + done.stderr
        found[name] = run_dir, done
    return {**found, "root": root, "env": env, "token_files": token_files}


def batch_log(run_dir, rank):
    lines = (run_dir / "batches" / f"rank{rank}.jsonl").read_text().splitlines()
    return {entry["iteration"]: entry for entry in map(json.loads, lines)}


def result(run_dir):
    return json.loads((run_dir / "rank0/adapters/train_result.json").read_text())


def test_two_ranks_run_to_the_end_and_rank_zero_reports(runs):
    _, done = runs["two"]
    assert done.stdout.count(f"iter {ITERS}/{ITERS}  train") == 1
    assert done.stdout.count(f"iter {ITERS}/{ITERS}  valid") == 1


def test_the_ranks_train_on_the_two_halves_of_every_batch(runs):
    whole = batch_log(runs["one"][0], 0)
    halves = batch_log(runs["two"][0], 0), batch_log(runs["two"][0], 1)
    assert sorted(whole) == sorted(halves[0]) == sorted(halves[1]) == list(range(1, ITERS + 1))
    for iteration, batch in whole.items():
        first, second = (set(half[iteration]["examples"]) for half in halves)
        assert len(first) == len(second) == 2 and not first & second
        assert first | second == set(batch["examples"]), iteration


def test_losses_equal_a_one_process_run_on_the_whole_batch(runs):
    one, two = result(runs["one"][0]), result(runs["two"][0])
    for reports, loss in (("train_reports", "train_loss"), ("val_reports", "val_loss")):
        assert [r["iteration"] for r in two[reports]] == [r["iteration"] for r in one[reports]]
        np.testing.assert_allclose([r[loss] for r in two[reports]], [r[loss] for r in one[reports]], rtol=1e-5)
    assert len(one["train_reports"]) == ITERS and len(one["val_reports"]) == 3


def test_every_trained_token_weighs_the_same_when_ranks_hold_very_different_counts(runs):
    halves = batch_log(runs["two"][0], 0), batch_log(runs["two"][0], 1)
    for iteration in halves[0]:
        assert halves[1][iteration]["trained_tokens"] == 30 * halves[0][iteration]["trained_tokens"] == 60
    one = mx.load(str(runs["one"][0] / "rank0/adapters/last_adapters.safetensors"))
    two = mx.load(str(runs["two"][0] / "rank0/adapters/last_adapters.safetensors"))
    assert one.keys() == two.keys() and one
    for name, weight in one.items():
        assert mx.allclose(two[name], weight, rtol=0, atol=1e-5).item(), name  # 1% of one Adam step at lr 1e-3


def test_only_rank_zero_writes_files(runs):
    run_dir, _ = runs["two"]
    written = {p.name for p in (run_dir / "rank0/adapters").iterdir()}
    assert {"adapter_config.json", "adapters.safetensors", "best_adapters.safetensors", "last_adapters.safetensors",
            "checkpoint.safetensors", "train_result.json"} <= written
    assert not [path for path in (run_dir / "rank1").rglob("*") if path.is_file()]


def test_ranks_that_would_resume_from_different_iterations_stop_with_the_fix(runs, tiny_model_dir):
    run_dir = runs["root"] / "resume"
    (run_dir / "rank1/adapters").mkdir(parents=True)
    shutil.copytree(runs["two"][0] / "rank0", run_dir / "rank0")
    (run_dir / "rank0/adapters/train_result.json").unlink()
    job = jobs.read_job("train", runs["two"][0] / "train_job.json")
    done = run_worker("train", job, run_dir / "train_job.json", [*TWO_RANKS, str(run_dir)], cwd=run_dir / "rank0",
                      env=runs["env"])
    assert "the ranks would resume from iterations [4, 0] (by rank)" in done.stderr
    assert "Fix: copy it to the same path on every machine" in done.stderr
    # mlx.launch (MLX 0.32) exits with 0 even when its ranks fail: the missing result is what tells.
    assert not (run_dir / "rank0/adapters/train_result.json").exists()


def test_training_runs_under_the_launcher_in_synthia_launcher_and_nothing_else_does(monkeypatch):
    monkeypatch.setenv("SYNTHIA_LAUNCHER", "mlx.launch --hostfile 'my hosts.json' --")
    python = [sys.executable, "-m", "synthia.train.worker"]
    assert worker_command("train", "j.json") == ["mlx.launch", "--hostfile", "my hosts.json", "--", *python,
                                                 "train", "j.json"]
    assert worker_command("evaluate", "j.json") == [*python, "evaluate", "j.json"]
    assert worker_command("train", "j.json", launcher=[]) == [*python, "train", "j.json"]
    monkeypatch.delenv("SYNTHIA_LAUNCHER")
    assert worker_command("train", "j.json") == [*python, "train", "j.json"]


def test_a_checkpoint_damaged_on_one_machine_only_is_named_and_stops_the_ranks(runs):
    """Each rank resumes from the newest whole checkpoint on its own disk: rank 1's newest is truncated, so it would
    resume from the one before while rank 0 resumes from the newest; they stop, and nothing is deleted."""
    run_dir = runs["root"] / "damaged-on-one"
    for rank in (0, 1):
        shutil.copytree(runs["two"][0] / "rank0", run_dir / f"rank{rank}")
        (run_dir / f"rank{rank}/adapters/train_result.json").unlink()
    newest = run_dir / "rank1/adapters/checkpoint.safetensors"
    whole = newest.stat().st_size
    newest.write_bytes(newest.read_bytes()[: whole // 2])
    job = jobs.read_job("train", runs["two"][0] / "train_job.json")
    done = run_worker("train", job, run_dir / "train_job.json", [*TWO_RANKS, str(run_dir)], cwd=run_dir / "rank0",
                      env=runs["env"])
    assert "resuming from iteration 4 (checkpoint.safetensors)" in done.stdout
    assert f"rank 1: adapters/checkpoint.safetensors is damaged (truncated: {whole // 2} bytes, its header describes " \
           f"{whole}); resuming from iteration 2 (checkpoint.prev.safetensors)\n" in done.stdout
    assert "the ranks would resume from iterations [4, 2] (by rank)" in done.stderr
    assert newest.stat().st_size == whole // 2 and not (run_dir / "rank0/adapters/train_result.json").exists()
