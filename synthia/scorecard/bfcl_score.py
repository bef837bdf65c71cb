"""A model's BFCL scores: every selected entry of the single-turn categories rendered with the model's chat template,
decoded greedily, its calls parsed as the scorecard parses them and judged by BFCL's rules (bfcl_judge.py).

    result = score_bfcl(generator, tokenizer, limit=20)   # the content of bfcl.json

Left out (they need BFCL's executable environments or other languages): Java, JavaScript, multi-turn, memory and
web search.
"""

import time
from datetime import datetime, timezone

from synthia.data import render
from synthia.scorecard import bfcl, bfcl_judge, generation, judge

MAX_NEW_TOKENS = 384  # BFCL's longest answers (parallel_multiple, four calls) take ~250 tokens in Hermes JSON
LEFT_OUT = "Java, JavaScript, multi-turn, memory and web search (they need BFCL's executable environments or other " \
           "languages)"


def entry_prompt(tokenizer, entry):
    text = render.render(tokenizer, entry.messages, entry.tools, add_generation_prompt=True)
    return generation.encode(tokenizer, text)


def entry_record(entry, output, fmt):
    """bfcl.json's record of one entry: what the model said, the calls read from it and BFCL's verdict."""
    parsed = judge.parse_output(output.text, fmt, entry.tools)
    verdict = bfcl_judge.judge(parsed.calls, entry)
    return {"id": entry.id, "category": entry.category, "output": output.text, "calls": parsed.calls,
            "problems": parsed.problems, "truncated": output.truncated, "passed": verdict.passed,
            "reason": verdict.reason}


def row_dict(row):
    return {"name": row.name, "n": row.n, "passed": row.passed, "rate": row.rate, "low": row.low, "high": row.high,
            "combine": row.combine}


def score_bfcl(generator, tokenizer, limit, categories=bfcl.CATEGORIES, label="bfcl", progress=True):
    """BFCL's verdicts on `limit` entries per category (None: all of them), the same entries for every model.

    Returns the content of bfcl.json: settings, time, per-category and group rows (bfcl_judge.score_rows, with the
    categories weighed by their full sizes) and every entry's record.
    """
    started = time.perf_counter()
    fmt = judge.call_format(tokenizer)
    loaded = {name: bfcl.load_category(name) for name in categories}
    chosen = [entry for name in categories for entry in bfcl.select_entries(loaded[name], limit)]
    prompts = [entry_prompt(tokenizer, entry) for entry in chosen]
    bar = generation.TurnProgress(len(chosen), label, enabled=progress)
    try:
        outputs = generator.generate_many(prompts, MAX_NEW_TOKENS, on_finished=bar.advance)
    finally:
        bar.close()
    records = [{**entry_record(entry, output, fmt), "prompt_tokens": len(prompt)}
               for entry, output, prompt in zip(chosen, outputs, prompts)]
    verdicts = {name: [r["passed"] for r in records if r["category"] == name] for name in categories}
    sizes = {name: len(entries) for name, entries in loaded.items()}
    return {
        "settings": {"benchmark": "bfcl", "bfcl_eval": bfcl.installed_version(), "limit": limit,
                     "max_new_tokens": MAX_NEW_TOKENS, "decoding": "greedy", "left_out": LEFT_OUT,
                     **generation.versions()},
        "time": {"finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 "seconds": round(time.perf_counter() - started, 3)},
        "sizes": sizes,
        "rows": [row_dict(row) for row in bfcl_judge.score_rows(verdicts, sizes)],
        "entries": records,
    }


def summary_line(result):
    """One line for the log: each group's rate."""
    groups = [r for r in result["rows"] if r["combine"]]
    return "BFCL " + ", ".join(f"{r['name']} {100 * r['rate']:.1f}%" for r in groups) + \
        f" ({len(result['entries'])} entries)"
