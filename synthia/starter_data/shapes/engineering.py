"""tdd, debugging and refactoring: real test runs before and after every change."""

import re

from ..langs import failing_tests
from ..text import RUN_TESTS_NOTE, lower_first, pick
from .common import (append_call, edit_call, edit_calls, look, passed, red_command, run_tests, smart_read,
                     source_calls, sources_for, test_command, why_failed)


def test_edit_calls(c, repo, item):
    if "test_edits" in item:
        calls = edit_calls(item["test_edits"])
        if "test" in item:
            calls.append(append_call(c.ws, item["test_file"], item["test"], repo["lang"]))
        return calls
    calls = [append_call(c.ws, item["test_file"], item["test"], repo["lang"])]
    if "test_import" in item:
        calls.insert(0, edit_call(item["test_file"], *item["test_import"]))
    return calls


def _import_block(ws, path, lang, test_import=None):
    """The import/use lines at the top of an existing test file (what a new sibling file needs)."""
    lines = []
    for line in ws.text(path).splitlines():
        if re.match(r"(import |from \S+ import |use |package )", line) or (not line.strip() and lines):
            lines.append(line)
        elif lines:
            break
    block = "\n".join(lines).strip() + "\n"
    if test_import:
        block = block.replace(*test_import)
    return block


def _rust_imports(ws, path, test_code, test_import=None):
    """The crate's `use` line from an existing test file, narrowed to the names the new test uses."""
    block = _import_block(ws, path, "rust", test_import)
    m = re.search(r"use (\w+)::\{([^}]*)\};", block)
    if not m:
        return block
    used = [n.strip() for n in m.group(2).split(",") if re.search(rf"\b{n.strip()}\b", test_code)]
    names = used[0] if len(used) == 1 else "{" + ", ".join(used) + "}"
    return f"use {m.group(1)}::{names};\n"


def _python_imports(ws, impl_files, test_code, impl=()):
    """Imports a new Python test file needs: what the test uses, from the module that defines it
    (after the planned `impl` edits, so a function the feature adds is imported too), grouped
    stdlib / third party / local."""
    stdlib = [f"import {m}\n" for m in ("io", "json", "os", "sys") if f"{m}." in test_code]
    if re.search(r"\bdate\(", test_code):
        stdlib.append("from datetime import date\n")
    third = ["import pytest\n"] if "pytest." in test_code else []
    local = []
    for path in impl_files:
        if not path.endswith(".py") or path.endswith("__init__.py"):
            continue
        text = ws.text(path)
        for edit in impl:
            if edit[0] == path:
                text = text.replace(edit[1], edit[2])
        names = set(re.findall(r"^(?:def|class) (\w+)", text, re.M)) | set(re.findall(r"^([A-Z_]+) =", text, re.M))
        used = sorted(n for n in names if re.search(rf"\b{n}\b", test_code))
        if used:
            local.append(f"from {path[:-3].replace('/', '.')} import {', '.join(used)}\n")
    return "\n".join("".join(group) for group in (stdlib, third, local) if group)


def _new_test_path(item, lang):
    code = item["test"] if "test" in item else item["regression"][1]
    name = re.search(r"(?:def|fn) (?:test_)?(\w+)", code).group(1)
    short = "_".join(name.split("_")[:3])
    return {"python": f"tests/test_{short}.py", "rust": f"tests/{short}.rs"}[lang]


def _look_with(c, sources, extra, text):
    """Turn 1: the source files (or greps for the spot to change) plus `extra`, in parallel; turn 2 reads
    around the grep matches."""
    first, second = source_calls(c.ws, sources)
    c.act(*first, *([extra] if extra else []), expect="ok", text=text)
    if second:
        c.act(*second, expect="ok", text=pick(c.rng, ["Now the function itself.", "Reading around the match.", None]))


