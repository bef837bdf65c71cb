"""A tiny, deterministic implementation of Synthia's seven tools.

Each conversation runs in a fresh copy of a sample repository (``repos/<name>``) in a temporary
directory that is made a git repository with a fixed author and fixed dates, so commit hashes and
tool results are the same on every run. Result formats (documented in the README):

* read     -> ``{line:>4}\\t{text}`` per line; ``(showing lines A-B of N)`` when offset/limit cut it
* write    -> ``Created PATH (N lines)`` / ``Updated PATH (N lines)``
* edit     -> ``Edited PATH: 1 replacement (line L)``
* bash     -> ``exit code N`` on the first line, then stdout+stderr interleaved (or ``(no output)``)
* grep     -> ``path:line:text`` per match, sorted by path and line, or ``No matches found``
* glob     -> one matching file path per line, sorted, or ``No files match PATTERN``
* list_dir -> one entry per line, sorted, directories end in ``/``

Every failure of read/write/edit/grep/glob/list_dir starts with ``Error: ``; a failed command is a
bash result whose exit code is not 0. ``is_error`` applies exactly that rule.
"""

import fnmatch
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPOS_DIR = Path(__file__).with_name("repos")
SKIP_DIRS = {".git", "target", "node_modules", "dist", "__pycache__", ".pytest_cache"}
DISPLAY_ROOT = "/home/dev/projects"
MAX_BASH_CHARS = 3000
MAX_GREP_MATCHES = 40

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Dana Reyes",
    "GIT_AUTHOR_EMAIL": "dana@example.com",
    "GIT_COMMITTER_NAME": "Dana Reyes",
    "GIT_COMMITTER_EMAIL": "dana@example.com",
}


def _stable_id(text):
    """A thread id that depends only on the thread's name (Rust prints the OS id, which varies)."""
    return 1000 + int(hashlib.sha256(text.encode()).hexdigest(), 16) % 9000


def is_error(result):
    """True for a tool result that reports a failure (the rule tests/test_dataset.py uses too)."""
    return result.startswith("Error: ") or bool(re.match(r"exit code [1-9]\d*\n", result))


def _tool_bin(cache):
    """A private bin directory so the commands a conversation can find do not depend on the host's PATH."""
    bin_dir = cache / "bin"
    if bin_dir.exists():
        return bin_dir
    bin_dir.mkdir(parents=True)
    links = {"python": sys.executable, "python3": sys.executable}
    for name in ("cargo", "rustc", "go", "gofmt", "node", "npm", "npx", "tsc", "git"):
        found = shutil.which(name)
        if found:
            links[name] = found
    for name, target in links.items():
        (bin_dir / name).symlink_to(target)
    pytest = bin_dir / "pytest"
    pytest.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pytest "$@"\n')
    pytest.chmod(0o755)
    return bin_dir


def tool_env(cache):
    env = {
        "PATH": f"{_tool_bin(cache)}:/usr/bin:/bin",
        "HOME": str(cache / "home"),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "COLUMNS": "50",
        "NO_COLOR": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "PYTEST_ADDOPTS": "-p no:cacheprovider -p no:hypothesispytest",
        "CARGO_TERM_COLOR": "never",
        "RUST_TEST_THREADS": "1",
        "CARGO_NET_OFFLINE": "true",
        "GOFLAGS": "-count=1",
        "GOCACHE": str(cache / "gocache"),
        "GOPATH": str(cache / "gopath"),
        "GOPROXY": "off",
        "GOTOOLCHAIN": "local",
        "GO111MODULE": "on",
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
        **GIT_ENV,
    }
    for key in ("CARGO_HOME", "RUSTUP_HOME"):
        if key in os.environ:
            env[key] = os.environ[key]
    if "CARGO_HOME" not in env:
        env["CARGO_HOME"] = str(Path.home() / ".cargo")
    if "RUSTUP_HOME" not in env:
        env["RUSTUP_HOME"] = str(Path.home() / ".rustup")
    (cache / "home").mkdir(parents=True, exist_ok=True)
    return env


