"""A real LocMemCache that counts the calls ormcache makes, to show a hit is one round trip.

BaseCache implements ``get_many`` with ``get``; only the outermost call counts.
"""

import functools

from django.core.cache.backends.locmem import LocMemCache


def _counted(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        outermost = not self._depth
        if outermost:
            self.calls.append(method.__name__)
        self._depth += 1
        try:
            return method(self, *args, **kwargs)
        finally:
            self._depth -= 1

    return wrapper


class CountingLocMemCache(LocMemCache):
    calls: list[str] = []
    _depth = 0

    get = _counted(LocMemCache.get)
    get_many = _counted(LocMemCache.get_many)
    set = _counted(LocMemCache.set)
    add = _counted(LocMemCache.add)
    set_many = _counted(LocMemCache.set_many)
    delete = _counted(LocMemCache.delete)
