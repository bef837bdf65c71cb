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
