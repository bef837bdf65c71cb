"""wc-lite: count the lines, words or characters of files."""

import sys

from .args import UsageError, parse


def count(text, what):
    if what == "lines":
        return text.count("\n")
    if what == "chars":
        return len(text)
    return len(text.split())


def main(argv=None):
    try:
        paths, opts = parse(sys.argv[1:] if argv is None else argv, options=("count",), flags=("total",))
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    what = opts.get("count", "words")
    # TODO: read stdin when no paths are given
    grand = 0
    for path in paths:
        with open(path) as f:
            n = count(f.read(), what)
        grand += n
        print(f"{n}\t{path}")
    if opts["total"]:
        print(f"{grand}\ttotal")
    return 0
