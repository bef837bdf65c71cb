"""Length and near-duplicate statistics for a dataset of chat examples.

Token counts are estimated: the conversation is rendered the way Qwen2.5's chat template renders
tools and tool calls (system prompt + tool definitions, ``<tool_call>`` blocks, tool results wrapped in
``<tool_response>`` inside user turns) and its UTF-8 size is divided by BYTES_PER_TOKEN. When
``synthia/chat_templates/qwen2.5-tools.jinja`` exists it is used for the rendering instead.
"""

import json
import re
import statistics
from pathlib import Path

BYTES_PER_TOKEN = 3.5
MAX_TOKENS = 2048  # the cap on exact Qwen2.5 token counts (see tokenizer.py)
TEMPLATE = Path(__file__).resolve().parents[1] / "chat_templates" / "qwen2.5-tools.jinja"
DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
TOOLS_INTRO = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
TOOLS_OUTRO = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}'
    "\n</tool_call><|im_end|>\n"
)


def _arguments(call):
    args = call["function"]["arguments"]
    return json.loads(args) if isinstance(args, str) else args


def render_fallback(messages, tools):
    """A Python rendering of the Qwen2.5 tool-calling chat format."""
    out = []
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else DEFAULT_SYSTEM
    out.append("<|im_start|>system\n" + system + TOOLS_INTRO)
    for tool in tools:
        out.append("\n" + json.dumps(tool, ensure_ascii=False))
    out.append(TOOLS_OUTRO)
    body = messages[1:] if messages and messages[0]["role"] == "system" else messages
    for i, m in enumerate(body):
        if m["role"] == "user":
            out.append(f"<|im_start|>user\n{m['content']}<|im_end|>\n")
        elif m["role"] == "assistant":
            text = "<|im_start|>assistant"
            if m.get("content"):
                text += "\n" + m["content"]
            for call in m.get("tool_calls") or []:
                payload = json.dumps({"name": call["function"]["name"], "arguments": _arguments(call)},
                                     ensure_ascii=False)
                text += f"\n<tool_call>\n{payload}\n</tool_call>"
            out.append(text + "<|im_end|>\n")
        elif m["role"] == "tool":
            first = i == 0 or body[i - 1]["role"] != "tool"
            last = i + 1 == len(body) or body[i + 1]["role"] != "tool"
            out.append(("<|im_start|>user" if first else "") + f"\n<tool_response>\n{m['content']}\n</tool_response>"
                       + ("<|im_end|>\n" if last else ""))
    return "".join(out)


_jinja = None


def render(messages, tools):
    """Rendered text of one conversation (the Jinja template when present, else render_fallback)."""
    global _jinja
    if TEMPLATE.exists():
        try:
            if _jinja is None:
                import jinja2

                env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
                env.filters["tojson"] = lambda v, **kw: json.dumps(v, ensure_ascii=False)
                _jinja = env.from_string(TEMPLATE.read_text())
            converted = []
            for m in messages:
                m = {k: v for k, v in m.items() if k != "weight"}
                if m.get("tool_calls"):
                    m["tool_calls"] = [{**c, "function": {**c["function"], "arguments": _arguments(c)}}
                                       for c in m["tool_calls"]]
                converted.append(m)
            return _jinja.render(messages=converted, tools=tools, add_generation_prompt=False)
        except Exception:  # a template this renderer cannot handle: fall back to the Python rendering
            pass
    return render_fallback(messages, tools)


def estimated_tokens(record):
    return round(len(render(record["messages"], record["tools"]).encode("utf-8")) / BYTES_PER_TOKEN)


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def length_stats(records):
    return distribution([estimated_tokens(r) for r in records])


# -- near-duplicates ---------------------------------------------------------------------------------
WORD_RE = re.compile(r"[a-z0-9_]+")


def dialogue_text(record):
    """The user and assistant text of a conversation, tool-call arguments included."""
    parts = []
    for m in record["messages"]:
        if m["role"] in ("user", "assistant"):
            parts.append(m.get("content") or "")
            for call in m.get("tool_calls") or []:
                parts.append(call["function"]["name"] + " " + call["function"]["arguments"])
    return " ".join(parts)


def shingles(text, n=5):
    words = WORD_RE.findall(text.lower())
    if len(words) < n:
        return {" ".join(words)}
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


def jaccard(a, b):
    return len(a & b) / len(a | b) if a or b else 1.0


def near_duplicates(records, threshold=0.8):
    """Pairs (i, j, similarity) whose word 5-gram Jaccard similarity is above threshold, and the max."""
    sets = [shingles(dialogue_text(r)) for r in records]
    pairs, top = [], 0.0
    for i in range(len(sets)):
        for j in range(i + 1, len(sets)):
            a, b = sets[i], sets[j]
            if min(len(a), len(b)) / max(len(a), len(b), 1) <= min(threshold, top):
                continue  # the Jaccard index cannot exceed the size ratio
            sim = jaccard(a, b)
            top = max(top, sim)
            if sim > threshold:
                pairs.append((i, j, sim))
    return pairs, top


_tokenizer = None


def use_tokenizer(tok):
    global _tokenizer
    _tokenizer = tok


def qwen_tokens(record):
    """Exact token count of the rendered conversation with Qwen2.5's tokenizer (see use_tokenizer)."""
    return len(_tokenizer.encode(render(record["messages"], record["tools"])).ids)


def token_count(record):
    """Exact count when a tokenizer is loaded, else the byte estimate."""
    return qwen_tokens(record) if _tokenizer is not None else estimated_tokens(record)


def distribution(values):
    return {"median": int(statistics.median(values)), "p95": percentile(values, 0.95), "max": max(values),
            "min": min(values)}
