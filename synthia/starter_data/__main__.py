"""python -m synthia.starter_data [--out dataset.jsonl] [--seed N] [--workers N] [--repo NAME ...]"""

import argparse
import sys
from collections import Counter

from . import stats
from .build import MAX_TOKENS, generate


def main(argv=None):
    parser = argparse.ArgumentParser(description="Regenerate the starter dataset by running scripted "
                                                 "conversations against the sample repositories.")
    parser.add_argument("--out", default="dataset.jsonl")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repo", action="append", help="only these sample repositories (for development)")
    parser.add_argument("--estimate-only", action="store_true",
                        help="cap lengths with the bytes/3.5 estimate instead of Qwen's tokenizer (no npm needed; "
                             "gives a different, smaller dataset)")
    args = parser.parse_args(argv)
    records, seconds = generate(args.out, args.seed, args.workers, args.repo, estimate_only=args.estimate_only)
    counts = Counter(r["category"] for r in records)
    print(f"wrote {len(records)} conversations to {args.out} in {seconds:.0f}s")
    for category, n in sorted(counts.items()):
        print(f"  {category:14} {n}")
    lengths = stats.length_stats(records)
    print(f"estimated tokens (bytes/3.5): median {lengths['median']}, p95 {lengths['p95']}, max {lengths['max']}")
    if stats._tokenizer is not None:
        real = stats.distribution([stats.qwen_tokens(r) for r in records])
        print(f"Qwen2.5 tokens: median {real['median']}, p95 {real['p95']}, max {real['max']}")
    too_long = [i for i, r in enumerate(records) if stats.token_count(r) > MAX_TOKENS]
    pairs, top = stats.near_duplicates(records)
    print(f"near-duplicates (5-gram Jaccard > 0.8): {len(pairs)} pairs; highest similarity {top:.2f}")
    if too_long:
        print(f"ERROR: {len(too_long)} conversation(s) over {MAX_TOKENS} tokens", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
