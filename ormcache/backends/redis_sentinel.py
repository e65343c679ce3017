"""A django-redis client for a Sentinel-managed Redis that keeps ormcache never stale.

django-redis reaches Sentinel through ``django_redis.pool.SentinelConnectionFactory``.
Two things about that set-up matter to a never-stale cache, and this client
(``OPTIONS["CLIENT_CLASS"]``) takes care of both:

1. **Reads go to the master.** django-redis's own ``SentinelClient`` reads from a
   replica. A replica lags its master, so it can hand out a table's version token
   from before a bump, and with it an entry of rows that a committed write replaced.
   This client reads and writes the master only.

2. **A failover invalidates everything, once.** Replication is asynchronous: a bump
   the old master acknowledged may never have reached the replica that Sentinel
   promotes, and the promoted replica then serves the *old* token again (invariant
   4: a token that was valid once must never be valid again). Redis gives every
   master a fresh replication id when it is promoted (and when it restarts without
   persistence). Each new connection compares the server's ``master_replid`` with the
   one recorded in the cache (``ormcache:replid``); when they differ, it gives the
   global version a new token, which kills every entry, then records the new id.
   This runs before the connection serves anything, in every process, so no reader
   can reach the new master without the check. It costs two commands per new
   connection and nothing per request.

Settings::

    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://mymaster/0",           # the Sentinel service name as host
            "OPTIONS": {
                "CLIENT_CLASS": "ormcache.backends.redis_sentinel.SentinelClient",
                "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
                "SENTINELS": [("10.0.0.1", 26379), ("10.0.0.2", 26379), ("10.0.0.3", 26379)],
                "SOCKET_CONNECT_TIMEOUT": 0.25,
                "SOCKET_TIMEOUT": 0.25,
            },
        }
    }

The client works on a plain (non-Sentinel) Redis too, where the same check catches a
restart or a manual promotion.
"""

from __future__ import annotations

import logging
from typing import Any

from django_redis.client import DefaultClient

from .. import keys

logger = logging.getLogger("ormcache")

#: Where the replication id of the master the versions were last checked on is kept.
REPLID_KEY = f"{keys.PREFIX}:replid"


def master_replid(info: Any) -> str | None:
    """The ``master_replid`` field of an ``INFO replication`` reply."""
    text = info.decode() if isinstance(info, (bytes, bytearray)) else str(info)
    for line in text.splitlines():
        if line.startswith("master_replid:"):
            return line.split(":", 1)[1].strip()
    return None


class SentinelClient(DefaultClient):
    """django-redis ``DefaultClient`` that reads the master only and checks each new master."""

    def __init__(self, server: Any, params: dict[str, Any], backend: Any) -> None:
        super().__init__(server, params, backend)
        if len(self._server) != 1:
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured(
                "ormcache's SentinelClient takes one LOCATION (the master's service URL): "
                "reads from replicas can be stale."
            )

    def get_next_client_index(self, write: bool = True, tried: Any = None) -> int:
        return 0  # the master, for reads as for writes

    def connect(self, index: int = 0) -> Any:
        client = super().connect(index)
        # Every connection the pool opens from now on runs the check before use.
        client.connection_pool.connection_kwargs["redis_connect_func"] = self._check_master
        return client

    def _check_master(self, connection: Any) -> None:
        connection.on_connect()
        connection.send_command("INFO", "replication")
        replid = master_replid(connection.read_response())
        if replid is None:
            return
        marker = str(self.make_key(REPLID_KEY))
        connection.send_command("GET", marker)
        seen = connection.read_response()
        if isinstance(seen, bytes):
            seen = seen.decode()
        if seen == replid:
            return
        from ..versions import new_token

        # invariant 4: the new master may hold tokens older than bumps the old one
        # acknowledged; a new global token makes every entry made before it dead.
        connection.send_command(
            "SET", str(self.make_key(keys.GLOBAL_VERSION_KEY)), self.encode(new_token())
        )
        connection.read_response()
        connection.send_command("SET", marker, replid)
        connection.read_response()
        if seen is not None:
            logger.warning(
                "ormcache: the Redis master changed (replication id %s, was %s): "
                "invalidated everything",
                replid,
                seen,
            )
