"""Score a model's tool calling by generation on held-out conversations; the content of eval.json.

For every scored assistant turn (weight 1) the model gets the conversation up to that turn, rendered by
its chat template with the conversation's tools, and generates greedily until its end-of-turn token or
the token cap. The output is parsed and judged by synthia.scorecard.judge. Weight-0 turns stay in the prompts
as context but are never references.

Turns of one conversation (and every conversation's system prompt and tools) share a token prefix, so
Generator keeps one KV cache: before each turn it is trimmed to the prefix the new prompt shares with what the
cache holds (the previous prompt and generation), and only the rest is prefilled. score_conversations uses
batched.BatchedGenerator by default: the same greedy answers, several prompts decoded at once, and a turn
ended as soon as its call blocks are closed and text follows.

    result = score_conversations(model, tokenizer, examples, default_tools, limit=50)
"""

import platform
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import mlx.core as mx
from mlx_lm.generate import generate_step
from mlx_lm.models.cache import can_trim_prompt_cache, make_prompt_cache, trim_prompt_cache

from synthia.data import render
from synthia.scorecard import judge

VERDICTS = ("valid", "names", "exact", "schema_ok", "unknown_tool", "truncated")
CAP_MARGIN = 0.25  # the default token cap is the longest reference turn plus this fraction of it ...
CAP_MIN_MARGIN = 32  # ... and at least this many tokens
SAMPLE_PROMPTS = (
    "Read src/main.rs and find the async functions.",
    "Add a divide function to src/calc.py, test first: write a failing test, make it pass, and handle "
    "division by zero.",
    "Our HTTP server returns 500 on every request to /api/items since the last deploy. Find out why and fix it.",
    "src/report.py repeats the same formatting code in three functions. Refactor it so the logic lives in one "
    "place, and keep the tests passing.",
)


@dataclass(frozen=True)
class TurnTask:
    """One assistant turn to score: where it is in the dataset, its tools and its reference."""

    example: object  # synthia.data.validate.Example
    index: int  # message index of the assistant turn
    tools: list
    reference: str  # the turn as the template renders it, without the end-of-turn marker

    @property
    def messages(self):
        return self.example.messages


@dataclass
class Generation:
    tokens: list  # generated ids, the end-of-turn token included when it came
    text: str  # decoded, without the end-of-turn token
    truncated: bool  # the token cap ended the turn
    prefilled: int  # prompt tokens the model had to process (the rest came from the cache)
    remembered: bool = False  # the answer came from an earlier identical prompt


# ---------------------------------------------------------------- prompts and references


def encode(tokenizer, text):
    # Training tokenizes rendered text without added special tokens (pieces.tokenize): do the same.
    return list(tokenizer.encode(text, add_special_tokens=False))


def reference_turn_text(tokenizer, messages, index, tools):
    """What the model should generate for messages[index]: the template's text for it, end marker cut off."""
    prompt = render.render(tokenizer, messages[:index], tools, add_generation_prompt=True)
    upto = render.render(tokenizer, messages[: index + 1], tools)
    if not upto.startswith(prompt):
        raise render.TemplateError(
            f"the chat template does not render messages[{index}] as a continuation of the prompt before it, "
            "so the reference turn cannot be cut out; pass a template that does with --chat-template FILE")
    turn = upto[len(prompt):]
    marker = render.end_of_turn_marker(tokenizer)
    return turn[: turn.index(marker)] if marker and marker in turn else turn.rstrip("\n")


def turn_tasks(tokenizer, examples, default_tools):
    """A TurnTask for every weight-1 assistant turn, in dataset order, and the counts of those not scored:
    weight-0 turns (context only) and turns that open a conversation (nothing precedes them to prompt with)."""
    tasks, not_scored = [], {"context_only_turns": 0, "opening_turns": 0}
    for example in examples:
        tools = example.record.get("tools", default_tools)
        for i, message in enumerate(example.messages):
            if message["role"] != "assistant":
                continue
            if message.get("weight", 1) == 0 or i == 0:
                not_scored["context_only_turns" if i else "opening_turns"] += 1
                continue
            tasks.append(TurnTask(example, i, tools, reference_turn_text(tokenizer, example.messages, i, tools)))
    return tasks, not_scored


