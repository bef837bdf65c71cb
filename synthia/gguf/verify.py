"""Check exported GGUF files with llama.cpp (through llama-cpp-python) against the MLX model they came from.

    python -m synthia.gguf.verify MODEL_DIR FILE.gguf [FILE.gguf ...] [--dataset dataset.jsonl] [--conversations 4]

Three checks, on conversations from the dataset rendered exactly as training renders them:
  tokenization  llama.cpp's tokenizer (from the file's metadata) gives the training tokens on every text;
  agreement     teacher-forced top-1 next-token agreement between llama.cpp's and MLX's logits, for a quantized
                file only where MLX is confident (its top-1 leads the runner-up by CONFIDENT_MARGIN logits);
  template      the chat template embedded in the file, read back and rendered for a tool-calling conversation
                by llama.cpp's own C++ template engine (as llama-server --jinja does), gives the training text.
                The engine is a small binary built once (python -m synthia.gguf.native.template_engine --build;
                scripts/setup.sh --dev does it). Without it, llama-cpp-python's Python Jinja2 formatter renders
                the template instead and the figures say so; with SYNTHIA_REQUIRE_LLAMA_CPP=1 (CI) that is an error.
"""

import argparse
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from synthia.gguf.native import template_engine

REQUIRED_AGREEMENT = {"f16": 0.99, "q8_0": 0.99}  # other types (q4_k_m) are reported, not required
# Agreement counts every position for f16, which only rounds the weights. A quantized file counts the positions
# where MLX's top-1 logit leads the runner-up by at least this much (top-1 at least e^0.5 = 1.65 times as likely):
# q8_0 also rounds llama.cpp's activations to 8 bits, which flips near-ties. On the demo's base (SmolLM2-135M,
# 4 conversations), q8_0 disagreed with MLX at 50 of 2,048 positions (97.6%), each with a lead under 0.35 logits;
# at the 1,728 positions with leads of 0.5 and above it agreed on every one.
CONFIDENT_MARGIN = 0.5
DEFAULT_MAX_TOKENS = 512  # teacher-forced positions per conversation; the first tokens of each
DEFAULT_CONVERSATIONS = 4
# llama-cpp-python exposes llama.cpp's template code only as llama_chat_apply_template (fixed formats, no tools),
# so the C++ engine is our own small binary (synthia.gguf.native.template_engine). The fallback is the Python Jinja2
# formatter llama-cpp-python's create_chat_completion uses, on the template llama.cpp read from the file.
FALLBACK_TEMPLATE_ENGINE = ("Python jinja2 fallback, llama.cpp's C++ engine not built: "
                            "python -m synthia.gguf.native.template_engine --build")
REQUIRE_LLAMA_CPP_ENV = "SYNTHIA_REQUIRE_LLAMA_CPP"  # set by scripts/test.sh: the llama.cpp checks must run


class GGUFVerifyError(ValueError):
    """A file or conversation the GGUF check cannot use, or llama-cpp-python missing; says the fix."""


@dataclass
class Reference:
    """What the MLX model says about the conversations: the training texts and tokens, and its top-1 predictions."""

    texts: list  # the training text of each conversation
    tokens: list  # its training tokens (all of them)
    top1: list  # per conversation: MLX's argmax after each of the first max_tokens tokens
    margin: list  # per conversation: MLX's top-1 minus top-2 logit at those positions
    tool_conversation: int  # index of the conversation used for the template check
    template_messages: list = field(default_factory=list)  # as training hands them to the template
    template_tools: list = field(default_factory=list)
    request_messages: list = field(default_factory=list)  # as a client sends them to llama-server (OpenAI JSON)


# ---------------------------------------------------------------- conversations and the MLX side

