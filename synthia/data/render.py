"""Render conversations with the model's own chat template and mark the tokens that carry loss.

Every assistant turn (its text, its tool calls and its end-of-turn token) is trained, unless it has
`weight: 0`; system, user and tool-result tokens never are. The trained character ranges are found by
rendering the conversation up to each assistant turn with and without it: the text the template adds
after the generation prompt is exactly what the model emits at inference. A whole dataset (`encode_many`)
reads the same ranges off each conversation's single render, once a sample has shown that gives the same.
"""

import json
import os
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

from synthia.data import pieces
from synthia.platform import forked

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


# ---------------------------------------------------------------------------------------------------------
# A whole dataset: one render per conversation, one tokenizer call for all of them
# ---------------------------------------------------------------------------------------------------------
CHECKED_CONVERSATIONS = 32  # spread over the dataset, rendered both ways before the shortcuts are trusted
BATCH = 1024  # conversations tokenized together: bounds the memory of the tokenizer's output


@dataclass(frozen=True)
class Shortcuts:
    """What `encode_many` may take instead of the tokenizer's own per-turn renders, each checked on a sample."""

    prompt: str = None  # the generation prompt, when turns may be read off the full text (`located_turns`)
    marker: str = None  # the end-of-turn marker
    template: object = None  # the compiled Jinja template, when rendering with it gives apply_chat_template's text
    template_arguments: dict = None  # the special tokens apply_chat_template passes it


def encode_many(tokenizer, conversations):
    """[Encoded, or the TemplateError that conversation raised] for [(messages, tools)], as `encode` gives them.

    Prefix renders (two per assistant turn, each re-rendering everything before it) cost most of `encode`. Here
    each conversation is rendered once and its assistant turns are read off that text: after each generation
    prompt up to the end-of-turn marker that follows it (`located_turns`). That is taken only where the text holds
    exactly one generation prompt per assistant turn, and only after the prefix renders of a sample of the
    conversations found the same ranges; anything else goes through the prefix renders. The distinct pieces of
    text between special tokens are tokenized once, and a large dataset is shared among the cores."""
    with forked.collector_paused():
        return _encode_all(tokenizer, conversations)


def _encode_all(tokenizer, conversations):
    shortcuts = checked_shortcuts(tokenizer, conversations)
    if forked.processes(len(conversations)) == 1:
        return _encode_share(conversations, tokenizer, shortcuts)
    pieces.use_fast_bpe(tokenizer)
    previous = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one tokenizer thread per process: the processes fill the cores
    try:
        return forked.map_shares(_encode_share, conversations, tokenizer, shortcuts)
    finally:
        if previous is None:
            os.environ.pop("TOKENIZERS_PARALLELISM")
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = previous


def _encode_share(conversations, tokenizer, shortcuts):
    results = []
    for first in range(0, len(conversations), BATCH):
        batch = conversations[first:first + BATCH]
        rendered = [_text_and_ranges(tokenizer, text, messages, tools, shortcuts)
                    for text, (messages, tools) in zip(render_each(tokenizer, batch, shortcuts), batch)]
        try:
            results += _encoded_batch(tokenizer, rendered)
        except pieces.FastBPEDiverged:
            pieces.drop_fast_bpe(tokenizer)  # a piece the tokenizer splits otherwise: no more tiktoken here
            results += _encoded_batch(tokenizer, rendered)
    for encoded in results:
        getattr(encoded, "token_array", None)  # made here, on every core, for the token files and the trip back
    return results


def _encoded_batch(tokenizer, rendered):
    tokenized = iter(pieces.tokenize_many(tokenizer, [r[0] for r in rendered if not isinstance(r, Exception)]))
    return [r if isinstance(r, Exception) else encoded_from(next(tokenized), r[1]) for r in rendered]


def _text_and_ranges(tokenizer, text, messages, tools, shortcuts):
    if isinstance(text, Exception):
        return TemplateError(str(text))  # the template's own error, which may not survive the trip from a child
    ranges = located_turns(text, messages, shortcuts.prompt, shortcuts.marker) if shortcuts.prompt else None
    if ranges is not None:
        return text, ranges
    try:
        return assistant_char_ranges(tokenizer, messages, tools)
    except Exception as e:
        return TemplateError(str(e))


def render_each(tokenizer, conversations, shortcuts):
    """The full text of each (messages, tools), or the exception its render raised."""
    if shortcuts.template is not None:
        return [_render_or_error(lambda m=messages, t=tools: render_directly(shortcuts.template,
                                                                             shortcuts.template_arguments, m, t))
                for messages, tools in conversations]
    groups = {}  # conversations that share their tools render in one call
    for k, (_, tools) in enumerate(conversations):
        groups.setdefault(json.dumps(tools, sort_keys=True), []).append(k)
    texts = [None] * len(conversations)
    for indexes in groups.values():
        tools = conversations[indexes[0]][1]
        try:
            rendered = render_batch(tokenizer, [template_messages(conversations[k][0]) for k in indexes], tools)
        except Exception:  # find which one: render them one at a time
            rendered = [_render_or_error(lambda k=k: render(tokenizer, conversations[k][0], tools)) for k in indexes]
        for k, text in zip(indexes, rendered):
            texts[k] = text
    return texts


