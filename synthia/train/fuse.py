"""Fuse LoRA/DoRA adapters into a model, or quantize a model, without ever holding the whole model in memory.

    python -m synthia.train.fuse fuse --model BASE --adapter-path ADAPTERS --save-path OUT [--dequantize]
    python -m synthia.train.fuse quantize --hf-path SRC --mlx-path OUT [--q-bits 4] [--q-group-size 64]

mlx_lm's `fuse` and `convert -q` load every weight, then write: a 7B model in bf16 needs ~15 GB, which a
16 GB Mac does not have. Here the model is built lazily (mx.load reads a tensor from its shard only when
the tensor is evaluated), mlx_lm's own fuse/quantize code runs on those lazy arrays, and the result is
evaluated and written one output shard at a time, each shard dropped once on disk. The peak is about one
output shard (`max_shard_bytes`) plus one tensor's temporaries, and the weights are bit-identical to
mlx_lm's, because the arithmetic is mlx_lm's (LoRALinear.fuse, DoRALinear.fuse, quantize_model).

The output directory is written in place: pass a temporary path (train_mlx.py uses `<name>.partial`) and
rename it when the call returns, so a directory under the final name is always complete.
"""

import argparse
import fnmatch
import json
import shutil
import sys
import time
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten, tree_map_with_path, tree_unflatten
from mlx_lm.tuner.utils import load_adapters
from mlx_lm.utils import dequantize_model, get_total_parameters, load_model, quantize_model, save_config

from synthia.train.memory_plan import plan_shards

DEFAULT_MAX_SHARD_BYTES = 2 << 30  # mlx_lm writes 5 GB shards; smaller ones keep a 16 GB Mac's peak low
# What a model directory holds besides its weights (mlx_lm downloads the same patterns).
SIDE_FILE_PATTERNS = ("*.json", "*.py", "*.txt", "*.jinja", "tokenizer.model", "*.tiktoken", "tiktoken.model")
NOT_SIDE_FILES = ("config.json", "model.safetensors.index.json", "adapter_config.json")
CONVERSION_DTYPES = ("float16", "bfloat16", "float32")


class FuseError(ValueError):
    """A model or adapter directory that cannot be fused or quantized; the message names the fix."""


def fuse_streaming(base_dir, adapter_dir, out_dir, *, dequantize=False, max_shard_bytes=DEFAULT_MAX_SHARD_BYTES):
    """Write base + adapters to out_dir like `mlx_lm fuse`; returns statistics (peak memory, shards, ...).

    A quantized base stays quantized unless `dequantize`: then every quantized layer is written in full
    precision (the fused layers included), as `mlx_lm fuse --dequantize` does. Otherwise the fused layers
    are dequantized, updated and quantized again, which can round small updates away.
    """
    started = time.perf_counter()
    base_dir, adapter_dir, out_dir = Path(base_dir), Path(adapter_dir), Path(out_dir)
    check_model_dir(base_dir)
    adapter_kind = check_adapter_dir(adapter_dir)
    check_out_dir(out_dir)
    mx.reset_peak_memory()
    weights, config, info = lazy_fused_weights(base_dir, adapter_dir, dequantize)
    stats = write_model(weights, config, info, base_dir, out_dir, max_shard_bytes)
    return {**stats, "fine_tune_type": adapter_kind, "fused_layers": info["fused_layers"],
            "base_quantized": info["base_quantized"], "dequantized": info["base_quantized"] and dequantize,
            "quantized_output": "quantization" in config, "seconds": round(time.perf_counter() - started, 2)}


def lazy_fused_weights(base_dir, adapter_dir, dequantize):
    """mlx_lm fuse's steps on a lazily loaded model: (name -> unevaluated array, config, facts).

    Only the returned dict refers to the arrays, so each is freed once written (the model and the fused
    modules go out of scope here; a live reference would keep every evaluated weight).
    """
    model, config = load_model(base_dir, lazy=True)
    base_quantized = "quantization" in config
    load_adapters(model, str(adapter_dir))
    fused = [(name, module.fuse(dequantize=dequantize)) for name, module in model.named_modules()
             if hasattr(module, "fuse")]
    if fused:
        model.update_modules(tree_unflatten(fused))
    if dequantize:
        model = dequantize_model(model)
        config.pop("quantization", None)
        config.pop("quantization_config", None)
    return dict(tree_flatten(model.parameters())), config, {
        **model_facts(model), "fused_layers": len(fused), "base_quantized": base_quantized}


