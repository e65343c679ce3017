"""A Django cache backend for Redis Cluster, built on redis-py's ``RedisCluster``.

Django's own ``RedisCache`` and django-redis speak to one server (or a fixed list
of replicas); a Cluster shards keys over masters by hash slot and refuses a
multi-key command whose keys live in different slots. This backend keeps
Django's ``RedisCache`` (its serializer, timeouts and key handling) and swaps its
client for one that routes every key to its slot:

- ``get_many`` groups the keys by slot and sends one ``MGET`` per slot, all in one
  pipeline: each master that holds some of the keys answers in the same round
  trip (redis-py's ``mget_nonatomic``);
- ``set_many`` and ``delete_many`` send one ``SET``/``DEL`` per key in one pipeline;
- a failing call is retried once, at once (redis-py's default is three times with
  exponential backoff): a dead node costs a bounded wait before ormcache falls
  back to the database. Pass ``OPTIONS["retry"]`` to choose otherwise;
- ormcache's version keys (``ormcache:v:...``) get the hash tag ``{ormcache:v}``,
  so they share one slot: a hit then touches at most two masters (the one of its
  entry and the one of the versions) instead of one per table it read, and a bump
  of several tables is one node's work. Set ``OPTIONS["HASH_TAG_VERSIONS"] = False``
  to spread them instead (docs/scaling.md measures both).

With the version keys in one slot, each new connection to their master checks
whether that master is new (a replica promoted by a Cluster failover may miss bumps
the old one acknowledged); if so it invalidates everything once (``failover.py``).

No ``KEYS``, no scripts, no cross-slot transactions. ``clear()`` flushes every master
(``FLUSHDB`` on each): it is for tests and operators, never called by ormcache.

Cluster errors (a node down, slots not covered, the cluster failing over) are raised
as ``ClusterUnavailable``, a ``ConnectionError``: ormcache counts it toward its
circuit breaker and serves from the database, as for any cache outage.

Settings::

    CACHES = {
        "default": {
            "BACKEND": "ormcache.backends.redis_cluster.RedisClusterCache",
            "LOCATION": ["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"],  # any nodes
            "OPTIONS": {"socket_timeout": 0.25, "socket_connect_timeout": 0.25},
        }
    }
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.core.exceptions import ImproperlyConfigured
from django.utils.functional import cached_property

from ..keys import GLOBAL_VERSION_KEY, PREFIX
from . import failover

#: The hash tag that puts every version key of a cache in one slot.
VERSION_HASH_TAG = "{" + PREFIX + ":v}"
_VERSION_KEY_START = f"{PREFIX}:v:"

_Method = TypeVar("_Method", bound=Callable[..., Any])


class ClusterUnavailable(ConnectionError):
    """The cluster could not serve the call (node down, slots uncovered, failing over)."""


def _translating(method: _Method) -> _Method:
    """Raise cluster-state errors as ClusterUnavailable (an outage for ormcache)."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        from redis import exceptions

        try:
            return method(self, *args, **kwargs)
        except (exceptions.ConnectionError, exceptions.TimeoutError):
            raise
        except (
            exceptions.ClusterError,
            exceptions.RedisClusterException,
            exceptions.TryAgainError,
            exceptions.AskError,
        ) as exc:
            raise ClusterUnavailable(f"{type(exc).__name__}: {exc}") from exc

    return wrapper  # type: ignore[return-value]


def _startup_nodes(servers: Iterable[str]) -> tuple[list[Any], dict[str, Any]]:
    """ClusterNodes for the LOCATION URLs, and the credentials they carry."""
    from redis.cluster import ClusterNode

    nodes: list[Any] = []
    credentials: dict[str, Any] = {}
    for server in servers:
        url = urlparse(server if "://" in server else f"redis://{server}")
        if url.scheme not in ("redis", "rediss") or not url.hostname:
            raise ImproperlyConfigured(
                f"RedisClusterCache LOCATION entries are redis://host:port URLs, not {server!r}"
            )
        nodes.append(ClusterNode(url.hostname, url.port or 6379))
        if url.username:
            credentials["username"] = unquote(url.username)
        if url.password:
            credentials["password"] = unquote(url.password)
        if url.scheme == "rediss":
            credentials["ssl"] = True
    return nodes, credentials


