from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random-weight Qwen2 model directory (mlx_lm-loadable), built once per test session."""
    from synthia.demo.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model")


@pytest.fixture
def two_processes(monkeypatch):
    """synthia.platform.forked shares even a short list among 2 processes, whatever the machine."""
    from synthia.platform import forked

    monkeypatch.setattr(forked, "MIN_ITEMS", 1)
    monkeypatch.setattr(forked, "MAX_PROCESSES", 2)
    monkeypatch.setattr(forked.os, "sched_getaffinity", lambda _pid: {0, 1}, raising=False)
    monkeypatch.setattr(forked.sys, "platform", "linux")


def load_qwen():
    """Qwen2.5's real tokenizer with the pipeline's tool template, as the default base model renders; a new object
    each call (tokenizers remember per object whether tiktoken tokenizes for them)."""
    from mlx_lm.tokenizer_utils import TokenizerWrapper
    from transformers import PreTrainedTokenizerFast

    from synthia.starter_data import tokenizer as qwen_tokenizer

    try:
        raw = qwen_tokenizer.load(fetch=False)
    except qwen_tokenizer.TokenizerUnavailable as e:
        pytest.skip(f"Qwen2.5's tokenizer is not available here ({e}); .ci/run builds it")
    hf = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    hf.chat_template = (ROOT / "synthia" / "chat_templates" / "qwen2.5-tools.jinja").read_text()
    return TokenizerWrapper(hf)


@pytest.fixture(scope="module")
def qwen():
    return load_qwen()


@pytest.fixture(scope="module")
def context_sensitive(tiny_model_dir):
    """The tiny model with its embeddings shrunk tenfold and its attention sharpened.

    As built, the embeddings dominate the residual stream, the tied output layer echoes the last prompt token
    ("\\n" forever), and near-uniform attention over thousands of tokens hardly notices a few extra or shifted
    ones. Rescaled, every output depends on the exact tokens and positions in the cache, so equal outputs
    mean equal caches (skipping the trim, for one, changes them).
    """
    from mlx_lm import load

    model, tokenizer = load(tiny_model_dir)
    model.model.embed_tokens.weight = model.model.embed_tokens.weight * 0.1
    for layer in model.model.layers:
        layer.self_attn.q_proj.weight = layer.self_attn.q_proj.weight * 4
        layer.self_attn.k_proj.weight = layer.self_attn.k_proj.weight * 4
    return model, tokenizer
