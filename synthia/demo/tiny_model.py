"""Build a tiny random-weight Qwen2 model that mlx_lm can load, for tests and the offline demo.

    python -m synthia.demo.tiny_model OUT_DIR [--vocab-size 1024] [--hidden-size 64] [--num-layers 2] ...

The directory looks like a Qwen2.5-Instruct checkpoint in miniature: config.json, model.safetensors
(seeded random weights, made with mlx_lm's own Qwen2 class), a byte-level BPE tokenizer trained here
on local text with Qwen2's pre-tokenizer and special tokens, and the Qwen2.5 tool-calling chat
template. Nothing is downloaded, and the same arguments always give the same files.
"""

import argparse
import json
import sysconfig
import time
from pathlib import Path

CHAT_TEMPLATE_PATH = Path(__file__).parents[1] / "chat_templates" / "qwen2.5-tools.jinja"
DEFAULT_TOOLS_PATH = Path(__file__).parents[1] / "data" / "default_tools.json"

END_OF_TEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = (END_OF_TEXT, IM_START, IM_END)
# Not special in Qwen2.5 (they survive skip_special_tokens), but single tokens all the same.
TOOL_CALL_TOKENS = ("<tool_call>", "</tool_call>")

# Qwen2's pre-tokenizer split: English contractions; letter runs with at most one leading
# non-letter; every digit on its own; punctuation runs with their trailing newlines; newline runs;
# other whitespace. It keeps "\n" after "<|im_start|>assistant" a token of its own.
QWEN2_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"
    r"|[^\r\n\p{L}\p{N}]?\p{L}+"
    r"|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+"
    r"|\s+(?!\S)"
    r"|\s+"
)

# Standard-library sources that exist in every CPython 3.x: code, docstrings and prose, like the
# data a coding agent sees. A fixed list (not a directory walk) keeps the tokenizer stable.
STDLIB_CORPUS_FILES = (
    "json/__init__.py", "json/decoder.py", "argparse.py", "pathlib.py", "subprocess.py",
    "textwrap.py", "dataclasses.py", "shutil.py", "tempfile.py", "difflib.py", "string.py",
    "functools.py", "glob.py", "fnmatch.py", "csv.py", "logging/__init__.py", "ast.py",
)
MAX_CORPUS_CHARS = 600_000  # enough for 1k-token vocabularies; training stays well under a second


def default_corpus_texts(max_chars=MAX_CORPUS_CHARS):
    """Local text to train the tokenizer on: the tool schemas, the chat template and stdlib sources."""
    paths = [DEFAULT_TOOLS_PATH, CHAT_TEMPLATE_PATH]
    stdlib_dir = Path(sysconfig.get_paths()["stdlib"])
    paths += [stdlib_dir / name for name in STDLIB_CORPUS_FILES]
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in paths if p.is_file()]
    texts.append(sample_conversation_text())
    return cap_texts(texts, max_chars)


def sample_conversation_text():
    """A few lines in the shape of agent traffic, so the corpus is never empty even without stdlib sources."""
    call = {"name": "read", "arguments": {"file_path": "src/main.rs", "offset": 1, "limit": 40}}
    return "\n".join([
        "Please fix the failing test in src/main.rs and explain the change.",
        "<tool_call>", json.dumps(call), "</tool_call>",
        "<tool_response>", "1\tfn main() {\n2\t    println!(\"héllo, wörld — 你好\");\n3\t}", "</tool_response>",
        "The test expected 42 but got 41: an off-by-one in the loop bound. I changed `<` to `<=`.",
    ])


def cap_texts(texts, max_chars):
    capped, total = [], 0
    for text in texts:
        if total >= max_chars:
            break
        capped.append(text[: max_chars - total])
        total += len(capped[-1])
    return capped


