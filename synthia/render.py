"""Render conversations with the model's own chat template and mark the tokens that carry loss.

Every assistant turn (its text, its tool calls and its end-of-turn token) is trained, unless it has
`weight: 0`; system, user and tool-result tokens never are. The trained character ranges are found by
rendering the conversation up to each assistant turn with and without it: the text the template adds
after the generation prompt is exactly what the model emits at inference.
"""

import bisect
import json
import re
import weakref
from dataclasses import dataclass, field

PROBE_TOOL = "synthia_probe_lookup"
PROBE_DESCRIPTION = "probe-description-5d1e"
PROBE_ARGUMENT = "probe-argument-7f3a"
PROBE_RESULT = "probe-result-91c2"


class TemplateError(ValueError):
    """The chat template cannot render a conversation the way training needs."""


@dataclass(frozen=True)
class Segment:
    text: str
    trained: bool


@dataclass
class Encoded:
    """One conversation as token ids, with the token ranges [start, end) that carry loss."""

    tokens: list
    spans: list  # trained token ranges, one per trained assistant turn, in order
    trained_turns: int = 0
    untrained_turns: int = 0  # assistant turns with weight 0
    dropped_turns: int = 0  # assistant turns cut because the example exceeded max_seq_length
    full_length: int = 0  # token count before any cut
    misaligned: int = 0  # span edges that fall inside a token (should be 0)
    untrained_spans: list = field(default_factory=list)  # weight-0 turns, for reporting

    @property
    def trained_tokens(self):
        return sum(end - start for start, end in self.spans)

    @property
    def untrained_assistant_tokens(self):
        return sum(end - start for start, end in self.untrained_spans)


def template_messages(messages):
    """Copy of `messages` as chat templates want them.

    Qwen2.5's template tojson()s `arguments`, so an OpenAI JSON string would be double-encoded:
    hand it the parsed object instead. `weight` is ours, not the template's.
    """
    converted = []
    for message in messages:
        message = {k: v for k, v in message.items() if k != "weight"}
        if message.get("tool_calls"):
            message["tool_calls"] = [_call_with_object_arguments(c) for c in message["tool_calls"]]
        converted.append(message)
    return converted


def _call_with_object_arguments(call):
    fn = dict(call["function"])
    if isinstance(fn.get("arguments"), str):
        fn["arguments"] = json.loads(fn["arguments"])
    return {**call, "function": fn}


