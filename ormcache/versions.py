"""The version store: one random token per (database alias, table).

A cached result remembers the tokens of every table it read; it is served only
while all of them are unchanged. Writing a table replaces its token with a new
random 64-bit one (``bump``), which makes every entry that read the table dead.

invariant 4: tokens are random, so a token that was valid once is never valid
again, even after the cache server restarts or evicts version keys. A missing
version key means "unknown": the reader installs a fresh token with ``add``
(never overwriting one a writer set meanwhile) and the old entries, which hold
other tokens, stay dead.

Every call here fails open: a cache error is logged and reported to the caller
as "no versions", which the read path treats as a miss.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Sequence
from typing import Any

from django.core.cache import BaseCache, caches

from . import conf, keys

logger = logging.getLogger("ormcache")


class CacheUnavailable(Exception):
    """The cache backend failed; the caller goes to the database."""


def new_token() -> int:
    return secrets.randbits(64)


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


def bump(cache: BaseCache, version_keys: Iterable[str]) -> bool:
    """Give each key a new token; False (and a warning) when the cache refused."""
    tokens = {key: new_token() for key in version_keys}
    if not tokens:
        return True
    try:
        failed = cache.set_many(tokens, timeout=None)
    except Exception as exc:
        logger.warning("ormcache: could not bump versions %s: %s", sorted(tokens), exc)
        return False
    if failed:
        logger.warning("ormcache: could not bump versions %s", sorted(failed))
        return False
    return True


def bump_tables(db_alias: str, tables: Iterable[str]) -> bool:
    return bump(get_cache(), keys.version_keys(db_alias, tables))


def bump_global() -> bool:
    return bump(get_cache(), [keys.GLOBAL_VERSION_KEY])
