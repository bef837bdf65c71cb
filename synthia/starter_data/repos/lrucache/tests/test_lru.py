import pytest

from cache import LRUCache


def test_evicts_least_recently_used():
    cache = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.get("a")
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)


def test_rejects_zero_capacity():
    with pytest.raises(ValueError, match="at least 1"):
        LRUCache(0)