def model_facts(model):
    return {"total_parameters": get_total_parameters(model),
            "keep_vision_config": "vision_tower" in getattr(model, "model", {})}


def quantize_streaming(src_dir, out_dir, bits=4, group_size=64, *, mode="affine",
                       max_shard_bytes=DEFAULT_MAX_SHARD_BYTES):
    """Write src_dir quantized to out_dir like `mlx_lm convert -q` (same layers, same bits); returns statistics.

    Like convert, floating-point weights are first cast to the config's torch_dtype; mlx_lm's quantize
    predicate then picks the layers (every Linear and Embedding whose input size divides by group_size,
    narrowed by the model's own quant_predicate when it has one).
    """
    started = time.perf_counter()
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    check_model_dir(src_dir)
    check_out_dir(out_dir)
    mx.reset_peak_memory()
    weights, config, info = lazy_quantized_weights(src_dir, bits, group_size, mode)
    stats = write_model(weights, config, info, src_dir, out_dir, max_shard_bytes)
    return {**stats, "bits": bits, "group_size": group_size, "mode": mode,
            "seconds": round(time.perf_counter() - started, 2)}


def lazy_quantized_weights(src_dir, bits, group_size, mode):
    """mlx_lm convert -q's steps on a lazily loaded model: (name -> unevaluated array, config, facts)."""
    model, config = load_model(src_dir, lazy=True)
    if "quantization" in config:
        raise FuseError(f"{src_dir / 'config.json'} says the model is already quantized "
                        f"({config['quantization']}). Fix: quantize its full-precision original instead.")
    cast_to_config_dtype(model, config)
    model, config = quantize_model(model, config, group_size, bits, mode=mode)
    return dict(tree_flatten(model.parameters())), config, model_facts(model)


def cast_to_config_dtype(model, config):
    """The cast `mlx_lm convert` makes before quantizing (its scales and unquantized weights take this dtype)."""
    dtype = config.get("torch_dtype") or config.get("text_config", {}).get("dtype")
    if dtype not in CONVERSION_DTYPES:
        return
    keep = getattr(model, "cast_predicate", lambda _: True)
    target = getattr(mx, dtype)

    def cast(name, value):
        return value.astype(target) if keep(name) and mx.issubdtype(value.dtype, mx.floating) else value

    model.update(tree_map_with_path(cast, model.parameters()))


def check_model_dir(model_dir):
    if not (model_dir / "config.json").is_file():
        raise FuseError(f"{model_dir}: no config.json. Fix: pass a local MLX/Hugging Face model directory "
                        "(a Hub id must be downloaded first).")
    if not list(model_dir.glob("model*.safetensors")):
        raise FuseError(f"{model_dir}: no model*.safetensors weight files. Fix: convert the model to "
                        "safetensors (mlx_lm convert) first.")


def check_adapter_dir(adapter_dir):
    """The adapter type; the files mlx_lm's load_adapters reads must be there and make sense."""
    config_file, weights_file = adapter_dir / "adapter_config.json", adapter_dir / "adapters.safetensors"
    for needed in (config_file, weights_file):
        if not needed.is_file():
            raise FuseError(f"{needed} is missing. Fix: point --adapter-path at the directory mlx_lm "
                            "training wrote (adapter_config.json + adapters.safetensors).")
    adapter_config = json.loads(config_file.read_text())
    missing = [key for key in ("num_layers", "lora_parameters") if key not in adapter_config]
    if missing:
        raise FuseError(f"{config_file}: no {' or '.join(missing)}. Fix: write the adapter config mlx_lm's "
                        "trainer writes (fine_tune_type, num_layers, lora_parameters).")
    kind = adapter_config.get("fine_tune_type", "lora")
    if kind not in ("lora", "dora"):
        raise FuseError(f"{config_file}: fine_tune_type {kind!r} has nothing to fuse (lora or dora expected).")
    return kind


def check_out_dir(out_dir):
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FuseError(f"{out_dir} already holds files. Fix: remove it, or pass an empty or new directory.")