def tdd_cycle(c, repo, item):
    """Red (a new failing test), green (the implementation), then a full run."""
    rng = c.rng
    lang = repo["lang"]
    impl_files = list(dict.fromkeys(e[0] for e in item["impl"]))
    c.user(pick(rng, item["ask"]) + pick(rng, ["", " Test first, please.", " Please do it test-first.",
                                               " Write the test before the code.", ""]))
    text = pick(rng, ["I'll read the code and its tests first.", "Looking at the implementation and the "
                      "existing tests.", None])
    sources = sources_for(c.ws, item["impl"], item.get("locate"))
    separate = lang in ("python", "rust") and "test_edits" not in item and rng.random() < 0.7
    if separate:
        # a new test file next to the existing ones: look at the code and at how the tests import it
        new_path = _new_test_path(item, lang)
        if lang == "python":
            _look_with(c, sources, None, text)
            content = _python_imports(c.ws, impl_files, item["test"], item["impl"])
        else:
            header = ("read", {"file_path": item["test_file"], "limit": 4 if "test_import" not in item else 6})
            _look_with(c, sources, header, text)
            content = _rust_imports(c.ws, item["test_file"], item["test"], item.get("test_import"))
        content += ("\n\n" if lang == "python" else "\n") + item["test"].rstrip("\n") + "\n"
        c.act(("write", {"file_path": new_path, "content": content}), expect="ok",
              text=pick(rng, ["Writing the failing test first.", "First the test that describes the new behaviour.",
                              "Red step: a new test file for this behaviour."]))
    elif item["test_file"] in impl_files:
        look(c, repo, sources, text=text)
    elif "test_import" in item or "test_edits" in item:
        look(c, repo, sources + [(item["test_file"], None)], text=text)
    else:
        look(c, repo, sources, item["test_file"], text=text)
    if not separate:
        c.act(*test_edit_calls(c, repo, item), expect="ok",
              text=pick(rng, ["Writing the failing test first.", "First the test that describes the new behaviour.",
                              "Red step: adding the test."]))
    red = run_tests(c, repo, expect="error", cmd=red_command(repo, rng),
                    text=pick(rng, ["Running it to watch it fail.", "It should fail now.", None]))
    c.act(*edit_calls(item["impl"]), expect="ok",
          text=f"{pick(rng, ['It fails as expected', 'Red, as expected', 'Good, it fails'])}: {why_failed(red)}. "
               + pick(rng, ["Now the implementation.", "Now the smallest change that makes it pass.",
                            "Implementing it."]))
    green = run_tests(c, repo, quiet=True, text=pick(rng, ["Running the whole suite again.", "Now it should pass.",
                                                          None]))
    c.say(pick(rng, [f"{item['summary']}.\n\nI wrote the test first and watched it fail, then implemented the "
                     f"change; {passed(green, rng)}.",
                     f"Done, test-first: the new test failed before the change and passes now. "
                     f"{item['summary']}. Full suite: {passed(green, rng)}.",
                     f"{item['summary']}. Red/green: the test failed before the implementation and "
                     f"{passed(green, rng)} after it."]))


def debug_failing(c, repo, item):
    """The user reports a failure; reproduce with the tests, read, fix, verify."""
    rng = c.rng
    c.ws.replace(item["file"], item["good"], item["bad"])
    c.user(pick(rng, item["report"]))
    red = run_tests(c, repo, expect="error", cmd=red_command(repo, rng),
                    text=pick(rng, ["Let me reproduce it with the test suite first.",
                                                             "First, reproducing.", "Running the tests to see "
                                                             "the failure."]))
    names = failing_tests(red)
    what = f"`{names[0]}` fails" if names else "A test fails"
    fix_old, fix_new = item.get("fix", (item["bad"], item["good"]))
    look(c, repo, sources_for(c.ws, [(item["file"], fix_old)], item.get("locate")),
         text=f"Reproduced: {what} with {why_failed(red)}. " + pick(rng, ["Reading the code involved.",
                                                                          "Let me find the code behind it."]))
    c.act(("edit", {"file_path": item["file"], "old_string": fix_old, "new_string": fix_new}), expect="ok",
          text=f"Found it: {item['cause']}. Fixing that.")
    green = run_tests(c, repo, quiet=True, text=pick(rng, RUN_TESTS_NOTE))
    size = "a one-line change" if max(fix_old.count("\n"), fix_new.count("\n")) <= 1 else "a small change"
    c.say(pick(rng, [f"Fixed. The cause: {item['cause']}. I corrected it in `{item['file']}`; "
                     f"{passed(green, rng)}.",
                     f"The bug was in `{item['file']}`: {item['cause']}. After the fix {passed(green, rng)}.",
                     f"Root cause: {item['cause']}.\n\nFix: {size} in `{item['file']}`. Verified: "
                     f"{passed(green, rng)}."]))


