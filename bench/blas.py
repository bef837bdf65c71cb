"""MLX on a Linux CPU: the wheel's bundled reference BLAS vs the system OpenBLAS, side by side.

    python bench/blas.py [--steps 10] [--sizes 256 512 1024]
    python bench/blas.py --smoke     # a tiny model, 2 steps, one 64x64 matmul: the same comparison in seconds

The dynamic loader binds MLX to a BLAS when a process starts, so this script runs itself once per BLAS
(`--worker`, environment from synthia.platform.blas.child_environment) and each worker reports JSON:
float32 matmul GFLOP/s (one warm-up, median of repeats) and LoRA training tokens/s on a small
random-weight Qwen2 model (mlx_lm's Qwen2 and linear_to_lora_layers, Adam on random tokens, fixed
seed). The per-step losses of the two runs must agree to float tolerance. No downloads.
"""

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from synthia.platform import blas# noqa: E402 (the path above makes the repository importable)

MATMUL_REPEATS = 5
MODEL = {"model_type": "qwen2", "hidden_size": 512, "num_hidden_layers": 4, "intermediate_size": 1536,
         "num_attention_heads": 8, "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "vocab_size": 4096,
         "tie_word_embeddings": True}
LORA = {"rank": 8, "scale": 20.0, "dropout": 0.0}  # no dropout: both runs must see identical arithmetic
BATCH_SIZE, SEQUENCE_LENGTH, LEARNING_RATE, SEED = 4, 128, 1e-4, 0
SMOKE_MODEL = {**MODEL, "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128, "num_attention_heads": 2,
               "num_key_value_heads": 1, "vocab_size": 256}
SMOKE_BATCH_SIZE, SMOKE_SEQUENCE_LENGTH, SMOKE_STEPS, SMOKE_SIZES = 1, 16, 2, [64]
LOSS_TOLERANCE = 1e-4  # float32 sums in a different order: far below this


# ---------------------------------------------------------------------------------------------------------
# Worker: one BLAS, fixed at process start
# ---------------------------------------------------------------------------------------------------------
def matmul_gflops(size):
    import mlx.core as mx

    mx.random.seed(SEED)
    a, b = mx.random.normal((size, size)), mx.random.normal((size, size))
    mx.eval(a, b)
    mx.eval(a @ b)  # warm-up
    seconds = []
    for _ in range(MATMUL_REPEATS):
        started = time.perf_counter()
        mx.eval(a @ b)
        seconds.append(time.perf_counter() - started)
    return 2 * size**3 / statistics.median(seconds) / 1e9


def shape(smoke):
    """(model config, batch size, sequence length) of the LoRA run."""
    return (SMOKE_MODEL, SMOKE_BATCH_SIZE, SMOKE_SEQUENCE_LENGTH) if smoke else (MODEL, BATCH_SIZE, SEQUENCE_LENGTH)


def lora_training(steps, smoke=False):
    """(tokens/s over the steps after the first, per-step losses) of LoRA training on random tokens."""
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim
    from mlx_lm.models import qwen2
    from mlx_lm.tuner.utils import linear_to_lora_layers

    config, batch_size, sequence_length = shape(smoke)
    mx.random.seed(SEED)
    model = qwen2.Model(qwen2.ModelArgs(**config))
    model.freeze()
    linear_to_lora_layers(model, config["num_hidden_layers"], LORA)
    batches = mx.random.randint(0, config["vocab_size"], (steps, batch_size, sequence_length + 1))
    optimizer = optim.Adam(learning_rate=LEARNING_RATE)

    def loss_fn(model, tokens):
        logits = model(tokens[:, :-1])
        return nn.losses.cross_entropy(logits, tokens[:, 1:]).mean()

    loss_and_grad = nn.value_and_grad(model, loss_fn)
    losses, started = [], None
    for step in range(steps):
        if step == 1:  # the first step builds and warms up; time the rest
            started = time.perf_counter()
        loss, grads = loss_and_grad(model, batches[step])
        optimizer.update(model, grads)
        mx.eval(loss, model.parameters(), optimizer.state)
        losses.append(loss.item())
    tokens = (steps - 1) * batch_size * sequence_length
    return tokens / (time.perf_counter() - started), losses


def worker(args):
    gflops = {str(size): matmul_gflops(size) for size in args.sizes}
    # Read before mlx_lm imports numpy, whose wheel maps an OpenBLAS of its own that MLX never calls.
    libraries = blas.loaded_blas_libraries()
    tokens_per_second, losses = lora_training(args.steps, args.smoke)
    print(json.dumps({"matmul_gflops": gflops, "tokens_per_second": tokens_per_second, "losses": losses,
                      "libraries": libraries}))


