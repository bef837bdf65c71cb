"""tiktoken against the Rust tokenizer on Qwen2.5's tokenizer: do they give the same ids and character offsets on a
large body of real text, and how much faster is tiktoken (synthia/platform/fast_bpe.py, used by the data path)?

    python bench/fast_bpe.py               # 20 MB of the installed packages' sources and docs + the shipped dataset
    python bench/fast_bpe.py --megabytes 60
    python bench/fast_bpe.py --smoke       # 20 conversations + 0.2 MB, the tiny random Qwen2's tokenizer; seconds

The text: every file of the virtual environment's site-packages with a text suffix (Python, C, Markdown, JSON, ...),
shuffled with a fixed seed, read as UTF-8 until the size is reached, cut between added tokens as the data path cuts
(pieces.PieceTokenizer); the pieces the tokenizer would NFC-normalise are counted and left out (the data path leaves
them to the tokenizer). Both run in this one process, one thread each, side by side. The tokenizer's CPU column
includes the offsets it always computes; tiktoken's gives ids only (the data path computes offsets from its tokens'
byte lengths for the few pieces a turn edge falls in).
"""

import argparse
import random
import sys
import sysconfig
import tempfile
import time
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from token_efficiency import DEFAULT_TEMPLATE, machine_lines, qwen_tokenizer, tiny_tokenizer  # noqa: E402

SMOKE_CONVERSATIONS, SMOKE_MEGABYTES = 20, 0.2
SUFFIXES = (".py", ".pyi", ".c", ".h", ".cpp", ".md", ".rst", ".txt", ".json", ".toml", ".cfg", ".html", ".js")


def package_texts(megabytes, seed=0):
    files = sorted(p for p in Path(sysconfig.get_paths()["purelib"]).rglob("*") if p.suffix in SUFFIXES and p.is_file())
    random.Random(seed).shuffle(files)
    texts, size = [], 0
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        texts.append(text)
        size += len(text)
        if size >= megabytes * 1e6:
            break
    return texts


def shipped_texts(tokenizer, limit=None):
    """The first `limit` (None: all) conversations of the shipped dataset, rendered."""
    from synthia.data import render, validate

    tools = validate.load_default_tools()
    return [render.render(tokenizer, ex.messages, ex.record.get("tools", tools))
            for ex in validate.validate_file(ROOT / "dataset.jsonl").examples[:limit]]


def cpu_timed(function, *args):
    start = time.process_time()
    return function(*args), time.process_time() - start


def compare(name, texts, splitter, fast, raw):
    pieces = [p for text in texts for p in splitter.split(text)[::2] if p]
    kept = [p for p in pieces if unicodedata.is_normalized("NFC", p)]
    ours, fast_cpu = cpu_timed(lambda: [fast.ids(p) for p in kept])
    theirs, raw_cpu = cpu_timed(lambda: raw.encode_batch(kept, add_special_tokens=False))
    id_mismatches = sum(a != b.ids for a, b in zip(ours, theirs))
    offset_mismatches = sum(list(zip(*(x.tolist() for x in fast.bounds(p, a)))) != b.offsets
                            for p, a, b in zip(kept, ours, theirs))
    characters = sum(map(len, kept))
    print(f"{name:34} {characters / 1e6:>7.1f} {len(kept):>8,} {len(pieces) - len(kept):>7,} {id_mismatches:>8} "
          f"{offset_mismatches:>9} {raw_cpu:>8.2f} {fast_cpu:>8.2f} {raw_cpu / fast_cpu:>7.1f}x")
    return id_mismatches + offset_mismatches


def main(argv=None):
    import os

    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread each: the comparison is per core
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=20, help="characters of package text, in millions")
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE_CONVERSATIONS} conversations and "
                        f"{SMOKE_MEGABYTES:g} MB with a tiny random Qwen2's tokenizer: the same comparison in seconds")
    args = parser.parse_args(argv)
    if args.smoke:
        args.megabytes = SMOKE_MEGABYTES
    import tiktoken

    from synthia.data import pieces
    from synthia.platform import fast_bpe

    arguments = " ".join(sys.argv[1:] if argv is None else argv)
    print(f"tiktoken vs tokenizers: python bench/fast_bpe.py {arguments}".rstrip())
    print("\n".join(machine_lines()) + f", tiktoken {tiktoken.__version__}")
    with tempfile.TemporaryDirectory() as work:
        tokenizer = tiny_tokenizer(work) if args.smoke else qwen_tokenizer(DEFAULT_TEMPLATE)
    raw = tokenizer._tokenizer._tokenizer
    fast, build_cpu = cpu_timed(fast_bpe.fast_bpe, raw)
    if fast is None:
        raise SystemExit("tiktoken cannot tokenize for this tokenizer (synthia.platform.fast_bpe.fast_bpe gave None)")
    print(f"{'the tiny random Qwen2' if args.smoke else 'Qwen2.5'}'s tokenizer; tiktoken's table built in "
          f"{build_cpu:.2f} CPU s (once per run)\n")
    splitter = pieces.piece_tokenizer(tokenizer._tokenizer).split
    print(f"{'text':34} {'M chars':>7} {'pieces':>8} {'non-NFC':>7} {'ids diff':>8} {'offs diff':>9} "
          f"{'tok CPU':>8} {'tik CPU':>8} {'speed-up':>8}")
    texts = shipped_texts(tokenizer, SMOKE_CONVERSATIONS if args.smoke else None)
    differences = compare("the shipped dataset, rendered", texts, splitter, fast, raw)
    differences += compare(f"site-packages text ({args.megabytes:g} MB)", package_texts(args.megabytes), splitter,
                           fast, raw)
    print(f"\n{'no' if not differences else differences} piece(s) differ in ids or offsets "
          "(non-NFC pieces are left to the tokenizer by the data path)")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