class RedisClusterCacheClient(RedisCacheClient):
    """Django's RedisCacheClient over one ``RedisCluster`` client (per-slot batching)."""

    _serializer: Any  # set by RedisCacheClient.__init__

    def __init__(
        self,
        servers: list[str],
        serializer: Any = None,
        parser_class: Any = None,
        failover_keys: tuple[str, str] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(servers, serializer=serializer, parser_class=parser_class)
        from redis.cluster import RedisCluster

        self._failover_keys = failover_keys
        if failover_keys is not None:
            # Each new node connection checks for a new master of the versions first.
            options["redis_connect_func"] = self._check_master
        nodes, credentials = _startup_nodes(servers)
        if "retry" not in options:
            # Fail open, bounded: redis-py's default retries a dead node 3 times with
            # exponential backoff (seconds per call); once, at once, is enough to follow
            # a slot map change.
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            options["retry"] = Retry(NoBackoff(), 1)
        self._cluster = RedisCluster(startup_nodes=nodes, **credentials, **options)

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        return self._cluster

    def _check_master(self, connection: Any) -> None:
        from ..versions import new_token

        assert self._failover_keys is not None
        marker, global_key = self._failover_keys
        failover.check_master(
            connection,
            marker=marker,
            global_key=global_key,
            token=self._serializer.dumps(new_token()),
        )

    # Every single-key call of RedisCacheClient already routes by slot; translate errors.
    add = _translating(RedisCacheClient.add)
    get = _translating(RedisCacheClient.get)
    set = _translating(RedisCacheClient.set)
    touch = _translating(RedisCacheClient.touch)
    delete = _translating(RedisCacheClient.delete)
    has_key = _translating(RedisCacheClient.has_key)
    incr = _translating(RedisCacheClient.incr)

    @_translating
    def get_many(self, keys: Iterable[Any]) -> dict[Any, Any]:
        keys = list(keys)
        if not keys:
            return {}
        values = self._cluster.mget_nonatomic(keys)  # one MGET per slot, one pipeline
        return {
            key: self._serializer.loads(value)
            for key, value in zip(keys, values, strict=True)
            if value is not None
        }

    @_translating
    def set_many(self, data: Mapping[Any, Any], timeout: Any) -> None:
        pipeline = self._cluster.pipeline()
        for key, value in data.items():
            pipeline.set(key, self._serializer.dumps(value), ex=timeout)
        pipeline.execute()

    @_translating
    def delete_many(self, keys: Iterable[Any]) -> None:
        pipeline = self._cluster.pipeline()
        for key in keys:
            pipeline.delete(key)
        pipeline.execute()

    @_translating
    def clear(self) -> bool:
        """FLUSHDB on every master (tests and operators only; ormcache never calls it)."""
        from redis.cluster import RedisCluster

        self._cluster.flushdb(target_nodes=RedisCluster.PRIMARIES)
        return True


class RedisClusterCache(RedisCache):
    """A Django cache on a Redis Cluster (see the module docstring for the settings)."""

    def __init__(self, server: Any, params: dict[str, Any]) -> None:
        options = dict(params.get("OPTIONS", {}))
        self.hash_tag_versions = bool(options.pop("HASH_TAG_VERSIONS", True))
        super().__init__(server, {**params, "OPTIONS": options})

    @cached_property
    def _cache(self) -> RedisClusterCacheClient:
        failover_keys = None
        if self.hash_tag_versions:
            # The marker shares the versions' slot, so it lives on their master.
            failover_keys = (
                VERSION_HASH_TAG + super().make_key(failover.REPLID_KEY),
                self.make_key(GLOBAL_VERSION_KEY),
            )
        servers, options = self._servers, self._options  # type: ignore[attr-defined]
        return RedisClusterCacheClient(servers, failover_keys=failover_keys, **options)

    def make_key(self, key: Any, version: Any = None) -> str:
        made = super().make_key(key, version)
        if self.hash_tag_versions and str(key).startswith(_VERSION_KEY_START):
            # All version keys in one slot: one node answers for every version of a read.
            return VERSION_HASH_TAG + made
        return made
