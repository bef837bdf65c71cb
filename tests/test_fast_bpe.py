"""tiktoken in place of the Rust tokenizer (synthia/platform/fast_bpe.py): the same ids and character offsets for Qwen2.5's
tokenizer, a divergence caught and the tokenizer itself used instead, and tokenizers tiktoken cannot copy left alone."""

import dataclasses

import pytest
from tokenizers import Tokenizer, normalizers, pre_tokenizers

from synthia.data import encode, pieces, render
from synthia.platform import fast_bpe
from synthia.data.validate import load_default_tools, validate_file
from tests.conftest import ROOT, load_qwen

TOOLS = load_default_tools()
AWKWARD_TEXTS = [
    "Grüße aus Köln: naïve café, déjà vu.\n",
    "日本語のテキストと English mixed 123456 together",
    "emoji 🚀🔥 and a flag 🇫🇷, then  trailing spaces   \n\n\n  indented\tTab",
    "I'LL say it's DON'T and we'd they've\r\nwindows line\r\n",
    "    def f(x):\n        return x ** 2  # ünïcode comment\n",
    '{"path": "src/ñ.rs", "n": 3.14159e-10, "list": [1,2,3]}',
    " " * 40 + "x" + "\n" * 5,
]


@pytest.fixture(scope="module")
def shipped():
    return [(ex.messages, ex.record.get("tools", TOOLS)) for ex in validate_file(ROOT / "dataset.jsonl").examples]


@pytest.fixture(scope="module")
def raw_qwen():
    return load_qwen()._tokenizer._tokenizer


def offsets_of(fast, text, ids):
    starts, ends = fast.bounds(text, ids)
    return list(zip(starts.tolist(), ends.tolist()))


def test_tiktoken_gives_qwens_ids_and_offsets(raw_qwen, shipped):
    fast = fast_bpe.fast_bpe(raw_qwen)
    assert fast is not None and fast.needs_nfc
    tokenizer = load_qwen()
    splitter = pieces.piece_tokenizer(tokenizer._tokenizer).split
    texts = {p for messages, tools in shipped[::6] for p in splitter.split(render.render(tokenizer, messages, tools))[::2]}
    for text in sorted(texts) + AWKWARD_TEXTS:
        own = raw_qwen.encode(text, add_special_tokens=False)
        ids = fast.ids(text)
        assert ids == own.ids, text[:80]
        assert offsets_of(fast, text, ids) == own.offsets, text[:80]


def test_text_the_normaliser_would_change_is_left_to_the_tokenizer(raw_qwen):
    fast = fast_bpe.fast_bpe(raw_qwen)
    assert fast.ids("cafe\u0301") is None  # NFC composes it: the tokenizer's offsets would move
    tokenized = pieces.tokenize_many(load_qwen(), ["cafe\u0301 " * 60_000])[0]  # large enough for tiktoken
    assert tokenized.ids == raw_qwen.encode("cafe\u0301 " * 60_000, add_special_tokens=False).ids


def encodings(tokenizer, conversations):
    return [dataclasses.astuple(e) for e in encode.encode_many(tokenizer, conversations)]


def test_the_shipped_dataset_encodes_alike_with_tiktoken_and_without(shipped):
    fast_tokenizer, plain_tokenizer = load_qwen(), load_qwen()
    pieces.drop_fast_bpe(plain_tokenizer)
    assert pieces.use_fast_bpe(fast_tokenizer) and not pieces.use_fast_bpe(plain_tokenizer)
    assert encodings(fast_tokenizer, shipped) == encodings(plain_tokenizer, shipped)


def test_a_divergence_is_caught_and_the_tokenizer_used_instead(shipped):
    tokenizer, reference = load_qwen(), load_qwen()
    pieces.drop_fast_bpe(reference)
    assert pieces.use_fast_bpe(tokenizer)
    fast = pieces.piece_tokenizer(tokenizer._tokenizer).fast
    honest = fast.ids
    fast.ids = lambda text: (lambda ids: ids[::-1] if len(ids) > 1 else ids)(honest(text))  # wrong order
    assert encodings(tokenizer, shipped[:60]) == encodings(reference, shipped[:60])
    assert pieces.piece_tokenizer(tokenizer._tokenizer).fast is None  # dropped for good


def copy_of(raw):
    return Tokenizer.from_str(raw.to_str())


@pytest.mark.parametrize("change", ["lowercase", "gpt2 regex", "dropout", "word suffix"])
def test_tokenizers_tiktoken_cannot_copy_are_left_to_themselves(raw_qwen, change):
    tokenizer = copy_of(raw_qwen)
    if change == "lowercase":
        tokenizer.normalizer = normalizers.Lowercase()
    elif change == "gpt2 regex":
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    elif change == "dropout":
        tokenizer.model.dropout = 0.1
    else:
        tokenizer.model.end_of_word_suffix = "</w>"
    assert fast_bpe.fast_bpe(tokenizer) is None


def test_without_tiktoken_the_tokenizer_itself_tokenizes(raw_qwen, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "tiktoken", None)
    assert fast_bpe.fast_bpe(raw_qwen) is None