def default_max_new_tokens(tokenizer, tasks):
    """Enough tokens for the longest reference turn (and its end marker), plus a margin."""
    marker = render.end_of_turn_marker(tokenizer) or ""
    longest = max((len(encode(tokenizer, t.reference + marker)) for t in tasks), default=0)
    return longest + max(CAP_MIN_MARGIN, int(longest * CAP_MARGIN))


def unit_starts(messages):
    """Indices where a droppable unit starts: each user or assistant message, with the tool results after it."""
    first = 1 if messages and messages[0]["role"] == "system" else 0
    return [k for k in range(first, len(messages)) if messages[k]["role"] != "tool"]


def fit_prompt(tokenizer, messages, tools, max_prompt_tokens=None, min_start=0):
    """(prompt tokens, messages dropped) for the conversation `messages`, dropping whole earliest units after
    the system message until it fits in `max_prompt_tokens`; (None, 0) when even the last unit alone is too long.

    `min_start` skips the drops already known to be too few (the previous turn's), so long conversations
    are not re-rendered from the first unit every turn.
    """
    head = messages[:1] if messages and messages[0]["role"] == "system" else []
    starts = unit_starts(messages) or [len(head)]
    for start in [s for s in starts if s >= min_start] or starts[-1:]:
        tokens = encode(tokenizer, render.render(tokenizer, head + messages[start:], tools, add_generation_prompt=True))
        if max_prompt_tokens is None or len(tokens) <= max_prompt_tokens:
            return tokens, start - len(head)
    return None, 0


# ---------------------------------------------------------------- generation


def common_prefix_length(a, b):
    n = min(len(a), len(b))
    return next((k for k in range(n) if a[k] != b[k]), n)


class Generator:
    """Greedy generation with one KV cache, reused across prompts that share a token prefix."""

    def __init__(self, model, tokenizer, reuse_cache=True):
        self.model, self.tokenizer = model, tokenizer
        self.end_ids = set(tokenizer.eos_token_ids)
        self.cache, self.cached_tokens = None, []
        self.reuse_cache = reuse_cache and can_trim_prompt_cache(make_prompt_cache(model))
        self.answers = {}  # prompt -> (generated tokens, ended): greedy decoding gives a prompt one answer

    def remembered(self, prompt, max_new_tokens):
        """The answer to a prompt generated before (another split holding the same conversation), cut to this
        cap; None when it was cut shorter than this cap allows."""
        tokens, ended = self.answers.get(tuple(prompt), ((), False))
        if ended and len(tokens) <= max_new_tokens:
            return list(tokens), True
        if len(tokens) >= max_new_tokens:
            return list(tokens[:max_new_tokens]), False
        return None

    def reusable_prefix(self, prompt):
        """Trim the cache to what it shares with `prompt`; return how many prompt tokens it already holds."""
        if not self.reuse_cache or self.cache is None:
            self.cache, self.cached_tokens = make_prompt_cache(self.model), []
            return 0
        # At least one prompt token must go through the model to give the first token's logits.
        shared = min(common_prefix_length(self.cached_tokens, prompt), len(prompt) - 1)
        trim_prompt_cache(self.cache, len(self.cached_tokens) - shared)
        self.cached_tokens = self.cached_tokens[:shared]
        return shared

    def generate(self, prompt, max_new_tokens):
        known = self.remembered(prompt, max_new_tokens)
        if known is not None:
            tokens, ended = known
            return Generation(tokens, self.tokenizer.decode(tokens[:-1] if ended else tokens),
                              truncated=not ended and len(tokens) >= max_new_tokens, prefilled=0, remembered=True)
        reused = self.reusable_prefix(prompt)
        steps = generate_step(mx.array(prompt[reused:]), self.model, max_tokens=max_new_tokens,
                              prompt_cache=self.cache)
        tokens = []
        for token, _ in steps:
            tokens.append(token)
            if token in self.end_ids:
                break
        steps.close()
        # generate_step feeds each token to the model before yielding it, so the cache holds the prompt and
        # some of the generation; its offset says exactly how much.
        self.cached_tokens = (prompt + tokens)[: self.cache[0].offset] if self.reuse_cache else []
        ended = bool(tokens) and tokens[-1] in self.end_ids
        self.answers[tuple(prompt)] = (tuple(tokens), ended)
        text = self.tokenizer.decode(tokens[:-1] if ended else tokens)
        return Generation(tokens, text, truncated=not ended and len(tokens) >= max_new_tokens,
                          prefilled=len(prompt) - reused)

    def generate_many(self, prompts, max_new_tokens, on_finished=None):
        """One prompt after another (batched.BatchedGenerator has the same interface and decodes several at once)."""
        generations = []
        for prompt in prompts:
            generations.append(self.generate(prompt, max_new_tokens))
            if on_finished:
                on_finished()
        return generations


