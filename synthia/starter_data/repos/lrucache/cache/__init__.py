from .lru import LRUCache
from .memo import memoize