# ---------------------------------------------------------------------------------------------------------
# Parent: run the workers, print them side by side
# ---------------------------------------------------------------------------------------------------------
def run_worker(mode, args):
    # A clean start for both runs: an LD_PRELOAD or SYNTHIA_BLAS in the caller's shell would blur them.
    base = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", blas.ENV_VAR)}
    env, note = blas.child_environment(mode, base)
    command = [sys.executable, __file__, "--worker", "--steps", str(args.steps),
               "--sizes", *map(str, args.sizes), *(["--smoke"] if args.smoke else [])]
    started = time.perf_counter()
    finished = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        sys.exit(f"worker ({mode}) failed:\n{finished.stderr}")
    result = json.loads(finished.stdout.strip().splitlines()[-1])
    return {**result, "note": note, "seconds": time.perf_counter() - started}


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def os_name():
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return f"{line.split('=', 1)[1].strip(chr(34))}, kernel {platform.release()}"
    except OSError:
        pass
    return platform.platform()


def version(distribution):
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def print_header(install, system_blas, smoke):
    print("BLAS on a Linux CPU: python bench/blas.py" + (" --smoke" if smoke else ""))
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, {platform.machine()}")
    print(f"os:      {os_name()}")
    print(f"python {platform.python_version()}, mlx {version('mlx')} "
          f"({', '.join(sorted(install.distributions - {'mlx'})) or 'source build'}), mlx-lm {version('mlx-lm')}")
    print(f"bundled BLAS: {blas.bundled_reference_blas(install)}")
    real = f" -> {os.path.realpath(system_blas)}" if system_blas else ""
    print(f"system BLAS:  {system_blas or 'none found'}{real}")
    config, batch_size, sequence_length = shape(smoke)
    print(f"LoRA model: random Qwen2, hidden {config['hidden_size']}, {config['num_hidden_layers']} layers, "
          f"vocab {config['vocab_size']}, float32; LoRA rank {LORA['rank']} on all linear layers; "
          f"batch {batch_size} x {sequence_length} tokens")


def print_table(runs, sizes):
    names = list(runs)
    print()
    print(f"{'':32}" + "".join(f"{name:>12}" for name in names) + ("       ratio" if len(names) == 2 else ""))
    rows = [(f"matmul f32 {n}x{n}, GFLOP/s", lambda r, n=n: r["matmul_gflops"][str(n)]) for n in sizes]
    rows.append(("LoRA training, tokens/s", lambda r: r["tokens_per_second"]))
    for label, value in rows:
        values = [value(runs[name]) for name in names]
        ratio = f"{values[1] / values[0]:11.1f}x" if len(values) == 2 else ""
        print(f"{label:32}" + "".join(f"{v:12.1f}" for v in values) + ratio)
    print(f"{'worker wall time, s':32}" + "".join(f"{runs[name]['seconds']:12.1f}" for name in names))


def print_checks(runs):
    print()
    for name, run in runs.items():
        print(f"{name} worker: {run['note']}")
        print(f"  BLAS libraries mapped: {', '.join(run['libraries']) or 'none'}")
    losses = [run["losses"] for run in runs.values()]
    print(f"per-step losses ({len(losses[0])} steps): first {losses[0][0]:.6f}, last {losses[0][-1]:.6f}")
    if len(losses) == 2:
        difference = max(abs(a - b) for a, b in zip(*losses))
        verdict = "agree" if difference < LOSS_TOLERANCE else "DISAGREE"
        print(f"max |loss difference| bundled vs system: {difference:.2e} ({verdict}, tolerance {LOSS_TOLERANCE:g})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="LoRA training steps per BLAS (default: 10)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024], help="square matmul sizes")
    parser.add_argument("--smoke", action="store_true", help=f"a tiny model, {SMOKE_STEPS} steps, matmul "
                        f"{SMOKE_SIZES[0]}x{SMOKE_SIZES[0]}: the same comparison in seconds, figures meaningless")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke and not args.worker:
        args.steps, args.sizes = SMOKE_STEPS, SMOKE_SIZES
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first step is the warm-up)")
    if args.worker:
        return worker(args)

    install = blas.inspect_mlx_install()
    if not sys.platform.startswith("linux") or blas.bundled_reference_blas(install) is None:
        sys.exit(f"nothing to compare here: {blas.describe(blas.choose_blas('auto'))}")
    system_blas = blas.find_system_blas(reference=install.libmlx)
    print_header(install, system_blas, args.smoke)
    started = time.perf_counter()
    runs = {"bundled": run_worker("bundled", args)}
    if system_blas:
        runs["system"] = run_worker("auto", args)
    print_table(runs, args.sizes)
    print_checks(runs)
    if not system_blas:
        print("\n" + blas.missing_blas_warning("auto"))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
