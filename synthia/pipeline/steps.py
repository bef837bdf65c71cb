"""The external steps of a run: each is a list[str] built by a pure function (shown with shlex.join before it runs,
and by --dry-run), run as a child process whose output streams to the terminal and, line by line, to a log."""

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

from synthia.pipeline import progress


class StepFailed(Exception):
    """A child process failed; the message names the stage, the step, the command, its last lines and a fix."""


def quantize_command(model_dir, out_dir, bits):
    """A quantized copy, written tensor by tensor (synthia.train.fuse; the same arithmetic as `mlx_lm convert -q`)."""
    return [sys.executable, "-m", "synthia.train.fuse", "quantize", "--hf-path", str(model_dir), "--mlx-path", str(out_dir),
            "--q-bits", str(bits)]


def export_command(model_dir, out_dir, name, chat_template, dataset, lmstudio_dir, verify):
    command = [sys.executable, "-m", "synthia.gguf.exporter", str(model_dir), str(out_dir), name, "--dataset", str(dataset)]
    command += ["--chat-template", str(chat_template)] if chat_template else []
    command += ["--lmstudio-dir", str(lmstudio_dir)] if lmstudio_dir else []
    return command + ([] if verify else ["--no-verify"])


LAUNCHER_VARIABLE = "SYNTHIA_LAUNCHER"  # e.g. "mlx.launch --hostfile hosts.json --": train on several machines


def worker_command(kind, job_file, launcher=None):
    """The worker on one job file. Training runs under `launcher`, a command prefix such as mlx.launch that starts
    one worker per rank (None: the words of $SYNTHIA_LAUNCHER, if set); the other jobs run on this machine."""
    if launcher is None:
        launcher = shlex.split(os.environ.get(LAUNCHER_VARIABLE, "")) if kind == "train" else []
    return [*launcher, sys.executable, "-m", "synthia.train.worker", kind, str(job_file)]


def fuse_command(model_dir, adapter_dir, save_path, dequantize):
    """Adapters fused into the base, streamed shard by shard (synthia.train.fuse; bit-identical to `mlx_lm fuse`)."""
    command = [sys.executable, "-m", "synthia.train.fuse", "fuse", "--model", str(model_dir), "--adapter-path",
               str(adapter_dir), "--save-path", str(save_path)]
    return command + ["--dequantize"] if dequantize else command


OOM_SIGNS = ("out of memory", "insufficient memory", "bad_alloc", "memoryerror", "failed to allocate")
# Python's OSError says errno 28; MLX's writers (save_safetensors, the fuse's shards) only say "Unable to write".
DISK_FULL_SIGNS = ("no space left on device", "errno 28", "enospc", "unable to write", "disk quota exceeded")


def failure_hint(returncode, tail, rerun, command=()):
    text = "\n".join(tail).lower()
    if returncode in (-9, 137) or any(sign in text for sign in OOM_SIGNS):
        return ("This looks like running out of memory. In order of cost to quality: set grad_checkpoint: true; "
                "lower batch_size (2 -> 1); lower max_seq_length (only if few examples are that long); "
                "lower num_layers (16 -> 8); keep train_bits: 4. Edit SETTINGS in train_mlx.py or pass --config.")
    if any(sign in text for sign in DISK_FULL_SIGNS):
        where = written_directory(command, tail)
        free = free_bytes(where)
        return (f"The disk is full: the step could not write to {where}"
                + (f" ({free / 1e6:.1f} MB free now)" if free is not None else "") + ". Free some space there, or "
                f"choose another --output-dir, then re-run (finished steps are skipped): {rerun}")
    return f"Read the output above; fix the cause and re-run (finished steps are skipped): {rerun}"


def written_directory(command, tail):
    """Where the failed step was writing: the path in an OSError's text, else the directory the command writes to
    (--save-path or --mlx-path of synthia.train.fuse; the job file's directory for the worker)."""
    for line in reversed(tail):
        quoted = re.search(r"No space left on device: '([^']+)'", line)
        if quoted:
            return str(Path(quoted.group(1)).parent)
    for flag in ("--save-path", "--mlx-path"):
        if flag in command[:-1]:
            return command[command.index(flag) + 1]
    return str(Path(command[-1]).parent) if command else "the output directory"


def free_bytes(path):
    """Free space on the disk holding `path` (or its nearest existing parent), or None."""
    for candidate in (Path(path), *Path(path).parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None


def without_tracebacks(lines, traceback_note):
    """The child's output with each Python traceback reduced to its last line (the error itself): the frames are
    for the log, not for the message the user reads first."""
    shown, inside = [], False
    for line in lines:
        if line.startswith("Traceback (most recent call last):"):
            inside = True
            continue
        if inside and (line.startswith((" ", "\t")) or not line.strip()):
            continue
        if inside:
            shown.append(f"{line}   ({traceback_note})")
            inside = False
            continue
        if line.startswith(("During handling of the above exception", "The above exception was the direct cause")):
            continue
        shown.append(line)
    return shown


def run_step(number, name, command, env, log_file, rerun):
    """Run one command, streaming its output to the terminal and, line by line, to log_file. A log that cannot be
    written (a full disk) stops being written; the step goes on and its failure is still reported."""
    print(f"[stage {number}] {name}: {shlex.join(command)}", flush=True)
    tail = deque(maxlen=40)
    started = time.perf_counter()
    log = StepLog(log_file)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                               bufsize=1)
    try:
        with progress.child_output(f"[stage {number}] ") as show:
            for line in process.stdout:
                log.write(line)
                show(line)
                tail.append(line.rstrip("\n"))
        returncode = process.wait()
    except KeyboardInterrupt:
        process.terminate()  # the child first; the lock is released last, on the way out
        process.wait()
        raise
    finally:
        log.close()
    if returncode != 0:
        shown = without_tracebacks(tail, log.traceback_note())[-25:]
        raise StepFailed(
            f"stage {number}: step '{name}' failed (exit code {returncode}).\n  command: {shlex.join(command)}\n"
            f"  last lines of its output ({log.note()}):\n"
            + "\n".join(f"    {line}" for line in shown) + f"\n  {failure_hint(returncode, tail, rerun, command)}")
    return round(time.perf_counter() - started, 2)


class StepLog:
    """stage.log, appended line by line. The first write that fails (ENOSPC) is remembered and ends the logging."""

    def __init__(self, path):
        self.path, self.error = path, None
        try:
            self.file = open(path, "a", buffering=1)
        except OSError as e:
            self.file, self.error = None, e

    def write(self, line):
        if self.file is None:
            return
        try:
            self.file.write(line)
        except OSError as e:
            self.error = e
            self.close()

    def close(self):
        if self.file is not None:
            try:
                self.file.close()
            except OSError as e:  # the last buffered line could not be flushed
                self.error = self.error or e
            self.file = None

    def note(self):
        if self.error is None:
            return f"full log: {self.path}"
        return f"{self.path} could not be written past some point: {self.error.strerror or self.error}"

    def traceback_note(self):
        return f"traceback in {self.path}" if self.error is None else "traceback not logged"
