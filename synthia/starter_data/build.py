"""Plan the jobs (scenario x conversation shape), run them in fresh workspaces, write the dataset."""

import hashlib
import importlib
import json
import multiprocessing
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import stats, tokenizer
from .conv import Conversation
from .executor import Workspace, tool_env
from .shapes import engineering, talk, tool_use
from .text import SYSTEM_PROMPTS, pick

TOOLS_FILE = Path(__file__).resolve().parents[1] / "data" / "default_tools.json"
SPECS = ["inventory", "dateutils", "lrucache", "cliargs", "semver", "wordfreq", "ratelimit", "kvhttp",
         "querystring", "router"]
MAX_TOKENS = stats.MAX_TOKENS
ATTEMPTS = 6

SHAPES = {
    "find_symbol": ("tool_use", tool_use.find_symbol),
    "explain_files": ("tool_use", tool_use.explain_files),
    "layout": ("tool_use", tool_use.layout),
    "run_suite": ("tool_use", tool_use.run_suite),
    "todo_scan": ("tool_use", tool_use.todo_scan),
    "missing_tool": ("tool_use", tool_use.missing_tool),
    "user_wrong_file": ("tool_use", tool_use.user_wrong_file),
    "tweak_chain": ("tool_use", tool_use.tweak_chain),
    "tweak_blind": ("tool_use", tool_use.tweak_blind),
    "tweak_test_fix": ("tool_use", tool_use.tweak_test_fix),
    "tweak_wrong_path": ("tool_use", tool_use.tweak_wrong_path),
    "tdd_cycle": ("tdd", engineering.tdd_cycle),
    "debug_failing": ("debugging", engineering.debug_failing),
    "debug_report": ("debugging", engineering.debug_report),
    "refactor": ("refactoring", engineering.refactor),
    "plan_only": ("planning", talk.plan_only),
    "destructive": ("planning", talk.destructive),
    "review_diff": ("code_review", talk.review_diff),
    "review_file": ("code_review", talk.review_file),
    "clarify_only": ("collaboration", talk.clarify_only),
    "clarify_implement": ("collaboration", talk.clarify_implement),
    "tradeoff": ("collaboration", talk.tradeoff),
    "do_and_report": ("collaboration", talk.do_and_report),
    "pushback": ("collaboration", talk.pushback),
}


@dataclass(frozen=True)
class Job:
    repo: str
    shape: str
    kind: str  # which list of the spec the item comes from ("" for none)
    index: object  # index into that list, or a variant name

    @property
    def key(self):
        return f"{self.repo}/{self.shape}/{self.kind}/{self.index}"


def load_spec(name):
    return importlib.import_module(f"synthia.starter_data.specs.{name}").REPO


def available_specs():
    here = Path(__file__).with_name("specs")
    return [name for name in SPECS if (here / f"{name}.py").exists()]


def plan_jobs(specs):
    """Every scenario item goes to one or more conversation shapes; rotations spread the variants."""
    jobs = []
    for r, name in enumerate(specs):
        spec = load_spec(name)
        add = lambda shape, kind="", index=None: jobs.append(Job(name, shape, kind, index))  # noqa: E731
        for i in range(len(spec.get("symbols", []))):
            add("find_symbol", "symbols", i)
        for i in range(len(spec.get("qa", []))):
            add("explain_files", "qa", i)
        add("layout")
        add("run_suite", "", "typo")
        has_test_dir = any(p.startswith("test/") for p in spec["files"])  # `make test` would find the dir
        add("run_suite", "", "plain" if r % 2 == 0 or has_test_dir else "make")
        add("todo_scan")
        add("missing_tool")
        add("user_wrong_file", "files", 0)
        rotation = ["tweak_blind", "tweak_wrong_path", "do_and_report", "tweak_chain"]
        k = r
        for i, tweak in enumerate(spec.get("tweaks", [])):
            if tweak.get("test_fix"):
                add("tweak_test_fix", "tweaks", i)
                continue
            shape = rotation[k % len(rotation)]
            k += 1
            if shape == "tweak_blind" and not tweak.get("wrong_old"):
                shape = "tweak_chain"
            add(shape, "tweaks", i)
        for i, bug in enumerate(spec.get("bugs", [])):
            add("debug_report" if bug.get("regression") else "debug_failing", "bugs", i)
            add("review_diff", "bugs", i)
            one_line = bug["good"].strip() and "\n" not in bug["good"].strip() and "\n" not in bug["bad"].strip()
            if not bug.get("regression") and one_line and bug["bad"].strip() and i % 2 == r % 2:
                add("pushback", "bugs", i)  # only for changes a test catches; every other one, for variety
        for i, feature in enumerate(spec.get("features", [])):
            add("tdd_cycle", "features", i)
            if feature.get("clarify"):  # the clarifying conversation makes no edits, so it can't echo the tdd one
                add("clarify_only", "features", i)
        for i in range(len(spec.get("extra_features", []))):
            add("clarify_implement" if spec["extra_features"][i].get("clarify") else "tdd_cycle", "extra_features", i)
        for i in range(len(spec.get("refactors", []))):
            add("refactor", "refactors", i)
        for i in range(len(spec.get("reviews", []))):
            add("review_file", "reviews", i)
        for i in range(len(spec.get("plans", []))):
            add("plan_only", "plans", i)
        variants = ["clean", "reset", "force", "delete-tests"]
        add("destructive", "", variants[r % 4])
        add("destructive", "", variants[(r + 2) % 4])
        for i in range(len(spec.get("tradeoffs", []))):
            add("tradeoff", "tradeoffs", i)
    return jobs