def render(tokenizer, messages, tools, add_generation_prompt=False):
    return tokenizer.apply_chat_template(
        template_messages(messages), tools=tools, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def end_of_turn_marker(tokenizer):
    """The text of the token that ends an assistant turn (Qwen: <|im_end|>)."""
    return tokenizer.eos_token


def assistant_char_ranges(tokenizer, messages, tools):
    """Render the conversation; return (text, [(start, end, weight)]) for every assistant turn.

    A range covers what the model generates for that turn, up to and including the end-of-turn marker.
    """
    converted = template_messages(messages)
    turns = [i for i, message in enumerate(messages) if message["role"] == "assistant"]
    # A conversation that ends with an assistant turn is its own last prefix: rendered once.
    prefixes = [i for i in turns if i + 1 < len(messages)]
    full, *rendered = render_batch(tokenizer, [converted] + [converted[: i + 1] for i in prefixes], tools)
    uptos = [*rendered, full][: len(turns)]
    prompts = dict(zip([i for i in turns if i], render_batch(tokenizer, [converted[:i] for i in turns if i], tools,
                                                              add_generation_prompt=True)))
    marker = end_of_turn_marker(tokenizer)
    ranges = []
    for i, upto in zip(turns, uptos):
        prompt = prompts[i] if i else opening_prompt(tokenizer, upto, tools)
        if not (upto.startswith(prompt) and full.startswith(upto)):
            raise TemplateError(
                f"the chat template does not render messages[{i}] as a continuation of the conversation before it "
                "(it rewrites earlier turns), so assistant turns cannot be located; pass a template that does with "
                "--chat-template FILE"
            )
        turn = upto[len(prompt):]
        end = turn.find(marker) + len(marker) if marker and marker in turn else len(turn.rstrip("\n"))
        ranges.append((len(prompt), len(prompt) + end, messages[i].get("weight", 1)))
    return full, ranges


def render_batch(tokenizer, conversations, tools, add_generation_prompt=False):
    """Render conversations already in template form. One call for all of them: Hugging Face then converts the
    tools once, not once a conversation (most of the time rendering a turn took)."""
    if not conversations:
        return []
    if getattr(tokenizer, "_chat_template", None) is not None:  # mlx_lm's own Python template: one at a time
        return [tokenizer.apply_chat_template(c, tools=tools, tokenize=False,
                                              add_generation_prompt=add_generation_prompt) for c in conversations]
    return list(tokenizer.apply_chat_template(conversations, tools=tools, tokenize=False,
                                              add_generation_prompt=add_generation_prompt))


def generation_prompt(tokenizer, tools):
    """What the template appends to ask for an assistant turn (Qwen: "<|im_start|>assistant\n")."""
    probe = [{"role": "user", "content": PROBE_RESULT}]
    asked = render(tokenizer, probe, tools, add_generation_prompt=True)
    return asked[len(render(tokenizer, probe, tools)):]


def opening_prompt(tokenizer, upto, tools):
    """For a conversation that opens with the assistant: everything the template puts before that turn (its
    default system prompt included), which is context and never trained."""
    marker = generation_prompt(tokenizer, tools)
    at = upto.find(marker) if marker else -1
    if at < 0:
        raise TemplateError("cannot find where the opening assistant turn starts in the rendered text; start the "
                            "conversation with a system or user message")
    return upto[: at + len(marker)]


def segments(text, ranges):
    """Split `text` into alternating untrained/trained segments (weight-0 turns are untrained)."""
    out, position = [], 0
    for start, end, weight in ranges:
        if not weight:
            continue
        if start > position:
            out.append(Segment(text[position:start], False))
        out.append(Segment(text[start:end], True))
        position = end
    if position < len(text):
        out.append(Segment(text[position:], False))
    return out


def tokenize_with_offsets(tokenizer, text):
    """Token ids and (start, end) character offsets of `text`, the same as one call of the tokenizer would give."""
    hf = getattr(tokenizer, "_tokenizer", tokenizer)
    pieces = _piece_tokenizer(hf)
    if pieces is None:
        encoding = hf(text, add_special_tokens=False, return_offsets_mapping=True)
        return encoding["input_ids"], encoding["offset_mapping"]
    return pieces.encode(text)


class PieceTokenizer:
    """Tokenizes text piece by piece between special tokens, and remembers recent pieces.

    A tokenizer splits text at its added tokens before anything else, so no token crosses one: tokenizing the
    pieces between them separately gives the same ids. Conversations of one dataset share long pieces (the
    system prompt with every tool definition), which are then tokenized once instead of once a conversation.
    """

    def __init__(self, hf, specials, capacity=256):  # pieces of a few conversations: tens of MB at most
        self.hf, self.capacity, self.cache = hf, capacity, {}
        self.special_ids = {token: hf.convert_tokens_to_ids(token) for token in specials}
        self.split = re.compile("(" + "|".join(re.escape(t) for t in sorted(specials, key=len, reverse=True)) + ")")

    def encode(self, text):
        parts = self.split.split(text)  # odd indexes are the special tokens themselves
        texts = set(parts[::2]) - {""}
        known = {p: self.cache[p] for p in texts if p in self.cache}
        missing = sorted(texts - known.keys())
        if missing:
            encoding = self.hf(missing, add_special_tokens=False, return_offsets_mapping=True)
            known.update(zip(missing, zip(encoding["input_ids"], encoding["offset_mapping"])))
            if len(self.cache) + len(missing) > self.capacity:
                self.cache.clear()
            self.cache.update((p, known[p]) for p in missing)
        ids, offsets, position = [], [], 0
        for k, part in enumerate(parts):
            if not part:
                continue
            if k % 2:
                ids.append(self.special_ids[part])
                offsets.append((position, position + len(part)))
            else:
                piece_ids, piece_offsets = known[part]
                ids.extend(piece_ids)
                offsets.extend((position + start, position + end) for start, end in piece_offsets)
            position += len(part)
        return ids, offsets


_PIECE_TOKENIZERS = weakref.WeakKeyDictionary()


def _piece_tokenizer(hf):
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
    split = pieces.encode(probe)
    pieces.cache.clear()
    same = list(whole["input_ids"]) == split[0] and [tuple(o) for o in whole["offset_mapping"]] == split[1]
    return pieces if same else None


def char_range_to_tokens(offsets, start, end, starts=None):
    """Token range [first, last) of the tokens that start inside [start, end), and whether both edges align.
    `starts` (each token's start offset, in order) may be passed to search many ranges of one text quickly."""
    starts = [s for s, _ in offsets] if starts is None else starts
    first, last = bisect.bisect_left(starts, start), bisect.bisect_left(starts, end)
    aligned = offsets[first][0] == start if first < len(offsets) else False
    aligned = aligned and (last == len(offsets) or offsets[last][0] == end) and offsets[last - 1][1] == end
    return first, last, aligned


def encode(tokenizer, messages, tools):
    """Tokens of the rendered conversation and the token spans that carry loss."""
    text, ranges = assistant_char_ranges(tokenizer, messages, tools)
    tokens, offsets = tokenize_with_offsets(tokenizer, text)
    encoded = Encoded(tokens=list(tokens), spans=[], full_length=len(tokens))
    starts = [s for s, _ in offsets]
    for start, end, weight in ranges:
        first, last, aligned = char_range_to_tokens(offsets, start, end, starts)
        encoded.misaligned += not aligned
        if weight:
            encoded.spans.append((first, last))
            encoded.trained_turns += 1
        else:
            encoded.untrained_spans.append((first, last))
            encoded.untrained_turns += 1
    return encoded


def fit_to_length(encoded, max_seq_length):
    """Drop whole turns from the end until the example fits; None when no trained turn fits.

    A cut always lands right after a trained assistant turn, so every trained turn that stays is complete.
    """
    if len(encoded.tokens) <= max_seq_length:
        return encoded
    kept = [span for span in encoded.spans if span[1] <= max_seq_length]
    if not kept:
        return None
    cut = kept[-1][1]
    encoded.dropped_turns = len(encoded.spans) - len(kept)
    encoded.trained_turns = len(kept)
    encoded.untrained_spans = [s for s in encoded.untrained_spans if s[1] <= cut]
    encoded.untrained_turns = len(encoded.untrained_spans)
    encoded.spans, encoded.tokens = kept, encoded.tokens[:cut]
    return encoded


def loss_mask(encoded):
    """0/1 per token: 1 where the token is a training target."""
    mask = [0] * len(encoded.tokens)
    for start, end in encoded.spans:
        mask[start:end] = [1] * (end - start)
    return mask


def probe_conversation():
    """A conversation whose tool definition, call, arguments and result are easy to find in rendered text."""
    tool = {
        "type": "function",
        "function": {
            "name": PROBE_TOOL,
            "description": PROBE_DESCRIPTION,
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
        },
    }
    call = {"id": "call_probe", "type": "function",
            "function": {"name": PROBE_TOOL, "arguments": json.dumps({"query": PROBE_ARGUMENT})}}
    messages = [
        {"role": "user", "content": "Look it up."},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_probe", "content": PROBE_RESULT},
        {"role": "assistant", "content": "Found it."},
    ]
    return messages, [tool]


def template_problems(tokenizer):
    """What the chat template loses when rendering tools; empty when it keeps everything training needs."""
    messages, tools = probe_conversation()
    try:
        text, ranges = assistant_char_ranges(tokenizer, messages, tools)
    except TemplateError as e:
        return [str(e)]
    except Exception as e:  # a template that cannot render tools at all raises from inside Jinja
        return [f"the chat template failed to render a tool-calling conversation: {e}"]
    problems = []
    expected = {
        "tool definitions": PROBE_DESCRIPTION,
        "tool-call names": f"{PROBE_TOOL}",
        "tool-call arguments": PROBE_ARGUMENT,
        "tool results": PROBE_RESULT,
    }
    for what, needle in expected.items():
        if needle not in text:
            problems.append(f"the chat template drops {what}")
    if '\\"query\\"' in text:
        problems.append("the chat template renders tool-call arguments as a quoted JSON string")
    first_turn = text[ranges[0][0]:ranges[0][1]] if ranges else ""
    if PROBE_ARGUMENT not in first_turn:
        problems.append("the assistant's tool call is not inside its own turn")
    elif not rendered_arguments_are_json(first_turn):
        problems.append("the chat template renders tool-call arguments in a form that is not JSON (such as a "
                        "Python dict {'query': ...}), so the model would learn to emit calls no parser reads")
    return problems


def rendered_arguments_are_json(turn):
    """True when the probe's arguments appear in the turn as a JSON object: {"query": "<argument>"}."""
    decoder = json.JSONDecoder()
    for start in (k for k, ch in enumerate(turn) if ch == "{"):
        try:
            value, _ = decoder.raw_decode(turn, start)
        except ValueError:
            continue
        if contains_probe_arguments(value):
            return True
    return False


def contains_probe_arguments(value):
    if value == {"query": PROBE_ARGUMENT}:
        return True
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return any(contains_probe_arguments(child) for child in children)