# ---------------------------------------------------------------- scoring


def score_turn(task, generation, fmt):
    """The eval.json record of one generated turn."""
    parsed = judge.parse_output(generation.text, fmt, task.tools)
    expected = judge.reference_calls(task.messages[task.index])
    verdict = judge.judge(parsed, expected, judge.tool_schemas(task.tools))
    return {
        "line": task.example.line, "message": task.index, "category": task.example.category,
        "reference": task.reference, "output": generation.text, "truncated": generation.truncated,
        "valid": verdict.valid, "names": verdict.names, "exact": verdict.exact, "schema_ok": verdict.schema_ok,
        "unknown_tool": verdict.unknown_tool, "calls_emitted": verdict.calls_emitted,
        "calls_expected": verdict.calls_expected, "problems": verdict.problems,
    }


def rate(count, total):
    return {"count": count, "total": total, "rate": count / total if total else None}


def summarize(turns):
    """Every verdict's count and rate over `turns` (schema_ok over the turns that made a call)."""
    summary = {"turns": len(turns)}
    for name in VERDICTS:
        judged = [t[name] for t in turns if t[name] is not None]
        summary[name] = rate(sum(judged), len(judged))
    summary["calls_emitted"] = sum(t["calls_emitted"] for t in turns)
    summary["calls_expected"] = sum(t["calls_expected"] for t in turns)
    return summary


def metrics(turns):
    """Summaries overall, per category, on parallel-call turns (2+ reference calls) and on text turns."""
    by_category = defaultdict(list)
    for t in turns:
        by_category[t["category"] or "uncategorized"].append(t)
    return {
        "overall": summarize(turns),
        "per_category": {c: summarize(ts) for c, ts in sorted(by_category.items())},
        "parallel": summarize([t for t in turns if t["calls_expected"] >= 2]),
        "text": summarize([t for t in turns if t["calls_expected"] == 0]),
    }


def versions():
    import mlx_lm

    return {"python": platform.python_version(), "mlx": mx.__version__, "mlx_lm": mlx_lm.__version__,
            "machine": f"{platform.system()} {platform.machine()}"}


def new_counts(available, chosen, not_scored):
    return {"conversations_available": available, "conversations": chosen, "turns_scored": 0,
            **not_scored, "skipped_prompt_too_long": 0, "prompts_cut": 0,
            "messages_dropped": 0, "truncated": 0, "prompt_tokens": 0, "prefilled_tokens": 0, "generated_tokens": 0,
            "remembered_turns": 0}


def fitted_prompts(tasks, tokenizer, max_prompt_tokens, counts):
    """[(task, prompt tokens, messages dropped)] for the tasks whose prompt fits, and the skipped ones; adds to `counts`."""
    fitted, skipped = [], []
    first_kept = {}  # example line -> the message index its last cut prompt started from
    for task in tasks:
        prompt, dropped = fit_prompt(tokenizer, task.messages[: task.index], task.tools, max_prompt_tokens,
                                     first_kept.get(task.example.line, 0))
        if prompt is None:
            skipped.append({"line": task.example.line, "message": task.index, "reason": "prompt too long"})
            counts["skipped_prompt_too_long"] += 1
            continue
        if dropped:
            first_kept[task.example.line] = dropped + (task.messages[0]["role"] == "system")
            counts["prompts_cut"] += 1
            counts["messages_dropped"] += dropped
        fitted.append((task, prompt, dropped))
    return fitted, skipped


