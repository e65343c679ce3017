"""Fail open, bounded: a per-process circuit breaker in front of the cache server.

Each cache call that fails (refused connection, a timeout from the backend's own
socket timeout, a broken reply) is counted; after ``BREAKER["threshold"]``
failures in a row the breaker opens and ormcache stops calling the cache for
``BREAKER["cooldown"]`` seconds: reads go straight to the database and a dead
cache costs nothing per query. After the cool-down one call is let through; a
success closes the breaker.

invariant 6 (lose no invalidation): a version bump that could not be delivered
is remembered. Before this process serves anything from the cache again, it
bumps the global version, which kills every entry in the cache, including those
the lost bump should have killed, and gives the keys it could not bump fresh
tokens (a delayed pending token would otherwise keep its table uncached until it
expires). Other processes that never saw a failure keep
serving until then: see docs/operations.md for the bound.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from . import conf

logger = logging.getLogger("ormcache")


@dataclass
class _Health:
    failures: int = 0
    open_until: float = 0.0
    lost_bumps: set[str] = field(default_factory=set)


_lock = threading.Lock()
_states: dict[str, _Health] = {}


def _state(alias: str) -> _Health:
    state = _states.get(alias)
    if state is None:
        with _lock:
            state = _states.setdefault(alias, _Health())
    return state


def available(alias: str) -> bool:
    """False while the breaker is open (no cache call is made at all)."""
    return _state(alias).open_until <= time.monotonic()


def record_success(alias: str) -> None:
    state = _state(alias)
    if state.failures:
        logger.warning("ormcache: the cache %r answers again", alias)
        state.failures = 0
        state.open_until = 0.0


def record_failure(alias: str) -> None:
    state = _state(alias)
    with _lock:
        state.failures += 1
        threshold, cooldown = conf.breaker()
        if state.failures >= threshold:
            state.open_until = time.monotonic() + cooldown
            logger.warning(
                "ormcache: %d cache failures in a row; using the database only for %.1fs",
                state.failures,
                cooldown,
            )


def record_lost_bump(alias: str, version_keys: Iterable[str]) -> None:
    _state(alias).lost_bumps.update(version_keys)


def lost_bumps(alias: str) -> set[str]:
    """The version keys whose bumps this process could not deliver."""
    return _state(alias).lost_bumps


def clear_lost_bumps(alias: str, delivered: Iterable[str]) -> None:
    _state(alias).lost_bumps.difference_update(delivered)


def reset() -> None:
    """Forget all failures (tests, and ``manage.py ormcache`` after an outage)."""
    with _lock:
        _states.clear()
