"""memoize: cache a function's results in an LRUCache."""

import functools

from .lru import LRUCache


def memoize(capacity=128):
    def decorate(fn):
        cache = LRUCache(capacity)

        @functools.wraps(fn)
        def wrapper(*args):
            # TODO: support keyword arguments
            missing = object()
            result = cache.get(args, missing)
            if result is missing:
                result = fn(*args)
                cache.put(args, result)
            return result

        wrapper.cache = cache
        return wrapper

    return decorate
