"""What differs between the sample repositories' languages: commands, test output, syntax."""

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Lang:
    name: str
    test_cmds: tuple  # ways to run the whole suite
    quiet_cmd: str  # the shortest whole-suite command
    single_cmd: str  # run one test: {name}, {file}
    typos: tuple  # mistyped versions of a test command (the assistant's own slip)
    lint_missing: tuple  # (a command for a tool that is not installed here, what to use instead, why)
    blank_between: str  # separator before a newly appended top-level definition
    def_re: str  # a line that defines a top-level name (group 1 is the name)
    test_def_re: str  # grep pattern for the line that starts a test
    todo_re: str = r"TODO|FIXME"


LANGS = {
    "python": Lang(
        name="Python",
        test_cmds=("python -m pytest -q", "pytest -q --tb=short", "python -m pytest -q --tb=short"),
        quiet_cmd="python -m pytest -q --tb=short",
        single_cmd="python -m pytest -q {file} -k {name}",
        typos=("pyhton -m pytest -q", "python -m pytset -q", "pytets -q", "python -m pytest -q test/"),
        lint_missing=("ruff check .", "python -m compileall -q .", "ruff"),
        blank_between="\n\n\n",
        def_re=r"^(?:class|def)\s+(\w+)|^    def\s+(\w+)|^([A-Z_]+)\s*=",
        test_def_re=r"^def test_",
    ),
    "rust": Lang(
        name="Rust",
        test_cmds=("cargo test", "cargo test -q"),
        quiet_cmd="cargo test -q",
        single_cmd="cargo test -q {name}",
        typos=("cargo tset", "carg test", "cargo test --quite"),
        lint_missing=("cargo nextest run", "cargo test -q", "cargo-nextest"),
        blank_between="\n\n",
        def_re=r"^\s*pub (?:fn|struct|enum|trait)\s+(\w+)|^\s*fn\s+(\w+)",
        test_def_re=r"#\[test\]",
    ),
    "go": Lang(
        name="Go",
        test_cmds=("go test ./...", "go test -v ./..."),
        quiet_cmd="go test ./...",
        single_cmd="go test -run '^{name}$' -v ./...",
        typos=("go tets ./...", "go tset ./...", "got test ./..."),
        lint_missing=("staticcheck ./...", "go vet ./...", "staticcheck"),
        blank_between="\n\n",
        def_re=r"^func (?:\([^)]*\) )?(\w+)|^type (\w+)",
        test_def_re=r"^func Test",
    ),
    "typescript": Lang(
        name="TypeScript",
        test_cmds=("npm test", "npm test --silent"),
        quiet_cmd="npm test --silent",
        single_cmd="npm test --silent",
        typos=("npm tset", "npm run tests", "nmp test"),
        lint_missing=("npm run lint", "tsc --noEmit", "a lint script"),
        blank_between="\n\n",
        def_re=r"^export (?:async )?(?:function|class|const|type|interface) (\w+)|^function (\w+)",
        test_def_re=r"^test\(",
    ),
}


def test_counts(output):
    """(passed, failed) from any of the four runners' output; None for a count it does not print."""
    m = re.search(r"(?:(\d+) failed, )?(\d+) passed", output)
    if "test result:" in output:  # cargo: sum every test binary's result line
        results = re.findall(r"test result: \w+\. (\d+) passed; (\d+) failed", output)
        return sum(int(p) for p, _ in results), sum(int(f) for _, f in results)
    if "ℹ pass" in output:  # node's spec reporter
        return int(re.search(r"ℹ pass (\d+)", output).group(1)), int(re.search(r"ℹ fail (\d+)", output).group(1))
    dots = re.search(r"^([.X]+)$", output, re.M)
    if dots and ("tsc" in output or "Failed tests:" in output or output.strip().endswith(dots.group(1))):
        return dots.group(1).count("."), dots.group(1).count("X")  # node's dot reporter
    if "--- PASS" in output or "--- FAIL" in output:  # go test -v
        return output.count("--- PASS"), output.count("--- FAIL")
    if m and ("passed" in output):  # pytest
        failed = re.search(r"(\d+) failed", output)
        return int(m.group(2)), int(failed.group(1)) if failed else 0
    failed = re.search(r"(\d+) failed", output)
    if failed:
        return 0, int(failed.group(1))
    return None, None


def describe_run(output, rng=None):
    """A short phrase for a passing run, e.g. 'all 9 tests pass'."""
    passed, failed = test_counts(output)
    if passed is None:
        return "the whole suite passes"
    if failed:
        return f"{passed} pass and {failed} fail"
    choices = [f"all {passed} tests pass", f"{passed} passed, 0 failed", f"the suite is green with {passed} tests"]
    return rng.choice(choices) if rng else choices[0]


def failing_tests(output):
    """Names of the failing tests in a run's output (best effort, for summaries)."""
    names = re.findall(r"FAILED \S+::(\w+)", output)  # pytest
    names += re.findall(r"^---- (\S+) stdout ----", output, re.M)  # cargo
    names += re.findall(r"^--- FAIL: (\w+)", output, re.M)  # go
    names += [f"\"{n}\"" for n in re.findall(r"^✖ (.+?) \(\d", output, re.M)]  # node
    seen = []
    for n in names:
        if n not in seen:
            seen.append(n)
    return seen


def definitions(text, lang):
    names = []
    for line in text.splitlines():
        m = re.match(LANGS[lang].def_re, line)
        if m:
            name = next(g for g in m.groups() if g)
            if name not in names:
                names.append(name)
    return names


def failure_reason(output):
    """The most telling line of a failing run, for the assistant to quote (best effort)."""
    patterns = [
        r"^E\s+(\w*Error: .+)$",  # pytest exception
        r"^E\s+(assert .+)$",  # pytest assertion
        r"(error\[E\d+\]: .+)$",  # rustc (also --message-format short)
        r"^(error TS\d+: .+)$",  # tsc (without file prefix)
        r"(error TS\d+: .+)$",  # tsc (with file prefix)
        r"^\s*(assertion `left == right` failed.*)$",  # cargo test
        r"panicked at [^\n]+\n(.+)$",
        r"^\S+\.go:\d+:\d+: (.+)$",  # go build error
        r"^\s+\S+_test\.go:\d+: (.+)$",  # go t.Fatal
        r"^\s*(AssertionError.*|Expected values to be .+)$",  # node
        r"^E\s+(.+)$",
    ]
    for pattern in patterns:
        m = re.search(pattern, output, re.M)
        if m:
            return m.group(1).strip()[:120]
    return None
