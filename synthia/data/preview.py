"""One conversation as the model sees it in training: the rendered text with the trained spans marked."""

import json
from dataclasses import dataclass

from synthia.data import pieces, render

GREEN, RESET = "\033[32m", "\033[0m"


def preview_text(tokenizer, messages, tools, where, as_json=False, colour=False):
    """The text to print for `--preview`: JSON segments, or the text with trained spans in green (colour) or in
    [[brackets]], and a closing line of counts. `where` names the example (file:line)."""
    text, ranges = render.assistant_char_ranges(tokenizer, messages, tools)
    encoded = render.encoded_from(pieces.tokenize(tokenizer, text), ranges)  # the text rendered once, as encode does
    segments = trained_segments(text, ranges)
    if as_json:
        return json.dumps({"segments": [{"text": s.text, "trained": s.trained} for s in segments],
                           "tokens": len(encoded.tokens), "trained_tokens": encoded.trained_tokens},
                          ensure_ascii=False, indent=2)
    shown = "".join(s.text if not s.trained else f"{GREEN}{s.text}{RESET}" if colour else f"[[{s.text}]]"
                    for s in segments)
    return (f"{shown}\n--- {where}: {len(encoded.tokens)} tokens, {encoded.trained_tokens} trained "
            f"({encoded.trained_turns} assistant turn(s) trained, {encoded.untrained_turns} with weight 0); "
            f"trained text {'green' if colour else 'in [[brackets]]'}")


@dataclass(frozen=True)
class Segment:
    text: str
    trained: bool


def trained_segments(text, ranges):
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
