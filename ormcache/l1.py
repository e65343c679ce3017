"""The in-process tier (L1): a hit served from this process's memory, never stale.

Off by default; ``ORMCACHE["L1"] = {"enabled": True}`` turns it on for a Redis cache.
``versions.get_cache()`` then hands out an :class:`L1Cache` that wraps the Django cache:
``get_many`` answers from memory what it can and asks Redis for the rest; every write
goes to Redis and drops the keys from memory. Nothing else in ormcache knows about it.

What is kept: version tokens (``ormcache:v:``, normal tokens only: pending ones are
short-lived and never worth it), result entries (``ormcache:r:``) and page entries
(``ormcache:p:``), in an LRU bounded by ``max_bytes``.

How it stays coherent (docs/how-it-works.md, "The in-process tier"): each process opens
one *tracker* connection to Redis, subscribes it to ``__redis__:invalidate`` and turns on
server-assisted client-side caching for it, redirected to itself, in broadcast mode::

    CLIENT TRACKING on REDIRECT <own id> BCAST PREFIX <ormcache:v:> PREFIX <ormcache:r:> ...

From then on Redis sends the tracker the name of every key under those prefixes that any
client modifies, and of every key that expires or is evicted, and a null on FLUSHDB or
FLUSHALL. Before a read trusts memory, it drains the tracker socket without blocking
(under a lock) and applies what arrived. A writer sets its pending token in Redis
*before* its SQL statement runs, and Redis writes the invalidation to every tracker
before it answers that writer, so by the time the statement can commit the invalidation
is already in this process's socket: the drain finds it.

Bounded trust: memory is trusted only while the tracker is connected and has heard
from Redis within ``max_silence`` seconds: the read path sends ``PING`` through the
tracker every ``max_silence / 4`` and a pong proves that every invalidation Redis made
before it has arrived. A dead tracker clears memory; until it is back (and has heard
from Redis), reads go to Redis as without L1. A fetch from Redis that an invalidation
overtakes (the key changed while the ``get_many`` was in flight) is not kept.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import ssl
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register

from . import conf, keys

logger = logging.getLogger("ormcache")

DEFAULTS: dict[str, Any] = {"enabled": False, "max_bytes": 64 * 1024 * 1024, "max_silence": 1.0}
#: The prefixes (of ormcache's own key names) whose values memory keeps and Redis tracks.
TRACKED = (f"{keys.PREFIX}:v:", f"{keys.PREFIX}:r:", f"{keys.PREFIX}:p:")
_VERSION_PREFIX = TRACKED[0]
_CHANNEL = b"__redis__:invalidate"
#: Seconds between two attempts to (re)connect the tracker after a failure.
RECONNECT_INTERVAL = 1.0
#: A value larger than this share of ``max_bytes`` is not kept (one must not flush all).
_LARGEST_SHARE = 8
_MISSING = object()


def settings_of(raw: Any = None) -> dict[str, Any]:
    """``ORMCACHE["L1"]`` merged over the defaults (``raw`` for checks)."""
    if raw is None:
        raw = conf.get_settings().get("L1") or {}
    return {**DEFAULTS, **raw} if isinstance(raw, dict) else dict(DEFAULTS)


_enabled_memo: list[bool | None] = [None]


def enabled() -> bool:
    value = _enabled_memo[0]
    if value is None:
        value = _enabled_memo[0] = bool(settings_of()["enabled"])
    return value


# --- the tracker: one connection per process and cache alias ------------------------------


class _Disconnected(Exception):
    pass


def _parse(buf: bytearray, pos: int) -> tuple[Any, int] | None:
    """One RESP2 reply from ``buf`` at ``pos``: (value, next position), or None if incomplete."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None
    kind, line, pos = buf[pos], bytes(buf[pos + 1 : end]), end + 2
    if kind == 0x2B:  # +simple string
        return line, pos
    if kind == 0x2D:  # -error
        return _Disconnected(line.decode(errors="replace")), pos
    if kind == 0x3A:  # :integer
        return int(line), pos
    if kind == 0x24:  # $bulk string
        size = int(line)
        if size < 0:
            return None, pos
        if len(buf) < pos + size + 2:
            return None
        return bytes(buf[pos : pos + size]), pos + size + 2
    if kind == 0x2A:  # *array
        size = int(line)
        if size < 0:
            return None, pos
        items = []
        for _ in range(size):
            parsed = _parse(buf, pos)
            if parsed is None:
                return None
            item, pos = parsed
            items.append(item)
        return items, pos
    raise _Disconnected(f"unexpected reply type {chr(kind)!r}")


