"""Helpers shared by the conversation shapes."""

import re

from ..langs import LANGS, describe_run, failure_reason
from ..text import pick


def lang_of(repo):
    return LANGS[repo["lang"]]


def test_command(repo, rng, quiet=False):
    lang = lang_of(repo)
    return lang.quiet_cmd if quiet else pick(rng, lang.test_cmds)


def run_tests(c, repo, expect="ok", text=None, cmd=None, quiet=False):
    cmd = cmd or test_command(repo, c.rng, quiet)
    return c.act(("bash", {"command": cmd}), text=text, expect=expect)


def append_call(ws, path, addition, lang):
    """An edit call that appends a new top-level block after the file's last block."""
    text = ws.text(path).rstrip("\n")
    lines = text.split("\n")
    for n in range(1, len(lines) + 1):
        tail = "\n".join(lines[-n:])
        if text.count(tail) == 1 and tail.strip() not in ("}", "})", "});", ")"):
            break
    new = tail + LANGS[lang].blank_between + addition.rstrip("\n")
    return ("edit", {"file_path": path, "old_string": tail, "new_string": new})


def edit_call(path, old, new, replace_all=False):
    args = {"file_path": path, "old_string": old, "new_string": new}
    if replace_all:
        args["replace_all"] = True
    return ("edit", args)


def edit_calls(edits):
    """Spec edits are (path, old, new) or (path, old, new, replace_all)."""
    return [edit_call(*e) for e in edits]


def first_line(ws, path, pattern):
    for n, line in enumerate(ws.text(path).splitlines(), start=1):
        if re.search(pattern, line):
            return n
    raise ValueError(f"{pattern!r} not in {path}")


WINDOW = (2, 10)  # lines shown before a grep match, and in all, when reading around it


def read_around(ws, path, pattern, before=WINDOW[0], lines=WINDOW[1]):
    start = max(1, first_line(ws, path, pattern) - before)
    return ("read", {"file_path": path, "offset": start, "limit": lines})


def in_window(ws, path, pattern, olds):
    """Whether every old string lies inside the lines read_around(path, pattern) shows."""
    text = ws.text(path)
    start = max(1, first_line(ws, path, pattern) - WINDOW[0])
    end = start + WINDOW[1] - 1
    for old in olds:
        pos = text.find(old)
        if pos < 0:
            return False
        first = text.count("\n", 0, pos) + 1
        last = first + old.rstrip("\n").count("\n")
        if first < start or last > end:
            return False
    return True


def sources_for(ws, edits, locate):
    """(path, pattern or None) per edited file: a targeted read where the edits fit in its window."""
    out = []
    for path in dict.fromkeys(e[0] for e in edits):
        olds = [e[1] for e in edits if e[0] == path]
        ok = locate and re.search(locate, ws.text(path), re.M) and in_window(ws, path, locate, olds)
        out.append((path, locate if ok else None))
    return out


def line_count(ws, path):
    return len(ws.text(path).splitlines())


def smart_read(ws, path, max_lines=45):
    """Read a whole file, or just its start when it is long."""
    if line_count(ws, path) > max_lines:
        return ("read", {"file_path": path, "limit": max_lines})
    return ("read", {"file_path": path})


def why_failed(output):
    reason = failure_reason(output)
    if not reason:
        lines = [l for l in output.splitlines()[1:] if l.strip()]
        reason = lines[-1].strip()[:100] if lines else "a failing test"
    return "`" + reason.replace("`", "'") + "`"


def passed(output, rng):
    return describe_run(output, rng)



def rx(text):
    """Escape regex metacharacters only (re.escape also escapes spaces, which reads badly in a grep)."""
    return re.sub(r"([.^$*+?{}\[\]\\|()])", r"\\\1", text)


def red_command(repo, rng):
    """A command for a run that is expected to fail: Python runs get a terse traceback style."""
    if repo["lang"] == "python":
        return pick(rng, ["python -m pytest -q --tb=line", "pytest -q --tb=line", "pytest -q --tb=line -x"])
    if repo["lang"] == "rust":
        return "cargo test -q --message-format short"
    return test_command(repo, rng, quiet=True)


def source_calls(ws, sources):
    """(first-turn calls, second-turn calls) for (path, pattern or None) sources: a grep now and a read
    around the match next, or the whole file read now."""
    first, second = [], []
    for path, pattern in sources:
        if pattern:
            first.append(("grep", {"pattern": pattern, "path": path}))
            second.append(read_around(ws, path, pattern))
        else:
            first.append(smart_read(ws, path))
    return first, second


def look(c, repo, sources=(), test_file=None, text=None):
    """Show the assistant the code it is about to change, token-cheaply and consistently.

    sources: (path, pattern or None). With a pattern the first turn greps for it and the second reads
    the lines around the match; without one the whole file is read. A long test file is grepped for
    its test definitions and then read from the last test on, so an append can anchor on text the
    assistant has seen. Returns the first turn's results."""
    lang = lang_of(repo)
    first, second = source_calls(c.ws, sources)
    if test_file:
        if line_count(c.ws, test_file) <= 18 or c.rng.random() < 0.25:
            first.append(("read", {"file_path": test_file}))
        else:
            first.append(("grep", {"pattern": lang.test_def_re, "path": test_file}))
            last = max(n for n, line in enumerate(c.ws.text(test_file).splitlines(), 1)
                       if re.search(lang.test_def_re, line))
            second.append(("read", {"file_path": test_file, "offset": last}))
    results = c.act(*first, expect="ok", text=text)
    if second:
        c.act(*second, expect="ok", text=pick(c.rng, ["Reading around those lines.", "Now the relevant part.",
                                                      "Reading the matching sections.", None]))
    return results