def _render_or_error(render_one):
    try:
        return render_one()
    except Exception as e:
        return e


def located_turns(text, messages, prompt, marker):
    """Each assistant turn's (start, end, weight) read off the conversation's full text: it starts after the
    generation prompt before it and ends with the end-of-turn marker after that. None unless the text holds
    exactly one generation prompt per assistant turn, each turn closed by a marker before the next prompt."""
    turns = [i for i, message in enumerate(messages) if message["role"] == "assistant"]
    if not turns or turns[0] == 0:
        return None
    starts, at = [], text.find(prompt)
    while at >= 0:
        starts.append(at + len(prompt))
        at = text.find(prompt, at + len(prompt))
    if len(starts) != len(turns):
        return None
    ranges = []
    for k, (i, start) in enumerate(zip(turns, starts)):
        end = text.find(marker, start)
        limit = starts[k + 1] - len(prompt) if k + 1 < len(starts) else len(text)
        if end < 0 or end + len(marker) > limit:
            return None
        ranges.append((start, end + len(marker), messages[i].get("weight", 1)))
    return ranges


def checked_shortcuts(tokenizer, conversations):
    """The shortcuts that give what the tokenizer's own renders give, prefix by prefix, on the probe conversation
    and on a sample spread over `conversations`: the full text, and the assistant turns read off it."""
    marker = end_of_turn_marker(tokenizer)
    try:
        prompt = generation_prompt(tokenizer, probe_conversation()[1])
    except Exception:
        return Shortcuts()
    template, arguments = compiled_template(tokenizer)
    step = max(1, len(conversations) // CHECKED_CONVERSATIONS)
    locate, direct = bool(prompt and marker), template is not None
    for messages, tools in [probe_conversation(), *conversations[::step][:CHECKED_CONVERSATIONS]]:
        try:
            text, ranges = assistant_char_ranges(tokenizer, messages, tools)
        except Exception:
            return Shortcuts()  # a conversation the template cannot take: every one goes the long way
        located = located_turns(text, messages, prompt, marker) if locate else None
        locate = locate and located in (None, ranges)
        direct = direct and _render_or_error(lambda: render_directly(template, arguments, messages, tools)) == text
    return Shortcuts(prompt if locate else None, marker, template if direct else None, arguments)


def render_directly(template, arguments, messages, tools):
    """The conversation's full text from the compiled template, called as apply_chat_template calls it."""
    return template.render(messages=template_messages(messages), tools=tools, documents=None,
                           add_generation_prompt=False, **arguments)


DICT_ATTRIBUTES = frozenset(dir(dict))
PLAIN_JINJA_OBJECTS = (Namespace, LoopContext)  # the sandbox allows any attribute of theirs without a leading _


class DictKeysFirstSandbox(ImmutableSandboxedEnvironment):
    """transformers' sandbox, but `message.role` on a dict is its key at once, and `loop.last` or `ns.seen` is
    read without the sandbox's checks, which allow them anyway (see with_dict_keys_first)."""

    def getattr(self, obj, attribute):
        if type(obj) is dict and attribute in obj and attribute not in DICT_ATTRIBUTES:
            return obj[attribute]
        if type(obj) in PLAIN_JINJA_OBJECTS and not attribute.startswith("_"):
            try:
                return getattr(obj, attribute)
            except AttributeError:
                pass  # the sandbox says what is missing
        return super().getattr(obj, attribute)


def compiled_template(tokenizer):
    """(the chat template compiled as transformers compiles it, the special tokens apply_chat_template passes it):
    rendering with them directly skips transformers' per-call copies of every message. (None, None) for mlx_lm's
    Python templates and a transformers without this function."""
    hf = getattr(tokenizer, "_tokenizer", tokenizer)
    python_template = getattr(tokenizer, "_chat_template", None) is not None
    if python_template or not isinstance(getattr(hf, "chat_template", None), str):
        return None, None
    try:
        from transformers.utils.chat_template_utils import _compile_jinja_template

        template = _compile_jinja_template(hf.chat_template)
    except Exception:
        return None, None
    return with_dict_keys_first(template, hf.chat_template), dict(hf.special_tokens_map)


def with_dict_keys_first(template, source):
    """`template` compiled again in a copy of its sandbox that reads `message.role` from a dict without first
    trying (and failing) an attribute lookup: a fifth of rendering. The same values (a dict's own attributes,
    like `items`, still come first) and the same sandbox; the template itself if its sandbox is not the usual."""
    if type(template.environment) is not ImmutableSandboxedEnvironment:
        return template
    try:
        environment = template.environment.overlay()  # the same filters, globals and extensions
        environment.__class__ = DictKeysFirstSandbox
        return environment.from_string(source)
    except Exception:  # a Jinja whose environments do not copy this way: the template as transformers made it
        return template


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