def train_tokenizer(texts, vocab_size):
    """A Qwen2-style byte-level BPE tokenizer with `vocab_size` tokens, special tokens last as in Qwen."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import BpeTrainer

    added = len(SPECIAL_TOKENS) + len(TOOL_CALL_TOKENS)
    tokenizer = Tokenizer(models.BPE(unk_token=None, byte_fallback=False, fuse_unk=False))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = BpeTrainer(
        vocab_size=vocab_size - added,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodes, whatever the corpus
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in TOOL_CALL_TOKENS])
    return tokenizer


def added_token_entry(content):
    special = content in SPECIAL_TOKENS
    return {"content": content, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False, "special": special}


def tokenizer_config(tokenizer, chat_template, max_length):
    added = {
        str(tokenizer.token_to_id(t)): added_token_entry(t)
        for t in SPECIAL_TOKENS + TOOL_CALL_TOKENS
    }
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "additional_special_tokens": [IM_START, IM_END],
        "bos_token": None,
        "chat_template": chat_template,
        "clean_up_tokenization_spaces": False,
        "eos_token": IM_END,
        "errors": "replace",
        "model_max_length": max_length,
        "pad_token": END_OF_TEXT,
        "split_special_tokens": False,
        # Qwen2.5's own class: transformers 5 rebuilds the pipeline from the vocabulary and merges,
        # older versions pick Qwen2TokenizerFast; either way a fast (Rust) tokenizer.
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def special_tokens_map():
    return {"additional_special_tokens": [IM_START, IM_END], "eos_token": IM_END, "pad_token": END_OF_TEXT}


def model_config(*, vocab_size, hidden_size, num_layers, num_heads, num_kv_heads, intermediate_size,
                 tie_word_embeddings, dtype, bos_id, eos_id, max_positions):
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "hidden_act": "silu",
        "hidden_size": hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": intermediate_size,
        "max_position_embeddings": max_positions,
        "max_window_layers": num_layers,
        "model_type": "qwen2",
        "num_attention_heads": num_heads,
        "num_hidden_layers": num_layers,
        "num_key_value_heads": num_kv_heads,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "sliding_window": max_positions,
        "tie_word_embeddings": tie_word_embeddings,
        "torch_dtype": dtype,
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": vocab_size,
    }


def random_weights(config, seed, dtype):
    """Freshly initialised parameters of mlx_lm's Qwen2 for `config`, as a flat name -> array dict."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import qwen2

    mx.random.seed(seed)
    model = qwen2.Model(qwen2.ModelArgs.from_dict(config))
    target = getattr(mx, dtype)
    return {name: value.astype(target) for name, value in tree_flatten(model.parameters())}


def write_json(path, data):
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def build_tiny_model(out_dir, *, corpus_texts=None, vocab_size=1024, hidden_size=64, num_layers=2, num_heads=4,
                     num_kv_heads=2, intermediate_size=128, seed=0, dtype="float32", tie_word_embeddings=True,
                     max_position_embeddings=4096) -> Path:
    """Write a loadable tiny Qwen2 model to `out_dir` and return its path."""
    import mlx.core as mx

    if hidden_size % num_heads or num_heads % num_kv_heads:
        raise ValueError("hidden_size must be a multiple of num_heads, and num_heads of num_kv_heads")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = list(corpus_texts) if corpus_texts is not None else default_corpus_texts()
    tokenizer = train_tokenizer(texts, vocab_size)
    end_of_text_id, im_end_id = tokenizer.token_to_id(END_OF_TEXT), tokenizer.token_to_id(IM_END)

    config = model_config(
        # A small corpus can stop BPE short of vocab_size; the spare embedding rows stay unused, as in Qwen.
        vocab_size=max(vocab_size, tokenizer.get_vocab_size()),
        hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads, num_kv_heads=num_kv_heads,
        intermediate_size=intermediate_size, tie_word_embeddings=tie_word_embeddings, dtype=dtype,
        bos_id=end_of_text_id, eos_id=im_end_id, max_positions=max_position_embeddings,
    )
    mx.save_safetensors(str(out_dir / "model.safetensors"), random_weights(config, seed, dtype),
                        metadata={"format": "mlx"})
    tokenizer.save(str(out_dir / "tokenizer.json"))
    chat_template = CHAT_TEMPLATE_PATH.read_text(encoding="utf-8")
    write_json(out_dir / "tokenizer_config.json", tokenizer_config(tokenizer, chat_template, max_position_embeddings))
    write_json(out_dir / "special_tokens_map.json", special_tokens_map())
    write_json(out_dir / "generation_config.json", {
        "bos_token_id": end_of_text_id, "eos_token_id": [im_end_id, end_of_text_id], "pad_token_id": end_of_text_id,
    })
    # Last, because callers treat an existing config.json as "already built".
    write_json(out_dir / "config.json", config)
    return out_dir


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m synthia.demo.tiny_model", description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--vocab-size", type=int, default=1024)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--num-kv-heads", type=int, default=2)
    parser.add_argument("--intermediate-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    parser.add_argument("--untied", action="store_true", help="separate lm_head instead of tied embeddings")
    parser.add_argument("--corpus", type=Path, nargs="+", metavar="FILE",
                        help="train the tokenizer on these text files instead of the built-in local corpus")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    corpus = [p.read_text(encoding="utf-8", errors="replace") for p in args.corpus] if args.corpus else None
    started = time.perf_counter()
    path = build_tiny_model(
        args.out_dir, corpus_texts=corpus, vocab_size=args.vocab_size, hidden_size=args.hidden_size,
        num_layers=args.num_layers, num_heads=args.num_heads, num_kv_heads=args.num_kv_heads,
        intermediate_size=args.intermediate_size, seed=args.seed, dtype=args.dtype,
        tie_word_embeddings=not args.untied,
    )
    size = sum(f.stat().st_size for f in path.iterdir())
    print(f"wrote {path} ({size / 1e6:.1f} MB) in {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
