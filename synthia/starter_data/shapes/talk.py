"""planning, code_review and collaboration: investigating, then deciding, asking or explaining."""

import re

from ..langs import failing_tests
from ..text import pick
from .common import edit_calls, passed, read_around, run_tests, rx, smart_read, test_command, why_failed
from .engineering import test_edit_calls

# -- planning -------------------------------------------------------------------------------------------


def plan_only(c, repo, item):
    """Explore (parallel calls), then a numbered plan and one question; nothing is changed."""
    rng = c.rng
    c.user(pick(rng, item["ask"]))
    for i, turn in enumerate(item["explore"]):
        c.act(*turn, expect="ok", text=pick(rng, ["Let me look at the current structure first.",
                                                  "Gathering context before planning.", None]) if i == 0 else None)
    c.say(pick(rng, ["Here's how I'd do it:", "Plan:", "Proposed plan, nothing changed yet:"]) + "\n\n"
          + item["plan"] + "\n\n" + item["question"] + pick(rng, ["", " Once you confirm I'll start with step 1.",
                                                                 " Say go and I'll implement it."]))


NOTES = "# Release notes draft\n\n- mention the new defaults\n- thank the beta testers\n"


def destructive(c, repo, item):
    """A destructive request: inspect with read-only commands, then stop and ask."""
    rng, ws = c.rng, c.ws
    variant = item
    if variant == "clean":
        note = pick(rng, ["notes/release-draft.md", "notes/migration-plan.md", "docs/ideas.md", "TODO.local.md"])
        scratch = pick(rng, ["scratch.txt", "out.log", "tmp/debug.json", "profile.out"])
        ws.put(note, NOTES.replace("Release notes draft", f"{repo['name']} notes"))
        ws.put(scratch, "temporary output\n")
        c.user(pick(rng, ["The working tree is a mess. Run `git clean -fdx` to get rid of everything untracked.",
                          "Wipe all untracked files with git clean -fdx, I want a pristine checkout.",
                          "Can you nuke everything untracked (git clean -fdx)?"]))
        status, dry = c.act(("bash", {"command": "git status --short"}),
                            ("bash", {"command": "git clean -ndx"}), expect="ok",
                            text="Before deleting anything, let me see what that would remove (a dry run).")
        c.say("I haven't run it yet. `git clean -fdx` would permanently delete these (they are not in git, so "
              "there is no undo):\n\n" + "\n".join(f"- `{l.replace('Would remove ', '')}`" for l in
                                                   dry.splitlines()[1:]) +
              f"\n\n`{note}` looks like real work (a notes file for {repo['name']}), not build output, while "
              f"`{scratch}` is clearly disposable. "
              + pick(rng, [f"Should I delete everything anyway, or keep the notes (`git clean -fdx -e {note}`)?",
                           f"Do you want `{note}` gone too, or shall I clean everything except it?"]))
        return
    if variant == "reset":
        feature = repo["features"][0]
        for path, old, new in feature["impl"][:1]:
            ws.replace(path, old, new)
        c.user(pick(rng, ["Reset the repo to the last commit, `git reset --hard`. I want to start over.",
                          "Throw away all local changes with git reset --hard HEAD.",
                          "Just hard-reset everything to HEAD please."]))
        status, diff = c.act(("bash", {"command": "git status --short"}),
                             ("bash", {"command": "git diff --stat"}), expect="ok",
                             text="Checking what a hard reset would discard first.")
        files = [l[3:] for l in status.splitlines()[1:]]
        listed = ", ".join(f"`{f}`" for f in files)
        stat = diff.splitlines()[-1].strip()
        c.say(pick(rng, [
            f"Before I do that: `git reset --hard` would permanently discard uncommitted changes in {listed} "
            f"({stat}). It looks like in-progress work, not noise. "
            + pick(rng, ["Do you want me to go ahead, or stash it first (`git stash push -m backup`) so it's "
                         "recoverable?",
                         "Shall I run it anyway, or save the changes with `git stash` first? Stashing costs "
                         "nothing and keeps an undo."]),
            f"I haven't reset anything yet. There are uncommitted edits in {listed} ({stat}), and a hard reset "
            "deletes them with no way back, since they were never committed. If you want a clean tree but might "
            "need them later, `git stash` gives the same result with an undo. Reset anyway?",
        ]))
        return
    if variant == "force":
        bare = ws.root.parent / f"{ws.repo}-origin.git"
        url = f"git@git.example.com:team/{ws.repo}.git"
        ws._git("clone", "-q", "--bare", str(ws.root), str(bare))
        ws._git("config", f"url.{bare}.insteadOf", url)
        ws._git("remote", "add", "origin", url)
        ws._git("fetch", "-q", "origin")
        ws._git("branch", "-q", "--set-upstream-to=origin/main")
        ws._git("commit", "-q", "--amend", "-m", "WIP", date="2025-03-22T11:00:00")
        c.user(pick(rng, ["Push is being rejected. Just force-push main.",
                          "git push keeps failing with non-fast-forward. Do a `git push --force`.",
                          "Force push my branch to origin, I don't care about the rejection."]))
        status, log = c.act(("bash", {"command": "git status -sb"}),
                            ("bash", {"command": "git log --oneline --decorate -3 --all --graph"}), expect="ok",
                            text="Let me see how local and remote diverged before touching anything.")
        m = re.search(r"\[(.*?)\]", status)
        remote = next((l for l in log.splitlines() if "origin/main" in l), "")
        rm = re.search(r"([0-9a-f]{7}) \(origin/main\) (.+)$", remote) or re.search(r"([0-9a-f]{7}) .*?\) (.+)$", remote)
        lost = f"`{rm.group(1)} {rm.group(2)}`" if rm else "the remote's last commit"
        state = m.group(1) if m else "diverged"
        c.say(pick(rng, [
            f"I haven't pushed. `main` has diverged from `origin/main` ({state}): your local `WIP` commit replaces "
            f"{lost} instead of building on it. A force-push would delete that commit from the {repo['name']} "
            "remote for everyone who has pulled it.\n\nOptions:\n1. `git pull --rebase` and push normally, "
            "which keeps both.\n2. If you really mean to replace it, `git push --force-with-lease`, which at "
            "least refuses if someone pushed in the meantime.\n\n" + pick(rng, ["Which do you want?",
                                                                                 "Shall I do option 1?"]),
            f"Stopping before the push. The rejection is real: `origin/main` has {lost}, which your branch "
            f"doesn't contain ({state}), because the local `WIP` commit was made on top of its parent instead. "
            "`git push --force` would erase that commit on the server.\n\nIf that commit is obsolete, "
            "`--force-with-lease` is the safer way to overwrite it. If it isn't, `git rebase origin/main` puts "
            "`WIP` on top and a normal push works. Which is it?",
            f"Force-pushing here would throw away work: the remote's {lost} is not in your local history "
            f"(`git status` says {state}). Before I rewrite `origin/main` for the {repo['name']} repo, please "
            "confirm that commit should be discarded. Otherwise I'd rebase `WIP` onto `origin/main` and push "
            "without force.",
        ]))
        return
    if variant == "delete-tests":
        c.user(pick(rng, ["The tests are annoying me. Delete the test files.",
                          "rm -rf the tests, we'll rewrite them later.",
                          "Remove all the test files from the repo."]))
        pattern = {"python": "tests/*.py", "rust": "tests/*.rs", "go": "*_test.go",
                   "typescript": "test/*.ts"}[repo["lang"]]
        found, run = c.act(("glob", {"pattern": pattern}),
                           ("bash", {"command": test_command(repo, rng, quiet=True)}), expect="ok",
                           text="Checking what that covers before deleting anything.")
        files = found.splitlines()
        c.say(f"I'd rather check before deleting: that's {len(files)} file{'s' if len(files) > 1 else ''} "
              f"({', '.join(f'`{f}`' for f in files)}) and right now {passed(run, rng)}, so they aren't broken. "
              "Deleting them removes the only safety net for future changes (they stay in git history, but "
              "nothing would run them). If they're slow or noisy, I could instead skip the slow ones or move "
              "them behind a flag. "
              + pick(rng, ["Do you still want them deleted?", "Should I go ahead and delete them anyway?"]))
        return
    raise ValueError(variant)


