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
from collections.abc import Iterable, Sequence
from typing import Any

from django.core.cache import BaseCache, caches

from . import conf, keys

logger = logging.getLogger("ormcache")


class CacheUnavailable(Exception):
    """The cache backend failed; the caller goes to the database."""


#: Seconds a pending token lives if its transaction never reports its end.
PENDING_TIMEOUT = 300


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
    return caches[conf.cache_alias()]


def read_many(cache: BaseCache, cache_keys: Sequence[str]) -> dict[str, Any]:
    """One round trip for the result key and all version keys of a read."""
    try:
        return cache.get_many(cache_keys)
    except Exception as exc:
        logger.warning("ormcache: cache read failed, using the database: %s", exc)
        raise CacheUnavailable from exc


def ensure(cache: BaseCache, missing: Iterable[str]) -> dict[str, Any]:
    """Install fresh tokens for unknown version keys and return the current ones."""
    missing = list(missing)
    tokens = {key: new_token() for key in missing}
    try:
        lost = [key for key, token in tokens.items() if not cache.add(key, token, timeout=None)]
        if lost:
            # A writer (or another reader) set these first: theirs is current.
            found = cache.get_many(lost)
            for key in lost:
                if key not in found:
                    raise CacheUnavailable(f"version key {key} vanished")
                tokens[key] = found[key]
    except CacheUnavailable:
        raise
    except Exception as exc:
        logger.warning("ormcache: cache write failed, using the database: %s", exc)
        raise CacheUnavailable from exc
    return tokens


def bump(cache: BaseCache, version_keys: Iterable[str], *, pending: bool = False) -> bool:
    """Give each key a new token; False (and a warning) when the cache refused."""
    make = new_pending_token if pending else new_token
    tokens = {key: make() for key in version_keys}
    if not tokens:
        return True
    try:
        failed = cache.set_many(tokens, timeout=PENDING_TIMEOUT if pending else None)
    except Exception as exc:
        logger.warning("ormcache: could not bump versions %s: %s", sorted(tokens), exc)
        return False
    if failed:
        logger.warning("ormcache: could not bump versions %s", sorted(failed))
        return False
    return True


def bump_tables(db_alias: str, tables: Iterable[str], *, pending: bool = False) -> bool:
    return bump(get_cache(), keys.version_keys(db_alias, tables), pending=pending)


def bump_global(*, pending: bool = False) -> bool:
    return bump(get_cache(), [keys.GLOBAL_VERSION_KEY], pending=pending)
