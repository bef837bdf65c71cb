"""The external steps of a run: each is a list[str] built by a pure function (shown with shlex.join before it runs,
and by --dry-run), run as a child process whose output streams to the terminal and, line by line, to a log."""

import os
import shlex
import subprocess
import sys
import time
from collections import deque

from synthia import progress


class StepFailed(Exception):
    """A child process failed; the message names the stage, the step, the command, its last lines and a fix."""


def quantize_command(model_dir, out_dir, bits):
    """A quantized copy, written tensor by tensor (synthia.fuse; the same arithmetic as `mlx_lm convert -q`)."""
    return [sys.executable, "-m", "synthia.fuse", "quantize", "--hf-path", str(model_dir), "--mlx-path", str(out_dir),
            "--q-bits", str(bits)]


def export_command(model_dir, out_dir, name, chat_template, dataset, lmstudio_dir, verify):
    command = [sys.executable, "-m", "synthia.gguf_export", str(model_dir), str(out_dir), name, "--dataset", str(dataset)]
    command += ["--chat-template", str(chat_template)] if chat_template else []
    command += ["--lmstudio-dir", str(lmstudio_dir)] if lmstudio_dir else []
    return command + ([] if verify else ["--no-verify"])


LAUNCHER_VARIABLE = "SYNTHIA_LAUNCHER"  # e.g. "mlx.launch --hostfile hosts.json --": train on several machines


def worker_command(kind, job_file, launcher=None):
    """The worker on one job file. Training runs under `launcher`, a command prefix such as mlx.launch that starts
    one worker per rank (None: the words of $SYNTHIA_LAUNCHER, if set); the other jobs run on this machine."""
    if launcher is None:
        launcher = shlex.split(os.environ.get(LAUNCHER_VARIABLE, "")) if kind == "train" else []
    return [*launcher, sys.executable, "-m", "synthia.worker", kind, str(job_file)]


def fuse_command(model_dir, adapter_dir, save_path, dequantize):
    """Adapters fused into the base, streamed shard by shard (synthia.fuse; bit-identical to `mlx_lm fuse`)."""
    command = [sys.executable, "-m", "synthia.fuse", "fuse", "--model", str(model_dir), "--adapter-path",
               str(adapter_dir), "--save-path", str(save_path)]
    return command + ["--dequantize"] if dequantize else command


OOM_SIGNS = ("out of memory", "insufficient memory", "bad_alloc", "memoryerror", "failed to allocate")


def failure_hint(returncode, tail, rerun):
    text = "\n".join(tail).lower()
    if returncode in (-9, 137) or any(sign in text for sign in OOM_SIGNS):
        return ("This looks like running out of memory. In order of cost to quality: set grad_checkpoint: true; "
                "lower batch_size (2 -> 1); lower max_seq_length (only if few examples are that long); "
                "lower num_layers (16 -> 8); keep train_bits: 4. Edit SETTINGS in train_mlx.py or pass --config.")
    return f"Read the output above; fix the cause and re-run (finished steps are skipped): {rerun}"


def run_step(number, name, command, env, log_file, rerun):
    """Run one command, streaming its output to the terminal and, line by line, to log_file."""
    print(f"[stage {number}] {name}: {shlex.join(command)}", flush=True)
    tail = deque(maxlen=25)
    started = time.perf_counter()
    with open(log_file, "a", buffering=1) as logf:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                   bufsize=1)
        try:
            with progress.child_output(f"[stage {number}] ") as show:
                for line in process.stdout:
                    logf.write(line)
                    show(line)
                    tail.append(line.rstrip("\n"))
            returncode = process.wait()
        except KeyboardInterrupt:
            process.terminate()  # the child first; the lock is released last, on the way out
            process.wait()
            raise
    if returncode != 0:
        raise StepFailed(
            f"stage {number}: step '{name}' failed (exit code {returncode}).\n  command: {shlex.join(command)}\n"
            f"  last lines of its output (full log: {log_file}):\n"
            + "\n".join(f"    {line}" for line in tail) + f"\n  {failure_hint(returncode, tail, rerun)}")
    return round(time.perf_counter() - started, 2)
