"""Pure-Python work over a long list, shared among the machine's cores by forked processes (Linux only).

Forked children share whatever the parent has loaded (a tokenizer, a schema) without pickling it; only their
results travel back. macOS does not fork safely once system frameworks are loaded, so there (and for short
lists, where starting a process costs more than it saves) everything runs in this process.
"""

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

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
    workers = processes(len(items))
    if workers <= 1:
        return function(items, *args)
    size = -(-len(items) // workers)
    shares = [items[k:k + size] for k in range(0, len(items), size)]
    global _WORK
    _WORK = function, shares, args
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
    return results


def _run_share(k):
    function, shares, args = _WORK
    return function(shares[k], *args)
