"""Pure-Python work over a long list, shared among the machine's cores by forked processes (Linux only), and
with Python's cyclic collector paused.

Forked children share whatever the parent has loaded (a tokenizer, a schema) without pickling it; only their
results travel back. macOS does not fork safely once system frameworks are loaded, so there (and for short
lists, where starting a process costs more than it saves) everything runs in this process.
"""

import gc
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager

MIN_ITEMS = 400  # below this, one process is faster
MAX_PROCESSES = 8
_WORK = None  # (function, shares, args) for the forked children


def processes(count):
    if sys.platform != "linux" or count < MIN_ITEMS:
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), MAX_PROCESSES))


def map_shares(function, items, *args):
    """function(share, *args) over contiguous shares of `items`, concatenated in order; function must return a
    list. A child that dies (out of memory) has its share redone here."""
    shares = split_shares(items, processes(len(items)))
    if len(shares) <= 1:
        return function(items, *args)
    global _WORK
    _WORK = function, shares, args
    gc.freeze()  # a child's collector then skips what it inherited: no copy of every page the parent holds
    try:
        with ProcessPoolExecutor(len(shares) - 1, mp_context=multiprocessing.get_context("fork")) as pool:
            others = [pool.submit(_run_share, k) for k in range(1, len(shares))]
            results = function(shares[0], *args)
            for share, future in zip(shares[1:], others):
                try:
                    results += future.result()
                except BrokenProcessPool:
                    results += function(share, *args)
    finally:
        _WORK = None
        gc.unfreeze()
    return results


@contextmanager
def collector_paused():
    """Python's cyclic collector walks every object made so far each time it runs; while a long list's results pile
    up (none of them garbage: encoding 2,600 conversations left 20 objects in cycles) that cost a quarter to a third
    of validating or encoding them. Paused for the work, as it was after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def split_shares(items, workers):
    """Contiguous shares of nearly equal length, in order."""
    bounds = [round(len(items) * k / workers) for k in range(workers + 1)]
    return [items[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


def _run_share(k):
    function, shares, args = _WORK
    return function(shares[k], *args)