def write_model(weights, config, info, src_dir, out_dir, max_shard_bytes):
    """Write the lazy weights shard by shard, then config.json and the tokenizer's files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = write_shards(weights, out_dir, max_shard_bytes, info["total_parameters"])
    save_config(config, config_path=out_dir / "config.json", keep_vision_config=info["keep_vision_config"])
    return {**stats, "copied_files": copy_side_files(src_dir, out_dir)}


def shard_file_names(count):
    """mlx_lm's and Hugging Face's names: one shard is model.safetensors."""
    if count == 1:
        return ["model.safetensors"]
    return [f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]


def write_shards(weights, out_dir, max_shard_bytes, total_parameters):
    """Evaluate and save one shard at a time, removing its arrays from `weights` so their memory goes."""
    shards = plan_shards({name: value.nbytes for name, value in weights.items()}, max_shard_bytes)
    index = {"metadata": {"total_size": sum(v.nbytes for v in weights.values()),
                          "total_parameters": total_parameters},
             "weight_map": {}}
    largest = 0
    for names, file_name in zip(shards, shard_file_names(len(shards))):
        shard = {}
        for name in names:  # one at a time: MLX would otherwise compute the shard's tensors side by side
            shard[name] = weights.pop(name)
            mx.eval(shard[name])
        mx.save_safetensors(str(out_dir / file_name), shard, metadata={"format": "mlx"})
        largest = max(largest, sum(v.nbytes for v in shard.values()))
        index["weight_map"].update({name: file_name for name in names})
        del shard
    index["weight_map"] = dict(sorted(index["weight_map"].items()))
    (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=4))
    return {"shards": len(shards), "tensors": len(index["weight_map"]), "bytes_written": index["metadata"]["total_size"],
            "largest_shard_bytes": largest, "peak_memory_bytes": mx.get_peak_memory()}


def copy_side_files(src_dir, out_dir):
    """Tokenizer, chat template, generation config and custom code, copied as they are."""
    copied = []
    for path in sorted(src_dir.iterdir()):
        if (path.is_file() and path.name not in NOT_SIDE_FILES
                and any(fnmatch.fnmatch(path.name, pattern) for pattern in SIDE_FILE_PATTERNS)):
            shutil.copy2(path, out_dir / path.name)
            copied.append(path.name)
    return copied


def format_stats(stats):
    return (f"wrote {stats['tensors']} tensors ({stats['bytes_written'] / 1e9:.2f} GB) in {stats['shards']} shard(s), "
            f"peak memory {stats['peak_memory_bytes'] / 1e9:.2f} GB, {stats['seconds']:.1f}s")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m synthia.train.fuse", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fuse = commands.add_parser("fuse", help="fuse adapters into a model, like `mlx_lm fuse`")
    fuse.add_argument("--model", required=True, help="base model directory the adapters were trained for")
    fuse.add_argument("--adapter-path", required=True, help="directory with adapter_config.json + adapters.safetensors")
    fuse.add_argument("--save-path", required=True, help="output directory (new or empty)")
    fuse.add_argument("--dequantize", action="store_true", help="write a quantized base in full precision")
    quantize = commands.add_parser("quantize", help="quantize a model, like `mlx_lm convert -q`")
    quantize.add_argument("--hf-path", required=True, help="full-precision model directory")
    quantize.add_argument("--mlx-path", required=True, help="output directory (new or empty)")
    quantize.add_argument("--q-bits", type=int, default=4, help="bits per weight (default: 4)")
    quantize.add_argument("--q-group-size", type=int, default=64, help="weights per scale (default: 64)")
    for sub in (fuse, quantize):
        sub.add_argument("--max-shard-gb", type=float, default=DEFAULT_MAX_SHARD_BYTES / (1 << 30),
                         help="largest output shard, GiB; the peak memory is about this (default: %(default)s)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    max_shard_bytes = int(args.max_shard_gb * (1 << 30))
    try:
        if args.command == "fuse":
            stats = fuse_streaming(args.model, args.adapter_path, args.save_path, dequantize=args.dequantize,
                                   max_shard_bytes=max_shard_bytes)
        else:
            stats = quantize_streaming(args.hf_path, args.mlx_path, args.q_bits, args.q_group_size,
                                       max_shard_bytes=max_shard_bytes)
    except FuseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_stats(stats), flush=True)
    if stats.get("base_quantized"):
        print("the base is quantized: the output is " + ("dequantized (full precision)" if stats["dequantized"]
              else "quantized like the base (the fused layers were quantized again)"), flush=True)
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
