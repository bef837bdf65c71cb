"""Data path speed: validating, rendering and preparing 2,600 conversations, the steps train_mlx.py runs before
any training (the --dry-run path: validate_dataset, encode_examples, then prepare_stage_data for each stage).

    python bench/data_path.py                      # 2,600 conversations (the seed's target size), ~1 min
    python bench/data_path.py --conversations 358  # the shipped dataset's size
    python bench/data_path.py --profile render     # where the render+tokenize phase spends its time
    python bench/data_path.py --no-before          # skip timing synthia/data/render.py as it was before the speed-up
    python bench/data_path.py --whole-path-at 33c18d8  # then the whole path as it was at that commit, for a ratio
    python bench/data_path.py --smoke              # 100 conversations, once, a tiny random Qwen2's tokenizer; seconds

The render+tokenize phase also runs with synthia/data/render.py as it was before the speed-up (loaded from git,
commit BEFORE), in the same process, and both must give identical token ids and loss spans.

The N conversations replicate dataset.jsonl; copy k (k >= 1) of a line is varied so that no line duplicates
another: tool-call ids get a suffix, and in every message text and every string inside tool-call arguments the
numbers are shifted by k and file names get a suffix. The tokenizer is Qwen2.5's (synthia/starter_data/tokenizer.py)
with the default template, as for the real base model. Wall and CPU seconds are both printed: on a shared
machine (load average before and after) CPU time is the steadier figure. The three stages' slices and split are
pinned below (train_mlx.py's defaults when BENCHMARKS.md was measured), so the figures stay comparable.
"""

import argparse
import cProfile
import dataclasses
import json
import os
import pstats
import re
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from token_efficiency import DEFAULT_TEMPLATE, machine_lines, qwen_tokenizer, tiny_tokenizer  # noqa: E402
from validate_speed import module_at_commit  # noqa: E402

# Imported before the clock starts, as train_mlx.py imports them before its data path runs.
from synthia.data import encode, pieces, stage_data, validate  # noqa: E402

GOAL_SECONDS = 5.0
BEFORE, BEFORE_PATH = "504c445", "synthia/render.py"  # the renderer before one render per conversation, its path then
SMOKE = {"conversations": 100, "repeat": 1, "no_before": True, "whole_path_at": None}  # history is not run
SPLIT = {"seed": 42, "valid_fraction": 0.1, "test_fraction": 0.1, "max_seq_length": 2048, "batch_size": 2}
STAGE_CATEGORIES = {1: ["tool_use"], 2: ["tool_use", "tdd", "debugging", "planning"], 3: None}  # None: every one
NUMBER = re.compile(r"(?<![\w.])\d+(?![\w.])")
FILE_NAME = re.compile(r"\b([A-Za-z_][\w-]*)\.(py|js|ts|tsx|go|rs|md|json|toml|ya?ml|txt|cfg|ini|sh|c|h|java|rb|lock)\b")


# ---------------------------------------------------------------------------------------------------------
# A varied copy of the shipped dataset
# ---------------------------------------------------------------------------------------------------------
def varied_text(text, k):
    text = NUMBER.sub(lambda m: str(int(m.group()) + k), text)
    return FILE_NAME.sub(lambda m: f"{m.group(1)}_{k}.{m.group(2)}", text)


def varied_value(value, k):
    if isinstance(value, str):
        return varied_text(value, k)
    if isinstance(value, list):
        return [varied_value(v, k) for v in value]
    if isinstance(value, dict):
        return {key: varied_value(v, k) for key, v in value.items()}
    return value


def varied_message(message, k):
    out = dict(message)
    if isinstance(out.get("content"), str):
        out["content"] = varied_text(out["content"], k)
    if out.get("tool_call_id"):
        out["tool_call_id"] = f"{out['tool_call_id']}x{k}"
    if out.get("tool_calls"):
        out["tool_calls"] = [varied_call(call, k) for call in out["tool_calls"]]
    return out


def varied_call(call, k):
    arguments = json.loads(call["function"]["arguments"])
    function = {**call["function"], "arguments": json.dumps(varied_value(arguments, k), ensure_ascii=False)}
    return {**call, "id": f"{call['id']}x{k}", "function": function}


def replicated_lines(dataset, n):
    base = [json.loads(line) for line in Path(dataset).read_text(encoding="utf-8").splitlines() if line.strip()]
    for i in range(n):
        record, copy = base[i % len(base)], i // len(base)
        if copy:
            record = {**record, "messages": [varied_message(m, copy) for m in record["messages"]]}
        yield json.dumps(record, ensure_ascii=False)


