"""What the parent hands the worker (synthia.train.jobs): a job reads back as written, and a job file whose fields
do not match its dataclass stops the worker before a model loads, naming the file, the fields and the fix."""

import subprocess
import sys

import pytest

from synthia.train import jobs, worker
from tests.worker_jobs import ROOT, train_job

FIX = "Fix: run the stage again with train_mlx.py, which writes the job file"


RUN = {"label": "fused", "model": "m", "splits": {"valid": "v.tokens.npz"}, "num_batches": {"valid": 2}}


def evaluate_job(run):
    return jobs.make_job("evaluate", runs=[run], batch_size=2, max_seq_length=64, loss_chunk_size=None,
                         result="eval_result.json")


def test_a_written_job_reads_back_equal_with_its_runs_typed(tmp_path):
    job = evaluate_job(RUN)
    jobs.write_job(tmp_path / "eval_job.json", job)
    back = jobs.read_job("evaluate", tmp_path / "eval_job.json")
    assert back == job and isinstance(back.runs[0], jobs.EvaluateRun) and back.runs[0].num_batches == {"valid": 2}


def test_building_a_job_with_a_missing_or_unknown_field_names_them():
    with pytest.raises(jobs.JobError) as refused:
        jobs.make_job("score", model="m", splits={}, chat_template=None, limit=None, max_new_tokens=None,
                      samples=None, bench=None, result="r.json", learning_rate=1e-5)
    assert str(refused.value) == ("the score job being built: the fields do not match ScoreJob: missing "
                                  "bench_limit, max_prompt_tokens; unknown learning_rate")


def test_an_evaluate_run_with_a_missing_field_is_named_by_its_number():
    with pytest.raises(jobs.JobError) as refused:
        evaluate_job({key: value for key, value in RUN.items() if key != "num_batches"})
    assert str(refused.value) == ("the evaluate job being built, run 1: the fields do not match EvaluateRun: "
                                  "missing num_batches")


def test_a_job_file_that_does_not_match_its_dataclass_stops_the_worker_with_exit_2(tmp_path):
    job = train_job("model", tmp_path, "t.tokens.npz", "v.tokens.npz")
    jobs.write_job(tmp_path / "train_job.json", job)
    text = (tmp_path / "train_job.json").read_text().replace('"seed": 7', '"learning_rate": 0.001')
    (tmp_path / "train_job.json").write_text(text)
    done = subprocess.run([sys.executable, "-m", "synthia.train.worker", "train", str(tmp_path / "train_job.json")],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr == (f"error: {tmp_path / 'train_job.json'}: the fields do not match TrainJob: missing seed; "
                           f"unknown learning_rate. {FIX}\n")
    assert not (tmp_path / "train_result.json").exists()


def test_a_job_file_that_is_not_json_is_an_error_with_the_fix(tmp_path, capsys):
    (tmp_path / "score_job.json").write_text('{"model": ')
    assert worker.main(["score", str(tmp_path / "score_job.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'score_job.json'}: cannot read the score job (Expecting value: line 1 "
                          "column 11 (char 10))")
    assert err.endswith(f". {FIX}\n")


def test_the_worker_refuses_an_unknown_kind_with_its_usage(capsys):
    assert worker.main(["fit", "job.json"]) == 2
    assert capsys.readouterr().err == ("usage: python -m synthia.train.worker {train,evaluate,score} JOB.json (got "
                                       "'fit job.json'); train_mlx.py writes the job and runs this\n")