# -- code review ------------------------------------------------------------------------------------------


def review_diff(c, repo, item):
    """Review an uncommitted change or the last commit that introduces one of the repo's bugs."""
    rng, ws = c.rng, c.ws
    ws.replace(item["file"], item["good"], item["bad"])
    committed = rng.random() < 0.5
    if committed:
        ws.commit(item["commit"])
        c.user(pick(rng, ["Can you review my last commit?", "Review HEAD for me before I open the PR.",
                          f"I just committed \"{item['commit']}\". Anything wrong with it?"]))
        cmd = "git show HEAD"
    else:
        c.user(pick(rng, ["Review my uncommitted changes, please.", "Here's a small change I made (not committed "
                          "yet). Does it look right?", "Take a look at my working-tree diff before I commit."]))
        cmd = "git diff"
    c.act(("bash", {"command": cmd}), expect="ok")
    first = next((l.strip() for l in item["bad"].splitlines() if l.strip()), None)
    anchor = re.escape(first) if first else item.get("locate", "")
    read = read_around(ws, item["file"], anchor, before=6, lines=14)
    context, run = c.act(read, ("bash", {"command": test_command(repo, rng, quiet=True)}),
                         text=pick(rng, ["Reading the surrounding code and running the tests.",
                                         "Let me see the context and check the tests in parallel."]))
    if run.startswith("exit code 0"):
        tests = f"The tests still pass ({passed(run, rng)}), which means nothing covers this case yet."
    else:
        names = failing_tests(run)
        tests = ("The suite fails with this change" + (f": `{names[0]}`" if names else "") +
                 f" ({why_failed(run)}).")
    c.say(pick(rng, ["One problem, and it's blocking:", "I'd request changes:", "This needs a fix before merging:"])
          + f"\n\n**`{item['file']}`**: {item['review']}\n\n{tests}"
          + pick(rng, ["\n\nOtherwise the change is small and easy to follow.", "\n\nWant me to fix it?", ""]))


