"""tool_use: single, parallel and chained calls, and recovering from tool errors."""

import posixpath
import re

from ..langs import definitions
from ..text import LOOK_FIRST, RUN_TESTS_NOTE, join_names, lower_first, maybe, pick
from .common import (edit_calls, lang_of, passed, read_around, red_command, run_tests, rx, smart_read, test_command,
                     why_failed)

DEF_LINE = re.compile(r"^\s*(?:pub )?(?:def|class|fn|struct|enum|func|type|function|export|const|let)\b|^[A-Z_]+\s*=")


def _grep_lines(result):
    out = []
    for line in result.splitlines():
        m = re.match(r"([^:]+):(\d+):(.*)$", line)
        if m:
            out.append((m.group(1), int(m.group(2)), m.group(3).strip()))
    return out


def find_symbol(c, repo, item):
    """One grep, then an answer built from the matches."""
    name, desc = item
    rng = c.rng
    c.user(pick(rng, [
        f"Where is `{name}` defined, and what uses it?",
        f"Find every place `{name}` shows up in the code.",
        f"I want to change `{name}`. What would I be touching?",
        f"Where does {name} live? And who refers to it?",
        f"Can you look up `{name}` for me: definition and usages.",
    ]))
    args = {"pattern": rf"\b{name}\b"}
    result = c.act(("grep", args), text=maybe(rng, 0.4, f"Searching for `{name}`."))
    hits = _grep_lines(result)
    defs = [h for h in hits if DEF_LINE.search(h[2]) and name in h[2].split("=")[0]]
    definition = defs[0] if defs else hits[0]
    others = [h for h in hits if h is not definition]
    tests = [h for h in others if "test" in h[0]]
    code = [h for h in others if h not in tests]
    lines = [f"`{name}` is {desc}. It is defined in `{definition[0]}` at line {definition[1]}."]
    if code:
        lines.append("\nOther uses in the code:")
        lines += [f"- `{p}:{n}`: `{t if len(t) <= 80 else t[:77].rstrip() + '...'}`" for p, n, t in code[:6]]
    if tests:
        files = sorted({p for p, _, _ in tests})
        times = "once" if len(tests) == 1 else "twice" if len(tests) == 2 else f"{len(tests)} times"
        lines.append(f"\nTests refer to it {times}, in {join_names(files)}.")
    else:
        lines.append("\nNo test mentions it by name.")
    touched = sorted({p for p, _, _ in hits})
    lines.append(pick(rng, [
        f"A change would touch {len(touched)} file{'s' if len(touched) > 1 else ''}.",
        f"So {join_names(touched)} {'is' if len(touched) == 1 else 'are'} what you'd be editing.",
        "",
    ]))
    c.say("\n".join(lines))


def explain_files(c, repo, item):
    """A Q&A item from the spec: one turn of (possibly parallel) calls, then a written answer."""
    c.user(pick(c.rng, item["ask"]))
    text = item.get("text") or (pick(c.rng, ["Let me look.", "Reading the code.", None])
                                if len(item["calls"]) == 1 else
                                pick(c.rng, ["I'll check these in parallel.", "Looking at both at once.", None]))
    c.act(*item["calls"], text=text, expect="ok")
    c.say(item["answer"])


DEF_GREP = {  # (pattern, glob) that lists a project's top-level definitions in one grep
    "python": (r"^(class|def) \w+|^    def [a-z]\w*", "*.py"),
    "rust": (r"^\s*pub (fn|struct|enum) \w+|^#\[test\]", "*.rs"),
    "go": (r"^func |^type ", "*.go"),
    "typescript": (r"^export |^test\(", "*.ts"),
}


def _api_summary(result, lang):
    """Per file, the names a definitions grep found (tests are counted, not listed)."""
    per_file = {}
    for path, _, text in _grep_lines(result):
        per_file.setdefault(path, []).append(text)
    lines = []
    for path, texts in per_file.items():
        if path.endswith(".d.ts"):
            continue
        tests = [t for t in texts if re.match(r"(def test_|func Test|test\(|#\[test\])", t)]
        if tests:
            lines.append(f"- `{path}`: {len(tests)} test{'s' if len(tests) > 1 else ''}")
            continue
        names = []
        for t in texts:
            m = re.search(r"(?:class|def|fn|func|struct|enum|type|function|const|interface)\s+(?:\([^)]*\)\s*)?(\w+)", t)
            if m and m.group(1) not in names:
                names.append(m.group(1))
        if names:
            lines.append(f"- `{path}`: {join_names(names[:8])}")
    return lines


