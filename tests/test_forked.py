"""Work shared among forked processes (synthia.forked): the same results, in order, whatever happens to a child."""

import os

import pytest

from synthia import forked, validate
from tests.sample_data import records


@pytest.fixture
def two_processes(monkeypatch):
    monkeypatch.setattr(forked, "MIN_ITEMS", 1)
    monkeypatch.setattr(forked, "MAX_PROCESSES", 2)
    monkeypatch.setattr(forked.os, "sched_getaffinity", lambda _pid: {0, 1}, raising=False)
    monkeypatch.setattr(forked.sys, "platform", "linux")


def squares_with_pids(share, offset):
    return [(x * x + offset, os.getpid()) for x in share]


def test_shares_come_back_in_order_from_two_processes(two_processes):
    results = forked.map_shares(squares_with_pids, list(range(9)), 1)
    assert [r for r, _ in results] == [x * x + 1 for x in range(9)]
    assert len({pid for _, pid in results}) == 2 and results[0][1] == os.getpid()  # the first share stays here


PARENT = os.getpid()


def dies_in_a_child(share):
    if os.getpid() != PARENT:
        os._exit(3)  # as the kernel's out-of-memory killer would end it
    return [x + 100 for x in share]


def test_a_share_whose_child_dies_is_done_here(two_processes):
    assert forked.map_shares(dies_in_a_child, list(range(6))) == [x + 100 for x in range(6)]


def test_one_process_on_macos_and_for_short_lists(monkeypatch):
    monkeypatch.setattr(forked.sys, "platform", "darwin")
    assert forked.processes(10_000) == 1
    monkeypatch.setattr(forked.sys, "platform", "linux")
    assert forked.processes(forked.MIN_ITEMS - 1) == 1


def test_validation_in_shares_reports_what_one_process_does(two_processes, monkeypatch, tmp_path):
    """Duplicates across the boundary of the shares, errors and warnings in both, line numbers kept."""
    import json

    lines = [json.dumps(r) for r in records(per_category=3)]
    lines = lines + ["{not json", "", lines[0], json.dumps({"messages": []})] + lines[:2]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    shared = validate.validate_file(path)
    monkeypatch.setattr(forked, "processes", lambda _count: 1)
    alone = validate.validate_file(path)
    assert [str(p) for p in shared.errors] == [str(p) for p in alone.errors] and shared.errors
    assert [str(p) for p in shared.warnings] == [str(p) for p in alone.warnings]
    assert sum("duplicate of line 1" in str(w) for w in shared.warnings) == 2
    assert [(e.line, e.fingerprint, e.json_text) for e in shared.examples] == \
        [(e.line, e.fingerprint, e.json_text) for e in alone.examples]
    assert shared.lines == alone.lines == len(lines)
