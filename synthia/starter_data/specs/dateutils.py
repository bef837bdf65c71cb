"""Scenarios for repos/dateutils (Python, pytest): parsing user-typed dates and billing-period arithmetic."""

REPO = {
    "name": "dateutils",
    "lang": "python",
    "about": "a small date helper package for a billing app: parsing user-typed dates and period arithmetic",
    "history": [("Add month arithmetic", ["dates/ranges.py", "tests/test_ranges.py"])],
    "files": {
        "dates/parse.py": "`parse_date`, which tries the `strptime` formats in `FORMATS` (ISO, `DD/MM/YYYY`, "
                          "`DD.MM.YYYY`) in order",
        "dates/ranges.py": "`days_between`, `business_days` (weekdays in a half-open range) and `add_months` "
                           "(clamps to the end of shorter months)",
        "dates/__init__.py": "re-exports the public functions",
        "tests/test_parse.py": "tests for the accepted formats and the error case",
        "tests/test_ranges.py": "tests for the range helpers, including the month-end clamp",
        "pyproject.toml": "project metadata and pytest's `pythonpath`",
    },
    "symbols": [
        ("parse_date", "the entry point that turns user input into a `date`"),
        ("business_days", "the helper that counts weekdays in a half-open date range"),
        ("FORMATS", "the tuple of `strptime` formats that `parse_date` tries in order"),
    ],
    "qa": [
        {
            "ask": ["What does add_months(date(2024, 1, 31), 1) return, and why?",
                    "How does add_months deal with the 31st when the next month is shorter?"],
            "calls": [("read", {"file_path": "dates/ranges.py"})],
            "answer": "`date(2024, 2, 29)`. `add_months` counts in zero-based months (`month = d.month - 1 + "
                      "months`), carries whole years with `// 12`, and then clamps the day to the target month's "
                      "length using `calendar.monthrange`, so the 31st becomes the last day of February, the 29th "
                      "in the leap year 2024.\n\nOne consequence: clamping is lossy when chained. "
                      "`add_months(add_months(d, 1), 1)` from Jan 31 gives March 29, while `add_months(d, 2)` "
                      "gives March 31. For recurring billing, always compute from the original anchor date.",
        },
        {
            "ask": ["Which formats does parse_date accept, and are they all tested?",
                    "Are all the date formats we claim to support covered by tests?"],
            "calls": [("read", {"file_path": "dates/parse.py"}), ("read", {"file_path": "tests/test_parse.py"})],
            "answer": "It accepts three, tried in this order: ISO `%Y-%m-%d`, `%d/%m/%Y` and `%d.%m.%Y`, after "
                      "stripping whitespace.\n\nTests cover ISO and the dotted format (with surrounding spaces), "
                      "plus the error message. The slash format has no test, and it's the one that matters most: "
                      "`03/04/2024` means 3 April here but 4 March to a US user, so a test pinning the day-first "
                      "reading would catch anyone 'fixing' the order.",
        },
    ],
    "tweaks": [
        {
            "ask": ["Also accept dates like 2024/03/01 (year first, with slashes).",
                    "parse_date should take YYYY/MM/DD too."],
            "file": "dates/parse.py",
            "edits": [('FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%d.%m.%Y")',
                       'FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%d/%m/%Y", "%d.%m.%Y")')],
            "wrong_old": 'FORMATS = ["%Y-%m-%d", "%d/%m/%Y", "%d.%m.%Y"]',
            "summary": "`FORMATS` now includes `%Y/%m/%d`, tried right after ISO; it can't clash with the "
                       "day-first format because a four-digit first field never parses as a day",
        },
        {
            "ask": ["Our style guide says American spelling. Change 'unrecognised' to 'unrecognized' in the "
                    "parse error.",
                    "Use 'unrecognized' (with a z) in parse_date's error message."],
            "file": "dates/parse.py",
            "edits": [('raise ValueError(f"unrecognised date: {text!r}")',
                       'raise ValueError(f"unrecognized date: {text!r}")')],
            "test_fix": ("tests/test_parse.py", 'match="unrecognised"', 'match="unrecognized"'),
            "summary": "The error now reads `unrecognized date: '...'`",
        },
        {
            "ask": ["When parse_date fails, the message should tell people which formats work.",
                    "Make the parse_date error list the accepted formats."],
            "file": "dates/parse.py",
            "edits": [('raise ValueError(f"unrecognised date: {text!r}")',
                       'raise ValueError(f"unrecognised date: {text!r} (use YYYY-MM-DD, DD/MM/YYYY or DD.MM.YYYY)")')],
            "wrong_old": 'raise ValueError("unrecognised date")',
            "summary": "The `ValueError` from `parse_date` now ends with `(use YYYY-MM-DD, DD/MM/YYYY or "
                       "DD.MM.YYYY)`; it still starts with `unrecognised date`, so the existing test's `match` "
                       "holds",
        },
        {
            "ask": ["add_months(d, 1.5) silently does weird things. Make it raise TypeError for non-integers.",
                    "Guard add_months against float month counts with a TypeError."],
            "file": "dates/ranges.py",
            "edits": [("    month = d.month - 1 + months\n",
                       "    if not isinstance(months, int):\n        raise TypeError(\"months must be an int\")\n"
                       "    month = d.month - 1 + months\n")],
            "summary": "`add_months` raises `TypeError(\"months must be an int\")` before doing any arithmetic",
        },
    ],
    "bugs": [
        {
            "file": "dates/ranges.py",
            "good": "    month = d.month - 1 + months\n",
            "bad": "    month = d.month + months\n",
            "report": ["add_months is off: adding one month to January 31st gives March 31st.",
                       "test_ranges is failing on main, the month-end test."],
            "cause": "`add_months` computed `month = d.month + months` and then added 1 again when converting "
                     "back (`month % 12 + 1`), so every result landed one month too late",
            "review": "`month = d.month + months` drops the `- 1` that converts to a zero-based month, while "
                      "`month % 12 + 1` below still adds one back, so every result is a month late (Jan 31 + 1 "
                      "becomes March 31).",
            "commit": "Simplify month arithmetic",
        },
        {
            "file": "dates/ranges.py",
            "good": "        if day.weekday() < 5:\n",
            "bad": "        if day.weekday() < 6:\n",
            "report": ["business_days counts Saturdays as working days.",
                       "The business_days test fails: a Monday-to-Monday week gives 6 instead of 5."],
            "cause": "`business_days` tested `day.weekday() < 6`, and `weekday()` is 5 on Saturdays, so "
                     "Saturdays counted as working days",
            "review": "`weekday() < 6` includes Saturday (`weekday()` is 0 for Monday, 5 for Saturday); weekdays "
                      "are `< 5`. This adds a day for every Saturday in the range.",
            "commit": "Fix business day check",
        },
        {
            "file": "dates/parse.py",
            "good": '"%d/%m/%Y"',
            "bad": '"%m/%d/%Y"',
            "report": ["A user in Germany typed 03/04/2024 for the 3rd of April and we stored March 4th.",
                       "Slash dates are being read month-first. 03/04/2024 should be 3 April."],
            "repro": "python -c \"from dates import parse_date; print(parse_date('03/04/2024'))\"",
            "locate": "^FORMATS",
            "regression": ("tests/test_parse.py",
                           "def test_slash_dates_are_day_first():\n"
                           "    assert parse_date(\"03/04/2024\") == date(2024, 4, 3)\n"),
            "cause": "`FORMATS` listed `%m/%d/%Y` (month first) instead of `%d/%m/%Y`, so `03/04/2024` parsed as "
                     "4 March",
            "review": "`%m/%d/%Y` switches slash dates to month-first. Every existing user types day-first "
                      "(the other formats are ISO and `DD.MM.YYYY`), so `03/04/2024` would silently become 4 "
                      "March. No test covers slash dates, which is why nothing fails.",
            "commit": "Support US-style dates",
        },
        {
            "file": "dates/parse.py",
            "good": "    text = text.strip()\n",
            "bad": "",
            "fix": ("    # TODO: accept month names (\"3 March 2024\")\n    for fmt",
                    "    # TODO: accept month names (\"3 March 2024\")\n    text = text.strip()\n    for fmt"),
            "report": ["Dates pasted with a trailing space are rejected as unrecognised.",
                       "test_iso_and_european_formats started failing after the last cleanup."],
            "cause": "the `text = text.strip()` line had been removed from `parse_date`, so input with "
                     "surrounding whitespace matched none of the formats",
            "review": "Removing `text = text.strip()` means `' 01.03.2024 '` no longer parses: `strptime` does "
                      "not ignore surrounding whitespace. Input comes from form fields, so it should stay.",
            "commit": "Remove redundant strip",
        },
    ],
    "features": [
        {
            "ask": ["Make parse_date accept 'today', 'yesterday' and 'tomorrow' (any case). Add an optional "
                    "`today=` parameter so tests can pin the date."],
            "test_file": "tests/test_parse.py",
            "test": "def test_relative_words():\n    today = date(2024, 5, 1)\n"
                    "    assert parse_date(\"Today\", today=today) == today\n"
                    "    assert parse_date(\"yesterday\", today=today) == date(2024, 4, 30)\n",
            "impl": [("dates/parse.py", "from datetime import datetime\n",
                      "from datetime import date, datetime, timedelta\n"),
                     ("dates/parse.py", '"%d.%m.%Y")\n',
                      '"%d.%m.%Y")\nRELATIVE = {"yesterday": -1, "today": 0, "tomorrow": 1}\n'),
                     ("dates/parse.py", "def parse_date(text):\n", "def parse_date(text, today=None):\n"),
                     ("dates/parse.py", "    text = text.strip()\n",
                      "    text = text.strip()\n    if text.lower() in RELATIVE:\n"
                      "        return (today or date.today()) + timedelta(days=RELATIVE[text.lower()])\n")],
            "summary": "`parse_date(text, today=None)` now understands `today`, `yesterday` and `tomorrow` in any "
                       "case, relative to `today` or the local date",
            "clarify": {
                "vague": ["parse_date should understand relative dates too.",
                          "Users keep typing 'today' into the date field. Can we support that sort of thing?"],
                "question": "Which words should it accept: only `today`/`yesterday`/`tomorrow`, or also phrases "
                            "like `in 3 days` or `next friday`? And is 'today' the server's local date? I'd add an "
                            "optional `today=` argument either way so tests can pin it.",
                "answer": "Only today, yesterday and tomorrow, any case. Local date is fine, and yes to the "
                          "argument.",
            },
        },
        {
            "ask": ["Add `quarter(d)` to dates.ranges returning labels like '2024-Q2', exported from the package.",
                    "We need a quarter label helper: quarter(date(2024, 5, 1)) == '2024-Q2'."],
            "locate": "def add_months",
            "test_file": "tests/test_ranges.py",
            "test_import": ("from dates import add_months, business_days, days_between",
                            "from dates import add_months, business_days, days_between, quarter"),
            "test": "def test_quarter_labels():\n    assert quarter(date(2024, 1, 1)) == \"2024-Q1\"\n"
                    "    assert quarter(date(2024, 12, 31)) == \"2024-Q4\"\n",
            "impl": [("dates/ranges.py", "    return d.replace(year=year, month=month, day=day)\n",
                      "    return d.replace(year=year, month=month, day=day)\n\n\ndef quarter(d):\n"
                      "    \"\"\"Calendar quarter label such as '2024-Q2'.\"\"\"\n"
                      "    return f\"{d.year}-Q{(d.month - 1) // 3 + 1}\"\n"),
                     ("dates/__init__.py", "add_months, business_days, days_between\n",
                      "add_months, business_days, days_between, quarter\n")],
            "summary": "Added `quarter(d)` in `dates/ranges.py` (exported from `dates`), computing the quarter as "
                       "`(month - 1) // 3 + 1`",
        },
        {
            "ask": ["business_days needs to skip public holidays: add a `holidays` argument (a set of dates).",
                    "Let callers pass holidays to business_days so those days aren't counted."],
            "locate": "def business_days",
            "test_file": "tests/test_ranges.py",
            "test": "def test_business_days_skips_holidays():\n    good_friday = date(2024, 3, 29)\n"
                    "    assert business_days(date(2024, 3, 25), date(2024, 4, 1), holidays={good_friday}) == 4\n",
            "impl": [("dates/ranges.py", "def business_days(start, end):\n",
                      "def business_days(start, end, holidays=()):\n"),
                     ("dates/ranges.py", "        if day.weekday() < 5:\n",
                      "        if day.weekday() < 5 and day not in holidays:\n")],
            "summary": "`business_days(start, end, holidays=())` now skips any date in `holidays`",
        },
    ],
    "refactors": [
        {
            "ask": ["The while loop in business_days is clunky. Rewrite it as a generator expression, same "
                    "behaviour.",
                    "Tidy up business_days: no manual counter, please."],
            "read": ["dates/ranges.py"],
            "edits": [("dates/ranges.py",
                       "    count, day = 0, start\n    while day < end:\n        if day.weekday() < 5:\n"
                       "            count += 1\n        day += timedelta(days=1)\n    return count\n",
                       "    days = (start + timedelta(days=i) for i in range(days_between(start, end)))\n"
                       "    return sum(1 for day in days if day.weekday() < 5)\n")],
            "summary": "`business_days` now sums over a generator of the days in the range; a reversed range "
                       "still gives 0 because `range()` of a negative count is empty",
        },
        {
            "ask": ["Rename FORMATS to ACCEPTED_FORMATS so it's clearer what it is.",
                    "FORMATS is a vague name. Call it ACCEPTED_FORMATS everywhere."],
            "grep": r"\bFORMATS\b",
            "edits": [("dates/parse.py", "FORMATS", "ACCEPTED_FORMATS", True)],
            "summary": "`FORMATS` is now `ACCEPTED_FORMATS` in `dates/parse.py` (definition, docstring and "
                       "loop); nothing else referenced it",
        },
        {
            "ask": ["Add type hints to dates/ranges.py.", "Please annotate the functions in ranges.py with types."],
            "read": ["dates/ranges.py"],
            "edits": [("dates/ranges.py", "from datetime import timedelta", "from datetime import date, timedelta"),
                      ("dates/ranges.py", "def days_between(start, end):",
                       "def days_between(start: date, end: date) -> int:"),
                      ("dates/ranges.py", "def business_days(start, end):",
                       "def business_days(start: date, end: date) -> int:"),
                      ("dates/ranges.py", "def add_months(d, months):",
                       "def add_months(d: date, months: int) -> date:")],
            "summary": "The three functions in `dates/ranges.py` are annotated (`date`/`int`), with `date` "
                       "imported for it",
        },
    ],
    "reviews": [
        {
            "ask": ["Can you review dates/ranges.py? I'm about to build invoicing on it.",
                    "Please do a code review of ranges.py with concrete suggestions."],
            "files": ["dates/ranges.py", "tests/test_ranges.py"],
            "comments": "1. **`business_days` is O(days) (lines 14-19).** It walks day by day. Fine for billing "
                        "periods, slow for multi-year ranges; full weeks could be counted arithmetically if that "
                        "ever matters.\n2. **Half-open range only in the docstring (line 13).** Callers will "
                        "assume both ends count. Consider naming it in the signature (`end_exclusive`) or saying "
                        "it in the function name.\n3. **Lossy clamping in `add_months` (line 27).** Chained "
                        "calls drift (Jan 31 -> Feb 29 -> Mar 29). For invoices, always add from the anchor "
                        "date; worth a docstring note.\n4. **Tests.** No test for a negative `months`, a year "
                        "boundary going backwards, or `business_days` with `start > end`.\n\nThe month "
                        "arithmetic itself is correct, including leap years.",
        },
    ],
    "plans": [
        {
            "ask": ["We need parse_date to handle timestamps with time zones, like 2024-03-01T10:00+01:00. Plan "
                    "first, don't change code yet.",
                    "How would you add timezone-aware datetime parsing here? Give me a plan before coding."],
            "explore": [[("read", {"file_path": "dates/parse.py"}), ("grep", {"pattern": "parse_date\\("})]],
            "plan": "1. Keep `parse_date` returning a `date`: changing its type would break every caller found "
                    "above.\n2. Add `parse_datetime(text)` that tries `datetime.fromisoformat` first (Python 3.11 "
                    "handles `2024-03-01T10:00+01:00`) and rejects naive results with a clear error.\n3. Decide "
                    "normalisation: return aware datetimes as given, or convert to UTC (my suggestion, simpler to "
                    "store).\n4. Tests: offset forms (`+01:00`, `Z`), a naive timestamp rejected, and garbage "
                    "rejected.\n5. Export it from `dates/__init__.py` and document the difference in the "
                    "docstrings.",
            "question": "Should naive timestamps (no offset) be rejected, or assumed to be UTC?",
        },
    ],
    "tradeoffs": [
        {
            "ask": ["Should we replace parse_date with python-dateutil's parser?",
                    "Is it worth pulling in dateutil.parser instead of maintaining our own parse_date?"],
            "read": ["dates/parse.py"],
            "answer": "I'd keep ours, for now. What each gives you:\n\n- **`dateutil.parser.parse`** accepts "
                      "almost anything (month names, times, offsets). But it guesses: `03/04/2024` is month-first "
                      "unless you pass `dayfirst=True`, and it happily turns junk like `'1'` into a date. For user "
                      "input that is a liability, not a feature.\n- **Our `parse_date`** is 10 lines, explicit "
                      "about the three formats, and fails loudly on anything else. The TODO (month names) is the "
                      "only gap, and adding `\"%d %B %Y\"` to `FORMATS` covers it.\n\nIf you later need times "
                      "and zones, `datetime.fromisoformat` covers ISO 8601 in 3.11 without a dependency.",
        },
    ],
    "extra_features": [
        {
            "ask": ["Let callers pass their own formats: parse_date(text, formats=(...)), defaulting to FORMATS.",
                    "parse_date needs an optional `formats` argument."],
            "locate": "def parse_date",
            "test_file": "tests/test_parse.py",
            "test": "def test_custom_formats():\n    assert parse_date(\"2024|03|01\", formats=(\"%Y|%m|%d\",)) == date(2024, 3, 1)\n",
            "impl": [("dates/parse.py", "def parse_date(text):\n", "def parse_date(text, formats=FORMATS):\n"),
                     ("dates/parse.py", "    for fmt in FORMATS:\n", "    for fmt in formats:\n")],
            "summary": "`parse_date(text, formats=FORMATS)` tries the given formats instead of the defaults",
        },
        {
            "ask": ["days_between should take `inclusive=True` to count both the start and the end day.",
                    "Add an inclusive flag to days_between (both ends counted)."],
            "locate": "def days_between",
            "test_file": "tests/test_ranges.py",
            "test": "def test_days_between_inclusive():\n"
                    "    assert days_between(date(2024, 3, 1), date(2024, 3, 3), inclusive=True) == 3\n",
            "impl": [("dates/ranges.py", "def days_between(start, end):\n"
                      "    \"\"\"Whole days from start to end (negative if end is earlier).\"\"\"\n"
                      "    return (end - start).days\n",
                      "def days_between(start, end, inclusive=False):\n"
                      "    \"\"\"Whole days from start to end (negative if end is earlier); inclusive counts both ends.\"\"\"\n"
                      "    return (end - start).days + (1 if inclusive else 0)\n")],
            "summary": "`days_between(start, end, inclusive=False)`: with `inclusive=True` both end points count",
        },
    ],
}