def layout(c, repo, item):
    """list_dir, then the subdirectories and a definitions grep in parallel, optionally a test run."""
    rng = c.rng
    with_tests = rng.random() < 0.5
    c.user(pick(rng, [
        "I just cloned this repo. What's in it?",
        "Give me a quick tour of this project.",
        "What's the layout of this codebase?",
        "New here. Can you walk me through how this project is organised?",
    ]) + (pick(rng, [" And how do I run the tests?", " Also, do the tests pass?", " Does the test suite run?"])
          if with_tests else ""))
    top = c.act(("list_dir", {"path": "."}), text=pick(rng, ["Starting at the top level.", None]))
    dirs = [e.rstrip("/") for e in top.splitlines() if e.endswith("/")][:3]
    pattern, glob = DEF_GREP[repo["lang"]]
    results = c.act(*[("list_dir", {"path": d}) for d in dirs], ("grep", {"pattern": pattern, "glob": glob}),
                    text=pick(rng, ["Now the subdirectories, and a quick grep for what each file defines.",
                                    "Listing the directories and grepping for top-level definitions in parallel.",
                                    None]))
    api = _api_summary(results[-1] if isinstance(results, list) else results, repo["lang"])
    run = run_tests(c, repo, quiet=True) if with_tests else None
    about = repo["about"]
    out = [pick(rng, [f"This is {about}.", f"It's {about}.", f"The project is {about}."]), ""]
    out += api
    configs = [e for e in top.splitlines() if not e.endswith("/") and not e.startswith(".")
               and not e.endswith(glob[1:])]
    if configs:
        out.append(f"\nAt the top level: {join_names(configs)}.")
    if run:
        out.append(f"Run the tests with `{test_command(repo, rng, quiet=True)}`; right now {passed(run, rng)}.")
    else:
        out.append(f"Tests run with `{test_command(repo, rng, quiet=True)}`.")
    c.say("\n".join(out))


def run_suite(c, repo, item):
    """Run the tests; variants start with a typo (own mistake, weight 0) or a runner the user guessed."""
    rng, lang = c.rng, lang_of(repo)
    variant = item
    if variant == "make":
        c.user(pick(rng, ["Run `make test` and tell me if anything fails.", "Can you do a `make test`?",
                          "make test please, I want to know if main is healthy."]))
        c.act(("bash", {"command": "make test"}), expect="error")
        c.act(("list_dir", {"path": "."}),
              text="There is no Makefile in this project, so `make` has no `test` target. Let me see how the "
                   "tests are set up.")
        cmd = test_command(repo, rng, quiet=True)
        out = run_tests(c, repo, cmd=cmd, text=f"This is a {lang.name} project; its tests run with `{cmd}`.")
        c.say(f"There's no Makefile here, so `make test` can't work. I ran `{cmd}` instead: {passed(out, rng)}. "
              + pick(rng, ["If you'd like `make test` to work, I can add a two-line Makefile that calls it.",
                           "Want me to add a Makefile target so `make test` works too?"]))
        return
    c.user(pick(rng, [
        "Run the test suite and tell me how it looks.",
        "Are the tests green right now?",
        "Please run the tests.",
        f"Can you check the {lang.name} tests pass before I start on my change?",
        "Quick sanity check: do all the tests pass on this checkout?",
    ]))
    if variant == "typo":
        typo = pick(rng, lang.typos)
        c.act(("bash", {"command": typo}), weight=0, expect="error")
        cmd = test_command(repo, rng)
        if "test/" in typo:
            note = "Wrong directory: the tests are in `tests/`, not `test/`. Running the whole suite instead."
        else:
            note = pick(rng, ["Typo in the command; running it again.", f"I mistyped that. Running `{cmd}`.",
                              "That command was wrong, retrying."])
        out = run_tests(c, repo, cmd=cmd, text=note)
    else:
        out = run_tests(c, repo)
    names = join_names(sorted(p for p in repo["files"] if "test" in p and not p.endswith(".d.ts")))
    c.say(pick(rng, [f"Yes, {passed(out, rng)}.", f"The suite is healthy: {passed(out, rng)}.",
                     f"All good: {passed(out, rng)}."])
          + (f" The tests live in {names}." if names and rng.random() < 0.6 else ""))