def _command(*parts: Any) -> bytes:
    encoded = [part if isinstance(part, bytes) else str(part).encode() for part in parts]
    return b"".join(
        [f"*{len(encoded)}\r\n".encode()]
        + [b"$%d\r\n%s\r\n" % (len(part), part) for part in encoded]
    )


def redis_connection_for(cache: Any) -> Any:
    """A new, unconnected redis-py connection to the server ``cache`` writes to, or None.

    It has the cache's own address, credentials and TLS settings (its pool's connection
    class and arguments), speaking RESP2 so that invalidations arrive as pub/sub messages.
    """
    client = None
    if hasattr(cache, "client") and hasattr(cache.client, "get_client"):  # django-redis
        client = cache.client.get_client(write=True)
    elif hasattr(cache, "_cache") and hasattr(cache._cache, "get_client"):  # Django's own
        client = cache._cache.get_client(None, write=True)
    pool = getattr(client, "connection_pool", None)
    if pool is None or not hasattr(pool, "connection_class"):
        return None
    return pool.connection_class(**{**pool.connection_kwargs, "protocol": 2})


class _Tracker:
    """The tracker connection: RESP2, subscribed to its own invalidations, read without
    blocking. Not thread-safe: the tier calls it under its lock."""

    def __init__(self, cache: Any, prefixes: Sequence[str]) -> None:
        self.connection = redis_connection_for(cache)
        if self.connection is None:
            raise _Disconnected("the cache has no Redis connection pool")
        timeout = getattr(self.connection, "socket_connect_timeout", None) or getattr(
            self.connection, "socket_timeout", None
        )
        self.connection.connect()  # address, AUTH, TLS, client name: redis-py's handshake
        sock = self.connection._sock
        sock.settimeout(timeout or 5.0)
        self.sock = sock
        self.buffer = bytearray()
        self.pings: collections.deque[tuple[int, float]] = collections.deque()
        self.sequence = 0
        self.last_ping = 0.0
        self._send(_command("CLIENT", "ID"))
        client_id = self._reply()
        tracking = ["CLIENT", "TRACKING", "on", "REDIRECT", client_id, "BCAST"]
        for prefix in prefixes:
            tracking += ["PREFIX", prefix]
        self._send(_command(*tracking))
        if self._reply() != b"OK":
            raise _Disconnected("CLIENT TRACKING was refused")
        subscribed_at = time.monotonic()
        self._send(_command("SUBSCRIBE", _CHANNEL))
        while True:  # anything before the confirmation is older than the (empty) memory
            reply = self._reply()
            if isinstance(reply, list) and reply[:1] == [b"subscribe"]:
                break
        #: Every invalidation Redis made before this moment has arrived.
        self.heard_at = subscribed_at
        sock.setblocking(False)

    def _send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise _Disconnected(str(exc)) from exc

    def _reply(self) -> Any:
        """The next reply, blocking (set-up only)."""
        while True:
            parsed = _parse(self.buffer, 0)
            if parsed is not None:
                value, end = parsed
                del self.buffer[:end]
                if isinstance(value, _Disconnected):
                    raise value
                return value
            try:
                data = self.sock.recv(65536)
            except OSError as exc:
                raise _Disconnected(str(exc)) from exc
            if not data:
                raise _Disconnected("connection closed")
            self.buffer += data

    def ping(self, now: float) -> None:
        self.sequence += 1
        self.pings.append((self.sequence, now))
        self.last_ping = now
        self._send(_command("PING", self.sequence))

    def drain(self) -> list[Any]:
        """The messages that have arrived, without blocking: lists of keys, or None (flush).

        Raises _Disconnected when the connection is gone.
        """
        sock = self.sock
        while True:
            try:
                data = sock.recv(262144)
            except (BlockingIOError, ssl.SSLWantReadError):
                break
            except OSError as exc:
                raise _Disconnected(str(exc)) from exc
            if not data:
                raise _Disconnected("connection closed by the server")
            self.buffer += data
        if not self.buffer:
            return []
        messages = []
        buffer, pos = self.buffer, 0
        while pos < len(buffer):
            parsed = _parse(buffer, pos)
            if parsed is None:
                break
            value, pos = parsed
            if isinstance(value, _Disconnected):
                raise value
            if not isinstance(value, list) or not value:
                continue
            if value[0] == b"message" and len(value) == 3:
                messages.append(value[2])
            elif value[0] == b"pong":
                sequence = int(value[1]) if len(value) > 1 and value[1] else 0
                while self.pings and self.pings[0][0] <= sequence:
                    self.heard_at = self.pings.popleft()[1]
        del buffer[:pos]
        return messages

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already broken: nothing to release
            self.connection.disconnect()


