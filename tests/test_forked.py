"""Work shared among forked processes (synthia.platform.forked): the same results, in order, whatever happens to a child."""

import os

from synthia.platform import forked


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


def test_shares_are_contiguous_nearly_equal_and_never_empty(two_processes):
    assert [len(s) for s in forked.split_shares(list(range(2601)), 2)] in ([1300, 1301], [1301, 1300])
    assert sum(forked.split_shares(list(range(10)), 4), []) == list(range(10))
    assert forked.split_shares([7], 2) == [[7]] and forked.map_shares(squares_with_pids, [3], 0)[0][0] == 9


def test_the_collector_is_paused_for_the_work_and_left_as_it_was(monkeypatch):
    import gc

    from synthia.data import encode

    assert gc.isenabled()
    with forked.collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with forked.collector_paused():
            pass
        assert not gc.isenabled()  # the caller's choice stands
    finally:
        gc.enable()
    seen = []
    monkeypatch.setattr(encode, "_encode_all", lambda *args: seen.append(gc.isenabled()) or [])
    encode.encode_many(None, [])
    assert seen == [False] and gc.isenabled()  # encoding a dataset runs with the collector paused