def _enclosing(ws, path, line, lang):
    following = ws.text(path).splitlines()[line:line + 1]
    if following and definitions(following[0], lang):  # a comment just above a definition is about it
        return definitions(following[0], lang)[0]
    lines = ws.text(path).splitlines()[:line]
    for text in reversed(lines):
        names = definitions(text, lang) or definitions(text.strip(), lang)
        if names:
            return names[0]
    return None


def todo_scan(c, repo, item):
    rng = c.rng
    c.user(pick(rng, [
        "Are there any TODOs or FIXMEs left in the code?",
        "List the open TODO comments and what each is about.",
        "Before the release I'd like to know what TODOs we still have.",
    ]))
    result = c.act(("grep", {"pattern": "TODO|FIXME"}), expect="ok")
    hits = [h for h in _grep_lines(result)]
    reads = [("read", {"file_path": p, "offset": max(1, n - 4), "limit": 8}) for p, n, _ in hits[:3]]
    c.act(*reads, text=pick(rng, ["Reading the code around each one.", "Let me see the context of each.", None]))
    if len(hits) == 1:
        out = [pick(rng, ["Just one:", "There's a single TODO:", "Only one is left:"])]
    else:
        out = [pick(rng, [f"There are {len(hits)}:", f"I found {len(hits)} open items:"])]
    for p, n, t in hits:
        note = re.sub(r"^.*?(TODO|FIXME):?\s*", "", t)
        fn = _enclosing(c.ws, p, n, repo["lang"])
        out.append(f"- `{p}:{n}`" + (f" in `{fn}`" if fn else "") + f": {note}")
    if len(hits) == 1:
        out.append(pick(rng, ["\nIt's an enhancement, not a release blocker.", "\nWant me to take it on?", ""]))
    else:
        out.append(pick(rng, ["\nNone of them blocks a release; they're all enhancements.",
                              "\nWant me to pick one of these up?", ""]))
    c.say("\n".join(out))


