"""Tiny source models written to GGUF with the `gguf` package, for the GGUF importer's tests.

A source is a directory in Hugging Face layout (config.json, model.safetensors, tokenizer.json,
tokenizer_config.json) holding seeded random weights made by mlx_lm's own model classes and a
byte-level BPE tokenizer trained here. `write_gguf` turns one into a GGUF file the way llama.cpp's
converter lays it out (tensor names, llama's q/k row order, vocabulary token types, metadata keys),
so the importer can be checked against the source it came from.

gguf-py quantizes F16, BF16, Q8_0, Q4_0 and Q4_1 itself but not the K-quants, so Q4_K and Q6_K blocks are
packed here; `tests/test_gguf_import.py` checks them against gguf-py's own dequantizer.
"""

import json
from pathlib import Path

import numpy as np

QK_K = 256  # values per K-quant super-block

LLAMA3_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_SPECIALS = ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
CHATML_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


# ---------------------------------------------------------------------------------------------------------
# K-quant packing (the inverse of gguf-py's Q4_K / Q6_K dequantize_blocks)
# ---------------------------------------------------------------------------------------------------------
def _f16_bytes(values):
    return values.astype(np.float16).reshape(-1, 1).view(np.uint8)


def _safe_divide(a, b):
    return np.divide(a, b, out=np.zeros(np.broadcast_shapes(a.shape, b.shape), np.float32), where=b != 0)


def q6_k_blocks(x):
    """(n, 256) floats -> (n, 210) bytes: 16 int8 scales of 16 values each, 6-bit values, one f16 d."""
    n = x.shape[0]
    sub = x.reshape(n, 16, 16)
    sub_scale = np.abs(sub).max(axis=-1) / 31
    d = (sub_scale.max(axis=-1) / 127).astype(np.float16).astype(np.float32)
    scales = np.clip(np.round(_safe_divide(sub_scale, d[:, None])), -128, 127).astype(np.int8)
    step = d[:, None] * scales.astype(np.float32)
    q = np.clip(np.round(_safe_divide(sub, step[..., None])), -32, 31).astype(np.int16) + 32
    q = q.reshape(n, QK_K).astype(np.uint8)
    low, high = (q & 0x0F).reshape(n, 2, 2, 64), (q >> 4).reshape(n, 2, 4, 32)
    ql = (low[:, :, 0] | (low[:, :, 1] << 4)).reshape(n, 128)
    qh = (high[:, :, 0] | (high[:, :, 1] << 2) | (high[:, :, 2] << 4) | (high[:, :, 3] << 6)).reshape(n, 64)
    return np.concatenate([ql, qh, scales.view(np.uint8), _f16_bytes(d)], axis=1)


