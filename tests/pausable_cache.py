"""Cache backends that can hold one reader between its SELECT and its next cache call.

The race tests need a reader that has its rows in hand but has not yet told the
cache anything about them, and they need it there deterministically. A ``Gate``
marks such a reader:

* it watches the reader's connection (an execute wrapper, Django's public hook)
  and notes when the SQL of a cached read has run (``reads.running_cached_read``);
* the first call the reader then makes to a pausable cache waits at the
  ``after_select`` stop: the gate sets ``reached`` and waits for ``release``.

With ormcache as designed that first call is the ``set()`` of the result key,
so the reader waits between its SELECT and its store. Stopping at the first cache
call, rather than only at ``set()``, also catches a read path that would take its
version snapshot *after* the query: that snapshot is a cache read, and it is held
like the store would be, so a write can commit before it. The optional
``before_select`` stop holds the reader after its snapshot, just before its SELECT.

A stop is two events (``threading.Event`` for threads, ``multiprocessing`` events
for forked processes); the gate is active only in the context that armed it
(a contextvar), so writers and the test itself never wait. Each stop holds once.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterator
from typing import Any

from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.memcached import PyMemcacheCache
from django_redis.cache import RedisCache

from ormcache import reads

RESULT_KEY_PREFIX = "ormcache:r:"

_active_gate: contextvars.ContextVar[Gate | None] = contextvars.ContextVar(
    "tests_active_gate", default=None
)


class Stop:
    """One place where the reader waits: it sets ``reached``, then waits for ``release``."""

    def __init__(self, event: Callable[[], Any], timeout: float) -> None:
        self.reached = event()
        self.release = event()
        self.timeout = timeout
        self.used = False

    def hold(self) -> None:
        self.used = True
        self.reached.set()
        if not self.release.wait(self.timeout):
            raise TimeoutError(f"a stopped reader was not released within {self.timeout}s")


class Gate:
    """The stops of one reader's next read (see the module docstring)."""

    def __init__(
        self,
        event: Callable[[], Any] = threading.Event,
        *,
        before_select: bool = False,
        timeout: float = 30.0,
    ) -> None:
        self.before_select = Stop(event, timeout) if before_select else None
        self.after_select = Stop(event, timeout)
        self._selected = False
        #: The cache call the reader was held at: (method, key or keys), or None.
        self.held_call: tuple[str, Any] | None = None

    @contextlib.contextmanager
    def armed(self, connection: Any) -> Iterator[Gate]:
        """Hold reads made in this context on ``connection`` at the gate's stops."""
        token = _active_gate.set(self)
        try:
            with connection.execute_wrapper(self._watch_sql):
                yield self
        finally:
            _active_gate.reset(token)
            # A read that made no cache call after its SELECT (nothing to store) was
            # never held: say so, so the test does not wait for it.
            for stop in (self.before_select, self.after_select):
                if stop is not None and not stop.used:
                    stop.reached.set()

    def _watch_sql(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        is_cached_read = reads.running_cached_read.get() and not self._selected
        if is_cached_read and self.before_select is not None and not self.before_select.used:
            self.before_select.hold()
        result = execute(sql, params, many, context)
        if is_cached_read:
            self._selected = True
        return result

    def before_cache_call(self, method: str, key: Any) -> None:
        if self._selected and not self.after_select.used:
            self.held_call = (method, key)
            self.after_select.hold()


def is_result_store(held_call: tuple[str, Any] | None) -> bool:
    """True if a reader was held at the ``set()`` of a result key (right before its store)."""
    return (
        held_call is not None
        and held_call[0] == "set"
        and str(held_call[1]).startswith(RESULT_KEY_PREFIX)
    )


class _PausableMixin:
    """Every call ormcache makes passes the active gate first."""

    def _check(self, name: str, key: Any) -> None:
        gate = _active_gate.get()
        if gate is not None:
            gate.before_cache_call(name, list(key) if name.endswith("_many") else key)

    def get(self, key, *args, **kwargs):
        self._check("get", key)
        return super().get(key, *args, **kwargs)

    def get_many(self, keys, *args, **kwargs):
        self._check("get_many", keys)
        return super().get_many(keys, *args, **kwargs)

    def set(self, key, *args, **kwargs):
        self._check("set", key)
        return super().set(key, *args, **kwargs)

    def add(self, key, *args, **kwargs):
        self._check("add", key)
        return super().add(key, *args, **kwargs)

    def set_many(self, data, *args, **kwargs):
        self._check("set_many", data)
        return super().set_many(data, *args, **kwargs)

    def delete(self, key, *args, **kwargs):
        self._check("delete", key)
        return super().delete(key, *args, **kwargs)


class PausableLocMemCache(_PausableMixin, LocMemCache):
    """LocMemCache for threads (its data is shared per LOCATION inside one process)."""


class PausableRedisCache(_PausableMixin, RedisCache):
    """django-redis RedisCache, shared by processes."""


class PausablePyMemcacheCache(_PausableMixin, PyMemcacheCache):
    """Django's pymemcache backend, shared by processes."""
