"""What is trained: a conversation rendered with the model's own chat template, and the tokens that carry loss.

Every assistant turn (its text, its tool calls and its end-of-turn token) is trained, unless it has
`weight: 0`; system, user and tool-result tokens never are. The trained character ranges are found by
rendering the conversation up to each assistant turn with and without it: the text the template adds
after the generation prompt is exactly what the model emits at inference. A template that rewrites earlier
turns cannot be read this way, and is an error (TemplateError), never a silently untrained turn.

`encode` answers for one conversation; encode.py gives the same for a whole dataset, faster; template_check.py
says whether a template keeps what training needs; preview.py prints the result.
"""

import json
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from synthia.data import pieces

# Text no template writes on its own: the user turn generation_prompt renders, and the probe's tool result.
PROBE_RESULT = "probe-result-91c2"


class TemplateError(ValueError):
    """The chat template cannot render a conversation the way training needs."""


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

    @cached_property
    def token_array(self):
        """The ids as int32, as the token files hold them."""
        return np.asarray(self.tokens, dtype=np.int32)

    def __getstate__(self):
        """From a forked process: the ids as one int32 buffer, not millions of Python ints (pickled twice)."""
        array = self.token_array
        return {**self.__dict__, "tokens": array, "token_array": array}

    def __setstate__(self, state):
        self.__dict__.update(state, tokens=state["tokens"].tolist())


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


def encode(tokenizer, messages, tools):
    """Tokens of the rendered conversation and the token spans that carry loss."""
    text, ranges = assistant_char_ranges(tokenizer, messages, tools)
    return encoded_from(pieces.tokenize(tokenizer, text), ranges)


def encoded_from(tokenized, ranges):
    encoded = Encoded(tokens=tokenized.ids, spans=[], full_length=len(tokenized.ids))
    for start, end, weight in ranges:
        first, last, aligned = tokenized.token_range(start, end)
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
