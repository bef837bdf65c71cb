"""Scenarios for repos/lrucache (Python, pytest): an LRU cache and a memoize decorator built on it."""

PUT_GOOD = ("        self._data[key] = value\n        self._data.move_to_end(key)\n"
            "        if len(self._data) > self.capacity:\n            self._data.popitem(last=False)\n")
PUT_BAD = ("        if len(self._data) >= self.capacity:\n            self._data.popitem(last=False)\n"
           "        self._data[key] = value\n        self._data.move_to_end(key)\n")

REPO = {
    "name": "lrucache",
    "lang": "python",
    "about": "a tiny caching library: an `OrderedDict`-based LRU cache with hit/miss counters and a `memoize` "
             "decorator on top",
    "history": [("Add memoize decorator", ["cache/memo.py", "tests/test_memo.py"])],
    "files": {
        "cache/lru.py": "`LRUCache`: `get` refreshes recency with `move_to_end`, `put` evicts the oldest entry "
                        "once over capacity, and `hits`/`misses` count lookups",
        "cache/memo.py": "the `memoize(capacity)` decorator, which keys an `LRUCache` by the positional "
                         "arguments",
        "cache/__init__.py": "re-exports `LRUCache` and `memoize`",
        "tests/test_lru.py": "eviction order and capacity validation tests",
        "tests/test_memo.py": "a test that a memoized function runs once per argument",
        "pyproject.toml": "metadata and pytest's `pythonpath`",
    },
    "symbols": [
        ("LRUCache", "the cache class itself"),
        ("memoize", "the decorator that caches a function's results"),
        ("move_to_end", "the `OrderedDict` call that marks a key as most recently used"),
    ],
    "qa": [
        {
            "ask": ["When the cache is full, which entry gets evicted? Does a get() count as using an entry?",
                    "How does eviction work in LRUCache exactly?"],
            "calls": [("read", {"file_path": "cache/lru.py"})],
            "answer": "The least recently used one. The `OrderedDict` is kept in recency order: both `put` and a "
                      "successful `get` call `move_to_end(key)`, so the front is always the stalest key, and "
                      "`put` drops it with `popitem(last=False)` once `len` exceeds `capacity`.\n\nSo yes, a "
                      "`get` hit counts as use. A miss doesn't change the order; it only bumps `misses`. "
                      "Overwriting an existing key also refreshes it without evicting anything.",
        },
        {
            "ask": ["Is memoize safe to use from several threads?",
                    "We want to use @memoize in a threaded worker. Any problem?"],
            "calls": [("read", {"file_path": "cache/memo.py"}), ("read", {"file_path": "cache/lru.py"})],
            "answer": "Not fully. Each `OrderedDict` call is atomic under the GIL, but `LRUCache.get` does two "
                      "steps (`key not in self._data`, then `move_to_end(key)`), and another thread's `put` can "
                      "evict the key in between, so `move_to_end` raises `KeyError`. The `hits`/`misses` "
                      "increments can also lose updates.\n\nTwo threads missing on the same key will both call "
                      "the function; that's harmless if it's pure. The simple fix is a `threading.Lock` around "
                      "the bodies of `get` and `put`.",
        },
    ],
    "tweaks": [
        {
            "ask": ["Bump memoize's default capacity to 256.", "Default memoize capacity should be 256, not 128."],
            "file": "cache/memo.py",
            "edits": [("def memoize(capacity=128):", "def memoize(capacity=256):")],
            "wrong_old": "def memoize(capacity: int = 128):",
            "summary": "`memoize()` now defaults to `capacity=256`",
        },
        {
            "ask": ["Make the capacity error say what was passed, e.g. 'capacity must be a positive integer, got "
                    "0'.",
                    "LRUCache's ValueError should include the bad capacity value."],
            "file": "cache/lru.py",
            "edits": [('raise ValueError("capacity must be at least 1")',
                       'raise ValueError(f"capacity must be a positive integer, got {capacity}")')],
            "test_fix": ("tests/test_lru.py", 'match="at least 1"', 'match="positive integer, got 0"'),
            "summary": "`LRUCache(0)` now raises `ValueError(\"capacity must be a positive integer, got 0\")`",
        },
        {
            "ask": ["Give LRUCache a repr like `LRUCache(2/10)` (size/capacity), it's painful in the debugger.",
                    "Add a __repr__ to LRUCache showing how full it is."],
            "file": "cache/lru.py",
            "edits": [("    def __len__(self):\n        return len(self._data)\n",
                       "    def __len__(self):\n        return len(self._data)\n\n    def __repr__(self):\n"
                       "        return f\"LRUCache({len(self._data)}/{self.capacity})\"\n")],
            "wrong_old": "    def __len__(self) -> int:\n        return len(self._data)\n",
            "summary": "`repr(cache)` now shows `LRUCache(size/capacity)`",
        },
        {
            "ask": ["Add a reset_stats() method that zeroes hits and misses.",
                    "I need to reset the hit/miss counters between benchmark runs. Add `reset_stats()`."],
            "file": "cache/lru.py",
            "edits": [("    def __len__(self):\n",
                       "    def reset_stats(self):\n        self.hits = self.misses = 0\n\n    def __len__(self):\n")],
            "summary": "`LRUCache.reset_stats()` sets `hits` and `misses` back to 0 without touching the entries",
        },
    ],
    "bugs": [
        {
            "file": "cache/lru.py",
            "good": "        self._data.move_to_end(key)\n        self.hits += 1\n",
            "bad": "        self.hits += 1\n",
            "report": ["The cache evicts entries we read a moment ago. Tests are failing too.",
                       "test_evicts_least_recently_used fails on my branch and I don't see why."],
            "cause": "`get` no longer called `move_to_end(key)` on a hit, so reads didn't refresh recency and the "
                     "cache behaved like FIFO",
            "review": "Dropping `self._data.move_to_end(key)` from `get` turns the LRU into a FIFO: a key read a "
                      "moment ago can be evicted next. That is the defining property of the class.",
            "commit": "Avoid reordering on get",
        },
        {
            "file": "cache/lru.py",
            "good": "popitem(last=False)",
            "bad": "popitem(last=True)",
            "report": ["Putting a new key into a full cache seems to throw that same key away immediately.",
                       "The eviction test is red after the refactor."],
            "cause": "`put` evicted with `popitem(last=True)`, which removes the newest entry (the one just "
                     "inserted) instead of the oldest",
            "review": "`popitem(last=True)` pops the most recent entry, which right after `move_to_end` is the key "
                      "just inserted. A full cache would then reject every new key. It must be `last=False`.",
            "commit": "Use default popitem order",
        },
        {
            "file": "cache/memo.py",
            "good": "            missing = object()\n            result = cache.get(args, missing)\n"
                    "            if result is missing:\n",
            "bad": "            result = cache.get(args)\n            if result is None:\n",
            "report": ["A memoized lookup that returns None runs every single time, the cache never helps.",
                       "Functions returning None aren't cached by @memoize."],
            "repro": "python -c \"from cache import memoize\ncalls = []\n@memoize()\ndef f(x):\n    calls.append(x)\n"
                     "f(1); f(1); print(calls)\"",
            "locate": "def wrapper",
            "regression": ("tests/test_memo.py",
                           "def test_none_results_are_cached():\n    calls = []\n\n    @memoize()\n"
                           "    def lookup(key):\n        calls.append(key)\n\n    lookup(\"x\")\n    lookup(\"x\")\n"
                           "    assert calls == [\"x\"]\n"),
            "cause": "`wrapper` used `None` as the 'not cached' marker, so a cached `None` result looked like a "
                     "miss and the function ran again",
            "review": "Using `None` as the miss marker means any function that returns `None` is never served "
                      "from the cache (and counts a miss each time). The private `missing = object()` sentinel "
                      "was there for that reason.",
            "commit": "Simplify memoize lookup",
        },
        {
            "file": "cache/lru.py",
            "good": PUT_GOOD,
            "bad": PUT_BAD,
            "report": ["Updating an existing key in a full LRUCache evicts some other entry.",
                       "If the cache is full and I put() a key that's already there, another key disappears."],
            "repro": "python -c \"from cache import LRUCache\nc = LRUCache(2)\nc.put('a', 1); c.put('b', 2); "
                     "c.put('b', 20)\nprint(len(c), c.get('a'))\"",
            "locate": "def put",
            "regression": ("tests/test_lru.py",
                           "def test_updating_a_key_does_not_evict():\n    cache = LRUCache(2)\n"
                           "    cache.put(\"a\", 1)\n    cache.put(\"b\", 2)\n    cache.put(\"b\", 20)\n"
                           "    assert len(cache) == 2\n"),
            "cause": "`put` evicted before inserting, whenever the cache was full, even when the key was already "
                     "present and nothing new was being added",
            "review": "Evicting before the insert (`>= self.capacity`) also fires when `key` is already present, "
                      "so updating a value in a full cache throws away an unrelated entry. Insert first and "
                      "evict only when `len` exceeds `capacity`, as before.",
            "commit": "Evict before inserting",
        },
    ],
    "features": [
        {
            "ask": ["Support `key in cache` on LRUCache. It must not count as a hit or change the eviction order.",
                    "Add __contains__ to LRUCache without touching recency or the stats."],
            "locate": "def __len__",
            "test_file": "tests/test_lru.py",
            "test": "def test_contains_does_not_touch_recency():\n    cache = LRUCache(2)\n    cache.put(\"a\", 1)\n"
                    "    cache.put(\"b\", 2)\n    assert \"a\" in cache\n    cache.put(\"c\", 3)\n"
                    "    assert \"a\" not in cache and cache.hits == 0\n",
            "impl": [("cache/lru.py", "    def __len__(self):\n",
                      "    def __contains__(self, key):\n        return key in self._data\n\n    def __len__(self):\n")],
            "summary": "`LRUCache.__contains__` checks the dict directly, so `key in cache` neither refreshes "
                       "the key nor counts as a hit",
        },
        {
            "ask": ["Add a `hit_rate` property to LRUCache: hits / lookups, 0.0 before any lookup.",
                    "We want cache.hit_rate for our metrics (0.0 when nothing was looked up yet)."],
            "locate": "def __len__",
            "test_file": "tests/test_lru.py",
            "test": "def test_hit_rate():\n    cache = LRUCache(1)\n    assert cache.hit_rate == 0.0\n"
                    "    cache.put(\"k\", 1)\n    cache.get(\"k\")\n    cache.get(\"missing\")\n"
                    "    assert cache.hit_rate == 0.5\n",
            "impl": [("cache/lru.py", "    def __len__(self):\n",
                      "    @property\n    def hit_rate(self):\n        lookups = self.hits + self.misses\n"
                      "        return self.hits / lookups if lookups else 0.0\n\n    def __len__(self):\n")],
            "summary": "`LRUCache.hit_rate` returns `hits / (hits + misses)`, or `0.0` before the first lookup",
        },
        {
            "ask": ["memoize should accept keyword arguments; f(3, exp=3) currently raises TypeError.",
                    "Make @memoize work with kwargs. Treat f(1, b=2) and f(1, 2) as different keys, that's fine."],
            "locate": "def wrapper",
            "test_file": "tests/test_memo.py",
            "test": "def test_keyword_arguments_are_part_of_the_key():\n    @memoize()\n    def power(base, exp=2):\n"
                    "        return base**exp\n\n    assert (power(3), power(3, exp=3), power(3, exp=3)) == (9, 27, 27)\n"
                    "    assert power.cache.misses == 2\n",
            "impl": [("cache/memo.py",
                      "        def wrapper(*args):\n            # TODO: support keyword arguments\n"
                      "            missing = object()\n            result = cache.get(args, missing)\n"
                      "            if result is missing:\n                result = fn(*args)\n"
                      "                cache.put(args, result)\n",
                      "        def wrapper(*args, **kwargs):\n            key = (args, tuple(sorted(kwargs.items())))\n"
                      "            missing = object()\n            result = cache.get(key, missing)\n"
                      "            if result is missing:\n                result = fn(*args, **kwargs)\n"
                      "                cache.put(key, result)\n")],
            "summary": "`memoize` now keys on `(args, sorted kwargs)`, so keyword calls work; `f(1, b=2)` and "
                       "`f(1, 2)` are cached separately",
            "clarify": {
                "vague": ["memoize doesn't work with keyword arguments. Can you sort that out?",
                          "Make memoize handle kwargs."],
                "question": "One decision first: should `f(1, b=2)` and `f(1, 2)` share a cache entry? Sharing "
                            "means binding every call with `inspect.signature` (handles defaults, but costs time "
                            "on each call). Keeping them separate is a small change to the key, with the only "
                            "downside that the same value may be cached twice.",
                "answer": "Separate entries are fine, keep it cheap.",
            },
        },
    ],
    "refactors": [
        {
            "ask": ["Pull the eviction in LRUCache.put into a private `_evict_if_full()` method.",
                    "Refactor put(): move the eviction logic into its own helper."],
            "read": ["cache/lru.py"],
            "edits": [("cache/lru.py", "        if len(self._data) > self.capacity:\n            self._data.popitem(last=False)\n\n",
                       "        self._evict_if_full()\n\n    def _evict_if_full(self):\n"
                       "        if len(self._data) > self.capacity:\n            self._data.popitem(last=False)\n\n")],
            "summary": "`put` now calls `_evict_if_full()`, which holds the capacity check and the `popitem`",
        },
        {
            "ask": ["In memo.py, `missing = object()` is created on every call. Make it a module-level "
                    "`_MISSING` sentinel.",
                    "Hoist the per-call sentinel in memoize to a module constant."],
            "read": ["cache/memo.py"],
            "edits": [("cache/memo.py", "from .lru import LRUCache\n", "from .lru import LRUCache\n\n_MISSING = object()\n"),
                      ("cache/memo.py", "            missing = object()\n            result = cache.get(args, missing)\n"
                                        "            if result is missing:\n",
                       "            result = cache.get(args, _MISSING)\n            if result is _MISSING:\n")],
            "summary": "The sentinel is now one module-level `_MISSING` object instead of a new `object()` per call",
        },
        {
            "ask": ["Rename LRUCache._data to _entries, it reads better.", "Call the OrderedDict `_entries` instead "
                    "of `_data` in LRUCache."],
            "grep": r"_data\b",
            "edits": [("cache/lru.py", "self._data", "self._entries", True)],
            "summary": "`LRUCache._data` is now `_entries`; it's private and nothing outside `cache/lru.py` "
                       "used it",
        },
    ],
    "reviews": [
        {
            "ask": ["Review cache/memo.py please, we're about to use it widely.",
                    "Could you code-review the memoize decorator?"],
            "files": ["cache/memo.py", "tests/test_memo.py"],
            "comments": "1. **Keyword arguments (line 13).** `wrapper(*args)` rejects any keyword call with "
                        "`TypeError`, as the TODO says. Worth fixing before wide use.\n2. **Unhashable "
                        "arguments.** A list argument raises `TypeError: unhashable type` from the dict lookup; "
                        "either document it or fall back to calling `fn` uncached.\n3. **Sentinel per call "
                        "(line 15).** `missing = object()` allocates on every call; a module-level sentinel is "
                        "enough.\n4. **No way to clear.** `wrapper.cache` is exposed, but there is no "
                        "`cache_clear()` like `functools.lru_cache` has, which tests usually want.\n5. **Tests.** "
                        "Only positive integers are covered; add a `None`-returning function and a capacity-1 "
                        "eviction case.\n\nThe sentinel approach itself is right: it caches `None` results "
                        "correctly.",
        },
    ],
    "plans": [
        {
            "ask": ["Entries should expire after a TTL. Plan the change before writing code.",
                    "Add time-based expiry to the cache. Plan only for now."],
            "explore": [[("read", {"file_path": "cache/lru.py"}), ("grep", {"pattern": "LRUCache\\("})]],
            "plan": "1. Store `(value, expires_at)` in the `OrderedDict` and take a `clock` argument "
                    "(default `time.monotonic`) so tests don't sleep.\n2. `LRUCache(capacity, ttl=None)`: `None` "
                    "keeps today's behaviour, so the callers found above are unaffected.\n3. In `get`, treat an "
                    "expired entry as a miss and delete it.\n4. Keep eviction LRU-only; expired entries are "
                    "cleaned lazily on access.\n5. Tests with a fake clock: expiry, refresh on `put`, and no "
                    "expiry when `ttl=None`.",
            "question": "Should reading an entry extend its TTL (sliding expiry), or should it expire a fixed "
                        "time after the `put`?",
        },
    ],
    "tradeoffs": [
        {
            "ask": ["Why do we have our own memoize instead of functools.lru_cache?",
                    "Should we drop memoize and use functools.lru_cache?"],
            "read": ["cache/memo.py"],
            "answer": "`functools.lru_cache` is faster (C implementation), thread-safe, supports keyword "
                      "arguments and has `cache_clear()` and `cache_info()`. Ours is slower and lacks kwargs.\n\n"
                      "What ours gives you is the `LRUCache` object itself on `wrapper.cache`: you can inspect "
                      "`hits`/`misses` per function and reuse the same cache class elsewhere. `cache_info()` "
                      "covers the counters too, though.\n\nUnless something relies on `wrapper.cache`, I'd switch "
                      "to `functools.lru_cache(maxsize=...)` and keep `LRUCache` for explicit caches. A grep for "
                      "`.cache.` would tell us whether anything does.",
        },
    ],
    "extra_features": [
        {
            "ask": ["Add `peek(key, default=None)`: read a value without refreshing it or counting a hit.",
                    "We need LRUCache.peek() that doesn't affect eviction order or the stats."],
            "locate": "def __len__",
            "test_file": "tests/test_lru.py",
            "test": "def test_peek_does_not_count_or_refresh():\n    cache = LRUCache(2)\n    cache.put(\"a\", 1)\n"
                    "    cache.put(\"b\", 2)\n    assert cache.peek(\"a\") == 1 and cache.hits == 0\n"
                    "    cache.put(\"c\", 3)\n    assert cache.peek(\"a\") is None\n",
            "impl": [("cache/lru.py", "    def __len__(self):\n",
                      "    def peek(self, key, default=None):\n"
                      "        \"\"\"The value for key without refreshing it or touching the stats.\"\"\"\n"
                      "        return self._data.get(key, default)\n\n    def __len__(self):\n")],
            "summary": "Added `LRUCache.peek(key, default=None)`, a plain dict lookup that neither refreshes the "
                       "key nor changes `hits`/`misses`",
        },
        {
            "ask": ["Add clear() to LRUCache: drop every entry and reset the counters.",
                    "LRUCache needs a clear() method (entries and stats)."],
            "locate": "def __len__",
            "test_file": "tests/test_lru.py",
            "test": "def test_clear_empties_cache_and_stats():\n    cache = LRUCache(2)\n    cache.put(\"a\", 1)\n"
                    "    cache.get(\"a\")\n    cache.clear()\n    assert (len(cache), cache.hits, cache.misses) == (0, 0, 0)\n",
            "impl": [("cache/lru.py", "    def __len__(self):\n",
                      "    def clear(self):\n        self._data.clear()\n        self.hits = self.misses = 0\n\n"
                      "    def __len__(self):\n")],
            "summary": "Added `LRUCache.clear()`, which empties the `OrderedDict` and zeroes `hits` and `misses`",
        },
    ],
}