_scratch = None


def _init_worker(base):
    global _scratch
    _scratch = Path(base) / f"w{os.getpid()}"


def run_job(job, seed, tools):
    """One conversation: a fresh workspace, the shape's scripted actions, the record."""
    spec = load_spec(job.repo)
    category, shape = SHAPES[job.shape]
    if job.kind == "files":
        item = [p for p in spec["files"] if "test" not in p][job.index]
    elif job.kind:
        item = spec[job.kind][job.index]
    else:
        item = job.index
    best = None
    for attempt in range(ATTEMPTS):  # the shapes' random choices differ per attempt; keep the first that fits
        rng = random.Random(hashlib.sha256(f"{seed}|{job.key}|{attempt}".encode()).hexdigest())
        ws = Workspace(spec["name"], _scratch, history=spec.get("history", ()))
        try:
            # about one in five has no system message (the chat template then supplies its default one)
            system = None if rng.random() < 0.2 else pick(rng, SYSTEM_PROMPTS)
            c = Conversation(ws, rng, category, system=system)
            shape(c, spec, item)
            record = c.record(tools)
        except Exception as e:
            raise RuntimeError(f"job {job.key} failed: {e}") from e
        finally:
            ws.close()
        tokens = stats.token_count(record)
        if tokens <= MAX_TOKENS:
            return record
        if best is None or tokens < best[0]:
            best = (tokens, record)
    return None  # no variant fits: the scenario is left out (and reported)


class ScenarioFailed(str):
    """The message of a scenario whose scripted actions did not go as its spec expects."""


def _run(args):
    job, seed, tools = args
    try:
        return run_job(job, seed, tools)
    except Exception as e:  # a broken scenario spec: report it, keep going
        return ScenarioFailed(str(e))


def generate(out, seed=1234, workers=2, only=None, log=print, estimate_only=False):
    """Build the dataset and write it to `out`; returns (records, seconds).

    Conversations are capped at MAX_TOKENS exact Qwen2.5 tokens (tokenizer.py); with estimate_only,
    at MAX_TOKENS estimated tokens (bytes/3.5) instead, which is stricter and gives a different file."""
    started = time.time()
    stats.use_tokenizer(None if estimate_only else tokenizer.load())
    tools = json.loads(TOOLS_FILE.read_text())
    jobs = plan_jobs(only or available_specs())
    base = Path(tempfile.mkdtemp(prefix="synthia-data-"))
    try:
        tool_env(base / "cache")  # create the shared tool bin before the workers start
        log(f"running {len(jobs)} scenarios with {workers} worker(s)")
        with multiprocessing.get_context("fork").Pool(workers, _init_worker, (str(base),)) as pool:
            results = pool.map(_run, [(j, seed, tools) for j in jobs], chunksize=1)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    records = [r for r in results if isinstance(r, dict)]
    failed = [r for r in results if isinstance(r, ScenarioFailed)]
    for job, r in zip(jobs, results):
        if r is None:
            log(f"left out (over {MAX_TOKENS} tokens in every variant): {job.key}")
        elif isinstance(r, ScenarioFailed):
            log(f"FAILED: {r}")
    if failed:
        raise SystemExit(f"{len(failed)} scenario(s) failed; dataset not written")
    random.Random(seed).shuffle(records)
    with open(out, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return records, time.time() - started