class Workspace:
    """A fresh copy of one sample repository, with the tools executed inside it."""

    def __init__(self, repo, scratch, history=(), date="2025-03-03T09:00:00"):
        self.repo = repo
        self.root = Path(scratch) / repo
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.copytree(REPOS_DIR / repo, self.root)
        self.cache = Path(scratch).parent / "cache"
        self.env = tool_env(self.cache)
        # a CARGO_HOME per worker: concurrent cargo runs sharing one would print "Blocking waiting for file lock"
        self.env["CARGO_HOME"] = str(Path(scratch) / "cargo-home")
        self._init_git(history, date)

    # -- setup helpers (not tools) -------------------------------------------------------------
    def _git(self, *args, date=None):
        env = dict(self.env)
        if date:
            env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = date + " +0100"
        subprocess.run(["git", *args], cwd=self.root, env=env, check=True, capture_output=True)

    def _init_git(self, history, date):
        self._git("init", "-q", "-b", "main")
        day = int(date[8:10])
        later = {p for _, paths in history for p in paths}
        everything = [p for p in self.files() if p not in later]
        self._git("add", "--", *everything)
        self._git("commit", "-q", "-m", "Initial commit", date=date)
        for i, (message, paths) in enumerate(history, start=1):
            self._git("add", "--", *paths)
            self._git("commit", "-q", "-m", message, date=f"{date[:8]}{day + i:02d}{date[10:]}")

    def files(self):
        out = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            for name in sorted(filenames):
                out.append(Path(dirpath, name).relative_to(self.root).as_posix())
        return sorted(out)

    def text(self, path):
        return (self.root / path).read_text()

    def replace(self, path, old, new):
        """Change a file behind the assistant's back (scenario setup); old must occur exactly once."""
        text = self.text(path)
        if text.count(old) != 1:
            raise ValueError(f"setup: {old!r} occurs {text.count(old)} times in {self.repo}/{path}")
        (self.root / path).write_text(text.replace(old, new))

    def put(self, path, content):
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)

    def commit(self, message, date="2025-03-20T16:30:00"):
        self._git("add", "-A")
        self._git("commit", "-q", "-m", message, date=date)

    def close(self):
        shutil.rmtree(self.root, ignore_errors=True)

    # -- the tools -------------------------------------------------------------------------------
    def run(self, name, args):
        return getattr(self, "tool_" + name)(**args)

    def _resolve(self, path):
        path = (path or ".").strip()
        target = (self.root / path).resolve()
        if target != self.root.resolve() and self.root.resolve() not in target.parents:
            return None
        return target

    def _rel(self, target):
        rel = target.relative_to(self.root.resolve()).as_posix()
        return rel or "."

    def tool_read(self, file_path, offset=None, limit=None):
        target = self._resolve(file_path)
        if target is None:
            return f"Error: {file_path} is outside the project"
        if target.is_dir():
            return f"Error: {file_path} is a directory, not a file (use list_dir)"
        if not target.exists():
            return f"Error: file not found: {file_path}"
        text = target.read_text()
        if not text:
            return "(empty file)"
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()
        start = (offset or 1) - 1
        if start >= len(lines):
            return f"Error: offset {offset} is past the end of {file_path} ({len(lines)} lines)"
        end = len(lines) if limit is None else min(len(lines), start + limit)
        out = [f"{n:>4}\t{lines[n - 1]}" for n in range(start + 1, end + 1)]
        if start > 0 or end < len(lines):
            out.append(f"(showing lines {start + 1}-{end} of {len(lines)})")
        return "\n".join(out)

    def tool_write(self, file_path, content):
        target = self._resolve(file_path)
        if target is None:
            return f"Error: {file_path} is outside the project"
        if target.is_dir():
            return f"Error: {file_path} is a directory"
        existed = target.exists()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        n = len(content.splitlines())
        return f"{'Updated' if existed else 'Created'} {file_path} ({n} line{'s' if n != 1 else ''})"

    def tool_edit(self, file_path, old_string, new_string, replace_all=False):
        target = self._resolve(file_path)
        if target is None:
            return f"Error: {file_path} is outside the project"
        if not target.is_file():
            return f"Error: file not found: {file_path}"
        if old_string == new_string:
            return "Error: old_string and new_string are identical"
        text = target.read_text()
        count = text.count(old_string)
        if count == 0:
            return f"Error: old_string not found in {file_path}"
        if count > 1 and not replace_all:
            return (f"Error: old_string occurs {count} times in {file_path}; "
                    "include more surrounding lines to make it unique, or set replace_all")
        lines, pos = [], text.find(old_string)
        while pos != -1:
            lines.append(text.count("\n", 0, pos) + 1)
            pos = text.find(old_string, pos + len(old_string))
        target.write_text(text.replace(old_string, new_string))
        if count == 1:
            return f"Edited {file_path}: 1 replacement (line {lines[0]})"
        return f"Edited {file_path}: {count} replacements (lines {', '.join(map(str, lines))})"

    def tool_bash(self, command, timeout=None):
        try:
            proc = subprocess.run(["bash", "-c", command], cwd=self.root, env=self.env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout or 180)
            code, output = proc.returncode, proc.stdout.decode("utf-8", "replace")
        except subprocess.TimeoutExpired as e:
            code, output = 124, (e.stdout or b"").decode("utf-8", "replace") + f"\n(timed out after {timeout}s)"
        output = re.sub(r"(?m)^\s*Blocking waiting for file lock.*\n", "", self._mask(output)).rstrip()
        if len(output) > MAX_BASH_CHARS:
            head, tail = output[: MAX_BASH_CHARS // 3], output[-MAX_BASH_CHARS * 2 // 3:]
            output = f"{head}\n... (output truncated) ...\n{tail}"
        return f"exit code {code}\n{output or '(no output)'}"

    def _mask(self, text):
        """Hide the scratch directory and the clock (timings are masked later, per conversation)."""
        for root in sorted({str(self.root.resolve()), str(self.root)}, key=len, reverse=True):
            text = text.replace(root, f"{DISPLAY_ROOT}/{self.repo}")
        for parent in sorted({str(self.root.parent.resolve()), str(self.root.parent)}, key=len, reverse=True):
            text = text.replace(parent, DISPLAY_ROOT)
        for cache in sorted({str(self.cache.resolve()), str(self.cache)}, key=len, reverse=True):
            text = text.replace(cache + "/home", "/home/dev").replace(cache, "/home/dev/.cache")
        for prefix in sorted({sys.base_prefix, sys.prefix}, key=len, reverse=True):
            text = text.replace(prefix + "/lib/python", "/usr/lib/python")
        text = text.replace(str(Path.home()), "/home/dev")
        text = re.sub(r"/tmp/pytest-of-[^/\s]+/pytest-\d+/", "/tmp/pytest-of-dev/pytest-0/", text)
        text = re.sub(r"(thread '[^']*') \(\d+\)", lambda m: f"{m.group(1)} ({_stable_id(m.group(1))})", text)
        text = re.sub(r"<([\w.]+) object at 0x[0-9a-f]+>",  # Python reprs carry memory addresses
                      lambda m: f"<{m.group(1)} object at 0x7f{_stable_id(m.group(1)) * 99991:010x}>", text)
        return re.sub(r"\d{4}-\d\d-\d\dT\d\d_\d\d_\d\d_\d{3}Z", "2025-03-21T10_14_07_512Z", text)

    def _walk(self, base):
        if base.is_file():
            yield base
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            for name in sorted(filenames):
                yield Path(dirpath, name)

    def tool_grep(self, pattern, path=None, glob=None):
        try:
            regex = re.compile(pattern)
        except re.error as e:
            return f"Error: invalid regular expression {pattern!r}: {e}"
        base = self._resolve(path)
        if base is None or not base.exists():
            return f"Error: path not found: {path}"
        matches = []
        for file in self._walk(base):
            rel = self._rel(file.resolve())
            if glob and not fnmatch.fnmatch(rel if "/" in glob else file.name, glob):
                continue
            try:
                text = file.read_text()
            except (UnicodeDecodeError, OSError):
                continue
            for n, line in enumerate(text.splitlines(), start=1):
                if regex.search(line):
                    matches.append(f"{rel}:{n}:{line.rstrip()[:200]}")
        if not matches:
            return "No matches found"
        if len(matches) > MAX_GREP_MATCHES:
            extra = len(matches) - MAX_GREP_MATCHES
            matches = matches[:MAX_GREP_MATCHES] + [f"... ({extra} more matches)"]
        return "\n".join(matches)

    def tool_glob(self, pattern, path=None):
        base = self._resolve(path)
        if base is None or not base.is_dir():
            return f"Error: directory not found: {path}"
        found = []
        for p in base.glob(pattern):
            rel = self._rel(p.resolve())
            if p.is_file() and not (set(rel.split("/")) & SKIP_DIRS):
                found.append(rel)
        return "\n".join(sorted(found)) if found else f"No files match {pattern}"

    def tool_list_dir(self, path):
        target = self._resolve(path)
        if target is None:
            return f"Error: {path} is outside the project"
        if target.is_file():
            return f"Error: {path} is a file, not a directory"
        if not target.is_dir():
            return f"Error: directory not found: {path}"
        entries = sorted(p.name + ("/" if p.is_dir() else "") for p in target.iterdir() if p.name != ".git")
        return "\n".join(entries) if entries else "(empty directory)"
