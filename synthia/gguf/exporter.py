"""Export an MLX model directory (qwen2 or llama) to GGUF files that llama.cpp and LM Studio load.

    python -m synthia.gguf.exporter MODEL_DIR models/gguf NAME                  # f16, q8_0 (+ q4_k_m), checked
    python -m synthia.gguf.exporter MODEL_DIR models/gguf NAME --types q4_k_m --lmstudio-dir ~/.lmstudio/models

Writes OUT_DIR/NAME-f16.gguf and NAME-q8_0.gguf with the `gguf` package (llama.cpp's own Python library),
and NAME-q4_k_m.gguf with llama.cpp's quantizer when llama-cpp-python is installed. Each file carries the
tokenizer (vocabulary, merges, pre-tokenizer, special tokens) and the chat template the model was trained
with, so LM Studio renders tool calls the way training did. Tensors stream one at a time: a 7B export holds
one tensor (plus its converted copy) in memory, never the model. When llama-cpp-python is installed, every
file is then checked in llama.cpp against the MLX model (synthia.gguf.verify).
"""

import argparse
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synthia.files import size_text
from synthia.gguf.importer import PRE_TOKENIZER_KEY  # the tokenizer_config.json key the import records the name in
from synthia.gguf.llama3_rope import llama3_rope_factors

GGUF_TYPES = ("f16", "q8_0", "q4_k_m")  # the order they are written: q4_k_m is quantized from f16
SUPPORTED_MODEL_TYPES = ("qwen2", "llama")
ROPE_FREQS = "rope_freqs.weight"  # llama.cpp's per-frequency RoPE divisors (Llama 3 scaling)
DISK_MARGIN_BYTES = 256 * 2**20  # metadata (vocabulary, merges, template) and file-system slack

# Pre-tokenizer split patterns of GPT-2 style BPE tokenizers. llama.cpp splits the text by the built-in regex
# list of the file's tokenizer.ggml.pre name, each regex in turn, so the name must match the tokenizer's
# whole pre-tokenizer sequence, not only its last regex.
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
DIGIT_PATTERN = r"\p{N}"  # tokenizers' Digits(individual_digits=True): every digit alone
DIGIT_RUN_PATTERN = r"\p{N}+"  # Digits(individual_digits=False)
PRE_TOKENIZER_BY_PATTERNS = {(QWEN2_PATTERN,): "qwen2", (LLAMA3_PATTERN,): "llama-bpe", (GPT2_PATTERN,): "gpt-2",
                             (DIGIT_PATTERN, GPT2_PATTERN): "smollm"}  # SmolLM2: Digits, then ByteLevel


class GGUFExportError(ValueError):
    """A model directory, output directory or option that the GGUF export cannot use; says the fix."""


@dataclass(frozen=True)
class SourceTensor:
    """One weight as the GGUF file will hold it, before conversion."""

    mlx_name: str | None  # e.g. model.layers.0.self_attn.q_proj.weight; None for one computed here
    gguf_name: str  # e.g. blk.0.attn_q.weight
    shape: tuple  # logical (dequantized) shape, rows first


# ---------------------------------------------------------------- reading the MLX model directory

def read_json(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GGUFExportError(f"{path}: not found; point --model at an MLX model directory "
                              "(config.json, model*.safetensors, tokenizer.json)") from None
    except json.JSONDecodeError as e:
        raise GGUFExportError(f"{path}: not valid JSON ({e.msg}, line {e.lineno}); restore the file") from None


def model_config(model_dir):
    config = read_json(Path(model_dir) / "config.json")
    model_type = config.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise GGUFExportError(
            f"{Path(model_dir) / 'config.json'}: model_type {model_type!r} cannot be exported to GGUF here; "
            f"supported: {', '.join(SUPPORTED_MODEL_TYPES)} (convert other models with llama.cpp's "
            "convert_hf_to_gguf.py)")
    scaling_type = rope_scaling_type(config)
    supported = ("linear", "yarn", "llama3") if model_type == "llama" else ("linear", "yarn")
    if scaling_type not in (None, "default", *supported):
        raise GGUFExportError(
            f"{Path(model_dir) / 'config.json'}: rope_scaling type {scaling_type!r} is not supported for {model_type} "
            f"by this export (supported: none, {', '.join(supported)}); convert this model with llama.cpp's "
            "convert_hf_to_gguf.py")
    return config


def weight_files(model_dir):
    files = sorted(Path(model_dir).glob("model*.safetensors"))
    if not files:
        raise GGUFExportError(f"{model_dir}: no model*.safetensors; point --model at a fused MLX model "
                              "directory (after fusing LoRA adapters), not an adapter directory")
    return files


def lazy_weights(files):
    """name -> MLX array. mx.load maps the file lazily: a tensor's bytes are read only when it is used."""
    import mlx.core as mx

    weights = {}
    for path in files:
        weights.update(mx.load(str(path)))
    return weights


def head_dim(config):
    return config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]


