"""Token ids of byte-level BPE text by tiktoken, for the tokenizers whose ids it gives.

Qwen2.5's tokenizer (like Llama 3's and GPT-4's) is byte-level BPE over one regex pre-tokenizer whose token ids
follow its merges' order. tiktoken runs that algorithm, merging by id, over the same vocabulary about five times
faster than the Rust `tokenizers` library (bench/fast_bpe.py), whose regex engine dominates. The two can still
differ: tiktoken merges any adjacent pair that forms a token, `tokenizers` only the listed merges, in their order. So
the caller checks: one piece in CHECK_EVERY, spread over each batch, is tokenized again by the tokenizer itself,
which must give the same ids and offsets; one that does not turns tiktoken off and the batch is tokenized again.
"""

import json
import unicodedata

import numpy as np

MIN_CHARACTERS = 200_000  # below this, building the table (~0.7 s for Qwen2.5) costs more than it saves
CHECK_EVERY = 16  # one piece in this many is tokenized again by the tokenizer itself, which must agree


class FastBPEDiverged(RuntimeError):
    """tiktoken and the tokenizer gave different ids for one piece of text."""


def byte_level_alphabet():
    """{character: byte} of byte-level BPE: printable bytes stand for themselves, the others for 256, 257, ..."""
    printable = [b for b in range(256) if 33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255]
    others = [b for b in range(256) if b not in printable]
    return {**{chr(b): b for b in printable}, **{chr(256 + k): b for k, b in enumerate(others)}}


class FastBPE:
    """ids(text): the tokenizer's ids for `text` (no added tokens in it), or None for text it does not take."""

    def __init__(self, encoding, byte_lengths, needs_nfc):
        self.encoding, self.byte_lengths, self.needs_nfc = encoding, byte_lengths, needs_nfc

    def ids(self, text):
        if self.needs_nfc and not unicodedata.is_normalized("NFC", text):
            return None  # the tokenizer normalises it first, which moves character offsets
        return self.encoding.encode_ordinary(text)

    def bounds(self, text, ids):
        """(starts, ends): each token's character offsets in `text`, as the tokenizer gives them: a token that
        starts or ends inside a character's UTF-8 bytes spans that whole character."""
        lengths = self.byte_lengths[np.asarray(ids, dtype=np.int64)]
        ends = np.cumsum(lengths)
        starts = ends - lengths
        if text.isascii():
            return starts, ends
        data = np.frombuffer(text.encode(), dtype=np.uint8)
        char_of_byte = np.cumsum((data & 0xC0) != 0x80) - 1  # continuation bytes belong to the character before
        return char_of_byte[starts], char_of_byte[ends - 1] + 1


def fast_bpe(raw):
    """A FastBPE for a `tokenizers.Tokenizer`, or None when it is not plain byte-level BPE over one regex (or
    tiktoken is missing). Reads the parts it needs (~0.7 s for Qwen2.5's 151k tokens), not the whole JSON."""
    try:
        import tiktoken

        pattern = split_pattern(component_state(raw.pre_tokenizer))
        normalizer = component_state(raw.normalizer).get("type")
        model = raw.model
    except Exception:
        return None
    if pattern is None or normalizer not in (None, "NFC") or not plain_bpe(model):
        return None
    vocab = raw.get_vocab(with_added_tokens=False)
    alphabet = byte_level_alphabet()
    if not alphabet.keys() <= vocab.keys() or not set("".join(vocab)) <= alphabet.keys():
        return None  # not byte-level: some byte has no token, or a token holds a character that is no byte
    table = str.maketrans({c: chr(b) for c, b in alphabet.items()})
    ranks = {token.translate(table).encode("latin-1"): rank for token, rank in vocab.items()}
    byte_lengths = np.zeros(max(ranks.values()) + 1, dtype=np.int64)
    byte_lengths[list(ranks.values())] = [len(token) for token in ranks]
    try:
        encoding = tiktoken.Encoding("synthia-fast-bpe", pat_str=pattern, mergeable_ranks=ranks, special_tokens={})
    except Exception:  # a pattern tiktoken's regex engine cannot take, or ranks it refuses
        return None
    return FastBPE(encoding, byte_lengths, needs_nfc=normalizer == "NFC")


def component_state(component):
    return json.loads(component.__getstate__()) if component is not None else {}


def split_pattern(pre_tokenizer):
    """The regex of `Split(regex, isolated)` followed by `ByteLevel` without its own regex, else None."""
    steps = pre_tokenizer.get("pretokenizers") or []
    if pre_tokenizer.get("type") != "Sequence" or len(steps) != 2:
        return None
    split, byte_level = steps
    plain_split = (split.get("type") == "Split" and split.get("behavior") == "Isolated" and not split.get("invert")
                   and "Regex" in (split.get("pattern") or {}))
    plain_bytes = (byte_level.get("type") == "ByteLevel" and not byte_level.get("use_regex", True)
                   and not byte_level.get("add_prefix_space", False))
    return split["pattern"]["Regex"] if plain_split and plain_bytes else None


def plain_bpe(model):
    """BPE with nothing tiktoken lacks: no dropout, byte fallback or word prefix/suffix."""
    return (type(model).__name__ == "BPE" and not model.dropout and not model.byte_fallback
            and not model.continuing_subword_prefix and not model.end_of_word_suffix)
