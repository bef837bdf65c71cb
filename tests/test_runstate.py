"""The run lock (an OS lock that dies with its process) and the checkpoint header reader."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from synthia.pipeline import runstate

ROOT = Path(__file__).resolve().parents[1]
HOLD_LOCK = """
import sys, time
from pathlib import Path
from synthia.pipeline import runstate
with runstate.output_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(60)
"""


def start_lock_holder(directory):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(directory)], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_run_on_the_same_output_is_refused_naming_the_holder(tmp_path):
    holder = start_lock_holder(tmp_path)
    try:
        with pytest.raises(runstate.RunLocked, match=f"another run \\(pid {holder.pid}\\) is using {tmp_path}"):
            with runstate.output_lock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_of_a_killed_run_is_free_at_once(tmp_path):
    holder = start_lock_holder(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with runstate.output_lock(tmp_path):
        assert (tmp_path / ".synthia.owner").read_text() == str(__import__("os").getpid())


@pytest.mark.parametrize("content", ["", "not a pid", "0"])
def test_whatever_a_lock_file_holds_does_not_matter(tmp_path, content):
    (tmp_path / ".synthia.lock").write_text(content)
    with runstate.output_lock(tmp_path):
        pass


def test_checkpoint_iteration_reads_the_safetensors_header(tmp_path):
    header = json.dumps({"__metadata__": {"record": json.dumps({"iteration": 40})}}).encode()
    (tmp_path / "c.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)
    assert runstate.checkpoint_iteration(tmp_path / "c.safetensors") == 40
    assert runstate.checkpoint_iteration(tmp_path / "missing.safetensors") == 0
    (tmp_path / "bad.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops")
    assert runstate.checkpoint_iteration(tmp_path / "bad.safetensors") == 0


def test_training_lines_drive_a_progress_bar_on_a_terminal_and_print_plainly_elsewhere(capsys):
    from synthia.pipeline import progress

    lines = ["resuming from iteration 2\n", "iter 3/10  train 1.2345  lr 1e-05  512 tok/s  peak 0.10 GB  ETA 0m07s\n"]
    with progress.child_output("[stage 1] ", interactive=False) as show:
        for line in lines:
            show(line)
    assert capsys.readouterr().out == "".join(f"[stage 1] {line}" for line in lines)
    match = progress.TRAIN_LINE.search(lines[1])
    assert match.groups() == ("3", "10", "1.2345", "512")
    with progress.child_output("[stage 1] ", interactive=True) as show:
        for line in lines:
            show(line)
    assert "[stage 1] iter 3/10  train 1.2345" in capsys.readouterr().out
