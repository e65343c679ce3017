"""The version store: one random token per (database alias, table).

A cached result remembers the tokens of every table it read; it is served only
while all of them are unchanged. Writing a table replaces its token with a new
random 64-bit one (``bump``), which makes every entry that read the table dead.

invariant 4: tokens are random, so a token that was valid once is never valid
again, even after the cache server restarts or evicts version keys. A missing
version key means "unknown": the reader installs a fresh token with ``add``
(never overwriting one a writer set meanwhile) and the old entries, which hold
other tokens, stay dead.

A transaction that writes a table sets a *pending* token instead (a string,
with a timeout): no result is stored while a table it depends on is pending,
because the rows read may be about to change. The commit replaces it with a
normal token. If the process dies before that, the pending token expires
(``PENDING_TIMEOUT``) and the key is unknown again.

Normal tokens carry the time of the bump in their high bits (milliseconds,
above 64 random bits), which lets a replica alias refuse fills made too soon
after a write on its primary.

Every call here fails open: a cache error is logged and reported to the caller
as "no versions", which the read path treats as a miss.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.core.cache import BaseCache, caches

from . import conf, health, keys, l1

logger = logging.getLogger("ormcache")


class CacheUnavailable(Exception):
    """The cache backend failed; the caller goes to the database."""


#: Seconds a pending token lives if its transaction never reports its end.
PENDING_TIMEOUT = 300
#: Seconds the pending token set before an autocommit write statement lives.
STATEMENT_PENDING_TIMEOUT = 30


def new_token() -> int:
    return (time.time_ns() // 1_000_000) << 64 | secrets.randbits(64)


def new_pending_token() -> str:
    return f"pending:{secrets.token_hex(8)}"


def bumped_at(token: Any) -> float | None:
    """When a normal token was made (seconds since the epoch), or None."""
    return (token >> 64) / 1000 if type(token) is int else None


def storable(snapshot: Sequence[Any]) -> bool:
    """Results read under these tokens may be stored: none is pending or unknown."""
    return all(type(token) is int for token in snapshot)


def get_cache() -> BaseCache:
    """The cache of the version store; with ``ORMCACHE["L1"]`` on, behind the in-process
    tier (l1.py), which serves ``get_many`` from memory while Redis says it is current."""
    alias = conf.cache_alias()
    cache = caches[alias]
    return l1.wrap(cache, alias) if l1.enabled() else cache


class BadValue(CacheUnavailable):
    """The cache answered, but with a value its backend could not decode."""


def _is_outage(exc: Exception) -> bool:
    """Connection trouble (counts toward the breaker), as opposed to a bad stored value."""
    if isinstance(exc, (OSError, TimeoutError, ConnectionError)):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(
        names & {"ConnectionError", "TimeoutError", "ConnectionInterrupted", "BusyLoadingError"}
    )


def _call(method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call the cache through the circuit breaker: CacheUnavailable instead of an error."""
    alias = conf.cache_alias()
    if not health.available(alias):
        raise CacheUnavailable("circuit breaker open")
    try:
        result = method(*args, **kwargs)
    except Exception as exc:
        if not _is_outage(exc):
            raise BadValue(str(exc)) from exc
        health.record_failure(alias)
        logger.warning("ormcache: cache call failed, using the database: %s", exc)
        raise CacheUnavailable from exc
    health.record_success(alias)
    return result


def read_many(cache: BaseCache, cache_keys: Sequence[str]) -> dict[str, Any]:
    """One round trip for the result key and all version keys of a read."""
    _resync()
    try:
        return _call(cache.get_many, cache_keys)
    except BadValue:
        return _salvage(cache, cache_keys)


def _salvage(cache: BaseCache, cache_keys: Sequence[str]) -> dict[str, Any]:
    """Some key holds bytes the backend cannot decode (garbage, a foreign writer):
    read the keys one by one and delete the bad ones, which then read as missing."""
    found = {}
    for key in cache_keys:
        try:
            value = _call(cache.get, key)
        except BadValue as exc:
            logger.warning("ormcache: deleting the undecodable cache value %s: %s", key, exc)
            _call(cache.delete, key)
            continue
        if value is not None:
            found[key] = value
    return found


def _resync() -> None:
    """invariant 6: after a lost bump, invalidate everything before trusting the cache."""
    alias = conf.cache_alias()
    lost = health.lost_bumps(alias)
    if lost:
        resync = {key: new_token() for key in {*lost, keys.GLOBAL_VERSION_KEY}}
        _call(get_cache().set_many, resync, timeout=None)
        health.clear_lost_bumps(alias, resync)
        logger.warning("ormcache: invalidated everything after version bumps were lost")


def store(cache: BaseCache, key: str, value: Any, timeout: Any) -> None:
    _call(cache.set, key, value, timeout=timeout)


def ensure(cache: BaseCache, missing: Iterable[str]) -> dict[str, Any]:
    """Install fresh tokens for unknown version keys and return the current ones."""
    tokens = {key: new_token() for key in missing}
    lost = [key for key, token in tokens.items() if not _call(cache.add, key, token, timeout=None)]
    if lost:
        # A writer (or another reader) set these first: theirs is current.
        found = _call(cache.get_many, lost)
        for key in lost:
            if key not in found:
                raise CacheUnavailable(f"version key {key} vanished")
            tokens[key] = found[key]
    return tokens


def bump(cache: BaseCache, version_keys: Iterable[str], *, pending: bool | float = False) -> bool:
    """Give each key a new token; False when it could not be delivered (and remember that).

    ``pending`` makes pending tokens, which expire after PENDING_TIMEOUT seconds, or
    after ``pending`` seconds when it is a number.
    """
    make = new_pending_token if pending else new_token
    tokens = {key: make() for key in version_keys}
    if not tokens:
        return True
    if pending is True:
        timeout: float | None = PENDING_TIMEOUT
    else:
        timeout = pending or None
    try:
        failed = _call(cache.set_many, tokens, timeout=timeout)
    except CacheUnavailable:
        failed = list(tokens)
    if failed:
        logger.warning("ormcache: could not bump versions %s", sorted(failed))
        health.record_lost_bump(conf.cache_alias(), tokens)
        return False
    return True


def bump_tables(db_alias: str, tables: Iterable[str], *, pending: bool | float = False) -> bool:
    """Bump every key of ``tables``: their table keys and their row-level catch-all keys."""
    found = [key for table in sorted(tables) for key in keys.catch_all_keys(db_alias, table)]
    return bump(get_cache(), found, pending=pending)


def bump_global(*, pending: bool | float = False) -> bool:
    return bump(get_cache(), [keys.GLOBAL_VERSION_KEY], pending=pending)
