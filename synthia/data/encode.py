"""A whole dataset at once: for each conversation, the token ids and trained spans render.encode gives, faster.

Prefix renders (two per assistant turn, each re-rendering everything before it) cost most of render.encode. Here
each conversation is rendered once and its assistant turns are read off that text (`located_turns`), and the
chat template is rendered directly, in a Jinja sandbox that reads `message.role` from a dict at once
(`DictKeysFirstSandbox`). Each shortcut is taken only after the prefix renders of a sample of the conversations
gave the same (`checked_shortcuts`); anything else goes the long way. The distinct pieces of text between special
tokens are tokenized once (pieces.py), and a large dataset is shared among forked processes.
"""

import json
import os
from dataclasses import dataclass

from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

from synthia.data import pieces
from synthia.data.render import (TemplateError, assistant_char_ranges, encoded_from, end_of_turn_marker,
                                 generation_prompt, render, render_batch, template_messages)
from synthia.data.template_check import probe_conversation
from synthia.platform import forked

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
    """[Encoded, or the TemplateError that conversation raised] for [(messages, tools)], as render.encode gives
    them one at a time (the module's docstring says how)."""
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