def missing_tool(c, repo, item):
    """The user asks for a tool that is not installed: an error the assistant could not foresee (weight 1)."""
    rng, lang = c.rng, lang_of(repo)
    cmd, fallback, tool = lang.lint_missing
    if repo["lang"] == "rust":
        c.user(pick(rng, ["Run the tests with nextest, please.", "Use `cargo nextest run` for the tests."]))
    elif repo["lang"] == "typescript":
        c.user(pick(rng, ["Run the linter before I commit.", "Can you run `npm run lint`?"]))
    else:
        c.user(pick(rng, [f"Lint the project with {tool}.", f"Run `{cmd}` and fix whatever it finds.",
                          f"Can you run {tool} over the code?"]))
    if repo["lang"] == "python":
        pkg = next(p.split("/")[0] for p in repo["files"] if "/" in p and not p.startswith("tests"))
        fallback = pick(rng, [f"python -m compileall -q {pkg} tests", "python -m compileall -q ."])
    first = c.act(("bash", {"command": cmd}), expect="error")
    reason = "isn't installed here" if "not found" in first or "no such command" in first else \
        "isn't defined in package.json"
    out = c.act(("bash", {"command": fallback}),
                text=f"`{tool}` {reason}. I'll use `{fallback}` instead, which is available.")
    name = repo["about"].split(",")[0]
    if repo["lang"] == "rust":
        msg = pick(rng, [
            f"`cargo nextest` {reason} (cargo reports no such command), so I ran the suite with plain "
            f"`cargo test -q`: {passed(out, rng)}. To use nextest, install it with `cargo install cargo-nextest`; "
            "I didn't do that without asking.",
            f"nextest isn't available on this machine (`error: no such command: nextest`). The standard runner "
            f"works fine for {name}: `cargo test -q` reports {passed(out, rng)}. Shall I install cargo-nextest "
            "(`cargo install cargo-nextest`)?",
        ])
    elif repo["lang"] == "typescript":
        msg = pick(rng, [
            f"There is no `lint` script in {repo['name']}'s package.json (`npm error Missing script: \"lint\"`), "
            "so I type-checked with `tsc --noEmit` instead, which reported no errors. That catches type errors but "
            "not style issues; if you want ESLint, I can add it as a dev dependency with a `lint` script.",
            "`npm run lint` fails because package.json defines only `build` and `test`. The closest check "
            f"available is the compiler: `tsc --noEmit` over {name} passes with no errors. Want me to set up "
            "ESLint and a `lint` script?",
        ])
    elif repo["lang"] == "go":
        files = ", ".join(f"`{p}`" for p in repo["files"] if p.endswith(".go"))
        msg = pick(rng, [
            f"`staticcheck` isn't installed, so I ran `go vet ./...`, which ships with Go. It found nothing in "
            f"{files}. For the extra checks staticcheck does, install it with `go install "
            "honnef.co/go/tools/cmd/staticcheck@latest`.",
            f"staticcheck is not on the PATH here (exit code 127). As a fallback, `go vet ./...` ran clean on "
            f"the {repo['name']} package. Should I install staticcheck for the full set of checks?",
        ])
    else:
        files = sorted(p for p in repo["files"] if p.endswith(".py"))
        msg = pick(rng, [
            f"`ruff` isn't installed in this environment, so I couldn't lint. As a fallback I byte-compiled the "
            f"code with `{fallback}`: no syntax errors in {len(files)} modules ({', '.join(f'`{f}`' for f in files[:3])}"
            f"{', ...' if len(files) > 3 else ''}). That is no substitute for a linter; `pip install ruff` would "
            "add it. Should I?",
            f"No lint run was possible: `ruff` is not on the PATH here (exit code 127). I checked what I could "
            f"with `{fallback}`, which compiles every module of {repo['about'].split(':')[0]} and found no syntax "
            "errors. Want me to install ruff (`pip install ruff`) and run it properly?",
        ])
    c.say(msg)


def _wrong_path(path):
    parts = path.split("/")
    if len(parts) == 1:
        return "src/" + path
    return "/".join(["src" if parts[0] != "src" else "lib"] + parts[1:])


def user_wrong_file(c, repo, item):
    """The user names a file that does not exist: the error is not the assistant's fault (weight 1)."""
    rng = c.rng
    path = item
    wrong = _wrong_path(path)
    c.user(pick(rng, [f"Can you summarise what `{wrong}` does?", f"Explain {wrong} to me briefly.",
                      f"What's in `{wrong}`? I haven't looked at it yet."]))
    c.act(("read", {"file_path": wrong}), expect="error")
    base = posixpath.basename(path)
    found = c.act(("glob", {"pattern": f"**/{base}"}),
                  text=pick(rng, [f"There's no `{wrong}`. Let me look for a `{base}` elsewhere.",
                                  f"That path doesn't exist; searching for `{base}`."]), expect="ok")
    real = found.splitlines()[0]
    c.act(smart_read(c.ws, real))
    names = definitions(c.ws.text(real), repo["lang"])
    c.say(f"The file is `{real}` (there is no `{wrong}`). It holds {repo['files'][real]}."
          + (f" Defined there: {join_names(names[:6])}." if names else ""))


def _tweak_summary(c, item, out, extra=""):
    rng = c.rng
    done = item["summary"]
    c.say(pick(rng, [f"Done. {done}. {extra}Tests: {passed(out, rng)}.",
                     f"{done}. {extra}I ran the suite afterwards and {passed(out, rng)}.",
                     f"Changed: {lower_first(done)}. {extra}Verified with the tests ({passed(out, rng)})."]))


def _see_edit_sites(c, item):
    """Read the file, or (for one-line edits) grep for the lines to change, which shows them in full."""
    rng = c.rng
    single = all("\n" not in old.strip("\n") for old, _ in item["edits"])
    if single and rng.random() < 0.5:
        pattern = "|".join(rx(old.strip()[:40]) for old, _ in item["edits"])
        c.act(("grep", {"pattern": pattern, "path": item["file"]}), expect="ok", text=pick(rng, LOOK_FIRST))
    else:
        c.act(smart_read(c.ws, item["file"]), text=pick(rng, LOOK_FIRST))


