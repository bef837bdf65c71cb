"""Score the shipped GGUF file as llama.cpp runs it: the MLX scorer's prompts, the file's own chat template, greedy.

    model, tokenizer, generator = load_for_scoring("out/gguf/synthia-q4_k_m.gguf")  # model is None for a GGUF
    result = generation.score_conversations(model, tokenizer, examples, tools, generator=generator)

The tokenizer is rebuilt from the file's metadata by synthia.gguf.importer (no weights are converted) and loaded
as mlx_lm's TokenizerWrapper, so every prompt is rendered and encoded exactly as for an MLX model, with the
template the file carries. LlamaCppGenerator feeds those token ids to llama.cpp (llama-cpp-python) and decodes
greedily until an end-of-turn token, keeping llama.cpp's KV cache for the prefix the next prompt shares.
"""

import os
import tempfile
from pathlib import Path

from synthia.gguf import importer
from synthia.scorecard import batched, generation

LLAMA_CPP_VERSION = "0.3.36"
INSTALL = f"pip install llama-cpp-python=={LLAMA_CPP_VERSION}"
MAX_DEFAULT_CONTEXT = 8192  # tokens of KV cache when n_ctx is not given (less when the model was trained on less)


class GGUFScoringError(Exception):
    """A GGUF file that cannot be scored here; the message says why and what to do."""

    exit_code = 2


class LlamaCppUnavailable(GGUFScoringError):
    """llama-cpp-python is not installed."""


def import_llama_cpp():
    try:
        import llama_cpp
    except ImportError:
        raise LlamaCppUnavailable(
            f"scoring a GGUF file runs it in llama.cpp, through llama-cpp-python, which is not installed. "
            f"Fix: `{INSTALL}` (it compiles llama.cpp, ~10 min the first time; scripts/setup.sh --dev does it), "
            "or score the MLX model directory instead") from None
    return llama_cpp


def is_gguf(path):
    """A GGUF file rather than a model directory: by its name, or a file that starts with GGUF's magic bytes."""
    path = Path(path)
    if path.suffix.lower() == ".gguf":
        return True
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(4) == b"GGUF"


def gguf_metadata(gguf_path):
    try:
        return importer.read_metadata(importer.open_gguf(Path(gguf_path)))
    except importer.GGUFImportError as e:
        raise GGUFScoringError(str(e)) from None


# ---------------------------------------------------------------- the tokenizer the file carries


def gguf_tokenizer(gguf_path, chat_template=None, *, metadata=None):
    """mlx_lm's TokenizerWrapper for the file's vocabulary, with its embedded chat template (or `chat_template`,
    text), stopping at its eos and end-of-turn ids.

    The importer writes tokenizer.json and tokenizer_config.json as an import would; they are loaded from a
    temporary directory, which loading reads whole.
    """
    from mlx_lm.utils import load_tokenizer

    meta = metadata if metadata is not None else gguf_metadata(gguf_path)
    template = chat_template if chat_template is not None else meta.get("tokenizer.chat_template")
    if not template:
        raise GGUFScoringError(f"{gguf_path}: the file has no chat template (tokenizer.chat_template), so its prompts "
                               "cannot be rendered. Fix: pass the template training used with --chat-template FILE")
    end_ids = importer.generation_config(meta)["eos_token_id"]  # eos and, when the file names one, eot
    with tempfile.TemporaryDirectory(prefix="synthia-gguf-tokenizer-") as directory:
        try:
            importer.write_tokenizer_from_metadata(Path(directory), meta, Path(gguf_path), template)
        except importer.GGUFImportError as e:
            raise GGUFScoringError(str(e)) from None
        return load_tokenizer(Path(directory), eos_token_ids=end_ids)


def usable_cores():
    # llama-cpp-python's own default is half of os.cpu_count() (one thread per core when cores are hyperthreaded),
    # which leaves a 2-core machine, or a process pinned to fewer cores, running one thread.
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def context_length(meta):
    """The context the model was trained on, by its `<arch>.context_length` key (None when the file lacks it)."""
    value = meta.get(f"{meta.get('general.architecture')}.context_length")
    return int(value) if value is not None else None


# ---------------------------------------------------------------- generation in llama.cpp


