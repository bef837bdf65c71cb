"""Tokenize rendered conversations with character offsets, piece by piece between special tokens.

A tokenizer splits text at its added tokens before anything else, so no token crosses one: tokenizing the pieces
between them separately gives the same ids and offsets as one call on the whole text (checked once per tokenizer).
Conversations of one dataset share long pieces (the system prompt with every tool definition), so a whole dataset
tokenized at once costs one tokenizer call over its distinct pieces.
"""

import bisect
import re
import weakref

import numpy as np

from synthia.platform import fast_bpe
from synthia.platform.fast_bpe import FastBPEDiverged  # noqa: F401  (raised while tokenizing; callers catch it from here)


class Piece:
    """The tokens of one piece of text: ids, and character offsets read from the tokenizer only when asked
    (most pieces never are: turn edges fall inside few of them)."""

    __slots__ = ("ids", "_offsets", "_bounds")

    def __init__(self, ids, offsets=None, bounds=None):
        """offsets: [(start, end)] or a function that reads them; or bounds: a function giving `bounds`."""
        self.ids, self._offsets, self._bounds = ids, offsets, bounds

    @property
    def bounds(self):
        """(starts, ends): numpy arrays of each token's character offsets within the piece."""
        if callable(self._bounds):
            self._bounds = self._bounds()
        elif self._bounds is None:
            offsets = self._offsets() if callable(self._offsets) else self._offsets
            pairs = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
            self._bounds, self._offsets = (pairs[:, 0].copy(), pairs[:, 1].copy()), None
        return self._bounds


class Tokenized:
    """One text's token ids, as parts: the special tokens and the pieces between them, each with the character
    and token position where it starts."""

    __slots__ = ("ids", "part_chars", "part_tokens", "parts", "length")

    def __init__(self, ids, part_chars, part_tokens, parts, length):
        self.ids, self.part_chars, self.part_tokens, self.parts = ids, part_chars, part_tokens, parts
        self.length = length

    @property
    def offsets(self):
        """(start, end) character offsets of every token."""
        out = []
        for char, part in zip(self.part_chars, self.parts):
            if isinstance(part, Piece):
                starts, ends = part.bounds
                out += zip((starts + char).tolist(), (ends + char).tolist())
            else:
                out.append((char, char + part))
        return out

    def tokens_before(self, position):
        """How many tokens start before character `position`."""
        j = bisect.bisect_right(self.part_chars, position) - 1
        if j < 0 or position >= self.length:
            return 0 if j < 0 else len(self.ids)
        char, part = self.part_chars[j], self.parts[j]
        if position == char:
            return self.part_tokens[j]
        inside = int(np.searchsorted(part.bounds[0], position - char)) if isinstance(part, Piece) else 1
        return self.part_tokens[j] + inside

    def token_span(self, k):
        """Character (start, end) of token k."""
        j = bisect.bisect_right(self.part_tokens, k) - 1
        char, part = self.part_chars[j], self.parts[j]
        if not isinstance(part, Piece):
            return char, char + part
        starts, ends = part.bounds
        return char + int(starts[k - self.part_tokens[j]]), char + int(ends[k - self.part_tokens[j]])

    def token_range(self, start, end):
        """Token range [first, last) of the tokens that start inside [start, end), and whether both edges fall on
        token boundaries."""
        first, last, size = self.tokens_before(start), self.tokens_before(end), len(self.ids)
        aligned = first < size and self.token_span(first)[0] == start
        aligned = aligned and (last == size or self.token_span(last)[0] == end) and self.token_span(last - 1)[1] == end
        return first, last, bool(aligned)


def tokenize(tokenizer, text):
    """`text` tokenized as one call of the tokenizer would (no special tokens added)."""
    return tokenize_many(tokenizer, [text])[0]


def tokenize_many(tokenizer, texts):
    """[Tokenized] for `texts`, as one tokenizer call per text would give."""
    hf = getattr(tokenizer, "_tokenizer", tokenizer)
    pieces = piece_tokenizer(hf)
    if pieces is not None:
        return pieces.encode_many(texts)
    encoding = hf(list(texts), add_special_tokens=False, return_offsets_mapping=True)
    return [Tokenized(list(ids), [0], [0], [Piece(ids, offsets)], len(text))
            for text, ids, offsets in zip(texts, encoding["input_ids"], encoding["offset_mapping"])]


def use_fast_bpe(tokenizer):
    """Build tiktoken's table for `tokenizer` now (before forking, so that every process shares it); whether
    tiktoken will tokenize for it."""
    pieces = piece_tokenizer(getattr(tokenizer, "_tokenizer", tokenizer))
    return pieces is not None and pieces.use_fast_bpe()


def drop_fast_bpe(tokenizer):
    """Tokenize with the tokenizer itself only, from now on."""
    pieces = piece_tokenizer(getattr(tokenizer, "_tokenizer", tokenizer))
    if pieces is not None:
        pieces.drop_fast_bpe()