def debug_report(c, repo, item):
    """A symptom no test catches yet: reproduce, isolate, regression test (red), fix, verify."""
    rng = c.rng
    c.ws.replace(item["file"], item["good"], item["bad"])
    c.user(pick(rng, item["report"]))
    note = ""
    if item.get("repro") and rng.random() < 0.35:
        c.act(("bash", {"command": item["repro"]}),
              text=pick(rng, ["Let me reproduce it first.", "Reproducing it with a one-off command.",
                              "First I'll confirm the behaviour."]))
        note = "Reproduced. "
    test_file, test_code = item["regression"]
    fix_old, fix_new = item.get("fix", (item["bad"], item["good"]))
    sources = sources_for(c.ws, [(item["file"], fix_old)], item.get("locate"))
    intro = note + pick(rng, ["Finding the code and the tests that cover it.", "Looking at the code and its tests."])
    if repo["lang"] in ("python", "rust") and rng.random() < 0.7:
        new_path = _new_test_path(item, repo["lang"])
        if repo["lang"] == "python":
            _look_with(c, sources, None, intro)
            content = _python_imports(c.ws, [item["file"]], test_code)
        else:
            _look_with(c, sources, ("read", {"file_path": test_file, "limit": 2}), intro)
            content = _rust_imports(c.ws, test_file, test_code)
        content += ("\n\n" if repo["lang"] == "python" else "\n") + test_code.rstrip("\n") + "\n"
        c.act(("write", {"file_path": new_path, "content": content}), expect="ok",
              text=pick(rng, [f"Found it: {item['cause']}. A regression test first, in its own file.",
                              "I see the cause. Regression test first, so the fix is proven.",
                              "That line is the culprit. Adding a test that pins the expected behaviour."]))
        test_file = new_path
    else:
        look(c, repo, sources, test_file, text=intro)
        c.act(append_call(c.ws, test_file, test_code, repo["lang"]), expect="ok",
              text=pick(rng, [f"Found it: {item['cause']}. Adding a regression test before fixing.",
                              "I see the cause. Regression test first, so the fix is proven.",
                              "That line is the culprit. Adding a test that pins the expected behaviour."]))
    red = run_tests(c, repo, expect="error", cmd=red_command(repo, rng), text=pick(rng, ["It should fail.", None]))
    fix_old, fix_new = item.get("fix", (item["bad"], item["good"]))
    c.act(("edit", {"file_path": item["file"], "old_string": fix_old, "new_string": fix_new}), expect="ok",
          text=f"The new test fails ({why_failed(red)}). Now the fix.")
    green = run_tests(c, repo)
    c.say(f"{pick(rng, ['Fixed.', 'Found and fixed.', 'Done.'])} Cause: {item['cause']}.\n\n"
          f"- Fix in `{item['file']}`.\n- Regression test in `{test_file}`, which failed before the fix.\n"
          f"- {passed(green, rng).capitalize()}.")


def refactor(c, repo, item):
    """Baseline run, read (or grep), edit, run again; behaviour must not change."""
    rng = c.rng
    c.user(pick(rng, item["ask"]))
    if "grep" in item:
        c.act(("grep", {"pattern": item["grep"]}), expect="ok",
              text=pick(rng, ["Finding every occurrence first.", "Let me see where it's used."]))
        base = run_tests(c, repo, quiet=True, text=pick(rng, ["Baseline test run before changing anything.",
                                                              "Checking the tests pass before the refactor."]))
    else:
        reads = [smart_read(c.ws, p) for p in item["read"]]
        calls = reads + [("bash", {"command": test_command(repo, rng, quiet=True)})]
        results = c.act(*calls, expect="ok", text=pick(rng, [
            "Reading the code and running the tests as a baseline, in parallel.",
            "I'll read the file and take a baseline test run at the same time.", None]))
        base = results[-1]
    calls = edit_calls(item["edits"])
    if item.get("sequential"):
        for call in calls:
            c.act(call, expect="ok")
    else:
        c.act(*calls, expect="ok", text=pick(rng, ["Making the change.", "Applying the edits.", None]))
    after = run_tests(c, repo, quiet=True, text=pick(rng, ["Same tests again.", "Re-running the tests.", None]))
    c.say(pick(rng, [f"{item['summary']}.\n\nTests before: {passed(base, rng)}; after: {passed(after, rng)}.",
                     f"Refactored. {item['summary']}. The suite was green before and is still green after "
                     f"({passed(after, rng)}).",
                     f"Done: {lower_first(item['summary'])}. No behaviour change; {passed(after, rng)}."]))