def q4_k_blocks(x):
    """(n, 256) floats -> (n, 144) bytes: f16 d and dmin, eight 6-bit scales and mins, 4-bit values."""
    n = x.shape[0]
    sub = x.reshape(n, 8, 32)
    low = np.minimum(sub.min(axis=-1), 0)
    sub_scale, sub_min = (sub.max(axis=-1) - low) / 15, -low
    d = (sub_scale.max(axis=-1) / 63).astype(np.float16).astype(np.float32)
    dmin = (sub_min.max(axis=-1) / 63).astype(np.float16).astype(np.float32)
    sc = np.clip(np.round(_safe_divide(sub_scale, d[:, None])), 0, 63).astype(np.uint8)
    mn = np.clip(np.round(_safe_divide(sub_min, dmin[:, None])), 0, 63).astype(np.uint8)
    step = (d[:, None] * sc)[..., None]
    offset = (dmin[:, None] * mn)[..., None]
    q = np.clip(np.round(_safe_divide(sub + offset, step)), 0, 15).astype(np.uint8).reshape(n, 4, 2, 32)
    qs = (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(n, 128)
    packed = np.concatenate([
        sc[:, :4] | ((sc[:, 4:] >> 4) << 6),
        mn[:, :4] | ((mn[:, 4:] >> 4) << 6),
        (sc[:, 4:] & 0x0F) | ((mn[:, 4:] & 0x0F) << 4),
    ], axis=1)
    return np.concatenate([_f16_bytes(d), _f16_bytes(dmin), packed, qs], axis=1)


def quantize(x, type_name):
    """A 2-D float32 array in GGUF's byte layout for `type_name` (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K)."""
    import gguf

    qtype = gguf.GGMLQuantizationType[type_name]
    if type_name == "F32":
        return x.astype(np.float32)
    if type_name in ("Q4_K", "Q6_K"):
        encode = q4_k_blocks if type_name == "Q4_K" else q6_k_blocks
        rows, cols = x.shape
        blocks = encode(x.reshape(-1, QK_K).astype(np.float32))
        return blocks.reshape(rows, (cols // QK_K) * blocks.shape[1])
    return gguf.quants.quantize(x.astype(np.float32), qtype)


# ---------------------------------------------------------------------------------------------------------
# Source models
# ---------------------------------------------------------------------------------------------------------
def train_byte_level_tokenizer(texts, vocab_size, style, specials, plain_added=()):
    """A byte-level BPE tokenizer shaped like a real model family's tokenizer.json.

    style "llama3": Llama 3's split regex (digits in runs of up to three), merges ignored for whole-vocabulary
    words; "smollm": every digit alone, then GPT-2's regex (SmolLM2's pre-tokenizer); "gpt2": GPT-2's regex
    alone, inside the byte-level step (GPT-2's own tokenizer.json).
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from tokenizers.trainers import BpeTrainer

    tokenizer = Tokenizer(models.BPE(unk_token=None, byte_fallback=False, fuse_unk=False))
    if style == "llama3":
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ])
    elif style == "smollm":
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ])
    elif style == "gpt2":
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    else:
        raise ValueError(f"unknown tokenizer style {style!r}")
    tokenizer.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(vocab_size=vocab_size - len(specials) - len(plain_added), min_frequency=2,
                         show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                         special_tokens=list(specials))  # specials first, with the lowest ids, as in both families
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in plain_added])
    if style == "llama3":
        tokenizer.model.ignore_merges = True
        bos = specials[0]
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokenizer.token_to_id(bos))])
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return tokenizer


def dataset_texts(records):
    """Every distinct text of a dataset's records: message contents, tool-call arguments, tool schemas."""
    texts = set()
    for record in records:
        texts.add(json.dumps(record["tools"], ensure_ascii=False))
        for message in record["messages"]:
            texts.add(message.get("content") or "")
            for call in message.get("tool_calls") or []:
                arguments = call["function"]["arguments"]
                texts.add(arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False))
    return sorted(texts - {""})


def write_json(path, data):
    Path(path).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def build_llama_source(out_dir, *, style="llama3", texts, vocab_size=1024, hidden_size=256, num_layers=2,
                       num_heads=4, num_kv_heads=2, intermediate_size=512, tie_word_embeddings=False, seed=1,
                       rope_scaling=None):
    """A tiny random Llama in HF layout; style "llama3" (BOS added), "smollm" or "gpt2" (both ChatML)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import llama

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    specials = LLAMA3_SPECIALS if style == "llama3" else CHATML_SPECIALS
    plain_added = ("<tool_call>", "</tool_call>")
    tokenizer = train_byte_level_tokenizer(texts, vocab_size, style, specials, plain_added)
    bos, eos = (specials[0], specials[4]) if style == "llama3" else (specials[1], specials[2])
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
        "hidden_size": hidden_size, "intermediate_size": intermediate_size, "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads, "num_key_value_heads": num_kv_heads, "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0, "max_position_embeddings": 2048, "vocab_size": vocab_size,
        "tie_word_embeddings": tie_word_embeddings, "bos_token_id": tokenizer.token_to_id(bos),
        "eos_token_id": tokenizer.token_to_id(eos), "torch_dtype": "float32", "rope_scaling": rope_scaling,
    }
    mx.random.seed(seed)
    model = llama.Model(llama.ModelArgs.from_dict(config))
    weights = dict(tree_flatten(model.parameters()))
    mx.save_safetensors(str(out_dir / "model.safetensors"), weights, metadata={"format": "mlx"})
    tokenizer.save(str(out_dir / "tokenizer.json"))
    added = {str(tokenizer.token_to_id(t)): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                              "single_word": False, "special": t in specials}
             for t in specials + plain_added}
    write_json(out_dir / "tokenizer_config.json", {
        "added_tokens_decoder": added, "bos_token": bos, "eos_token": eos, "pad_token": None,
        "add_bos_token": style == "llama3", "clean_up_tokenization_spaces": False,
        "chat_template": LLAMA3_TEMPLATE if style == "llama3" else CHATML_TEMPLATE,
        "model_max_length": 2048, "tokenizer_class": "PreTrainedTokenizerFast",
    })
    write_json(out_dir / "config.json", config)
    return out_dir


# ---------------------------------------------------------------------------------------------------------
# Writing GGUF the way llama.cpp's converter does
# ---------------------------------------------------------------------------------------------------------
def permute_for_llama_cpp(w, n_heads):
    """HF rows (rotate-half pairs i, i + d/2) -> llama.cpp rows (adjacent pairs 2i, 2i + 1), per head."""
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_vocabulary(tokenizer_json, vocab_size):
    """(tokens, token types, merges) as the converter writes them for a byte-level BPE tokenizer."""
    import gguf

    by_id = {i: t for t, i in tokenizer_json["model"]["vocab"].items()}
    added = {a["id"]: a for a in tokenizer_json["added_tokens"]}
    tokens, types = [], []
    for i in range(vocab_size):
        if i in added:
            tokens.append(added[i]["content"])
            types.append(gguf.TokenType.CONTROL if added[i]["special"] else gguf.TokenType.USER_DEFINED)
        elif i in by_id:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in tokenizer_json["model"]["merges"]]
    return tokens, types, merges


def tensor_type_for(hf_name, shape, file_type):
    """Per-tensor type: 1-D tensors stay F32 as in llama.cpp; Q4_K_M puts Q6_K on the most sensitive matrices."""
    if len(shape) == 1:
        return "F32"
    if file_type == "Q4_K_M":
        sensitive = ("v_proj", "down_proj", "lm_head", "embed_tokens")
        return "Q6_K" if any(s in hf_name for s in sensitive) else "Q4_K"
    return file_type


def llama3_rope_factors(config):
    """The rope_freqs.weight llama.cpp's converter writes for a Llama 3.1-style rope_scaling: one factor per pair."""
    scaling, head_dim = config["rope_scaling"], config["hidden_size"] // config["num_attention_heads"]
    context = scaling["original_max_position_embeddings"]
    low_wavelen, high_wavelen = context / scaling["low_freq_factor"], context / scaling["high_freq_factor"]
    factors = []
    for period in config["rope_theta"] ** (np.arange(0, head_dim, 2) / head_dim):
        wavelen = 2 * np.pi * period
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(scaling["factor"])
        else:
            smooth = (context / wavelen - scaling["low_freq_factor"]) / (
                scaling["high_freq_factor"] - scaling["low_freq_factor"])
            factors.append(1 / ((1 - smooth) / scaling["factor"] + smooth))
    return np.array(factors, dtype=np.float32)


def write_gguf(source_dir, out_path, file_type, *, pre, arch=None, name="tiny"):
    """Write `source_dir` to `out_path` in `file_type` (F32, F16, BF16, Q8_0, Q4_0, Q4_1 or Q4_K_M).

    `arch` only relabels general.architecture (and the metadata keys' prefix), to make files of other
    architectures; tensor names and row order follow the source's own model type.
    """
    import gguf
    import mlx.core as mx

    source_dir, out_path = Path(source_dir), Path(out_path)
    config = json.loads((source_dir / "config.json").read_text())
    tokenizer_config = json.loads((source_dir / "tokenizer_config.json").read_text())
    tokenizer_json = json.loads((source_dir / "tokenizer.json").read_text(encoding="utf-8"))
    source_arch = config["model_type"]
    arch = arch or source_arch
    model_arch = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == source_arch)
    n_layers, n_heads, n_kv = config["num_hidden_layers"], config["num_attention_heads"], config["num_key_value_heads"]
    names = gguf.get_tensor_name_map(model_arch, n_layers)

    writer = gguf.GGUFWriter(str(out_path), arch)
    writer.add_name(name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(n_layers)
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(n_heads)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_freq_base(config["rope_theta"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_rope_dimension_count(config["hidden_size"] // n_heads)
    writer.add_vocab_size(config["vocab_size"])

    tokens, types, merges = gguf_vocabulary(tokenizer_json, config["vocab_size"])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    specials = {"bos": "bos_token", "eos": "eos_token", "pad": "pad_token"}
    vocab_ids = {t: i for i, t in enumerate(tokens)}
    for kind, key in specials.items():
        if tokenizer_config.get(key):
            getattr(writer, f"add_{kind}_token_id")(vocab_ids[tokenizer_config[key]])
    writer.add_add_bos_token(bool(tokenizer_config.get("add_bos_token")))
    writer.add_chat_template(tokenizer_config["chat_template"])

    weights = mx.load(str(source_dir / "model.safetensors"))
    for hf_name in sorted(weights):
        w = np.array(weights[hf_name].astype(mx.float32))
        if source_arch == "llama" and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            w = permute_for_llama_cpp(w, n_heads)
        if source_arch == "llama" and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            w = permute_for_llama_cpp(w, n_kv)
        type_name = tensor_type_for(hf_name, w.shape, file_type)
        data = quantize(w, type_name)
        writer.add_tensor(names.get_name(hf_name, try_suffixes=(".weight", ".bias")), data,
                          raw_dtype=gguf.GGMLQuantizationType[type_name])
    if (config.get("rope_scaling") or {}).get("rope_type") == "llama3":
        writer.add_tensor("rope_freqs.weight", llama3_rope_factors(config))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out_path


# ---------------------------------------------------------------------------------------------------------
# A plain reference tokenizer over a GGUF vocabulary
# ---------------------------------------------------------------------------------------------------------
GPT2_WORDS = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
SMOLLM_SPLITS = (r"\p{N}", GPT2_WORDS)  # llama.cpp's regex list for tokenizer.ggml.pre "smollm"


def regex_pieces(text, patterns):
    """Split `text` by each pattern in turn, keeping matches and the gaps between them (llama.cpp's way)."""
    import regex

    pieces = [text]
    for pattern in patterns:
        compiled, split = regex.compile(pattern), []
        for piece in pieces:
            end = 0
            for match in compiled.finditer(piece):
                if match.start() > end:
                    split.append(piece[end:match.start()])
                split.append(match.group())
                end = match.end()
            if end < len(piece):
                split.append(piece[end:])
        pieces = split
    return pieces


class ReferenceBPE:
    """GPT-2's byte-level BPE written out plainly over a GGUF's tokens and merges, independent of `tokenizers`.

    Added (control and user-defined) tokens are matched first, longest first; the rest of the text is cut by
    the pre-tokenizer regexes, mapped to GPT-2's byte alphabet, and each word merged by lowest merge rank.
    """

    def __init__(self, tokens, token_types, merges, split_patterns):
        import regex
        from transformers.convert_slow_tokenizer import bytes_to_unicode

        self.ids = {}
        for index, token in enumerate(tokens):
            self.ids.setdefault(token, index)
        self.ranks = {tuple(m.split(" ", 1)): rank for rank, m in enumerate(merges)}
        added = sorted((t for t, k in zip(tokens, token_types) if k in (3, 4)), key=len, reverse=True)
        self.added = regex.compile("|".join(regex.escape(t) for t in added)) if added else None
        self.split_patterns = split_patterns
        self.byte_chars = bytes_to_unicode()
        self.cache = {}

    @classmethod
    def from_gguf(cls, path, split_patterns):
        import gguf

        fields = gguf.GGUFReader(path).fields
        return cls(fields["tokenizer.ggml.tokens"].contents(), fields["tokenizer.ggml.token_type"].contents(),
                   fields["tokenizer.ggml.merges"].contents(), split_patterns)

    def merge(self, word):
        parts = list(word)
        while len(parts) > 1:
            pairs = [(self.ranks.get(pair, float("inf")), i) for i, pair in enumerate(zip(parts, parts[1:]))]
            rank, i = min(pairs)
            if rank == float("inf"):
                break
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        return parts

    def encode_plain(self, text):
        ids = []
        for piece in regex_pieces(text, self.split_patterns):
            word = "".join(self.byte_chars[b] for b in piece.encode("utf-8"))
            if word not in self.cache:
                self.cache[word] = [self.ids[part] for part in self.merge(word)]
            ids += self.cache[word]
        return ids

    def encode(self, text):
        ids, end = [], 0
        for match in (self.added.finditer(text) if self.added else ()):
            ids += self.encode_plain(text[end:match.start()]) + [self.ids[match.group()]]
            end = match.end()
        return ids + self.encode_plain(text[end:])


def model_from_gguf_tensors(path, config):
    """mlx_lm's model for `config` holding the GGUF's tensors as gguf-py dequantizes them, in the file's row order.

    A llama file's q/k rows are interleaved for llama.cpp's RoPE, which rotates adjacent pairs; MLX's
    "traditional" RoPE does the same, so this model computes what llama.cpp would, with no un-permuting.
    """
    import importlib

    import gguf
    import mlx.core as mx
    from mlx.utils import tree_flatten

    arch = config["model_type"]
    module = importlib.import_module(f"mlx_lm.models.{arch}")
    model = module.Model(module.ModelArgs.from_dict({**config, "rope_traditional": arch == "llama"}))
    model_arch = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch)
    names = gguf.get_tensor_name_map(model_arch, config["num_hidden_layers"])
    tensors = {t.name: t for t in gguf.GGUFReader(path).tensors}
    weights = []
    for name, _ in tree_flatten(model.parameters()):
        tensor = tensors[names.get_name(name, try_suffixes=(".weight", ".bias"))]
        weights.append((name, mx.array(gguf.quants.dequantize(tensor.data, tensor.tensor_type))))
    model.load_weights(weights)
    return model