def dataset_conversations(path, count=DEFAULT_CONVERSATIONS):
    """`count` valid conversations of a dataset file, spread over it, at least one with tool calls first."""
    from synthia.data import validate

    report = validate.validate_file(path)
    if not report.examples:
        errors = "; ".join(str(e) for e in report.errors[:3]) or "no conversations"
        raise GGUFVerifyError(f"{path}: no valid conversation to check the GGUF file with ({errors}); "
                              "pass a dataset that trains (see --dry-run)")
    records = [ex.record for ex in report.examples]
    first_with_tools = next((r for r in records if has_tool_call(r)), None)
    spread = records[:: max(1, len(records) // count)]
    chosen = ([first_with_tools] if first_with_tools else []) + [r for r in spread if r is not first_with_tools]
    return chosen[:count]


def has_tool_call(record):
    return any(m.get("tool_calls") for m in record["messages"])


def load_mlx(model_dir, chat_template=None):
    from mlx_lm.utils import load_model, load_tokenizer

    model, _ = load_model(Path(model_dir))
    tokenizer = load_tokenizer(Path(model_dir))
    if chat_template:
        tokenizer._tokenizer.chat_template = chat_template
    return model, tokenizer


def conversation_tools(record):
    from synthia.data import validate

    return record.get("tools", validate.load_default_tools())


def training_text_and_tokens(tokenizer, record):
    """The conversation as training renders and tokenizes it (synthia.data.render, the model's own template)."""
    from synthia.data import pieces, render

    text = render.render(tokenizer, record["messages"], conversation_tools(record))
    return text, pieces.tokenize(tokenizer, text).ids


def top1_and_margin(logits):
    """Per position: the argmax and how far it leads the runner-up (logit units)."""
    top2 = np.partition(logits, -2, axis=-1)[:, -2:]
    return logits.argmax(axis=-1), top2[:, 1] - top2[:, 0]


def mlx_logits(model, tokens):
    import mlx.core as mx

    logits = model(mx.array(tokens)[None])[0].astype(mx.float32)
    return np.array(logits)


def mlx_reference(model_dir, conversations, *, chat_template=None, max_tokens=DEFAULT_MAX_TOKENS):
    """Render, tokenize and run every conversation through the MLX model once, for all files to compare against."""
    from synthia.data import render

    chosen = next((i for i, record in enumerate(conversations) if has_tool_call(record)), None)
    if chosen is None:
        raise GGUFVerifyError(f"none of the {len(conversations)} conversations has a tool call, so the embedded chat "
                              "template cannot be checked for tool calling; include one")
    model, tokenizer = load_mlx(model_dir, chat_template)
    texts, tokens = zip(*(training_text_and_tokens(tokenizer, record) for record in conversations))
    top1, margin = zip(*(top1_and_margin(mlx_logits(model, ids[:max_tokens])) for ids in tokens))
    messages = conversations[chosen]["messages"]
    return Reference(list(texts), list(tokens), list(top1), list(margin), chosen,
                     template_messages=render.template_messages(messages),
                     template_tools=conversation_tools(conversations[chosen]),
                     request_messages=[{k: v for k, v in m.items() if k != "weight"} for m in messages])


# ---------------------------------------------------------------- the llama.cpp side

def load_gguf(gguf_path, n_ctx):
    try:
        from llama_cpp import Llama
    except ImportError:
        raise GGUFVerifyError("checking GGUF files needs llama-cpp-python: `pip install llama-cpp-python` "
                              "(compiles llama.cpp, 10-20 min); or export without --verify") from None
    if not Path(gguf_path).is_file():
        raise GGUFVerifyError(f"{gguf_path}: not found; export it first (--export gguf)")
    # n_gpu_layers=-1: every layer on the GPU where llama.cpp has one (Metal on a Mac); ignored by a CPU build.
    return Llama(model_path=str(gguf_path), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, logits_all=True,
                 n_gpu_layers=-1, verbose=False)


def llama_tokens(llama, text):
    # special=True: control tokens in the text (<|im_start|>) are tokens, as with the training tokenizer.
    return llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)


def first_difference(a, b):
    """Index of the first position where two sequences differ (len of the shorter one if one is a prefix)."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def llama_top1(llama, tokens):
    llama.reset()
    llama.eval(tokens)
    return np.asarray(llama.scores[: len(tokens)]).argmax(axis=-1)


def token_text(llama, token_id):
    return llama.detokenize([token_id], special=True).decode("utf-8", errors="replace")


def template_engine_path():
    """The C++ template engine's binary, or None when the Python fallback may render instead."""
    engine = template_engine.find_engine()
    if engine is None and os.environ.get(REQUIRE_LLAMA_CPP_ENV):
        raise GGUFVerifyError(f"{REQUIRE_LLAMA_CPP_ENV} is set but llama.cpp's C++ template engine is not built: "
                              "run `python -m synthia.gguf.native.template_engine --build` (scripts/setup.sh --dev does)")
    return engine


def render_with_cpp_engine(engine, gguf_path, reference):
    """The text llama.cpp renders from the file's template, or the engine's error as (None, reason)."""
    try:
        return template_engine.render_gguf_template(gguf_path, reference.request_messages, reference.template_tools,
                                                    engine=engine), ""
    except template_engine.TemplateEngineError as e:
        return None, f"llama.cpp's template engine cannot render it: {e}"


def render_with_python_fallback(llama, reference):
    """Rendered from the template llama.cpp read from the file by llama-cpp-python's Jinja2 formatter."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        return None, "no chat template in the file"
    formatter = Jinja2ChatFormatter(template=template, eos_token=token_text(llama, llama.token_eos()),
                                    bos_token=token_text(llama, llama.token_bos()), add_generation_prompt=False)
    return formatter(messages=reference.template_messages, tools=reference.template_tools).prompt, ""


def difference_context(expected, got, width=60):
    at = first_difference(expected, got)
    if at is None:
        return ""
    return f"at char {at}: expected {expected[at:at + width]!r}, got {got[at:at + width]!r}"


# ---------------------------------------------------------------- figures

def gguf_type_of(gguf_path):
    """f16 / q8_0 / q4_k_m from an export's file name (NAME-<type>.gguf)."""
    return Path(gguf_path).stem.rsplit("-", 1)[-1].lower()


def default_min_margin(gguf_type):
    return 0.0 if gguf_type == "f16" else CONFIDENT_MARGIN


def verify_gguf(gguf_path, model_dir, conversations, *, reference=None, chat_template=None,
                max_tokens=DEFAULT_MAX_TOKENS, min_margin=None):
    """Figures for one GGUF file: tokenization, top-1 agreement with MLX, and the embedded template.

    Agreement counts the positions where MLX's top-1 leads its runner-up by at least `min_margin` logits
    (0 counts every position; None: 0 for f16, CONFIDENT_MARGIN for quantized files); a near-tie there is
    decided by rounding, not by the export.
    """
    if min_margin is None:
        min_margin = default_min_margin(gguf_type_of(gguf_path))
    reference = reference or mlx_reference(model_dir, conversations, chat_template=chat_template,
                                           max_tokens=max_tokens)
    engine = template_engine_path()
    llama = load_gguf(gguf_path, n_ctx=max(max_tokens, 16))
    mismatched = []
    for i, (text, expected) in enumerate(zip(reference.texts, reference.tokens)):
        got = llama_tokens(llama, text)
        if got != expected:
            mismatched.append({"conversation": i, "first_difference": first_difference(expected, got),
                               "training_tokens": len(expected), "gguf_tokens": len(got)})
    agreeing = counted = 0
    for expected, top1, lead in zip(reference.tokens, reference.top1, reference.margin):
        predicted = llama_top1(llama, expected[:max_tokens])
        decisive = lead >= min_margin
        agreeing += int(np.sum((predicted == top1) & decisive))
        counted += int(np.sum(decisive))
    rendered, failure = (render_with_cpp_engine(engine, gguf_path, reference) if engine
                         else render_with_python_fallback(llama, reference))
    expected_text = reference.texts[reference.tool_conversation]
    llama.close()
    return {
        "file": str(gguf_path),
        "type": gguf_type_of(gguf_path),
        "texts": len(reference.texts),
        "tokenization_identical": len(reference.texts) - len(mismatched),
        "tokenization_mismatches": mismatched,
        "positions": counted,
        "all_positions": sum(len(top1) for top1 in reference.top1),
        "min_margin": min_margin,
        "top1_agreement": agreeing / counted if counted else None,
        "required_agreement": REQUIRED_AGREEMENT.get(gguf_type_of(gguf_path)),
        "template_engine": template_engine.ENGINE_NAME if engine else FALLBACK_TEMPLATE_ENGINE,
        "template_matches": rendered == expected_text,
        "template_difference": failure if rendered is None else difference_context(expected_text, rendered),
    }


def problems(figures):
    """What fails in one file's figures, as sentences naming the file and the fix; empty when it passes."""
    name, out = Path(figures["file"]).name, []
    if figures["tokenization_mismatches"]:
        first = figures["tokenization_mismatches"][0]
        out.append(f"{name}: llama.cpp tokenizes {len(figures['tokenization_mismatches'])} of {figures['texts']} "
                   f"texts differently from training (conversation {first['conversation']}, token "
                   f"{first['first_difference']}); check tokenizer.ggml.pre and the added tokens' types")
    required, agreement = figures["required_agreement"], figures["top1_agreement"]
    if required is not None and (agreement is None or agreement < required):
        shown = "no positions" if agreement is None else f"{agreement:.2%}"
        out.append(f"{name}: top-1 agreement with MLX is {shown} over {counted_positions(figures)}, below "
                   f"{required:.0%}: a conversion error (tensor layout, RoPE order, dequantization), or a model too "
                   "touchy for this type (then count only positions where MLX is more confident with "
                   f"--min-margin {max(CONFIDENT_MARGIN, 2 * figures['min_margin']):g})")
    if not figures["template_matches"]:
        out.append(f"{name}: the embedded chat template does not render the training text "
                   f"({figures['template_difference']}); export with the template training used")
    return out


def counted_positions(figures):
    """Which positions the agreement counts, in words: all of them, or those where MLX is confident."""
    if not figures["min_margin"]:
        return f"{figures['positions']} positions"
    return (f"{figures['positions']} of {figures['all_positions']} positions (those where MLX's top-1 leads its "
            f"runner-up by at least {figures['min_margin']:g} logits)")


def format_figures(figures):
    agreement = figures["top1_agreement"]
    shown = "n/a" if agreement is None else f"{agreement:.2%}"
    required = figures["required_agreement"]
    return (f"[gguf verify] {Path(figures['file']).name}: tokenization {figures['tokenization_identical']}/"
            f"{figures['texts']} identical, top-1 agreement {shown} over {counted_positions(figures)}"
            f"{f' (need {required:.0%})' if required else ' (reported)'}, chat template "
            f"{'renders the training text' if figures['template_matches'] else 'DIFFERS'} "
            f"[{figures['template_engine']}]")


def verify_exports(paths, model_dir, conversations, *, chat_template=None, max_tokens=DEFAULT_MAX_TOKENS,
                   min_margin=None, log=print):
    """Check every file against one MLX reference; print and return the figures (a list of dicts)."""
    reference = mlx_reference(model_dir, conversations, chat_template=chat_template, max_tokens=max_tokens)
    results = []
    for path in paths:
        figures = verify_gguf(path, model_dir, conversations, reference=reference, max_tokens=max_tokens,
                              min_margin=min_margin)
        log(format_figures(figures))
        results.append(figures)
    return results


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m synthia.gguf.verify", description=__doc__.split("\n")[0])
    parser.add_argument("model_dir", type=Path, help="the MLX model the files were exported from")
    parser.add_argument("gguf_files", type=Path, nargs="+")
    parser.add_argument("--dataset", type=Path, default=Path("dataset.jsonl"))
    parser.add_argument("--conversations", type=int, default=DEFAULT_CONVERSATIONS)
    parser.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS,
                        help="teacher-forced positions per conversation")
    parser.add_argument("--min-margin", type=float,
                        help="count only positions where MLX's top-1 leads the runner-up by this many logits "
                             f"(default: every position for f16, {CONFIDENT_MARGIN:g} for quantized files)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        conversations = dataset_conversations(args.dataset, args.conversations)
        results = verify_exports(args.gguf_files, args.model_dir, conversations, max_tokens=args.max_tokens,
                                 min_margin=args.min_margin, log=(lambda line: None) if args.json else print)
    except GGUFVerifyError as e:
        raise SystemExit(f"error: {e}")
    if args.json:
        print(json.dumps(results, indent=2))
    failures = [p for figures in results for p in problems(figures)]
    if failures:
        raise SystemExit("error: " + "\n  ".join(failures))


if __name__ == "__main__":
    main()