def tweak_chain(c, repo, item):
    """Read, edit, test: the basic chained workflow."""
    rng = c.rng
    c.user(pick(rng, item["ask"]))
    _see_edit_sites(c, item)
    c.act(*edit_calls([(item["file"], o, n) for o, n in item["edits"]]), expect="ok")
    out = run_tests(c, repo, text=pick(rng, RUN_TESTS_NOTE))
    _tweak_summary(c, item, out)


def tweak_blind(c, repo, item):
    """An edit without reading the file first fails to match (own mistake, weight 0); then read and redo."""
    rng = c.rng
    c.user(pick(rng, item["ask"]))
    old, new = item["edits"][0]
    guessed_new = new if item["wrong_old"].strip() in old else item["wrong_old"].replace(old.strip(), new.strip())
    if guessed_new == item["wrong_old"]:
        guessed_new = new
    c.act(("edit", {"file_path": item["file"], "old_string": item["wrong_old"], "new_string": guessed_new}),
          text=pick(rng, ["Small change, editing it directly.", "This is a one-liner.", None]), weight=0,
          expect="error")
    c.act(("read", {"file_path": item["file"]}),
          text=pick(rng, ["The text isn't what I assumed. Reading the file before editing again.",
                          "No match: I guessed the line instead of reading it. Let me read the file.",
                          "I should have looked first. Reading it now."]))
    c.act(*edit_calls([(item["file"], o, n) for o, n in item["edits"]]), expect="ok")
    out = run_tests(c, repo, text=pick(rng, RUN_TESTS_NOTE))
    _tweak_summary(c, item, out)


def tweak_test_fix(c, repo, item):
    """The change breaks a test that pinned the old value: an error the assistant could not foresee."""
    rng = c.rng
    c.user(pick(rng, item["ask"]))
    _see_edit_sites(c, item)
    c.act(*edit_calls([(item["file"], o, n) for o, n in item["edits"]]), expect="ok")
    fail = run_tests(c, repo, expect="error", text=pick(rng, RUN_TESTS_NOTE), cmd=red_command(repo, rng))
    test_path, old, new = item["test_fix"]
    note = (f"A test fails ({why_failed(fail)}). It pins the old behaviour, which this request changes on "
            "purpose. Finding the assertion.")
    if "\n" in old:
        c.act(read_around(c.ws, test_path, rx(old.splitlines()[0].strip()), before=1, lines=5), text=note)
    else:
        c.act(("grep", {"pattern": rx(old.split("==")[0].strip()[:50]), "path": test_path}), text=note)
    c.act(("edit", {"file_path": test_path, "old_string": old, "new_string": new}), expect="ok",
          text=pick(rng, ["Updating the expectation to the new value.", "That assertion needs the new value."]))
    out = run_tests(c, repo)
    _tweak_summary(c, item, out, extra=f"I also updated the expected value in `{test_path}`, which encoded the "
                                       "old behaviour. ")


def tweak_wrong_path(c, repo, item):
    """The assistant guesses a path that does not exist (weight 0), then finds the file and makes the change."""
    rng = c.rng
    path = item["file"]
    module = posixpath.splitext(posixpath.basename(path))[0]
    c.user(pick(rng, item["ask"]) + pick(rng, ["", f" It's in the {module} code somewhere."]))
    c.act(("read", {"file_path": _wrong_path(path)}), weight=0, expect="error")
    found = c.act(("glob", {"pattern": f"**/{posixpath.basename(path)}"}),
                  text=pick(rng, ["Wrong guess for the path; searching instead.",
                                  "Not there. Let me find the file rather than guess."]), expect="ok")
    assert path in found.splitlines()
    c.act(smart_read(c.ws, path))
    c.act(*edit_calls([(path, o, n) for o, n in item["edits"]]), expect="ok")
    out = run_tests(c, repo, text=pick(rng, RUN_TESTS_NOTE))
    _tweak_summary(c, item, out)