def review_file(c, repo, item):
    c.user(pick(c.rng, item["ask"]))
    c.act(*[smart_read(c.ws, p, max_lines=60) for p in item["files"]], expect="ok",
          text=pick(c.rng, ["Reading the code and its tests.", None]))
    c.say(item["comments"])


# -- collaboration ----------------------------------------------------------------------------------------


def _feature_reads(c, item):
    files = list(dict.fromkeys(e[0] for e in item["impl"]))
    return [smart_read(c.ws, p) for p in files]


def clarify_only(c, repo, item):
    """A vague request: read enough to ask a precise question, then stop."""
    rng = c.rng
    c.user(pick(rng, item["clarify"]["vague"]))
    c.act(*_feature_reads(c, item), expect="ok", text=pick(rng, ["Let me look at the current code first.", None]))
    c.say(item["clarify"]["question"])


def clarify_implement(c, repo, item):
    """Ask, get an answer, then implement with a test and report."""
    rng = c.rng
    c.user(pick(rng, item["clarify"]["vague"]))
    c.act(*_feature_reads(c, item), expect="ok")
    c.say(item["clarify"]["question"])
    c.user(item["clarify"]["answer"])
    if item["test_file"] not in [e[0] for e in item["impl"]]:
        c.act(("read", {"file_path": item["test_file"]}), expect="ok",
              text=pick(rng, ["Thanks. Let me look at the existing tests first.", "Got it. Checking the tests "
                              "I'll extend."]))
    calls = test_edit_calls(c, repo, item)
    c.act(*calls, *edit_calls(item["impl"]), expect="ok",
          text=pick(rng, ["Adding a test and the implementation.", "Writing the test and the change."]))
    out = run_tests(c, repo)
    c.say(f"Done. {item['summary']}.\n\n- Test added in `{item['test_file']}`.\n- {passed(out, rng).capitalize()}.")


def tradeoff(c, repo, item):
    c.user(pick(c.rng, item["ask"]))
    c.act(*[smart_read(c.ws, p) for p in item["read"]], expect="ok")
    c.say(item["answer"])


def do_and_report(c, repo, item):
    """Make a change and hand back a structured report with the diff stat."""
    rng = c.rng
    c.user(pick(rng, item["ask"]) + pick(rng, [" Tell me exactly what you changed.",
                                               " Afterwards, give me a short report.",
                                               " Summarise the change for the PR description when done."]))
    c.act(smart_read(c.ws, item["file"]))
    c.act(*edit_calls([(item["file"], o, n) for o, n in item["edits"]]), expect="ok")
    out, stat = c.act(("bash", {"command": test_command(repo, rng, quiet=True)}),
                      ("bash", {"command": "git diff --stat"}), expect="ok",
                      text="Running the tests and collecting the diff stat.")
    c.say(f"**What changed:** {item['summary']}.\n\n**Diff:** {stat.splitlines()[-1].strip()}.\n\n"
          f"**Verification:** `{test_command(repo, rng, quiet=True)}`, {passed(out, rng)}.\n\n"
          + pick(rng, ["**Not done:** nothing committed yet; say if you want a commit.",
                       "**Note:** the change is uncommitted so you can review it first.",
                       "**Follow-up:** none needed."]))


def pushback(c, repo, item):
    """The user asks for a change that breaks documented behaviour: try it, show the failing test, revert,
    explain, and let the user decide."""
    rng = c.rng
    good, bad, path = item["good"].strip(), item["bad"].strip(), item["file"]
    c.user(pick(rng, [f"In `{path}`, change `{good}` to `{bad}`.",
                      f"Quick one: replace `{good}` with `{bad}` in {path}. I think it's more correct.",
                      f"{item['commit']}: in {path}, `{good}` should become `{bad}`. Can you do that?"]))
    c.act(("grep", {"pattern": rx(good), "path": path}), expect="ok",
          text=pick(rng, ["Finding that line.", "Let me locate it first.", None]))
    c.act(("edit", {"file_path": path, "old_string": good, "new_string": bad}), expect="ok")
    red = c.act(("bash", {"command": test_command(repo, rng, quiet=True)}), expect="error",
                text=pick(rng, ["Changed. Running the tests before calling it done.", "Now the tests."]))
    names = failing_tests(red)
    failing = f"`{names[0]}`" if names else "a test"
    c.act(("edit", {"file_path": path, "old_string": bad, "new_string": good}), expect="ok",
          text=f"That breaks {failing} ({why_failed(red)}). I'll put the line back while we decide.")
    c.say(pick(rng, [
        f"I made the change, but the tests disagree: {failing} fails with {why_failed(red)}. I reverted it, so "
        f"`{path}` is as before.\n\nWhy it matters: {item['review']}\n\n"
        "If the new behaviour is really what you want, I can apply it and update the test to match. Should I?",
        f"I've left `{path}` unchanged: with `{bad}` the suite fails ({failing}). {item['review']}\n\n"
        "Was the aim something else, e.g. a different edge case? Tell me and I'll adjust, or confirm and I'll make "
        "the change together with the test update.",
    ]))
