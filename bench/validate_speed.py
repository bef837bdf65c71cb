"""Dataset validation speed: this validator vs the one before schema caching (commit fcc1165), side by side.

    python bench/validate_speed.py                         # 358, 2,600 and 10,000 lines; ~3 min CPU, mostly old
    python bench/validate_speed.py --sizes 358 2600 --old-up-to 2600
    python bench/validate_speed.py --smoke                 # 40 lines, a 9 MB line, the new validator only; seconds

Each N-line file replicates dataset.jsonl, with " (copy k)" appended to the first user message of the k-th
copy so that no line duplicates another. Both validators read the same file in the same process, one after
the other; both must accept every line. Wall and CPU seconds are both printed: on a shared machine (see the
load average printed before and after) the CPU time is the steadier figure, and the speed-up uses it.
A last row times the new validator on a file whose middle line is 30 MB, with its peak Python memory
(tracemalloc): that line is refused by the per-line limit. The old validator is not run on it (it took
147 s and 8 GB).
"""

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from synthia.data import validate# noqa: E402 (the path above makes the repository importable)

OLD_COMMIT, OLD_PATH = "fcc1165", "synthia/validate.py"  # the validator's path at that commit
HUGE_LINE_MB = 30
# --smoke: the old validator is history, not run; the huge line just over the limit that refuses it
SMOKE = {"sizes": [40], "old_up_to": 0, "huge_line_mb": validate.MAX_LINE_BYTES // 2**20 + 1}


def module_at_commit(commit, relative_path, name, directory):
    """The module at `relative_path` as it was at `commit` (read with git), loaded as `name` from `directory`."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:{relative_path}"],
                            check=True, capture_output=True, text=True).stdout
    path = Path(directory) / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_old_validator(directory):
    return module_at_commit(OLD_COMMIT, OLD_PATH, "validate_old", directory)


def replicated_lines(n):
    base = [json.loads(line) for line in (ROOT / "dataset.jsonl").read_text(encoding="utf-8").splitlines()]
    for i in range(n):
        record = json.loads(json.dumps(base[i % len(base)]))
        copy = i // len(base)
        if copy:
            first_user = next(m for m in record["messages"] if m["role"] == "user")
            first_user["content"] += f" (copy {copy})"
        yield json.dumps(record, ensure_ascii=False)


def write_dataset(directory, n):
    path = Path(directory) / f"dataset-{n}.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for line in replicated_lines(n):
            f.write(line + "\n")
    return path


def timed(validator, path, tools):
    """(wall seconds, CPU seconds of this process): on a shared machine the CPU time is the steadier figure."""
    wall, cpu = time.perf_counter(), time.process_time()
    report = validator.validate_file(path, tools)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert not report.errors and len(report.examples) == report_lines(path), validator.format_report(report)
    return wall, cpu


def report_lines(path):
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def huge_line_row(directory, megabytes):
    """Seconds and peak traced Python memory of the new validator on: good line, huge line, good line."""
    path = Path(directory) / "huge-line.jsonl"
    good = next(replicated_lines(1))
    record = json.loads(good)
    record["messages"][1]["content"] = "x" * (megabytes * 2**20)
    path.write_text(good + "\n" + json.dumps(record) + "\n" + good.replace("(", "[", 1) + "\n", encoding="utf-8")
    del record
    tracemalloc.start()
    start = time.perf_counter()
    report = validate.validate_file(path)
    seconds = time.perf_counter() - start
    peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    assert [e.line for e in report.errors] == [2] and len(report.examples) == 2, validate.format_report(report)
    return seconds, peak_mb


def machine():
    return "\n".join([
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        f"python {platform.python_version()}, jsonschema {importlib.metadata.version('jsonschema')}",
        load_average(),
    ])


def load_average():
    return "load average (1, 5, 15 min): " + ", ".join(f"{x:.1f}" for x in os.getloadavg())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[358, 2600, 10000], help="lines per file")
    parser.add_argument("--old-up-to", type=int, default=10**9,
                        help="run the old validator only on files up to this many lines")
    parser.add_argument("--huge-line-mb", type=int, default=HUGE_LINE_MB, help="size of the refused line")
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE['sizes'][0]} lines and a "
                        f"{SMOKE['huge_line_mb']} MB line, the new validator only: the same run in seconds")
    args = parser.parse_args(argv)
    if args.smoke:
        vars(args).update(SMOKE)
    tools = validate.load_default_tools()
    print(f"Dataset validation: python bench/validate_speed.py {' '.join(argv or sys.argv[1:])}".rstrip())
    print(machine())
    print(f"old: {OLD_PATH} at {OLD_COMMIT}; new: the working tree\n")
    print(f"{'':>8} {'old':>19} {'new':>19} {'new lines/s':>12} {'speed-up':>9}")
    print(f"{'lines':>8} {'wall s':>9} {'cpu s':>9} {'wall s':>9} {'cpu s':>9} {'(cpu)':>12} {'(cpu)':>9}")
    with tempfile.TemporaryDirectory() as directory:
        old = load_old_validator(directory) if min(args.sizes) <= args.old_up_to else None
        for n in args.sizes:
            path = write_dataset(directory, n)
            new_wall, new_cpu = timed(validate, path, tools)
            old_wall, old_cpu = timed(old, path, tools) if n <= args.old_up_to else (None, None)
            old_text = f"{old_wall:>9.2f} {old_cpu:>9.2f}" if old_wall else f"{'-':>9} {'-':>9}"
            ratio = f"{old_cpu / new_cpu:.0f}x" if old_cpu else "-"
            print(f"{n:>8} {old_text} {new_wall:>9.2f} {new_cpu:>9.2f} {n / new_cpu:>12.0f} {ratio:>9}", flush=True)
            path.unlink()
        seconds, peak_mb = huge_line_row(directory, args.huge_line_mb)
        print(f"\n{args.huge_line_mb} MB line between two good lines (new): refused in {seconds:.2f} s, "
              f"peak Python memory {peak_mb:.0f} MB (tracemalloc)")
    print(load_average())


if __name__ == "__main__":
    main()
