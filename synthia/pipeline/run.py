"""One invocation of train_mlx.py as the pipeline sees it: its options (a typed copy of the flags it acts on), how
it reports (one log line format) and how it fails (PipelineError with an exit status)."""

import shlex
from dataclasses import dataclass
from pathlib import Path

EXIT_INVALID, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 1, 130, 143


class PipelineError(Exception):
    """A problem the user can fix; printed without a traceback."""

    def __init__(self, message, exit_code=EXIT_FAILED):
        super().__init__(message)
        self.exit_code = exit_code


def log(message, stage=None):
    print(f"[stage {stage}] {message}" if stage else message, flush=True)


@dataclass
class RunOptions:
    """What the stages, scoring and shipping read of the command line, and train_mlx.py's declarations."""

    settings: dict  # train_mlx.SETTINGS: every key's declaration (fingerprints, checks)
    stage_numbers: list  # sorted(train_mlx.STAGES)
    argv: list  # as the user typed it, for the commands we suggest
    output_dir: str
    dataset: str
    strict: bool = False
    force: bool = False
    dry_run: bool = False
    test: bool = False
    demo: bool = False
    chat_template: str | None = None
    tokenizer: str | None = None  # with a .gguf base: the Hugging Face tokenizer directory to use
    eval_data: str | None = None
    test_limit: int | None = None
    bench: str | None = None  # "bfcl": --test and --evaluate also score on BFCL
    bench_limit: int | None = None  # BFCL entries per category; None: all
    blas: str | None = None
    memory_budget: float | None = None  # GB
    auto_fit: bool = False
    export: str | None = None
    model: str | None = None
    upload: str | None = None
    upload_gguf: bool = False
    verify: bool = True
    lmstudio_dir: str | None = None

    @property
    def output(self):
        return Path(self.output_dir)

    def rerun_command(self, *extra):
        """The command the user ran, as they typed it (plus `extra`), for hints that say what to run next."""
        argv = [a for a in self.argv if a not in extra]
        return shlex.join(["python", "train_mlx.py", *argv, *extra])
