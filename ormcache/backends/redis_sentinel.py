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
   global version a new token, which kills every entry, then records the new id
   (``failover.py``). This runs before the connection serves anything, in every
   process, so no reader can reach the new master without the check. It costs two
   commands per new connection and nothing per request.

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

from typing import Any

from django_redis.client import DefaultClient

from .. import keys
from . import failover


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
        from ..versions import new_token

        connection.on_connect()
        failover.check_master(
            connection,
            marker=str(self.make_key(failover.REPLID_KEY)),
            global_key=str(self.make_key(keys.GLOBAL_VERSION_KEY)),
            token=self.encode(new_token()),
        )
