"""Whether a chat template keeps what training needs: a probe conversation, rendered and read back.

`template_problems` names what a template loses (tool definitions, calls, arguments, results), arguments written
as anything but a JSON object, and a template that rewrites earlier turns (render.TemplateError); the pipeline
runs it before training, so a template that cannot be trained with stops the run instead of training badly.
"""

import json

from synthia.data.render import PROBE_RESULT, TemplateError, assistant_char_ranges

PROBE_TOOL = "synthia_probe_lookup"
PROBE_DESCRIPTION = "probe-description-5d1e"
PROBE_ARGUMENT = "probe-argument-7f3a"


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