def generate_and_score(tasks, tokenizer, generator, cap, max_prompt_tokens, counts, bar):
    """Every task's eval.json record (those whose prompt fits) and the skipped ones; adds to `counts`."""
    fmt = judge.call_format(tokenizer)
    fitted, skipped = fitted_prompts(tasks, tokenizer, max_prompt_tokens, counts)
    for _ in skipped:
        bar.advance()
    generations = generator.generate_many([prompt for _, prompt, _ in fitted], cap, on_finished=bar.advance)
    turns = []
    for (task, prompt, dropped), generation in zip(fitted, generations):
        counts["prompt_tokens"] += len(prompt)
        counts["prefilled_tokens"] += generation.prefilled
        counts["generated_tokens"] += len(generation.tokens) * (not generation.remembered)
        counts["remembered_turns"] += generation.remembered
        counts["truncated"] += generation.truncated
        turns.append({**score_turn(task, generation, fmt), "prompt_tokens": len(prompt), "dropped_messages": dropped})
    counts["turns_scored"] = len(turns)
    return turns, skipped


def score_conversations(model, tokenizer, examples, tools_default, *, max_new_tokens=None, max_prompt_tokens=None,
                        limit=None, reuse_cache=True, progress=True, label="eval", generator=None):
    """Generate and judge every weight-1 assistant turn of `examples` (validate.Example objects).

    max_new_tokens: cap per turn (None: the longest reference turn plus a margin); truncations are counted.
    max_prompt_tokens: the model's context for the prompt (None: no cut); longer prompts lose whole earliest
        turns after the system message, counted; a turn whose prompt cannot fit at all is skipped, counted.
    limit: score only the first N conversations (counted against those available).
    generator: a batched.BatchedGenerator (the default, several prompts decoded at once) or a Generator (one at a
        time), to share across calls (splits that hold the same conversations generate each once).
    Returns the content of eval.json: settings, time, counts, metrics and every turn's record.
    """
    started = time.perf_counter()
    examples = list(examples)
    chosen = examples[:limit] if limit is not None else examples
    tasks, not_scored = turn_tasks(tokenizer, chosen, tools_default)
    cap = max_new_tokens if max_new_tokens is not None else default_max_new_tokens(tokenizer, tasks)
    if generator is None:
        # batched builds on this module's Generation, so it is imported here, where the default is chosen.
        from synthia.scorecard.batched import BatchedGenerator

        generator = BatchedGenerator(model, tokenizer, reuse_cache=reuse_cache)
    counts = new_counts(len(examples), len(chosen), not_scored)
    bar = TurnProgress(len(tasks), label, enabled=progress)
    try:
        turns, skipped = generate_and_score(tasks, tokenizer, generator, cap, max_prompt_tokens, counts, bar)
    finally:
        bar.close()
    cap_from = "argument" if max_new_tokens is not None else \
        f"longest reference turn + max({CAP_MIN_MARGIN}, {CAP_MARGIN:.0%})"
    return {
        "settings": {"max_new_tokens": cap, "max_new_tokens_from": cap_from, "max_prompt_tokens": max_prompt_tokens,
                     "limit": limit, "reuse_cache": generator.reuse_cache, "decoding": "greedy",
                     "batch_size": getattr(generator, "batch_size", 1),
                     "stop_after_calls": getattr(generator, "stop_after_calls", False),
                     "tool_call_format": [judge.call_format(tokenizer).start, judge.call_format(tokenizer).end],
                     **versions()},
        "time": {"finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 "seconds": round(time.perf_counter() - started, 3)},
        "counts": counts,
        "metrics": metrics(turns),
        "turns": turns,
        "skipped_turns": skipped,
    }


# ---------------------------------------------------------------- progress


class TurnProgress:
    """A rich progress bar with an ETA on a terminal; otherwise a plain line every tenth of the way."""

    def __init__(self, total, label, enabled=True, stream=None):
        self.total, self.label, self.done = total, label, 0
        self.stream = stream or sys.stdout
        self.started = time.perf_counter()
        self.every = max(1, total // 10)
        self.bar = None
        if enabled and total and self.stream.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), "ETA", TimeRemainingColumn(), transient=False)
            self.task = self.bar.add_task(f"[{label}] turns", total=total)
            self.bar.start()
        self.plain = enabled and self.bar is None

    def advance(self):
        self.done += 1
        if self.bar is not None:
            self.bar.advance(self.task)
        elif self.plain and (self.done % self.every == 0 or self.done == self.total):
            print(self.line(), file=self.stream, flush=True)

    def line(self):
        elapsed = time.perf_counter() - self.started
        eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        return f"[{self.label}] turn {self.done}/{self.total}  {elapsed:.0f} s elapsed  ETA {eta:.0f} s"

    def close(self):
        if self.bar is not None:
            self.bar.stop()


