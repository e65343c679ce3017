"""Stampede protection: when a popular entry misses, one reader fills it, the others wait.

Without it, N processes that miss the same expensive entry at the same moment
(after a write invalidated it, or a deploy emptied the cache) all run it: N
expensive queries where one would do.

How it works, for one miss:

1. The reader tries ``cache.add(lock_key)``. The lock key names the entry *and
   the version snapshot* the reader took, so a lock only ever stands for a fill
   of the current versions.
2. The winner computes and stores as usual, then drops the lock.
3. The others poll: one ``get_many`` of the entry and its version keys, the same
   round trip as a hit. They take the entry only if it is current at the versions
   read in that same poll, so they never get a value older than the versions allow.
   If the versions moved meanwhile (a write), the entry being filled is dead on
   arrival: a waiter tries the lock of the new snapshot and fills that. If the
   lock was dropped without an entry (the winner failed), a waiter takes it over.
4. After ``ORMCACHE["STAMPEDE_WAIT"]`` seconds (default 5; 0 turns this off) a
   waiter stops waiting and computes the value itself: a slow or dead winner costs
   a bounded delay, never an error.

Nothing is protected when nothing would be stored: under a pending token (a
transaction is writing), on a replica within its lag, in shadow-verify mode
(every hit queries the database anyway), or when the cache fails (the reader
computes; fail open). Nor is a query that is cheap: the lock costs every miss two
round trips (``add``, ``delete``), more than N readers running a query of a few
milliseconds together cost the database. A query whose last fill in this process took
less than ``ORMCACHE["STAMPEDE_MIN_COST"]`` seconds (default 0.005; 0: lock every
miss) fills without the lock; one never filled here yet is protected.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from asgiref.sync import sync_to_async

from . import conf, keys, verify, versions

logger = logging.getLogger("ormcache")

#: (hit, value, current snapshot) of one poll; the snapshot is None when unknown.
PollResult = tuple[bool, Any, "tuple[Any, ...] | None"]

_FIRST_DELAY = 0.005
_MAX_DELAY = 0.05


#: The last fill time (seconds) of each query, by SQL digest, in this process.
_costs: dict[bytes, float] = {}
_MAX_COSTS = 4096
conf.forget_hooks.append(_costs.clear)


def worth_locking(name: bytes) -> bool:
    """The query ``name`` (its SQL digest) was not cheap at its last fill here, or never ran."""
    minimum = conf.stampede_min_cost()
    if minimum <= 0:
        return True
    cost = _costs.get(name)
    return cost is None or cost >= minimum


def record_cost(name: bytes, seconds: float) -> None:
    if len(_costs) >= _MAX_COSTS and name not in _costs:
        _costs.clear()  # a rare reset: unknown costs are locked again
    _costs[name] = seconds


def lock_key(key: str, snapshot: tuple[Any, ...]) -> str:
    digest = hashlib.blake2b(f"{key}\x00{snapshot!r}".encode(), digest_size=16)
    return f"{keys.PREFIX}:l:{digest.hexdigest()}"


def _wait_for(snapshot: tuple[Any, ...], protect: bool) -> float:
    if not protect or not versions.storable(snapshot) or verify.enabled():
        return 0.0
    return conf.stampede_wait()


def _try_lock(cache: Any, key: str, snapshot: tuple[Any, ...], wait: float) -> str | None:
    """The lock key if we took it; None if another reader holds it.

    Raises CacheUnavailable when the cache fails (the caller then just computes).
    """
    lock = lock_key(key, snapshot)
    try:
        taken = cache.add(lock, secrets.token_hex(8), timeout=math.ceil(wait) + 1)
    except Exception as exc:
        raise versions.CacheUnavailable from exc
    return lock if taken else None


def _release(cache: Any, lock: str) -> None:
    try:
        cache.delete(lock)
    except Exception as exc:  # it expires by itself
        logger.debug("ormcache: could not drop the fill lock %s: %s", lock, exc)


def _delays() -> Iterator[float]:
    delay = _FIRST_DELAY
    while True:
        yield delay
        delay = min(delay * 2, _MAX_DELAY)


def compute(
    cache: Any,
    key: str,
    snapshot: tuple[Any, ...],
    *,
    fill: Callable[[tuple[Any, ...]], Any],
    poll: Callable[[], PollResult],
    protect: bool = True,
) -> Any:
    """``fill(snapshot)`` (compute and store), unless another reader is already filling it.

    ``poll()`` reads the entry and the current versions (see ``PollResult``).
    """
    wait = _wait_for(snapshot, protect)
    if not wait:
        return fill(snapshot)
    deadline = time.monotonic() + wait
    try:
        lock = _try_lock(cache, key, snapshot, wait)
    except versions.CacheUnavailable:
        return fill(snapshot)
    delays = _delays()
    while lock is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            logger.debug("ormcache: stopped waiting for the fill of %s", key)
            return fill(snapshot)
        time.sleep(min(next(delays), remaining))
        hit, value, current = poll()
        if hit:
            return value
        if current is None:
            return fill(snapshot)
        snapshot = current
        if not versions.storable(snapshot):
            return fill(snapshot)
        try:
            # The versions moved (a new snapshot's lock), or the filler gave up (its lock).
            lock = _try_lock(cache, key, snapshot, wait)
        except versions.CacheUnavailable:
            return fill(snapshot)
        if lock is not None:
            hit, value, current = poll()  # it may have been stored just before we won
            if hit:
                _release(cache, lock)
                return value
    try:
        return fill(snapshot)
    finally:
        _release(cache, lock)


async def acompute(
    cache: Any,
    key: str,
    snapshot: tuple[Any, ...],
    *,
    fill: Callable[[tuple[Any, ...]], Awaitable[Any]],
    poll: Callable[[], PollResult],
    protect: bool = True,
) -> Any:
    """``compute`` for async callers: ``fill`` is awaited, cache calls run in a thread."""
    wait = _wait_for(snapshot, protect)
    if not wait:
        return await fill(snapshot)
    deadline = time.monotonic() + wait
    try_lock = sync_to_async(_try_lock)
    apoll = sync_to_async(poll)
    try:
        lock = await try_lock(cache, key, snapshot, wait)
    except versions.CacheUnavailable:
        return await fill(snapshot)
    delays = _delays()
    while lock is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return await fill(snapshot)
        await asyncio.sleep(min(next(delays), remaining))
        hit, value, current = await apoll()
        if hit:
            return value
        if current is None:
            return await fill(snapshot)
        snapshot = current
        if not versions.storable(snapshot):
            return await fill(snapshot)
        try:
            lock = await try_lock(cache, key, snapshot, wait)
        except versions.CacheUnavailable:
            return await fill(snapshot)
        if lock is not None:
            hit, value, current = await apoll()
            if hit:
                await sync_to_async(_release)(cache, lock)
                return value
    try:
        return await fill(snapshot)
    finally:
        await sync_to_async(_release)(cache, lock)