def write_dataset(dataset, directory, n):
    path = Path(directory) / f"dataset-{n}.jsonl"
    lines = list(replicated_lines(dataset, n))
    duplicates = len(lines) - len(set(lines))
    assert not duplicates, f"{duplicates} duplicate lines in the replicated dataset"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------------------
# The phases, as train_mlx.py runs them
# ---------------------------------------------------------------------------------------------------------
def cpu_seconds():
    """This process's CPU time and its finished children's (the forked processes that share the work)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed(function, *args):
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = function(*args)
    return result, time.perf_counter() - wall, cpu_seconds() - cpu


def quiet(*_args, **_kwargs):
    pass


def validate_phase(path):
    report = validate.validate_file(path)
    assert not report.errors, validate.format_report(report)
    return report.examples


def render_phase(tokenizer, examples):
    """{line: Encoded}: every conversation rendered and tokenized in one call, as the pipeline encodes its dataset."""
    tools = validate.load_default_tools()
    results = encode.encode_many(tokenizer, [(ex.messages, ex.record.get("tools", tools)) for ex in examples])
    failed = next(((ex.line, r) for ex, r in zip(examples, results) if isinstance(r, Exception)), None)
    assert failed is None, f"line {failed[0]}: the chat template failed: {failed[1]}"
    return {ex.line: result for ex, result in zip(examples, results)}


def render_module_before(directory):
    return module_at_commit(BEFORE, BEFORE_PATH, "render_before", directory)


def render_phase_before(tokenizer, examples, module):
    """The render phase as it ran with the old renderer: one conversation at a time."""
    tools = validate.load_default_tools()
    return {ex.line: module.encode(tokenizer, ex.messages, ex.record.get("tools", tools)) for ex in examples}


def same_encodings(a, b):
    return a.keys() == b.keys() and all(dataclasses.astuple(a[k]) == dataclasses.astuple(b[k]) for k in a)


def prepare_phase(examples, encoded, path, out_dir):
    """prepare_stage_data for every stage, writing the token files as a real run does."""
    stats = {}
    for number, categories in STAGE_CATEGORIES.items():
        values = {**SPLIT, "categories": categories}
        _, stats[number] = stage_data.prepare_stage_data(number, values, examples, encoded,
                                                         Path(out_dir) / f"stage{number}", path, strict=False,
                                                         with_test=True, log=quiet)
    return stats


def profile_phase(name, function, *args, top=25):
    profiler = cProfile.Profile()
    result = profiler.runcall(function, *args)
    print(f"\nprofile of {name} (top {top} by cumulative time):")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(top)
    return result


def compare_with_commit(commit, conversations, total):
    """The whole path at `commit` (the repository as it was, extracted to a temporary directory), run right after
    this one by its own bench in a fresh process: the ratio of the two medians."""
    import subprocess

    with tempfile.TemporaryDirectory() as old:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
        done = subprocess.run([sys.executable, str(Path(old) / "bench" / "data_path.py"), "--no-before",
                               "--conversations", str(conversations)], capture_output=True, text=True, cwd=old)
    line = next((row for row in done.stdout.splitlines() if row.startswith("total ")), None)
    if done.returncode or line is None:
        print(f"\nthe bench at {commit} failed:\n{(done.stdout + done.stderr)[-2000:]}")
        return
    wall, cpu = (float(x) for x in line.split()[1:3])
    print(f"\nthe whole path at {commit}, run right after in a fresh process: {wall:.2f} s wall, {cpu:.2f} s CPU; "
          f"now {total[0]:.2f} s wall, {total[1]:.2f} s CPU: {wall / total[0]:.1f}x faster (wall), "
          f"{cpu / total[1]:.1f}x (CPU)")


def load_average():
    return "load average (1, 5, 15 min): " + ", ".join(f"{x:.1f}" for x in os.getloadavg())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=2600, help="conversations in the replicated file")
    parser.add_argument("--dataset", default=str(ROOT / "dataset.jsonl"), help="file to replicate")
    parser.add_argument("--no-before", action="store_true", help="do not time the old synthia/data/render.py")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the three phases; medians are printed")
    parser.add_argument("--profile", choices=["validate", "render", "prepare"], help="cProfile one phase after the run")
    parser.add_argument("--whole-path-at", metavar="COMMIT", help="then run this bench as it was at COMMIT (its own "
                        "code, a fresh process, the same data) and print both totals")
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE['conversations']} conversations, one run, a "
                        "tiny random Qwen2's tokenizer, no old renderer: the same phases in seconds")
    args = parser.parse_args(argv)
    if args.smoke:
        vars(args).update(SMOKE)
    print(f"Data path: python bench/data_path.py {' '.join(sys.argv[1:] if argv is None else argv)}".rstrip())
    print("\n".join(machine_lines()))
    print(load_average())
    with tempfile.TemporaryDirectory() as directory:
        path = write_dataset(args.dataset, directory, args.conversations)
        if args.smoke:
            tokenizer, load_wall, load_cpu = timed(tiny_tokenizer, directory)
        else:
            tokenizer, load_wall, load_cpu = timed(qwen_tokenizer, DEFAULT_TEMPLATE)
        fast, table_wall, _ = timed(pieces.use_fast_bpe, tokenizer)
        tokenizer_name = "the tiny random Qwen2's tokenizer" if args.smoke else "Qwen2.5 tokenizer"
        print(f"data: {args.conversations:,} conversations replicated from {args.dataset} "
              f"({path.stat().st_size / 1e6:.1f} MB); {tokenizer_name} + {DEFAULT_TEMPLATE.name} loaded in "
              f"{load_wall:.1f} s, tiktoken's table for it built in {table_wall:.1f} s (once per run, whatever "
              f"the data; not counted below){'' if fast else '; tiktoken NOT USED'}\n")
        runs = []
        for run in range(args.repeat):  # fresh examples each time: nothing made in one run serves the next
            examples, *validate_times = timed(validate_phase, path)
            encoded, *render_times = timed(render_phase, tokenizer, examples)
            stats, *prepare_times = timed(prepare_phase, examples, encoded, path, Path(directory) / f"models{run}")
            runs.append([validate_times, render_times, prepare_times])
        medians = [[statistics.median(run[phase][i] for run in runs) for i in range(2)] for phase in range(3)]
        rows = list(zip(["validate (synthia.data.validate)", "render + tokenize (encode.encode_many)",
                         "split + fit + write, 3 stages"], medians))
        total = [statistics.median(sum(phase[i] for phase in run) for run in runs) for i in range(2)]
        render_times = medians[1]
        before = None
        if not args.no_before:
            old, *before = timed(render_phase_before, tokenizer, examples, render_module_before(directory))
            assert same_encodings(encoded, old), f"the old ({BEFORE}) and new synthia/data/render.py encode differently"
        print(f"the {args.repeat} runs, wall s (validate + render + write = total): " + "; ".join(
            " + ".join(f"{p[0]:.2f}" for p in run) + f" = {sum(p[0] for p in run):.2f}" for run in runs))
        print("medians below (CPU s: this process and the forked ones)")
        print(f"{'phase':38} {'wall s':>8} {'CPU s':>8} {'conv/s (wall)':>14} {'conv/s (CPU)':>13}")
        for name, (wall, cpu) in rows + [("total", total)]:
            print(f"{name:38} {wall:>8.2f} {cpu:>8.2f} {args.conversations / wall:>14,.0f} "
                  f"{args.conversations / cpu:>13,.0f}")
        if before:
            wall, cpu = before
            print(f"{'render + tokenize, before (' + BEFORE + ')':38} {wall:>8.2f} {cpu:>8.2f} "
                  f"{args.conversations / wall:>14,.0f} {args.conversations / cpu:>13,.0f}")
            print(f"render + tokenize speed-up: {cpu / render_times[1]:.1f}x in CPU time, identical token ids and "
                  "loss spans")
        print(f"\ngoal: {GOAL_SECONDS:.0f} s for the whole path; "
              f"{'met' if total[0] <= GOAL_SECONDS else 'not met'} ({total[0]:.1f} s wall, {total[1]:.1f} s CPU)")
        tokens = sum(len(e.tokens) for e in encoded.values())
        print(f"{tokens:,} tokens; stage train examples: "
              + ", ".join(f"{n}: {s['train']['examples']}" for n, s in stats.items()))
        print(load_average())
        if args.whole_path_at:
            compare_with_commit(args.whole_path_at, args.conversations, total)
        if args.profile:
            phase = {"validate": (validate_phase, path), "render": (render_phase, tokenizer, examples),
                     "prepare": (prepare_phase, examples, encoded, path, Path(directory) / "profiled")}[args.profile]
            profile_phase(args.profile, *phase)


if __name__ == "__main__":
    main()
