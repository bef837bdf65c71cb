"""Predicted (synthia.train.memory_plan) vs measured (mx.get_peak_memory) peaks of quantize, train, fuse, evaluate.

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libopenblas.so.0 python bench/memory.py    # ~8 min on 2 cores
    python bench/memory.py --only 1 5 9                                              # some rows
    python bench/memory.py --smoke                                                   # 2 tiny rows, seconds

Each configuration runs in its own child process: a random Qwen2 model of its shape is written to a temp
directory (and quantized with synthia.train.fuse when the row is 4-bit), then the child measures, one after the
other and from an empty MLX heap each time, the streaming quantize, one real training step (LoRA with
mlx_lm, value_and_grad + Adam update, compiled like mlx_lm's trainer, gradient checkpointing as mlx_lm
does it), the streaming fuse into the full-precision model, and one evaluation batch of the fused model.
"""

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TOLERANCE = 0.15


@dataclass(frozen=True)
class Config:
    hidden: int
    layers: int
    vocab: int
    batch: int
    seq: int
    checkpoint: bool = False
    bits: int | None = None  # train on a 4-bit copy
    chunked: bool = False
    chunk_size: int = 128
    lora_layers: int = -1
    dtype: str = "float32"
    shard_mb: float = 4  # synthia.train.fuse's output shard for these small models
    mlp_ratio: float = 3.0  # intermediate / hidden (Qwen2.5-7B: 5.29)
    head_dim: int = 32  # hidden / heads (Qwen2.5-7B: 128); kv heads = heads / 4
    tied: bool = True

    def label(self):
        dtype = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}[self.dtype]
        return (f"h{self.hidden} L{self.layers} V{self.vocab} b{self.batch}x{self.seq} {dtype}"
                f"{' q4' if self.bits else ''}{' ckpt' if self.checkpoint else ''}"
                f"{f' chunk{self.chunk_size}' if self.chunked else ''}"
                f"{f' lora{self.lora_layers}' if self.lora_layers > 0 else ''}"
                f"{f' shard{self.shard_mb:g}M' if self.shard_mb != 4 else ''}"
                f"{f' mlp{self.mlp_ratio:g}' if self.mlp_ratio != 3 else ''}"
                f"{f' hd{self.head_dim}' if self.head_dim != 32 else ''}{'' if self.tied else ' untied'}")

    def model_config(self):
        heads = self.hidden // self.head_dim
        return {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": self.hidden,
                "num_hidden_layers": self.layers, "intermediate_size": 64 * round(self.mlp_ratio * self.hidden / 64),
                "num_attention_heads": heads, "num_key_value_heads": max(1, heads // 4),
                "vocab_size": self.vocab, "rms_norm_eps": 1e-6, "rope_theta": 1e6, "max_position_embeddings": 32768,
                "tie_word_embeddings": self.tied, "torch_dtype": self.dtype}


QWEN_LIKE = {"mlp_ratio": 5.25, "head_dim": 128}  # Qwen2.5-7B's proportions
GRID = [
    Config(256, 2, 8192, 2, 512),
    Config(256, 2, 8192, 2, 512, checkpoint=True),
    Config(256, 2, 8192, 2, 512, chunked=True),
    Config(256, 2, 8192, 2, 512, bits=4),
    Config(512, 4, 8192, 1, 1024),
    Config(512, 4, 8192, 1, 1024, checkpoint=True, lora_layers=2),
    Config(512, 4, 8192, 1, 512, checkpoint=True, chunked=True, bits=4, shard_mb=64),
    Config(512, 4, 8192, 1, 1024, lora_layers=1),
    Config(512, 4, 8192, 1, 1024, **QWEN_LIKE),
    Config(512, 4, 8192, 1, 1024, checkpoint=True, **QWEN_LIKE),
    Config(256, 2, 32768, 1, 512),
    Config(256, 2, 32768, 1, 512, chunked=True),
    Config(384, 3, 16384, 4, 256),
    Config(384, 3, 16384, 4, 256, checkpoint=True, chunked=True, chunk_size=64),
    Config(1024, 2, 8192, 1, 512, **QWEN_LIKE),
    Config(1024, 2, 8192, 1, 256, checkpoint=True, bits=4, **QWEN_LIKE),
    Config(128, 1, 152064, 1, 256),
    Config(128, 1, 152064, 1, 256, chunked=True),
    Config(768, 3, 16384, 2, 512, lora_layers=2, tied=False, shard_mb=64, mlp_ratio=5.25, head_dim=64),
    Config(256, 2, 8192, 1, 512, dtype="bfloat16", mlp_ratio=5.25, head_dim=64),
    Config(512, 3, 8192, 1, 512, dtype="bfloat16", checkpoint=True, **QWEN_LIKE),
    Config(256, 2, 32768, 2, 256, dtype="bfloat16", chunked=True, mlp_ratio=5.25, head_dim=64),
]

# --smoke: every step, and both losses, on tiny shapes
SMOKE_GRID = [
    Config(64, 1, 512, 1, 32),
    Config(64, 1, 512, 1, 32, checkpoint=True, chunked=True, chunk_size=16, bits=4),
]

LABEL_WIDTH = max(len(config.label()) for config in GRID)


# ---------------------------------------------------------------------------------------------------------
# Child: measure one configuration
# ---------------------------------------------------------------------------------------------------------
def write_random_model(config, directory):
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import qwen2

    mx.random.seed(0)
    model = qwen2.Model(qwen2.ModelArgs.from_dict(config.model_config()))
    weights = {k: v.astype(getattr(mx, config.dtype)) for k, v in tree_flatten(model.parameters())}
    directory.mkdir(parents=True)
    mx.save_safetensors(str(directory / "model.safetensors"), weights, metadata={"format": "mlx"})
    (directory / "config.json").write_text(json.dumps(config.model_config()))


def fresh_heap():
    import gc

    import mlx.core as mx

    gc.collect()
    mx.clear_cache()
    mx.reset_peak_memory()
    return mx.get_active_memory()


def batch_arrays(config):
    import mlx.core as mx

    mx.random.seed(1)
    tokens = mx.random.randint(0, config.vocab, (config.batch, config.seq + 1))
    return tokens, mx.ones(tokens.shape)


def loss_and_batch(config, model):
    """The trainer's own summed masked loss (chunked when the row asks) and the row's batch as that loss takes it."""
    from synthia.train.loss import loss_and_inputs

    loss, inputs = loss_and_inputs(model, config.chunk_size if config.chunked else None)
    return loss, inputs(*batch_arrays(config))


def measure_train(config, model_dir, adapter_dir):
    """Peak of loading the training model and one compiled LoRA step, as synthia.train.worker trains."""
    from functools import partial

    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim
    from mlx.utils import tree_flatten
    from mlx_lm.tuner.trainer import grad_checkpoint
    from mlx_lm.tuner.utils import linear_to_lora_layers
    from mlx_lm.utils import load_model

    base = fresh_heap()
    model, _ = load_model(model_dir)
    loaded = mx.get_active_memory()
    model.freeze()
    lora = {"rank": 8, "scale": 20.0, "dropout": 0.0}
    linear_to_lora_layers(model, config.lora_layers if config.lora_layers > 0 else config.layers, lora)
    if config.checkpoint:
        grad_checkpoint(model.layers[0])
    optimizer = optim.Adam(learning_rate=1e-5)
    loss_fn, batch = loss_and_batch(config, model)
    value_and_grad = nn.value_and_grad(model, loss_fn)
    state = [model.state, optimizer.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(*batch):
        (loss, _), grads = value_and_grad(model, *batch)
        optimizer.update(model, grads)
        return loss

    loss = step(*batch)
    mx.eval(loss, state)
    peak = mx.get_peak_memory()
    adapter_dir.mkdir()
    mx.save_safetensors(str(adapter_dir / "adapters.safetensors"), dict(tree_flatten(model.trainable_parameters())))
    (adapter_dir / "adapter_config.json").write_text(json.dumps({
        "fine_tune_type": "lora", "num_layers": config.lora_layers if config.lora_layers > 0 else config.layers,
        "lora_parameters": lora}))
    return {"peak": peak, "start": base, "loaded": loaded, "loss": loss.item()}


def measure_evaluate(config, model_dir):
    """Peak of loading a model and scoring one batch, as synthia.train.worker evaluates."""
    import mlx.core as mx
    from mlx_lm.utils import load_model

    base = fresh_heap()
    model, _ = load_model(model_dir)
    loaded = mx.get_active_memory()
    loss_fn, batch = loss_and_batch(config, model)
    loss, ntoks = loss_fn(model, *batch)
    mx.eval(loss, ntoks)
    return {"peak": mx.get_peak_memory(), "start": base, "loaded": loaded}


def run_child(config):
    max_shard_bytes = int(config.shard_mb * (1 << 20))
    from synthia.train.fuse import fuse_streaming, quantize_streaming

    measured = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_random_model(config, tmp / "base")
        train_dir = tmp / "base"
        if config.bits:
            fresh_heap()
            stats = quantize_streaming(tmp / "base", tmp / "q4", bits=config.bits, max_shard_bytes=max_shard_bytes)
            measured["quantize"] = {"peak": stats["peak_memory_bytes"], "start": 0}
            train_dir = tmp / "q4"
        measured["train"] = measure_train(config, train_dir, tmp / "adapters")
        fresh_heap()
        stats = fuse_streaming(tmp / "base", tmp / "adapters", tmp / "fused", max_shard_bytes=max_shard_bytes)
        measured["fuse"] = {"peak": stats["peak_memory_bytes"], "start": 0}
        measured["evaluate"] = measure_evaluate(config, tmp / "fused")
    return measured


# ---------------------------------------------------------------------------------------------------------
# Parent: predict, run the children, print the table
# ---------------------------------------------------------------------------------------------------------
def plan_inputs(config):
    from synthia.train.memory_plan import ModelShape, PlanInputs

    return PlanInputs(model=ModelShape.from_config(config.model_config()), lengths=(config.seq + 1,),
                      batch_size=config.batch, max_seq_length=config.seq + 1, lora_rank=8,
                      num_layers=config.lora_layers, grad_checkpoint=config.checkpoint, train_bits=config.bits,
                      chunked_loss=config.chunked, chunk_size=config.chunk_size,
                      max_shard_bytes=int(config.shard_mb * (1 << 20)))


def machine_lines():
    import mlx.core as mx
    import mlx_lm

    from synthia.platform import blas

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    libraries = blas.loaded_blas_libraries() if Path("/proc/self/maps").exists() else []
    return [f"machine: {cpu}, {platform.machine()}, {platform.system()} {platform.release()}",
            f"python {platform.python_version()}, mlx {mx.__version__}, mlx-lm {mlx_lm.__version__}, "
            f"device {mx.default_device()}",
            f"BLAS mapped in this process: {', '.join(libraries) or 'unknown'}"]


def run_config(index, config):
    command = [sys.executable, __file__, "--child", json.dumps(asdict(config))]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"configuration {index} ({config.label()}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), time.perf_counter() - started


def print_rows(index, config, measured, predicted, seconds):
    worst = 0.0
    for step, values in measured.items():
        prediction = predicted[step].mlx_total
        ratio = prediction / (values["peak"] - values["start"])
        worst = max(worst, abs(ratio - 1))
        flag = "" if abs(ratio - 1) <= TOLERANCE else "  <-- off"
        print(f"{index:>3}  {config.label():<{LABEL_WIDTH}} {step:<9} {prediction / 1e6:>10.1f} {values['peak'] / 1e6:>10.1f}"
              f" {ratio:>7.2f}{flag}", flush=True)
    print(f"{'':>3}  ({seconds:.0f}s)", flush=True)
    return worst


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", type=int, nargs="+", metavar="N", help="run only these rows (1-based)")
    parser.add_argument("--details", action="store_true", help="also print each child's raw measurements")
    parser.add_argument("--smoke", action="store_true", help=f"{len(SMOKE_GRID)} tiny configurations instead of the "
                        "grid: every step in seconds")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(Config(**json.loads(args.child)))))
        return 0

    from synthia.train.memory_plan import plan

    started = time.perf_counter()
    print(f"Memory plan vs measured peaks: python bench/memory.py {' '.join(sys.argv[1:] if argv is None else argv)}"
          .rstrip())
    print("\n".join(machine_lines()))
    print(f"peaks in MB (mx.get_peak_memory, MLX allocations only); ratio = predicted / measured, "
          f"within {TOLERANCE:.0%} is the aim\n")
    print(f"{'#':>3}  {'configuration':<{LABEL_WIDTH}} {'step':<9} {'predicted':>10} {'measured':>10} {'ratio':>7}")
    worst = 0.0
    for index, config in enumerate(SMOKE_GRID if args.smoke else GRID, start=1):
        if args.only and index not in args.only:
            continue
        measured, seconds = run_config(index, config)
        if args.details:
            print(json.dumps({"config": asdict(config), "measured": measured}), flush=True)
        worst = max(worst, print_rows(index, config, measured, plan(plan_inputs(config)), seconds))
    print(f"\nworst |ratio - 1|: {worst:.2f}; total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
