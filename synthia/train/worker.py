"""The child process that trains or evaluates one stage, so memory returns to the system between stages.

    python -m synthia.train.worker train JOB.json       # LoRA training: our loop, mlx_lm's parts, our loss mask
    python -m synthia.train.worker evaluate JOB.json    # masked loss / perplexity of models on token files
    python -m synthia.train.worker score JOB.json       # tool-calling scorecard of a model, by generation

train_mlx.py writes JOB.json, one of the dataclasses of jobs.py with every setting resolved (the worker keeps no
defaults), and the worker reads nothing else; the result goes to the job's `result` path as JSON. A job that does
not match its dataclass, or that cannot run as written, is an error message and exit status 2. The train job is
loop.py, the evaluate job evaluate.py; the score job, a few lines, is here.
"""

import sys

import mlx.core as mx

from synthia import files
from synthia.platform import cpu_backend
from synthia.train import jobs
from synthia.train.evaluate import evaluate_job
from synthia.train.loop import train_job


def score_job(job):
    """Tool-calling scores of one model on held-out files, by generation, and on BFCL when the job asks:
    {"splits": {split label: eval result}, "bfcl": BFCL result or None}."""
    from synthia.data import validate
    from synthia.scorecard import bfcl_score, generation, gguf_generation

    # An MLX model directory, or a .gguf file run in llama.cpp (model None). The generator is shared: nested splits
    # hold the same conversations.
    model, tokenizer, generator = gguf_generation.load_for_scoring(job.model, job.chat_template)
    tools, results = validate.load_default_tools(), {}
    for label, path in job.splits.items():
        examples = validate.validate_file(path).examples
        results[label] = generation.score_conversations(
            model, tokenizer, examples, tools, max_new_tokens=job.max_new_tokens,
            max_prompt_tokens=job.max_prompt_tokens, limit=job.limit, progress=False, label=label,
            generator=generator)
        overall = results[label]["metrics"]["overall"]
        print(f"{label}: {results[label]['counts']['turns_scored']} turns, exact {overall['exact']['rate'] or 0:.1%}, "
              f"valid {overall['valid']['rate'] or 0:.1%}", flush=True)
    if job.samples:
        held_out = generation.pick_held_out(next(iter(results.values()))) if results else ()
        generation.write_samples(model, tokenizer, tools, job.samples, held_out=held_out)
    bench = bfcl_score.score_bfcl(generator, tokenizer, job.bench_limit) if job.bench else None  # lines with an ETA
    if bench:
        print(bfcl_score.summary_line(bench), flush=True)
    return {"splits": results, "bfcl": bench}


RUNS = {"train": train_job, "evaluate": evaluate_job, "score": score_job}


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in RUNS:
        print(f"usage: python -m synthia.train.worker {{{','.join(RUNS)}}} JOB.json (got {' '.join(args)!r}); "
              "train_mlx.py writes the job and runs this", file=sys.stderr, flush=True)
        return 2
    kind, job_path = args
    try:
        job = jobs.read_job(kind, job_path)
    except jobs.JobError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    cpu_backend.configure()
    try:
        result = RUNS[kind](job)
    except jobs.JobError as error:
        print(f"error: {job_path}: {error}", file=sys.stderr, flush=True)
        return 2
    if mx.distributed.init().rank() == 0:
        files.write_json(job.result, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