# ---------------------------------------------------------------- samples.md


def pick_held_out(result, n=3):
    """A few scored turns of an eval result to show a person: the first parallel-call, single-call and text turn."""
    kinds = ((lambda t: t["calls_expected"] >= 2), (lambda t: t["calls_expected"] == 1),
             (lambda t: t["calls_expected"] == 0))
    picked = [next((t for t in result["turns"] if kind(t)), None) for kind in kinds]
    return [t for t in picked if t is not None][:n]


def generate_samples(model, tokenizer, tools, prompts=SAMPLE_PROMPTS, max_new_tokens=256):
    """[(prompt, generation)] for each fixed prompt, as the first turn of a conversation with `tools`."""
    generator = Generator(model, tokenizer)
    samples = []
    for prompt in prompts:
        tokens = encode(tokenizer, render.render(tokenizer, [{"role": "user", "content": prompt}], tools,
                                                 add_generation_prompt=True))
        samples.append((prompt, generator.generate(tokens, max_new_tokens)))
    return samples


def fenced(text):
    fence = "````" if "```" in text else "```"
    return f"{fence}\n{text}\n{fence}"


def call_summary(text, fmt):
    parsed = judge.parse_output(text, fmt)
    names = ", ".join(c["name"] for c in parsed.calls) or "none"
    return f"calls parsed: {names}" + (f"; problems: {'; '.join(parsed.problems)}" if parsed.problems else "")


def samples_markdown(samples, held_out, fmt=judge.HERMES, max_new_tokens=256):
    """samples.md: each fixed prompt and the model's answer, then held-out turns with their reference."""
    out = ["# Samples", "", f"Greedy decoding, at most {max_new_tokens} new tokens per answer, default tools.", ""]
    for k, (prompt, generation) in enumerate(samples, start=1):
        out += [f"## {k}. {prompt}", "", fenced(generation.text), "",
                call_summary(generation.text, fmt) + ("; cut by the token cap" if generation.truncated else ""), ""]
    if held_out:
        out += ["# Held-out turns", ""]
    for t in held_out:
        verdicts = ", ".join(f"{v} {'yes' if t[v] else 'no'}" for v in ("valid", "names", "exact"))
        out += [f"## dataset line {t['line']}, message {t['message']} ({t['category']})", "",
                "Reference:", "", fenced(t["reference"]), "", "Output:", "", fenced(t["output"]), "",
                f"{verdicts}; calls {t['calls_emitted']} of {t['calls_expected']}"
                + (f"; problems: {'; '.join(t['problems'])}" if t["problems"] else ""), ""]
    return "\n".join(out)


def write_samples(model, tokenizer, tools, path, *, held_out=(), max_new_tokens=256):
    """Generate the fixed prompts' answers and write samples.md (with `held_out` eval turns) to `path`."""
    samples = generate_samples(model, tokenizer, tools, max_new_tokens=max_new_tokens)
    text = samples_markdown(samples, held_out, judge.call_format(tokenizer), max_new_tokens)
    Path(path).write_text(text, encoding="utf-8")
    return text