class PieceTokenizer:
    """Tokenizes the pieces between special tokens once each, and remembers recent pieces across calls."""

    def __init__(self, hf, specials, capacity=256):  # pieces of a few conversations: tens of MB at most
        self.hf, self.capacity, self.cache = hf, capacity, {}
        self.fast, self.fast_tried = None, False  # fast_bpe.FastBPE, built for the first large batch
        self.special_ids = {token: hf.convert_tokens_to_ids(token) for token in specials}
        self.split = re.compile("(" + "|".join(re.escape(t) for t in sorted(specials, key=len, reverse=True)) + ")")

    def encode_many(self, texts):
        parts_of = [self.split.split(text) for text in texts]  # odd indexes are the special tokens themselves
        distinct = {part for parts in parts_of for part in parts[::2] if part}
        known = {piece: self.cache[piece] for piece in distinct if piece in self.cache}
        missing = sorted(distinct - known.keys())
        known.update(zip(missing, self._tokenize(missing)))
        if len(missing) <= self.capacity:  # a whole dataset is not kept: only what a few conversations share
            if len(self.cache) + len(missing) > self.capacity:
                self.cache.clear()
            self.cache.update((piece, known[piece]) for piece in missing)
        return [self._assemble(parts, known) for parts in parts_of]

    def use_fast_bpe(self):
        """Tokenize with tiktoken from now on where it gives this tokenizer's ids (built once: ~0.7 s for Qwen2.5)."""
        if not self.fast_tried:
            self.fast_tried, self.fast = True, fast_bpe.fast_bpe(self.raw)
        return self.fast is not None

    def drop_fast_bpe(self):
        self.fast, self.fast_tried, self.cache = None, True, {}

    @property
    def raw(self):
        """The Rust tokenizer: the same encodings, without the wrapper (None if this is not one)."""
        raw = getattr(self.hf, "_tokenizer", None)
        return raw if raw is not None and hasattr(raw, "encode_batch") else None

    def _tokenize(self, texts):
        pieces = [None] * len(texts)
        if not self.fast_tried and sum(map(len, texts)) >= fast_bpe.MIN_CHARACTERS:
            self.use_fast_bpe()
        if self.fast is not None:
            for k, text in enumerate(texts):
                ids = self.fast.ids(text)
                if ids is not None:
                    pieces[k] = Piece(ids, bounds=lambda text=text, ids=ids: self.fast.bounds(text, ids))
            self._check_fast([(text, piece) for text, piece in zip(texts, pieces) if piece is not None])
        rest = [k for k, piece in enumerate(pieces) if piece is None]
        for k, (ids, offsets) in zip(rest, self._encodings([texts[k] for k in rest])):
            pieces[k] = Piece(ids, offsets)
        return pieces

    def _check_fast(self, tokenized):
        """Every CHECK_EVERY-th piece tiktoken tokenized (spread over the list), tokenized again by the tokenizer
        itself: the same ids and offsets, or FastBPEDiverged."""
        sample = tokenized[::fast_bpe.CHECK_EVERY]
        for (text, piece), (ids, offsets) in zip(sample, self._encodings([text for text, _ in sample])):
            own = Piece(ids, offsets)
            if list(ids) != list(piece.ids) or not all(map(np.array_equal, own.bounds, piece.bounds)):
                raise FastBPEDiverged(f"tiktoken and the tokenizer split {text[:80]!r} differently")

    def _encodings(self, texts):
        """[(ids, offsets or a function that reads them)] from the tokenizer itself."""
        if not texts:
            return []
        if self.raw is not None:
            return [(e.ids, lambda e=e: e.offsets) for e in self.raw.encode_batch(texts, add_special_tokens=False)]
        encoding = self.hf(texts, add_special_tokens=False, return_offsets_mapping=True)
        return list(zip(encoding["input_ids"], encoding["offset_mapping"]))

    def _assemble(self, parts, known):
        ids, part_chars, part_tokens, pieces, position = [], [], [], [], 0
        for k, part in enumerate(parts):
            if not part:
                continue
            part_chars.append(position)
            part_tokens.append(len(ids))
            if k % 2:
                ids.append(self.special_ids[part])
                pieces.append(len(part))  # a special token: its length stands for the part
            else:
                ids.extend(known[part].ids)
                pieces.append(known[part])
            position += len(part)
        return Tokenized(ids, part_chars, part_tokens, pieces, position)


_PIECE_TOKENIZERS = weakref.WeakKeyDictionary()


def piece_tokenizer(hf):
    """The PieceTokenizer of `hf`, or None when its special tokens are not plain split points (or cannot be
    read). Checked once per tokenizer against a whole-text call on a text full of them."""
    try:
        if hf not in _PIECE_TOKENIZERS:
            _PIECE_TOKENIZERS[hf] = _checked_piece_tokenizer(hf)
        return _PIECE_TOKENIZERS[hf]
    except TypeError:  # not weak-referenceable
        return None


def _checked_piece_tokenizer(hf):
    added = getattr(hf, "added_tokens_decoder", None)
    if not added:
        return None
    plain = [t for t in added.values() if not (t.lstrip or t.rstrip or t.single_word or t.normalized)]
    specials = {t.content for t in plain if t.content}
    others = [t.content for t in added.values() if t.content not in specials]
    if not specials or any(s in o for s in specials for o in others):
        return None  # a longer added token contains a split point: the tokenizer would match it instead
    pieces = PieceTokenizer(hf, specials)
    probe = " x\n".join(f"{t} y{k} {t}{t}\n  é {k}" for k, t in enumerate(sorted(specials)))
    whole = hf(probe, add_special_tokens=False, return_offsets_mapping=True)
    split = pieces.encode_many([probe])[0]
    pieces.cache.clear()
    same = split.ids == list(whole["input_ids"]) and split.offsets == [tuple(o) for o in whole["offset_mapping"]]
    return pieces if same else None
