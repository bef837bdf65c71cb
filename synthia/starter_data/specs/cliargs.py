"""Scenarios for repos/cliargs (Python, pytest): a hand-rolled argv parser and a wc-like CLI."""

LOOP = ("    for path in paths:\n        with open(path) as f:\n            n = count(f.read(), what)\n")

REPO = {
    "name": "cliargs",
    "lang": "python",
    "about": "`wc-lite`, a small word-count command with its own tiny argument parser",
    "history": [("Add --total flag", ["cli/main.py", "tests/test_main.py"])],
    "files": {
        "cli/args.py": "`parse(argv, options, flags)`, which returns `(positionals, values)`, supports `--` and "
                       "raises `UsageError` for unknown options or a missing value",
        "cli/main.py": "the `wc-lite` entry point: `count(text, what)` and `main(argv)`, which prints one count "
                       "per file and an optional total",
        "cli/__init__.py": "an empty package marker",
        "tests/test_args.py": "parser tests: options, flags, `--` and unknown options",
        "tests/test_main.py": "tests for `count` and for `main` with `--total`, using `tmp_path` and `capsys`",
        "pyproject.toml": "metadata and pytest's `pythonpath`",
    },
    "symbols": [
        ("UsageError", "the exception the parser raises for bad command lines"),
        ("parse", "the argument parser"),
        ("count", "the function that counts lines, words or characters of a text"),
    ],
    "qa": [
        {
            "ask": ["What happens if someone passes `--count` as the last argument?",
                    "How does the parser handle an option that's missing its value?"],
            "calls": [("read", {"file_path": "cli/args.py"}),
                      ("grep", {"pattern": "UsageError|error: |return 2", "path": "cli/main.py"})],
            "answer": "It raises `UsageError(\"--count needs a value\")`: before reading the value, `parse` checks "
                      "`if i + 1 >= len(argv)`. `main` catches `UsageError`, prints `error: --count needs a "
                      "value` to stderr and returns 2.\n\nOne gap: if the next argument exists but is another "
                      "option, e.g. `--count --total`, it is taken as the value (`count` becomes `\"--total\"`), "
                      "and `count()` then silently falls back to counting words.",
        },
        {
            "ask": ["Why does main() return a number instead of calling sys.exit itself?",
                    "How is main meant to be called, and how do the tests drive it?"],
            "calls": [("read", {"file_path": "cli/main.py"}), ("read", {"file_path": "tests/test_main.py"}),
                      ("glob", {"pattern": "**/__main__.py"}), ("read", {"file_path": "pyproject.toml"})],
            "answer": "Returning the exit status keeps `main` testable: `test_main_prints_total` calls "
                      "`main([...])` with an explicit argv and checks the return value and the captured stdout "
                      "(`capsys`), without a subprocess or catching `SystemExit`. The `argv=None` default reads "
                      "`sys.argv[1:]`, so the real entry point would be `sys.exit(main())`.\n\nThere's no such "
                      "wrapper yet (no `__main__.py` and no console script in `pyproject.toml`), so the command "
                      "can't actually be run from a shell at the moment.",
        },
    ],
    "tweaks": [
        {
            "ask": ["Prefix error messages with the program name, `wc-lite:`, instead of `error:`.",
                    "Errors should look like `wc-lite: unknown option --x`."],
            "file": "cli/main.py",
            "edits": [('print(f"error: {e}", file=sys.stderr)', 'print(f"wc-lite: {e}", file=sys.stderr)')],
            "wrong_old": 'print("error:", e, file=sys.stderr)',
            "summary": "Usage errors are now printed as `wc-lite: <message>`",
        },
        {
            "ask": ["Use exit status 64 (EX_USAGE) for usage errors instead of 2.",
                    "Return 64 on bad arguments, like BSD tools do."],
            "file": "cli/main.py",
            "edits": [("        return 2\n", "        return 64  # EX_USAGE\n")],
            "wrong_old": "        sys.exit(2)\n",
            "summary": "`main` returns 64 (`EX_USAGE`) when the command line is invalid",
        },
        {
            "ask": ["Count lines by default instead of words.", "The default for --count should be lines."],
            "file": "cli/main.py",
            "edits": [('what = opts.get("count", "words")', 'what = opts.get("count", "lines")')],
            "test_fix": ("tests/test_main.py", 'assert capsys.readouterr().out.splitlines()[-1] == "3\\ttotal"',
                         'assert capsys.readouterr().out.splitlines()[-1] == "2\\ttotal"'),
            "summary": "Without `--count`, `wc-lite` now counts lines",
        },
        {
            "ask": ["Make the unknown-option error suggest --help.", "Append '(try --help)' to the unknown option error."],
            "file": "cli/args.py",
            "edits": [('raise UsageError(f"unknown option --{name}")',
                       'raise UsageError(f"unknown option --{name} (try --help)")')],
            "summary": "The unknown-option error now ends with `(try --help)`; the existing test's `match` still "
                       "holds since it matches the start",
        },
    ],
    "bugs": [
        {
            "file": "cli/args.py",
            "good": "                values[name] = argv[i + 1]\n                i += 1\n",
            "bad": "                values[name] = argv[i + 1]\n",
            "locate": "elif name in options",
            "report": ["`wc-lite --count lines a.txt` tries to open a file called `lines`.",
                       "test_flags_options_and_positionals fails after my parser change."],
            "cause": "after reading an option's value, `parse` didn't skip it (`i += 1` was missing), so the value "
                     "was parsed again as a positional",
            "review": "Without `i += 1` after `values[name] = argv[i + 1]`, the option's value is visited again "
                      "and appended to the positionals, so `--count lines a.txt` tries to open `lines`.",
            "commit": "Simplify option handling",
        },
        {
            "file": "cli/args.py",
            "good": "positionals.extend(argv[i + 1:])",
            "bad": "positionals.extend(argv[i:])",
            "locate": 'if arg == "--"',
            "report": ["Files named after `--` now include `--` itself as a path.",
                       "test_double_dash_ends_options is red."],
            "cause": "the `--` branch extended the positionals with `argv[i:]`, which includes the `--` marker",
            "review": "`argv[i:]` includes the `--` itself, so `wc-lite -- file` tries to open a file named `--`. "
                      "It must be `argv[i + 1:]`.",
            "commit": "Fix slicing",
        },
        {
            "file": "cli/args.py",
            "good": "if i + 1 >= len(argv):",
            "bad": "if i + 1 > len(argv):",
            "locate": "elif name in options",
            "report": ["`wc-lite --count` crashes with an IndexError traceback instead of a usage message.",
                       "Passing --count without a value gives a traceback."],
            "repro": "python -c \"from cli.args import parse; parse(['--count'], options=('count',))\"",
            "regression": ("tests/test_args.py",
                           "def test_option_without_value_is_a_usage_error():\n"
                           "    with pytest.raises(UsageError, match=\"needs a value\"):\n"
                           "        parse([\"--count\"], options=(\"count\",))\n"),
            "cause": "the bounds check was `i + 1 > len(argv)`, which misses the case where the option is the last "
                     "argument, so `argv[i + 1]` raised `IndexError`",
            "review": "`i + 1 > len(argv)` is never true when the option is the last argument (`i + 1 == "
                      "len(argv)`), so `argv[i + 1]` raises `IndexError` instead of the `UsageError`. No test "
                      "covers a trailing option.",
            "commit": "Off-by-one cleanup",
        },
        {
            "file": "cli/main.py",
            "good": "        grand += n\n",
            "bad": "",
            "fix": ("            n = count(f.read(), what)\n        print(", "            n = count(f.read(), what)\n"
                    "        grand += n\n        print("),
            "locate": "grand = 0",
            "report": ["`--total` always prints 0.", "test_main_prints_total fails: the total line says 0."],
            "cause": "the loop never added each file's count to `grand`, so the total stayed 0",
            "review": "Dropping `grand += n` leaves the total at 0 for every input; `test_main_prints_total` "
                      "catches it.",
            "commit": "Tidy main loop",
        },
    ],
    "features": [
        {
            "ask": ["Support `--name=value` for options, e.g. `--count=lines`.",
                    "The parser should accept the `--count=lines` form as well as `--count lines`."],
            "locate": 'if arg.startswith\\("--"\\)',
            "test_file": "tests/test_args.py",
            "test": "def test_inline_option_value():\n"
                    "    assert parse([\"--count=lines\"], options=(\"count\",)) == ([], {\"count\": \"lines\"})\n",
            "impl": [("cli/args.py", "            name = arg[2:]\n            if name in flags:\n",
                      "            name, eq, inline = arg[2:].partition(\"=\")\n            if eq and name in options:\n"
                      "                values[name] = inline\n            elif name in flags:\n")],
            "summary": "`parse` accepts `--option=value`: it splits on the first `=` and takes the inline value "
                       "for known options",
        },
        {
            "ask": ["Add a `defaults` argument to parse() so options can have default values.",
                    "parse(argv, options, flags, defaults={...}) should pre-fill option values."],
            "locate": "def parse",
            "test_file": "tests/test_args.py",
            "test": "def test_defaults_are_overridden_by_argv():\n"
                    "    opts = (\"count\", \"sep\")\n"
                    "    _, vals = parse([\"--sep\", \";\"], options=opts, defaults={\"count\": \"words\", \"sep\": \",\"})\n"
                    "    assert vals == {\"count\": \"words\", \"sep\": \";\"}\n",
            "impl": [("cli/args.py", "def parse(argv, options=(), flags=()):\n", "def parse(argv, options=(), flags=(), defaults=None):\n"),
                     ("cli/args.py", "    positionals, values = [], {name: False for name in flags}\n",
                      "    positionals, values = [], {**(defaults or {}), **{name: False for name in flags}}\n")],
            "summary": "`parse(..., defaults=None)` starts `values` from `defaults`; values on the command line "
                       "override them",
        },
        {
            "ask": ["Resolve the TODO in main.py: read stdin when no paths are given, printed as `-`."],
            "locate": "# TODO: read stdin",
            "test_file": "tests/test_main.py",
            "test": "def test_reads_stdin_without_paths(monkeypatch, capsys):\n"
                    "    monkeypatch.setattr(\"sys.stdin\", io.StringIO(\"a b c\\n\"))\n"
                    "    assert main([\"--count\", \"words\"]) == 0\n    assert capsys.readouterr().out == \"3\\t-\\n\"\n",
            "impl": [("cli/main.py", "    # TODO: read stdin when no paths are given\n", ""),
                     ("cli/main.py", LOOP, "    for path in paths or [\"-\"]:\n        if path == \"-\":\n"
                      "            n = count(sys.stdin.read(), what)\n        else:\n"
                      "            with open(path) as f:\n                n = count(f.read(), what)\n")],
            "summary": "With no paths, `main` reads stdin and labels the count `-`; `-` among the paths also "
                       "means stdin",
            "clarify": {
                "vague": ["wc-lite should work in a pipeline.", "I want to pipe text into wc-lite."],
                "question": "I'd make it read stdin when no paths are given, like `wc`. Two details: should `-` "
                            "also mean stdin when mixed with other paths (`wc-lite a.txt - b.txt`), and what "
                            "name should the output line show for stdin: `-`, or nothing?",
                "answer": "Yes, support `-` too, and print `-` as the name.",
            },
        },
    ],
    "refactors": [
        {
            "ask": ["Replace the if-chain in count() with a dict of counting functions.",
                    "Refactor count() to look up the counter in a mapping."],
            "read": ["cli/main.py"],
            "edits": [("cli/main.py",
                       "def count(text, what):\n    if what == \"lines\":\n        return text.count(\"\\n\")\n"
                       "    if what == \"chars\":\n        return len(text)\n    return len(text.split())\n",
                       "COUNTERS = {\n    \"lines\": lambda text: text.count(\"\\n\"),\n    \"chars\": len,\n"
                       "    \"words\": lambda text: len(text.split()),\n}\n\n\ndef count(text, what):\n"
                       "    return COUNTERS.get(what, COUNTERS[\"words\"])(text)\n")],
            "summary": "`count` looks up its counter in `COUNTERS`; unknown modes still fall back to words",
        },
        {
            "ask": ["Rename `grand` to `grand_total` in main(), it's clearer.", "grand -> grand_total in main.py please."],
            "grep": "\\bgrand\\b",
            "edits": [("cli/main.py", "grand", "grand_total", True)],
            "summary": "The accumulator in `main` is now `grand_total` (all three uses)",
        },
        {
            "ask": ["Pull the option-value lookup in parse() into a helper `_value_after(argv, i, name)`.",
                    "Extract the 'needs a value' logic from parse into a small function."],
            "read": ["cli/args.py"],
            "edits": [("cli/args.py", "                if i + 1 >= len(argv):\n"
                                      "                    raise UsageError(f\"--{name} needs a value\")\n"
                                      "                values[name] = argv[i + 1]\n",
                       "                values[name] = _value_after(argv, i, name)\n"),
                      ("cli/args.py", "def parse(argv,", "def _value_after(argv, i, name):\n"
                       "    if i + 1 >= len(argv):\n        raise UsageError(f\"--{name} needs a value\")\n"
                       "    return argv[i + 1]\n\n\ndef parse(argv,")],
            "summary": "`_value_after(argv, i, name)` returns the option's value or raises the `needs a value` "
                       "`UsageError`; `parse` calls it",
        },
    ],
    "reviews": [
        {
            "ask": ["Review cli/args.py. Is it robust enough for a real tool?",
                    "Code review for our argument parser, please."],
            "files": ["cli/args.py"],
            "comments": "1. **Values that look like options (line 24).** `--count --total` takes `--total` as the "
                        "value. Reject values starting with `--` unless after `=`.\n2. **No `--opt=value` "
                        "form.** Most users expect it.\n3. **No short options or `--help`.** There's no way to "
                        "discover the options from the command line.\n4. **Repeated options** silently keep the "
                        "last value; fine, but worth a docstring line.\n5. **Flags default to `False` but "
                        "options are absent**, so callers mix `opts[\"total\"]` and `opts.get(\"count\", ...)`. "
                        "A `defaults` argument would make that uniform.\n\nFor anything beyond this, `argparse` "
                        "covers all of the above.",
        },
    ],
    "plans": [
        {
            "ask": ["Add a --help that's generated from the declared options and flags. Plan first.",
                    "We need --help output. How would you do it? Don't code yet."],
            "explore": [[("read", {"file_path": "cli/args.py"}), ("read", {"file_path": "cli/main.py"})]],
            "plan": "1. Let `parse` take descriptions: `options={\"count\": \"what to count: lines, words or "
                    "chars\"}` (a dict instead of a tuple; tuples keep working).\n2. Reserve `--help` in `parse`: "
                    "it raises a new `HelpRequested` exception carrying the generated text, so `parse` still "
                    "never prints or exits.\n3. `main` catches it, prints the text to stdout and returns 0.\n4. "
                    "Format: a usage line, then one aligned line per option and flag.\n5. Tests: `--help` output "
                    "for `main`, and that `--help` wins over other errors.",
            "question": "Should `-h` work as well, given the parser has no short options otherwise?",
        },
    ],
    "tradeoffs": [
        {
            "ask": ["Why not just use argparse instead of our own parser?",
                    "Should we switch wc-lite to argparse?"],
            "read": ["cli/args.py"],
            "answer": "I'd switch. `argparse` gives `--help`, `--opt=value`, short options, type conversion and "
                      "good error messages for free, and it's in the standard library, so there's no dependency "
                      "cost.\n\nWhat ours does better: it's 30 lines, never prints or calls `sys.exit` (argparse "
                      "does both on errors, which needs `exit_on_error=False` or catching `SystemExit` in tests), "
                      "and it is trivially testable. Those are real but small advantages; the feature gap will "
                      "only grow as wc-lite gets more options.",
        },
    ],
    "extra_features": [
        {
            "ask": ["Add a `bytes` mode to count(): the UTF-8 size of the text.",
                    "wc-lite --count bytes should count encoded bytes, not characters."],
            "locate": "def count",
            "test_file": "tests/test_main.py",
            "test": "def test_count_bytes_is_utf8_length():\n    assert count(\"é\", \"bytes\") == 2\n",
            "impl": [("cli/main.py", "    if what == \"chars\":\n",
                      "    if what == \"bytes\":\n        return len(text.encode(\"utf-8\"))\n    if what == \"chars\":\n")],
            "summary": "`count(text, \"bytes\")` returns the length of the UTF-8 encoding (`é` counts 2)",
        },
        {
            "ask": ["Flags should be negatable: `--no-total` sets total back to False.",
                    "Support --no-<flag> in the parser."],
            "locate": "elif name in options",
            "test_file": "tests/test_args.py",
            "test": "def test_flags_can_be_negated():\n"
                    "    assert parse([\"--total\", \"--no-total\"], flags=(\"total\",)) == ([], {\"total\": False})\n",
            "impl": [("cli/args.py", "            else:\n                raise UsageError(f\"unknown option --{name}\")\n",
                      "            elif name.startswith(\"no-\") and name[3:] in flags:\n                values[name[3:]] = False\n"
                      "            else:\n                raise UsageError(f\"unknown option --{name}\")\n")],
            "summary": "`--no-<flag>` sets a declared flag to `False`; the last occurrence wins",
        },
    ],
}
