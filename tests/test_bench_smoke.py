"""Benchmarks cannot rot: every script in bench/ runs its --smoke mode (the real measurement on a tiny model or a few
lines, in seconds) and must print its table, so moving or renaming the library code a bench measures fails here."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
TIMEOUT = 600  # seconds; each run takes seconds to a minute or two on 2 busy cores
N = r"-?[\d,]+(?:\.\d+)?"  # a figure as the tables print it

# script: lines its --smoke output must hold (regular expressions, each matching a whole line), the table's header and
# every row with its figures, so that a run that measures nothing fails.
TABLES = {
    "blas.py": [
        r"\s+bundled\s+system\s+ratio",
        rf"matmul f32 64x64, GFLOP/s\s+{N}\s+{N}\s+{N}x",
        rf"LoRA training, tokens/s\s+{N}\s+{N}\s+{N}x",
        r"max \|loss difference\| bundled vs system: \S+ \(agree, tolerance .*\)",
    ],
    "data_path.py": [
        r"phase\s+wall s\s+CPU s\s+conv/s \(wall\)\s+conv/s \(CPU\)",
        rf"validate \(synthia\.data\.validate\)(\s+{N}){{4}}",
        rf"render \+ tokenize \(encode\.encode_many\)(\s+{N}){{4}}",
        rf"split \+ fit \+ write, 3 stages(\s+{N}){{4}}",
        rf"total(\s+{N}){{4}}",
        r"[\d,]+ tokens; stage train examples: 1: \d+, 2: \d+, 3: \d+",
    ],
    "eval_cache.py": [
        r"model\s+turns\s+prompt tok\s+prefilled\s+reuse s/100\s+fresh s/100\s+speedup\s+same outputs",
        rf"tiny random Qwen2 \(hidden 64, 2 layers, vocab 1024\)(\s+{N}){{5}}\s+{N}x\s+yes",
    ],
    "fast_bpe.py": [
        r"text\s+M chars\s+pieces\s+non-NFC\s+ids diff\s+offs diff\s+tok CPU\s+tik CPU\s+speed-up",
        rf"the shipped dataset, rendered(\s+{N}){{7}}\s+{N}x",
        rf"site-packages text \(0\.2 MB\)(\s+{N}){{7}}\s+{N}x",
        r"no piece\(s\) differ in ids or offsets .*",
    ],
    "gguf_scoring.py": [
        r"scorer\s+turns\s+valid\s+names\s+exact\s+truncated\s+prefilled\s+s",
        *(rf"{re.escape(row)}\s+\d+(\s+{N}%){{4}}\s+{N}\s+{N}" for row in ("MLX, float32 directory",
                                                                        "llama.cpp, f16 GGUF")),
        rf"verdicts agree on \d+/\d+ turns \({N}%, issue 27 asks for 95%\); identical outputs on \d+/\d+ \({N}%\)",
    ],
    "memory.py": [
        r"\s+#\s+configuration\s+step\s+predicted\s+measured\s+ratio",
        # the plan's constants are fitted on larger shapes: a tiny row may be flagged "<-- off"
        *(rf"\s+1\s+h64 L1 V512 b1x32 f32\s+{step}(\s+{N}){{3}}(  <-- off)?" for step in ("train", "fuse", "evaluate")),
        *(rf"\s+2\s+h64 L1 V512 b1x32 f32 q4 ckpt chunk16\s+{step}(\s+{N}){{3}}(  <-- off)?"
          for step in ("quantize", "train", "fuse", "evaluate")),
        rf"worst \|ratio - 1\|: {N}; total \d+ s",
    ],
    "mfu.py": [
        r"float32 matmul \(m x k @ k x n\)\s+GFLOP/s before\s+after\s+per CPU-s",
        rf"\s+32 x 64 x 1024(\s+{N}){{3}}",
        rf"training tokens/s\s+{N}\s+{N}",
        rf"model FLOPs utilisation\s+{N}%\s+{N}%",
    ],
    "overhead.py": [
        r"model\s+run\s+iters\s+tokens\s+tokens\s+wall s\s+CPU s\s+\(CPU\)\s+\(CPU\)\s+\(CPU\)\s+\(wall\)\s+wall s",
        *(rf"tiny\s+{run}\s+1(\s+{N}){{6}}\s+{N}x\s+{N}x\s+{N}" for run in
          ("this pipeline", "with loss_chunk_size null", "mlx_lm lora", r"mlx_lm lora \+ CPU settings")),
        rf"stage 1, 1 iterations, \d+ training examples: wall {N} s, training loop {N} s .*",
        *(rf"\s+{part}.*\s+{N}\s+{N}%" for part in ("parent: validate", "train step outside the loop", "fuse",
                                                   "quantize", "evaluate", "outside training, total")),
    ],
    "precision_chain.py": [
        r"model\s+valid loss\s+vs trained\s+gain kept",
        *(rf"{re.escape(row)}\s+{N}\s+{N}%\s+(?:{N}|nan)%" for row in (
            "base, full precision", "base, 4-bit training copy", "4-bit copy + adapters (trained)",
            "fused into 4-bit, re-quantized", "fused into full precision (ours)")),
        rf"weight update kept .*: full precision {N}%, re-quantized 4-bit {N}%",
    ],
    "scoring.py": [
        r"model\s+scorer\s+turns\s+tokens\s+turns/s\s+ratio\s+same tokens\s+same verdicts\s+cut",
        *(rf"tiny random Qwen2 \(hidden 64, 2 layers\)\s+{re.escape(run)}(\s+{N}){{4}}x\s+\d+/\d+\s+\d+/\d+\s+\d+"
          for run in ("one at a time", "batched", "batched + early stop")),
    ],
    "shared_prefix.py": [
        r"way\s+computed tokens\s+s/step\s+trained tok/s\s+computed tok/s\s+peak GB\s+speed-up",
        rf"full rows \(today\)\s+192(\s+{N}){{4}}\s+1\.00x",
        rf"shared prefix\s+128(\s+{N}){{4}}\s+{N}x",
        rf"loss per trained token: full rows {N}, shared prefix {N}, \|difference\| \S+; LoRA gradients: .*",
    ],
    "token_efficiency.py": [
        r"\s+examples\s+batches\s+computed\s+padding\s+trained\s+assistant\s+computed\s+attention\s+computed per",
        *(rf"{re.escape(row)}(\s+{N}){{3}}\s+{N}%\s+{N}\s+{N}%\s+{N}x\s+{N}x\s+{N}" for row in (
            "this pipeline (all turns)", "mlx_lm.lora --mask-prompt", "one example per turn")),
    ],
    "validate_speed.py": [
        r"\s+lines\s+wall s\s+cpu s\s+wall s\s+cpu s\s+\(cpu\)\s+\(cpu\)",
        rf"\s+40\s+-\s+-(\s+{N}){{3}}\s+-",
        rf"9 MB line between two good lines \(new\): refused in {N} s, peak Python memory {N} MB \(tracemalloc\)",
    ],
}


def smoke_output(script):
    command = [sys.executable, str(BENCH / script), "--smoke"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, (f"bench/{script} --smoke exited with {done.returncode}:\n"
                                  f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def skip_without_two_blases():
    """bench/blas.py compares MLX's bundled reference BLAS with a system OpenBLAS: only the mlx[cpu] wheel on Linux
    has the one, and only a machine with libopenblas the other."""
    from synthia.platform import blas

    install = blas.inspect_mlx_install()
    if not sys.platform.startswith("linux") or blas.bundled_reference_blas(install) is None:
        pytest.skip("bench/blas.py needs the mlx[cpu] wheel on Linux (MLX linked with its bundled reference BLAS)")
    if blas.find_system_blas(reference=install.libmlx) is None:
        pytest.skip("bench/blas.py needs a system OpenBLAS to compare with (apt-get install libopenblas0-pthread)")


def skip_without_llama_cpp():
    """bench/gguf_scoring.py runs the GGUF file in llama.cpp; .ci/run installs it and sets SYNTHIA_REQUIRE_LLAMA_CPP."""
    from synthia.gguf import exporter

    if not exporter.llama_cpp_available() and not os.environ.get("SYNTHIA_REQUIRE_LLAMA_CPP"):
        pytest.skip("bench/gguf_scoring.py needs llama-cpp-python (pip install llama-cpp-python==0.3.36)")


@pytest.mark.parametrize("script", sorted(TABLES))
def test_smoke_run_prints_the_benchmark_table(script):
    if script == "blas.py":
        skip_without_two_blases()
    if script == "gguf_scoring.py":
        skip_without_llama_cpp()
    lines = smoke_output(script).splitlines()
    missing = [pattern for pattern in TABLES[script] if not any(re.fullmatch(pattern, line) for line in lines)]
    assert not missing, f"bench/{script} --smoke printed no line like:\n" + "\n".join(missing) + \
        "\n--- its output:\n" + "\n".join(lines)


def test_every_bench_script_has_a_smoke_test():
    scripts = {path.name for path in BENCH.glob("*.py")}
    assert scripts == set(TABLES), f"bench scripts without a smoke test: {sorted(scripts - set(TABLES))}; " \
                                   f"tests of scripts that are gone: {sorted(set(TABLES) - scripts)}"


def test_benches_import_the_library_not_the_root_script():
    offenders = [f"bench/{path.name}:{number}: {line.strip()}" for path in sorted(BENCH.glob("*.py"))
                 for number, line in enumerate(path.read_text().splitlines(), start=1)
                 if re.match(r"\s*(import train_mlx\b|from train_mlx\b)", line)]
    assert not offenders, "benches must import synthia.*, or run `python train_mlx.py` as a user would:\n" + \
        "\n".join(offenders)