# --- the tier: memory, trust and the fetch protocol --------------------------------------


class Tier:
    """The memory of one process for one cache alias, and its tracker."""

    def __init__(self, alias: str, cache: Any, options: dict[str, Any]) -> None:
        self.alias = alias
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.max_bytes = int(options["max_bytes"])
        self.max_silence = float(options["max_silence"])
        self.ping_interval = self.max_silence / 4
        self.entries: collections.OrderedDict[str, tuple[Any, int]] = collections.OrderedDict()
        self.size = 0
        #: Changes whenever memory is cleared: a fetch begun before it keeps nothing.
        self.epoch = 0
        #: Keys being fetched from Redis (how many fetches each) and those invalidated since.
        self.fetching: dict[str, int] = {}
        self.overtaken: set[str] = set()
        self.tracker: _Tracker | None = None
        self.retry_at = 0.0
        made = cache.make_key(TRACKED[0])
        self.key_base = made[: len(made) - len(TRACKED[0])]
        self.prefixes = [self.key_base + prefix for prefix in TRACKED]
        #: False for a cache that is not one Redis (check E094 reports it), or whose
        #: KEY_FUNCTION does not simply prepend (Redis names cannot be mapped back): the
        #: wrapper then passes every call through.
        self.usable = redis_connection_for(cache) is not None and all(
            cache.make_key(p) == self.key_base + p for p in TRACKED
        )
        #: Counters for tests and ``manage.py ormcache`` (served from memory, fetched...).
        self.counts: collections.Counter[str] = collections.Counter()

    # memory ------------------------------------------------------------------------
    def clear(self) -> None:
        self.entries.clear()
        self.size = 0
        self.epoch += 1
        self.overtaken.update(self.fetching)

    def forget(self, names: Iterable[str]) -> None:
        entries, fetching = self.entries, self.fetching
        for name in names:
            found = entries.pop(name, None)
            if found is not None:
                self.size -= found[1]
            if name in fetching:
                self.overtaken.add(name)

    def keep(self, name: str, value: Any) -> None:
        if not name.startswith(TRACKED):
            return
        if name.startswith(_VERSION_PREFIX):
            if type(value) is not int:  # pending tokens: short-lived, never kept
                return
            size = 64 + len(name)
        elif isinstance(value, (bytes, bytearray, str)):
            size = 64 + len(name) + len(value)
        else:
            size = 512 + len(name)  # a rough figure for other values (page pointers)
        if size * _LARGEST_SHARE > self.max_bytes:
            return
        old = self.entries.pop(name, None)
        if old is not None:
            self.size -= old[1]
        self.entries[name] = (value, size)
        self.size += size
        while self.size > self.max_bytes:
            _, (_, dropped) = self.entries.popitem(last=False)
            self.size -= dropped
            self.counts["evicted"] += 1

    # the tracker -------------------------------------------------------------------
    def refresh(self, cache: Any, now: float) -> bool:
        """Apply what Redis sent; True when memory may be trusted now. Under the lock."""
        tracker = self.tracker
        if tracker is None:
            if now < self.retry_at or not self.usable:
                return False
            self.retry_at = now + RECONNECT_INTERVAL
            try:
                tracker = _Tracker(cache, self.prefixes)
            except Exception as exc:
                logger.warning("ormcache: L1 cannot track invalidations, not trusted: %s", exc)
                return False
            self.clear()
            self.tracker = tracker
            self.counts["connects"] += 1
        try:
            messages = tracker.drain()
            if now - tracker.last_ping >= self.ping_interval:
                tracker.ping(now)
        except _Disconnected as exc:
            logger.warning("ormcache: L1 lost its invalidation connection, cleared: %s", exc)
            self.drop_tracker()
            return False
        base = len(self.key_base)
        for message in messages:
            if message is None:  # FLUSHDB / FLUSHALL
                self.clear()
                self.counts["flushes"] += 1
                continue
            names = [name.decode(errors="replace")[base:] for name in message]
            self.forget(names)
            self.counts["invalidations"] += len(names)
        return now - tracker.heard_at <= self.max_silence

    def drop_tracker(self) -> None:
        if self.tracker is not None:
            self.tracker.close()
        self.tracker = None
        self.clear()

    def close(self) -> None:
        with self.lock:
            self.drop_tracker()


