"""A stage's training step as `python train_mlx.py --dry-run` prints it (a helper of the benches, not a bench).

Benches take what only the root script knows (its defaults, each stage's resolved settings, the job it hands the
worker and the command that runs it) from its own output, as a user would read it, instead of importing
train_mlx.py.
"""

import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMAND_LINE = re.compile(r"^\[stage (\d+)\] would run train: (.+)$")
JOB_LINE = re.compile(r"^\[stage (\d+)\]\s+with (\S+train_job\.json): (\{.*\})\s*$")


@dataclass(frozen=True)
class TrainStep:
    command: list  # the worker's command line, as the stage would run it
    job_path: Path  # where the stage would write the job (a dry run does not)
    job: dict  # every resolved setting of the stage, and its data files


def train_steps(arguments, env=None, log_path=None):
    """{stage: TrainStep} from `python train_mlx.py ARGUMENTS --dry-run`, run in the repository; its output goes
    to log_path when given."""
    command = [sys.executable, "train_mlx.py", *map(str, arguments), "--dry-run"]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    output = done.stdout + done.stderr
    if log_path:
        Path(log_path).write_text(output)
    lines = done.stdout.splitlines()
    commands = {int(m.group(1)): shlex.split(m.group(2)) for m in map(COMMAND_LINE.match, lines) if m}
    jobs = {int(m.group(1)): (Path(m.group(2)), json.loads(m.group(3))) for m in map(JOB_LINE.match, lines) if m}
    if done.returncode or not jobs or commands.keys() != jobs.keys():
        problem = f"failed ({done.returncode})" if done.returncode else "printed no train command and job"
        raise SystemExit(f"{problem}: {shlex.join(command)}\n" + "\n".join(output.splitlines()[-15:]))
    return {number: TrainStep(commands[number], *jobs[number]) for number in sorted(jobs)}
