"""Show a child process's output: on a terminal, its `iter k/N  train ...` lines drive a progress bar with the
loss, tok/s and an ETA; elsewhere (a log, a pipe, CI) every line is printed as it is."""

import re
import sys
from contextlib import contextmanager

TRAIN_LINE = re.compile(r"iter (\d+)/(\d+)  train (\S+)\s.*?(\d+) tok/s")


@contextmanager
def child_output(prefix, interactive=None):
    """Yields show(line). Lines are printed with `prefix`; training reports also move a bar on a terminal."""
    interactive = sys.stdout.isatty() if interactive is None else interactive
    if not interactive:
        yield lambda line: print(f"{prefix}{line}", end="", flush=True)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn(prefix + "{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[status]}"), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = None

        def show(line):
            nonlocal task
            match = TRAIN_LINE.search(line)
            if match:
                done, total, loss, speed = match.groups()
                if task is None:
                    task = bar.add_task("training", total=int(total), status="")
                bar.update(task, completed=int(done), status=f"loss {loss}  {speed} tok/s")
            bar.console.print(f"{prefix}{line}", end="", markup=False, highlight=False)

        yield show