def quantization_of(config, module_path):
    """MLX quantization settings of one module (`None` when it is stored in full precision)."""
    quantization = config.get("quantization")  # mlx_lm's key; quantization_config repeats it for transformers
    if not quantization:
        return None
    override = quantization.get(module_path)
    if override is False:
        return None
    settings = override if isinstance(override, dict) else quantization
    return {"group_size": settings["group_size"], "bits": settings["bits"], "mode": settings.get("mode", "affine")}


def dequantized_weight(weights, config, name):
    """The full-precision weight `name`; MLX's packed weights with scales/biases become float32 first."""
    import mlx.core as mx

    module_path = name.rsplit(".", 1)[0]
    scales = weights.get(f"{module_path}.scales")
    if scales is None or not name.endswith(".weight"):
        return weights[name]
    settings = quantization_of(config, module_path)
    if settings is None:
        raise GGUFExportError(f"{module_path}: has quantization scales but config.json has no 'quantization' "
                              "entry; restore config.json from the model that was saved with it")
    return mx.dequantize(weights[name], scales, weights.get(f"{module_path}.biases"), group_size=settings["group_size"],
                         bits=settings["bits"], mode=settings["mode"], dtype=mx.float32)


def release(weights, name):
    """Drop a written weight (and its quantization parameters): a loaded MLX array stays in memory while referenced."""
    weights.pop(name)
    if name.endswith(".weight"):  # not for a layer's own .bias: its weight may still need the scales
        module_path = name.rsplit(".", 1)[0]
        weights.pop(f"{module_path}.scales", None)
        weights.pop(f"{module_path}.biases", None)