_tiers: dict[str, Tier] = {}
_tiers_lock = threading.Lock()


def tier_for(alias: str, cache: Any) -> Tier:
    found = _tiers.get(alias)
    if found is not None and found.pid == os.getpid():
        return found
    with _tiers_lock:
        found = _tiers.get(alias)
        if found is None or found.pid != os.getpid():
            # A forked child never shares its parent's tracker socket or memory.
            found = _tiers[alias] = Tier(alias, cache, settings_of())
    return found


def reset() -> None:
    """Close every tracker and forget all memory (settings changed; tests)."""
    _enabled_memo[0] = None
    with _tiers_lock:
        tiers = [tier for tier in _tiers.values() if tier.pid == os.getpid()]
        _tiers.clear()
    for tier in tiers:
        tier.close()


conf.forget_hooks.append(reset)


# --- the wrapper ------------------------------------------------------------------------


class L1Cache:
    """A Django cache with the in-process tier in front of ``get_many``.

    Writes go through to the wrapped cache and then drop the keys from memory (the
    tracker will also report them); every other attribute is the wrapped cache's.
    """

    def __init__(self, cache: Any, alias: str) -> None:
        self._cache = cache
        self._alias = alias

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cache, name)

    @property
    def tier(self) -> Tier:
        return tier_for(self._alias, self._cache)

    def get_many(self, names: Sequence[str], version: Any = None) -> dict[str, Any]:
        if version is not None:
            return self._cache.get_many(names, version=version)
        tier = tier_for(self._alias, self._cache)
        if not tier.usable:
            return self._cache.get_many(names)
        found: dict[str, Any] = {}
        wanted: list[str] = []
        with tier.lock:
            if tier.refresh(self._cache, time.monotonic()):
                entries = tier.entries
                for name in names:
                    entry = entries.get(name, _MISSING)
                    if entry is _MISSING:
                        wanted.append(name)
                    else:
                        found[name] = entry[0]  # type: ignore[index]
                        entries.move_to_end(name)
                if not wanted:
                    tier.counts["served"] += 1
                    return found
            else:
                tier.counts["untrusted"] += 1
                wanted = list(names)
            tracked = tier.tracker is not None
            if tracked:
                epoch = tier.epoch
                for name in wanted:
                    tier.fetching[name] = tier.fetching.get(name, 0) + 1
        fetched: dict[str, Any] = {}  # a failed fetch keeps nothing, and raises its own error
        try:
            fetched = self._cache.get_many(wanted)
        finally:
            if tracked:
                with tier.lock:
                    # An invalidation that arrived while the get_many was in flight may
                    # be for a write made after Redis answered: drain before keeping.
                    tier.refresh(self._cache, time.monotonic())
                    keep = tier.epoch == epoch
                    for name in wanted:
                        left = tier.fetching[name] - 1
                        overtaken = name in tier.overtaken
                        if left:
                            tier.fetching[name] = left
                        else:
                            del tier.fetching[name]
                            tier.overtaken.discard(name)
                        if keep and not overtaken and name in fetched:
                            tier.keep(name, fetched[name])
        tier.counts["fetched"] += 1
        found.update(fetched)
        return found

    def _forget(self, names: Iterable[str]) -> None:
        tier = tier_for(self._alias, self._cache)
        with tier.lock:
            tier.forget(names)

    def set(self, key: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return self._cache.set(key, *args, **kwargs)
        finally:
            self._forget([key])

    def add(self, key: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return self._cache.add(key, *args, **kwargs)
        finally:
            self._forget([key])

    def delete(self, key: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return self._cache.delete(key, *args, **kwargs)
        finally:
            self._forget([key])

    def set_many(self, data: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return self._cache.set_many(data, *args, **kwargs)
        finally:
            self._forget(list(data))

    def delete_many(self, names: Sequence[str], *args: Any, **kwargs: Any) -> Any:
        try:
            return self._cache.delete_many(names, *args, **kwargs)
        finally:
            self._forget(list(names))

    def clear(self) -> Any:
        try:
            return self._cache.clear()
        finally:
            tier = tier_for(self._alias, self._cache)
            with tier.lock:
                tier.clear()


def wrap(cache: Any, alias: str) -> Any:
    """The L1 wrapper of this thread's cache object (made once per object)."""
    wrapper = cache.__dict__.get("_ormcache_l1")
    if wrapper is None:
        wrapper = cache.__dict__["_ormcache_l1"] = L1Cache(cache, alias)
    return wrapper


# --- system checks ----------------------------------------------------------------------

_SUPPORTED = {
    "django_redis.cache.RedisCache": ("django_redis.client.DefaultClient",),
    "django.core.cache.backends.redis.RedisCache": (None,),
}


def check(raw: Any) -> list[Error]:
    if raw is None:
        return []
    if not isinstance(raw, dict):
        return [
            conf.settings_error(90, "ORMCACHE['L1'] must be a dict.", 'E.g. {"enabled": True}.')
        ]
    problems = []
    unknown = conf.unknown_keys("ORMCACHE['L1']", raw, DEFAULTS)
    if unknown:
        problems.append(conf.settings_error(91, *unknown))
    options = settings_of(raw)
    if not isinstance(options["enabled"], bool):
        problems.append(
            conf.settings_error(91, "ORMCACHE['L1']['enabled'] must be a bool.", "True/False.")
        )
    max_bytes = options["max_bytes"]
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 4096:
        problems.append(
            conf.settings_error(
                92,
                f"ORMCACHE['L1']['max_bytes'] must be an int >= 4096, got {max_bytes!r}.",
                "The memory of the tier per process, in bytes, e.g. 64 * 1024 * 1024.",
            )
        )
    silence = options["max_silence"]
    if isinstance(silence, bool) or not isinstance(silence, (int, float)) or silence <= 0:
        problems.append(
            conf.settings_error(
                93,
                f"ORMCACHE['L1']['max_silence'] must be a number > 0, got {silence!r}.",
                "Seconds a process trusts its memory without hearing from Redis, e.g. 1.0.",
            )
        )
    if options["enabled"] is True:
        problems += _check_backend()
    return problems


def _check_backend() -> list[Error]:
    alias = conf.cache_alias()
    config = getattr(settings, "CACHES", {}).get(alias)
    if not isinstance(config, dict):
        return []  # E003 reports a missing cache
    backend = str(config.get("BACKEND", ""))
    options = config.get("OPTIONS") or {}
    client = options.get("CLIENT_CLASS", "django_redis.client.DefaultClient")
    location = config.get("LOCATION", "")
    servers = location.split(",") if isinstance(location, str) else list(location)
    supported = _SUPPORTED.get(backend)
    if supported is not None and supported != (None,) and client not in supported:
        supported = None
    if supported is None:
        return [
            conf.settings_error(
                94,
                f"ORMCACHE['L1'] needs a single Redis server behind the cache {alias!r}, "
                f"which is {backend} (client {client}).",
                "L1 keeps itself coherent with Redis client-side caching (CLIENT TRACKING, "
                "Redis >= 6): use django_redis.cache.RedisCache with its DefaultClient or "
                "Django's RedisCache. Redis Cluster and Sentinel are not supported yet "
                "(docs/how-it-works.md, 'The in-process tier'); without Redis, turn L1 off.",
            )
        ]
    if len(servers) != 1:
        return [
            conf.settings_error(
                95,
                f"ORMCACHE['L1'] needs one Redis server, the cache {alias!r} has {len(servers)}.",
                "Replicas would send invalidations late; give LOCATION the master only.",
            )
        ]
    return []


@register(Tags.caches)
def check_l1(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    raw = getattr(settings, "ORMCACHE", {})
    return check(raw.get("L1")) if isinstance(raw, dict) else []
