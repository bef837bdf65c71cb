"""What KV-cache reuse saves in the tool-calling evaluation: seconds per 100 scored turns, with and without.

    python bench/eval_cache.py [MLX_MODEL_DIR] [--turns 100] [--max-new-tokens 32] [--dataset dataset.jsonl]
    python bench/eval_cache.py --smoke    # the tiny model only, 2 turns of 4 tokens; seconds

Scores the first conversations of the dataset (enough for --turns scored turns) twice with
synthia.scorecard.generation.score_conversations, once reusing the KV cache across turns and once prefilling every
prompt from scratch, on a tiny and a small random-weight Qwen2 built here and, when given, a real MLX
model directory (such as SmolLM2 imported with synthia/gguf/importer.py). The token cap is fixed so both
runs generate the same number of tokens; the outputs of the two runs are compared. The process re-runs
itself with a system OpenBLAS preloaded (synthia/platform/blas.py) when one is found.
"""

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REEXEC_MARK = "SYNTHIA_EVAL_CACHE_BENCH_CHILD"
RANDOM_MODELS = {  # label -> build_tiny_model arguments
    "tiny random Qwen2 (hidden 64, 2 layers, vocab 1024)": {},
    "small random Qwen2 (hidden 512, 4 layers, vocab 4096)": {"hidden_size": 512, "num_layers": 4, "num_heads": 8,
                                                               "num_kv_heads": 4, "intermediate_size": 1408,
                                                               "vocab_size": 4096},
}
SMOKE = {"models": 1, "turns": 2, "max_new_tokens": 4}  # the first (tiny) random model only


def machine_lines():
    import mlx.core as mx
    import mlx_lm

    from synthia.platform import blas

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return [f"machine: {cpu}, {os.cpu_count()} cores, {platform.machine()}, {platform.system()} {platform.release()}",
            f"python {platform.python_version()}, mlx {mx.__version__}, mlx-lm {mlx_lm.__version__}",
            os.environ.get(REEXEC_MARK, "BLAS: as the process was started"),
            "BLAS libraries mapped: " + (", ".join(blas.loaded_blas_libraries()) or "none found")]


def conversations_for(examples, turns):
    """The first examples that hold at least `turns` scored (weight-1, not opening) assistant turns."""
    chosen, count = [], 0
    for example in examples:
        if count >= turns:
            break
        chosen.append(example)
        count += sum(bool(i and m["role"] == "assistant" and m.get("weight", 1)) for i, m in enumerate(example.messages))
    return chosen


def measure(model_dir, examples, tools, max_new_tokens):
    """{"reuse": result, "fresh": result} for one model, after a warm-up turn."""
    from mlx_lm import load

    from synthia.scorecard import generation

    model, tokenizer = load(model_dir)
    generation.score_conversations(model, tokenizer, examples[:1], tools, max_new_tokens=2, limit=1, progress=False)
    runs = {}
    for mode, reuse in (("reuse", True), ("fresh", False)):
        runs[mode] = generation.score_conversations(model, tokenizer, examples, tools, max_new_tokens=max_new_tokens,
                                                 reuse_cache=reuse, progress=False)
    return runs


def per_100(result):
    return 100 * result["time"]["seconds"] / max(1, result["counts"]["turns_scored"])


def table(rows):
    header = (f"{'model':56} {'turns':>5} {'prompt tok':>10} {'prefilled':>9} {'reuse s/100':>11} "
              f"{'fresh s/100':>11} {'speedup':>7}  same outputs")
    lines = [header]
    for label, runs in rows:
        reuse, fresh = runs["reuse"], runs["fresh"]
        same = [t["output"] for t in reuse["turns"]] == [t["output"] for t in fresh["turns"]]
        lines.append(f"{label:56} {reuse['counts']['turns_scored']:>5} {reuse['counts']['prompt_tokens']:>10} "
                     f"{reuse['counts']['prefilled_tokens']:>9} {per_100(reuse):>11.1f} {per_100(fresh):>11.1f} "
                     f"{per_100(fresh) / per_100(reuse):>6.1f}x  {'yes' if same else 'NO'}")
    return lines


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dir", nargs="?", type=Path, help="an MLX model directory to measure too (e.g. SmolLM2)")
    parser.add_argument("--turns", type=int, default=100, help="scored turns per run (whole conversations)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="token cap per turn, the same in both runs")
    parser.add_argument("--dataset", type=Path, default=ROOT / "dataset.jsonl")
    parser.add_argument("--smoke", action="store_true", help=f"the tiny random model only, {SMOKE['turns']} turns "
                        f"of {SMOKE['max_new_tokens']} tokens: the same measurement in seconds, figures meaningless")
    args = parser.parse_args(argv)
    args.models = len(RANDOM_MODELS)
    if args.smoke:
        vars(args).update(SMOKE)
    return args


def main(argv=None):
    args = parse_args(argv)
    from synthia.platform import blas

    blas.rerun_with_system_blas(REEXEC_MARK)
    from synthia.data import validate
    from synthia.demo import tiny_model

    started = time.perf_counter()
    report = validate.validate_file(args.dataset)
    if report.errors:
        sys.exit(validate.format_report(report))
    examples = conversations_for(report.examples, args.turns)
    tools = validate.load_default_tools()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for k, (label, options) in enumerate(list(RANDOM_MODELS.items())[:args.models]):
            model_dir = tiny_model.build_tiny_model(Path(work) / f"model{k}", **options)
            rows.append((label, measure(model_dir, examples, tools, args.max_new_tokens)))
            print(f"measured {label}", file=sys.stderr, flush=True)
        if args.model_dir:
            rows.append((args.model_dir.name, measure(args.model_dir, examples, tools, args.max_new_tokens)))
    print("KV-cache reuse in the tool-calling evaluation: python bench/eval_cache.py " + " ".join(sys.argv[1:]))
    print("\n".join(machine_lines()))
    print(f"dataset: {args.dataset.name}, first {len(examples)} conversations; greedy, {args.max_new_tokens} new "
          "tokens per turn; s/100 = seconds per 100 scored turns; prefilled = prompt tokens run through the model "
          "with reuse (all of them without)")
    print()
    print("\n".join(table(rows)))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