def logical_shape(weights, config, name):
    """The dequantized shape of `name`, without reading its bytes."""
    module_path = name.rsplit(".", 1)[0]
    shape = tuple(weights[name].shape)
    if f"{module_path}.scales" in weights and name.endswith(".weight"):
        settings = quantization_of(config, module_path) or {"bits": 32}
        shape = (*shape[:-1], shape[-1] * 32 // settings["bits"])
    return shape


def source_tensors(weights, config):
    """Every weight the GGUF file holds, with its GGUF name, in the model's layer order."""
    import gguf

    arch = gguf_arch(config)
    name_map = gguf.get_tensor_name_map(arch, config["num_hidden_layers"])
    tensors = []
    for name in weights:
        if name.endswith((".scales", ".biases")) and f"{name.rsplit('.', 1)[0]}.weight" in weights:
            continue  # MLX quantization parameters, folded into their weight by dequantized_weight
        if "rotary_emb.inv_freq" in name:
            continue  # recomputed by llama.cpp from rope_freq_base
        gguf_name = name_map.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise GGUFExportError(f"tensor {name!r} has no GGUF name for {config['model_type']}; "
                                  "this export handles plain qwen2/llama checkpoints (fuse LoRA adapters first)")
        tensors.append(SourceTensor(name, gguf_name, logical_shape(weights, config, name)))
    if rope_scaling_type(config) == "llama3":
        tensors.append(SourceTensor(None, ROPE_FREQS, (head_dim(config) // 2,)))
    return sorted(tensors, key=lambda t: gguf_tensor_order(t.gguf_name))


def rope_scaling_type(config):
    rope_scaling = config.get("rope_scaling") or {}
    return rope_scaling.get("rope_type", rope_scaling.get("type"))


def gguf_tensor_order(gguf_name):
    """token_embd first, then the blocks in order, then output_norm and output, as convert_hf_to_gguf writes."""
    if gguf_name.startswith("blk."):
        return (1, int(gguf_name.split(".")[1]), gguf_name)
    return (0 if gguf_name.startswith("token_embd") else 2, 0, gguf_name)


def gguf_arch(config):
    import gguf

    return {"qwen2": gguf.MODEL_ARCH.QWEN2, "llama": gguf.MODEL_ARCH.LLAMA}[config["model_type"]]


# ---------------------------------------------------------------- converting tensors

def permute_for_llama_rope(weight, n_heads):
    """HF/MLX llama rotates the two halves of each head; llama.cpp's llama rotates adjacent pairs.

    Reorder each head's rows from (first half, second half) to interleaved pairs. Qwen2 needs no
    reordering: llama.cpp runs it with the half-rotation (NeoX) RoPE.
    """
    rows = weight.shape[0]
    return (weight.reshape(n_heads, 2, rows // n_heads // 2, *weight.shape[1:])
            .swapaxes(1, 2)
            .reshape(weight.shape))


def float32_tensor(weights, config, tensor):
    """The tensor as a float32 numpy array, ready for the GGUF layout of its architecture."""
    import mlx.core as mx

    if tensor.gguf_name == ROPE_FREQS:
        factors = llama3_rope_factors(config["rope_scaling"], config.get("rope_theta", 10000.0), head_dim(config))
        return factors.astype(np.float32)
    value = dequantized_weight(weights, config, tensor.mlx_name).astype(mx.float32)
    array = np.asarray(value)
    if config["model_type"] == "llama" and tensor.gguf_name.endswith(("attn_q.weight", "attn_k.weight", "attn_q.bias",
                                                                      "attn_k.bias")):
        n_heads = config["num_attention_heads"]
        if ".attn_k." in tensor.gguf_name:
            n_heads = config.get("num_key_value_heads") or n_heads
        array = permute_for_llama_rope(array, n_heads)
    return array


def ggml_type_for(tensor, out_type):
    """The GGML type of one tensor in a file of `out_type`: vectors stay F32, as in llama.cpp's converter."""
    import gguf

    if len(tensor.shape) == 1:
        return gguf.GGMLQuantizationType.F32
    if out_type == "q8_0" and tensor.shape[-1] % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0] == 0:
        return gguf.GGMLQuantizationType.Q8_0
    return gguf.GGMLQuantizationType.F16


def encoded_tensor(array, ggml_type):
    import gguf

    if ggml_type == gguf.GGMLQuantizationType.F32:
        return array.astype(np.float32, copy=False)
    if ggml_type == gguf.GGMLQuantizationType.F16:
        return array.astype(np.float16)
    return gguf.quants.quantize(array, ggml_type)


def tensor_nbytes(shape, ggml_type):
    import gguf

    block_size, type_size = gguf.GGML_QUANT_SIZES[ggml_type]
    return int(np.prod(shape)) // block_size * type_size


# ---------------------------------------------------------------- tokenizer and chat template

def tokenizer_json(model_dir):
    path = Path(model_dir) / "tokenizer.json"
    if not path.is_file():
        raise GGUFExportError(f"{path}: not found; the GGUF export needs the fast (byte-level BPE) tokenizer file "
                              "that mlx_lm saves with the model; copy it from the base model")
    data = read_json(path)
    model = data.get("model", {})
    if model.get("type") != "BPE" or model.get("byte_fallback") or (data.get("decoder") or {}).get("type") != "ByteLevel":
        raise GGUFExportError(f"{path}: not a GPT-2 style byte-level BPE tokenizer (model type {model.get('type')!r}); "
                              "only those are exported here; use llama.cpp's convert_hf_to_gguf.py for others")
    return data


def split_patterns(pre_tokenizer):
    """The regex of every splitting step in a tokenizer.json pre_tokenizer, in order, as llama.cpp lists them.

    A step of another kind (Whitespace, Punctuation, ...) appears as <its type>, so that no name matches it.
    """
    kind = (pre_tokenizer or {}).get("type")
    if kind is None or (kind == "ByteLevel" and not pre_tokenizer.get("use_regex", True)):
        return []  # nothing, or only the byte-to-character mapping
    if kind == "Sequence":
        return [p for step in pre_tokenizer["pretokenizers"] for p in split_patterns(step)]
    if kind == "Split" and pre_tokenizer.get("behavior", "Isolated") == "Isolated" and not pre_tokenizer.get("invert"):
        return [pre_tokenizer["pattern"].get("Regex", pre_tokenizer["pattern"].get("String"))]
    if kind == "ByteLevel":
        return [GPT2_PATTERN]
    if kind == "Digits":
        return [DIGIT_PATTERN if pre_tokenizer.get("individual_digits") else DIGIT_RUN_PATTERN]
    return [f"<{kind}>"]


def pre_tokenizer_name(tokenizer_data, path="tokenizer.json"):
    """llama.cpp's tokenizer.ggml.pre for this tokenizer, matched on its whole split sequence (not the architecture)."""
    patterns = tuple(split_patterns(tokenizer_data.get("pre_tokenizer")))
    if patterns in PRE_TOKENIZER_BY_PATTERNS:
        return PRE_TOKENIZER_BY_PATTERNS[patterns]
    known = ", ".join(sorted(PRE_TOKENIZER_BY_PATTERNS.values()))
    raise GGUFExportError(f"{path}: pre-tokenizer split {list(patterns)!r} matches none that this export knows "
                          f"({known}); llama.cpp would split text differently from training. Pass pre_tokenizer= "
                          "with the llama.cpp name of this tokenizer's regex, or convert with convert_hf_to_gguf.py")


def recorded_pre_tokenizer(model_dir):
    """The tokenizer.ggml.pre of the GGUF file this model (or its base) was imported from, or None."""
    path = Path(model_dir) / "tokenizer_config.json"
    return read_json(path).get(PRE_TOKENIZER_KEY) if path.is_file() else None


def chosen_pre_tokenizer(model_dir, tokenizer_data, log):
    """The recorded name of an imported model (llama.cpp already split this vocabulary by it), else the inferred one."""
    recorded = recorded_pre_tokenizer(model_dir)
    if recorded:
        log(f"[gguf] tokenizer.ggml.pre {recorded!r}: as in the GGUF file the model was imported from "
            "(tokenizer_config.json)")
        return recorded
    return pre_tokenizer_name(tokenizer_data, Path(model_dir) / "tokenizer.json")


def looks_like_control_token(text):
    """Added tokens spelled like <|...|> act as control tokens even when tokenizer.json does not mark them special."""
    return (text.startswith("<|") and text.endswith("|>")) or text in ("<pad>", "<mask>")


def vocabulary(tokenizer_data, n_vocab):
    """(tokens, token types) for ids 0..n_vocab-1; ids the tokenizer never produces become unused [PAD<id>] tokens."""
    import gguf

    by_id = {i: (text, gguf.TokenType.NORMAL) for text, i in tokenizer_data["model"]["vocab"].items()}
    for added in tokenizer_data.get("added_tokens", []):
        control = added.get("special") or looks_like_control_token(added["content"])
        by_id[added["id"]] = (added["content"], gguf.TokenType.CONTROL if control else gguf.TokenType.USER_DEFINED)
    if max(by_id) >= n_vocab:
        raise GGUFExportError(f"tokenizer.json has token id {max(by_id)} but config.json's vocab_size is {n_vocab}; "
                              "the tokenizer does not belong to this model")
    tokens, types = [], []
    for i in range(n_vocab):
        text, kind = by_id.get(i, (f"[PAD{i}]", gguf.TokenType.UNUSED))
        tokens.append(text)
        types.append(kind)
    return tokens, types


def special_vocab(model_dir, n_vocab, chat_template=None):
    """Merges, bos/eos/pad ids, add_bos and the chat template, read by gguf's own SpecialVocab.

    `chat_template` (text) replaces the directory's template: pass the one training used (--chat-template).
    """
    import gguf

    vocab = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=n_vocab)
    if chat_template:
        vocab.chat_template = chat_template
    if not vocab.chat_template:
        raise GGUFExportError(
            f"{Path(model_dir) / 'tokenizer_config.json'}: no chat_template (nor chat_template.jinja); without the "
            "template the model was trained with, LM Studio falls back to a generic one and tool calls break. "
            "Copy the training model's tokenizer_config.json into this directory")
    if "eos" not in vocab.special_token_ids:
        raise GGUFExportError(f"{Path(model_dir) / 'tokenizer_config.json'}: no eos_token; set it to the token that "
                              "ends an assistant turn (Qwen: <|im_end|>)")
    return vocab


# ---------------------------------------------------------------- writing

def add_hyperparameters(writer, config, n_vocab):
    import gguf

    writer.add_context_length(config.get("max_position_embeddings") or 4096)
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config.get("num_key_value_heads") or config["num_attention_heads"])
    writer.add_rope_freq_base(config.get("rope_theta", 10000.0))
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(n_vocab)
    if config.get("head_dim"):
        writer.add_key_length(config["head_dim"])
        writer.add_value_length(config["head_dim"])
    if config["model_type"] == "llama":
        writer.add_rope_dimension_count(head_dim(config))
    rope_scaling, scaling_type = config.get("rope_scaling") or {}, rope_scaling_type(config)
    if scaling_type == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(rope_scaling["factor"])
    elif scaling_type == "yarn":
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(rope_scaling["factor"])
        writer.add_rope_scaling_orig_ctx_len(rope_scaling["original_max_position_embeddings"])


def add_tokenizer(writer, model_dir, n_vocab, pre_tokenizer=None, chat_template=None, log=print):
    data = tokenizer_json(model_dir)
    tokens, types = vocabulary(data, n_vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer or chosen_pre_tokenizer(model_dir, data, log))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special_vocab(model_dir, n_vocab, chat_template).add_to_gguf(writer, quiet=True)


def file_type(out_type):
    import gguf

    return {"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
            "q4_k_m": gguf.LlamaFileType.MOSTLY_Q4_K_M}[out_type]


def metadata_writer(path, model_dir, config, out_type, name, pre_tokenizer=None, chat_template=None, log=print):
    """A GGUFWriter for `path` holding every key: general, hyperparameters, tokenizer and chat template."""
    import gguf

    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[gguf_arch(config)])
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    writer.add_file_type(file_type(out_type))
    if out_type != "f16":
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    add_hyperparameters(writer, config, config["vocab_size"])
    add_tokenizer(writer, model_dir, config["vocab_size"], pre_tokenizer, chat_template, log)
    return writer


def stream_tensors(writer, weights, config, tensors, types, *, label, log):
    """Convert and write the tensors one at a time, dropping each source tensor once it is written."""
    total = sum(tensor_nbytes(t.shape, ggml_type) for t, ggml_type in zip(tensors, types))
    written, next_report = 0, 0.25
    for tensor, ggml_type in zip(tensors, types):
        writer.write_tensor_data(encoded_tensor(float32_tensor(weights, config, tensor), ggml_type))
        if tensor.mlx_name:
            release(weights, tensor.mlx_name)
        written += tensor_nbytes(tensor.shape, ggml_type)
        if total > 1e9 and written >= next_report * total:  # progress only where it takes a while
            log(f"[gguf] {label}: {written / total:.0%} ({size_text(written)} of {size_text(total)})")
            next_report += 0.25


def write_gguf(model_dir, out_path, out_type, name, *, pre_tokenizer=None, chat_template=None, log=print):
    """Write one GGUF file of `out_type` ("f16" or "q8_0"), streaming the tensors one at a time."""
    model_dir, out_path = Path(model_dir), Path(out_path)
    config = model_config(model_dir)
    weights = lazy_weights(weight_files(model_dir))
    tensors = source_tensors(weights, config)
    types = [ggml_type_for(t, out_type) for t in tensors]
    partial = out_path.with_name(out_path.name + ".partial")  # never a half-written file under the final name
    writer = metadata_writer(partial, model_dir, config, out_type, name, pre_tokenizer, chat_template, log)
    for tensor, ggml_type in zip(tensors, types):
        writer.add_tensor_info(tensor.gguf_name, tensor.shape, np.dtype(np.float32),
                               tensor_nbytes(tensor.shape, ggml_type), raw_dtype=ggml_type)
    started = time.perf_counter()
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        stream_tensors(writer, weights, config, tensors, types, label=out_path.name, log=log)
    except BaseException:  # interrupted or failed: leave no partial file behind
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    writer.close()
    partial.replace(out_path)
    log(f"[gguf] wrote {out_path} ({size_text(out_path.stat().st_size)}, {len(tensors)} tensors) "
        f"in {time.perf_counter() - started:.1f}s")
    return out_path


# ---------------------------------------------------------------- K-quants through llama.cpp

def llama_cpp_available():
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


def quantize_with_llama_cpp(source_path, out_path, out_type="q4_k_m", *, threads=0, log=print):
    """Quantize a GGUF file with llama.cpp's own quantizer (llama_model_quantize), as llama-quantize does."""
    try:
        import llama_cpp
    except ImportError:
        raise GGUFExportError(f"{out_path.name}: {out_type} needs llama.cpp's quantizer; install it with "
                              "`pip install llama-cpp-python` (compiles llama.cpp, 10-20 min) or export only "
                              "f16 and q8_0") from None
    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{out_type.upper()}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    partial = Path(out_path).with_name(Path(out_path).name + ".partial")
    started = time.perf_counter()
    status = llama_cpp.llama_model_quantize(str(source_path).encode(), str(partial).encode(), params)
    if status != 0:
        partial.unlink(missing_ok=True)
        raise GGUFExportError(f"{out_path}: llama.cpp's quantizer failed (status {status}) on {source_path}; "
                              "run again with verbose logs, or keep the f16/q8_0 files")
    partial.replace(out_path)
    log(f"[gguf] wrote {out_path} ({size_text(Path(out_path).stat().st_size)}, llama.cpp {out_type}) "
        f"in {time.perf_counter() - started:.1f}s")
    return Path(out_path)


# ---------------------------------------------------------------- the export

def estimated_bytes(model_dir, out_type):
    """Bytes one output file will take: the tensors in its types plus a margin for metadata."""
    import gguf

    config = model_config(model_dir)
    tensors = source_tensors(lazy_weights(weight_files(model_dir)), config)
    if out_type == "q4_k_m":  # llama.cpp decides per tensor; Q6_K, its largest choice, bounds it
        sizes = [tensor_nbytes(t.shape, gguf.GGMLQuantizationType.F32) if len(t.shape) == 1
                 else int(np.prod(t.shape)) * 210 // 256 for t in tensors]
    else:
        sizes = [tensor_nbytes(t.shape, ggml_type_for(t, out_type)) for t in tensors]
    return sum(sizes) + DISK_MARGIN_BYTES


def check_free_disk(out_dir, needed_bytes):
    free = shutil.disk_usage(out_dir).free
    if free < needed_bytes:
        raise GGUFExportError(f"{out_dir}: the GGUF export needs {size_text(needed_bytes)} but only "
                              f"{size_text(free)} is free; free {size_text(needed_bytes - free)} or choose another "
                              "output directory")


def resolve_types(types, quantizer_available):
    """The types to write, in writing order; q4_k_m is dropped (with a note) when llama.cpp is not installed."""
    unknown = [t for t in types if t not in GGUF_TYPES]
    if unknown:
        raise GGUFExportError(f"unknown GGUF type(s) {', '.join(unknown)}; choose from {', '.join(GGUF_TYPES)}")
    chosen = [t for t in GGUF_TYPES if t in types]
    skipped = [t for t in chosen if t == "q4_k_m" and not quantizer_available]
    return [t for t in chosen if t not in skipped], skipped


def gguf_path(out_dir, name, out_type):
    return Path(out_dir) / f"{name}-{out_type}.gguf"


def export_gguf(model_dir, out_dir, name, *, types=GGUF_TYPES, chat_template=None, pre_tokenizer=None, log=print):
    """Write OUT_DIR/NAME-<type>.gguf for each type and return their paths.

    q4_k_m needs llama-cpp-python (llama.cpp's quantizer) and is quantized from the f16 file, which is
    therefore written too; without llama-cpp-python it is skipped with a note saying how to get it.
    `chat_template` (text) overrides the model directory's: pass the template training used.
    `pre_tokenizer` (llama.cpp's tokenizer.ggml.pre) overrides the name recorded by the import (importer.py), which
    overrides the one matched on tokenizer.json's pre-tokenizer.
    """
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    model_config(model_dir)  # fail on a wrong directory or tokenizer before anything is written
    pre_tokenizer = pre_tokenizer or chosen_pre_tokenizer(model_dir, tokenizer_json(model_dir), log)
    written_types, skipped = resolve_types(types, llama_cpp_available())
    if skipped:
        log("[gguf] NOTE: skipping q4_k_m: llama.cpp's quantizer is not installed (pip install llama-cpp-python)")
    if "q4_k_m" in written_types and "f16" not in written_types:
        written_types.insert(0, "f16")  # the quantizer's source
    out_dir.mkdir(parents=True, exist_ok=True)
    check_free_disk(out_dir, sum(estimated_bytes(model_dir, t) for t in written_types))
    paths = {}
    for out_type in written_types:
        path = gguf_path(out_dir, name, out_type)
        if out_type == "q4_k_m":
            paths[out_type] = quantize_with_llama_cpp(paths["f16"], path, out_type, log=log)
        else:
            paths[out_type] = write_gguf(model_dir, path, out_type, name, pre_tokenizer=pre_tokenizer,
                                         chat_template=chat_template, log=log)
    return [paths[t] for t in written_types]


# ---------------------------------------------------------------- LM Studio

def lmstudio_model_dir(lmstudio_root, publisher, model):
    """LM Studio finds models at <root>/<publisher>/<model>/*.gguf (root: ~/.lmstudio/models)."""
    for label, part in (("publisher", publisher), ("model", model)):
        if not part or "/" in part or "\\" in part or part in (".", ".."):
            raise GGUFExportError(f"LM Studio {label} name {part!r} must be one non-empty folder name "
                                  "(no slashes), e.g. --lmstudio-dir ~/.lmstudio/models with publisher 'synthia'")
    return Path(lmstudio_root).expanduser() / publisher / model


def copy_to_lmstudio(files, lmstudio_root, publisher, model, *, log=print):
    """Copy the GGUF files into LM Studio's layout and return the copies' paths."""
    target = lmstudio_model_dir(lmstudio_root, publisher, model)
    target.mkdir(parents=True, exist_ok=True)
    needed = sum(Path(f).stat().st_size for f in files)
    check_free_disk(target, needed)
    copies = []
    for source in map(Path, files):
        destination = target / source.name
        partial = destination.with_name(destination.name + ".partial")
        shutil.copyfile(source, partial)
        partial.replace(destination)
        copies.append(destination)
        log(f"[gguf] copied {source.name} to {target}")
    return copies


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m synthia.gguf.exporter", description=__doc__.split("\n")[0])
    parser.add_argument("model_dir", type=Path, help="MLX model directory (fused, qwen2 or llama)")
    parser.add_argument("out_dir", type=Path, help="where NAME-<type>.gguf files go (e.g. models/gguf)")
    parser.add_argument("name", help="file name stem and general.name, e.g. synthia-7b")
    parser.add_argument("--types", nargs="+", default=list(GGUF_TYPES), choices=GGUF_TYPES)
    parser.add_argument("--chat-template", type=Path, metavar="FILE",
                        help="the template training used, when it was not the model directory's own")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the llama.cpp check (it runs whenever llama-cpp-python is installed)")
    parser.add_argument("--dataset", type=Path, default=Path("dataset.jsonl"),
                        help="conversations for the llama.cpp check")
    parser.add_argument("--min-margin", type=float,
                        help="llama.cpp check: count only positions where MLX's top-1 leads by this many logits "
                             "(default: every position for f16; for quantized files, those where MLX is confident: "
                             "synthia.gguf.verify.CONFIDENT_MARGIN)")
    parser.add_argument("--lmstudio-dir", type=Path, metavar="DIR",
                        help="also copy the files to DIR/<publisher>/NAME/ (LM Studio: ~/.lmstudio/models)")
    parser.add_argument("--publisher", default="synthia", help="LM Studio publisher folder")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        template = args.chat_template.read_text(encoding="utf-8") if args.chat_template else None
        paths = export_gguf(args.model_dir, args.out_dir, args.name, types=args.types, chat_template=template)
        if not args.no_verify and llama_cpp_available():
            from synthia.gguf import verify

            conversations = verify.dataset_conversations(args.dataset)
            results = verify.verify_exports(paths, args.model_dir, conversations, chat_template=template,
                                                 min_margin=args.min_margin)
            failures = [problem for figures in results for problem in verify.problems(figures)]
            if failures:
                raise SystemExit("error: " + "\n  ".join(failures))
        elif not args.no_verify:
            print("[gguf] NOTE: not checked with llama.cpp: llama-cpp-python is not installed")
        if args.lmstudio_dir:
            copy_to_lmstudio(paths, args.lmstudio_dir, args.publisher, args.name)
    except OSError as e:
        raise SystemExit(f"error: {e.filename}: {e.strerror}")
    except ValueError as e:  # GGUFExportError, GGUFVerifyError
        raise SystemExit(f"error: {e}")


if __name__ == "__main__":
    main()