class LlamaCppGenerator(generation.Generator):
    """Greedy generation by llama.cpp from a GGUF file, with one KV cache reused across prompts that share a prefix.

    A Generator (its answer memory: splits holding the same conversations generate each prompt once) whose
    model is llama.cpp: the prompt ids are fed as they are, and each next token is the argmax of llama.cpp's
    logits (temperature 0, no repeat penalty), until one of the tokenizer's end ids or the token cap.
    """

    def __init__(self, gguf_path, n_ctx=None, *, tokenizer=None, reuse_cache=True, n_threads=None, metadata=None):
        llama_cpp = import_llama_cpp()
        self.gguf_path = Path(gguf_path)
        meta = metadata if metadata is not None else gguf_metadata(gguf_path)
        self.tokenizer = tokenizer if tokenizer is not None else gguf_tokenizer(gguf_path, metadata=meta)
        self.end_ids = set(self.tokenizer.eos_token_ids)
        self.reuse_cache = reuse_cache
        self.answers = {}
        self.n_ctx = n_ctx or min(context_length(meta) or MAX_DEFAULT_CONTEXT, MAX_DEFAULT_CONTEXT)
        try:
            # n_gpu_layers=-1: every layer on the GPU where llama.cpp has one (Metal on a Mac); ignored on CPU.
            self.llama = llama_cpp.Llama(model_path=str(gguf_path), n_ctx=self.n_ctx, n_gpu_layers=-1,
                                         n_threads=n_threads or usable_cores(), verbose=False)
        except ValueError as e:  # llama-cpp-python's way of saying llama.cpp could not load the file
            raise GGUFScoringError(f"{gguf_path}: llama.cpp cannot load it ({e}). Fix: export it again, or update "
                                   f"llama-cpp-python ({INSTALL}) if the file is newer than it") from None

    def reusable_prefix(self, prompt):
        """How many prompt tokens llama.cpp's KV cache already holds; the cache is cut to them."""
        shared = 0
        if self.reuse_cache:
            # At least one prompt token must go through the model to give the first token's logits.
            cached = self.llama.input_ids[: self.llama.n_tokens].tolist()
            shared = min(generation.common_prefix_length(cached, prompt), len(prompt) - 1)
        # Llama.eval drops every KV entry from position n_tokens on before it decodes (as Llama.generate relies on).
        self.llama.n_tokens = shared
        return shared

    def check_fits(self, prompt, max_new_tokens):
        if len(prompt) + max_new_tokens > self.n_ctx:
            raise GGUFScoringError(
                f"{self.gguf_path.name}: a prompt of {len(prompt)} tokens and up to {max_new_tokens} new ones need "
                f"{len(prompt) + max_new_tokens} tokens of context, but llama.cpp was given n_ctx={self.n_ctx}. "
                "Fix: cap the prompts (max_prompt_tokens) or load the file with a larger n_ctx")

    def generate(self, prompt, max_new_tokens):
        known = self.remembered(prompt, max_new_tokens)
        if known is not None:
            tokens, ended = known
            return generation.Generation(tokens, self.tokenizer.decode(tokens[:-1] if ended else tokens),
                                         truncated=not ended and len(tokens) >= max_new_tokens, prefilled=0,
                                         remembered=True)
        self.check_fits(prompt, max_new_tokens)
        reused = self.reusable_prefix(prompt)
        self.llama.eval(prompt[reused:])
        tokens = []
        while len(tokens) < max_new_tokens:
            tokens.append(int(self.llama.sample(top_k=1, temp=0.0, repeat_penalty=1.0)))
            if tokens[-1] in self.end_ids or len(tokens) == max_new_tokens:
                break
            self.llama.eval(tokens[-1:])
        ended = bool(tokens) and tokens[-1] in self.end_ids
        self.answers[tuple(prompt)] = (tuple(tokens), ended)
        text = self.tokenizer.decode(tokens[:-1] if ended else tokens)
        return generation.Generation(tokens, text, truncated=not ended and len(tokens) >= max_new_tokens,
                                     prefilled=len(prompt) - reused)

    def close(self):
        self.llama.close()


# ---------------------------------------------------------------- what the score worker loads


def load_for_scoring(path, chat_template=None, *, n_ctx=None):
    """(model or None, tokenizer, generator) to score `path` with generation.score_conversations.

    A model directory: mlx_lm's model and tokenizer and a batched.BatchedGenerator. A .gguf file: no model, the
    file's tokenizer (its embedded chat template) and a LlamaCppGenerator. `chat_template` is a template file
    that replaces the model's own in both cases.
    """
    template = Path(chat_template).read_text(encoding="utf-8") if chat_template else None
    if is_gguf(path):
        import_llama_cpp()  # before the tokenizer is built: the missing package is the first thing to fix
        meta = gguf_metadata(path)
        tokenizer = gguf_tokenizer(path, template, metadata=meta)
        return None, tokenizer, LlamaCppGenerator(path, n_ctx, tokenizer=tokenizer, metadata=meta)
    from mlx_lm.utils import load

    model, tokenizer = load(str(path))
    if template is not None:
        tokenizer._tokenizer.chat_template = template
    return model, tokenizer, batched.BatchedGenerator(model, tokenizer)
