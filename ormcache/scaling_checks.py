"""System checks for scaled-out set-ups: Redis replicas, Sentinel, Cluster, and
``ORMCACHE["TRIGGERS"]`` (invalidation of writes made outside Django)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register

from . import conf

#: django-redis clients that read from replicas (a replica may lag a bump).
_REPLICA_READING_CLIENTS = ("django_redis.client.SentinelClient",)
_DEFAULT_CLIENT = "django_redis.client.DefaultClient"


def _error(code: int, msg: str, hint: str) -> Error:
    return Error(msg, hint=hint, obj="settings.CACHES", id=f"ormcache.E{code:03d}")


@register(Tags.caches)
def check_replica_reads(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """invariant 1: the version store must be read where it is written (the master)."""
    alias = conf.cache_alias()
    cache = getattr(settings, "CACHES", {}).get(alias)
    if not isinstance(cache, dict) or not str(cache.get("BACKEND", "")).startswith("django_redis"):
        return []
    client = (cache.get("OPTIONS") or {}).get("CLIENT_CLASS", _DEFAULT_CLIENT)
    location = cache.get("LOCATION", "")
    servers = location.split(",") if isinstance(location, str) else list(location)
    if client in _REPLICA_READING_CLIENTS or (client == _DEFAULT_CLIENT and len(servers) > 1):
        return [
            _error(
                30,
                f"The cache {alias!r} that ormcache uses reads from Redis replicas ({client}).",
                "A replica lags its master, so it can serve a version from before a write "
                "and with it stale rows. For Sentinel use "
                "'ormcache.backends.redis_sentinel.SentinelClient' (docs/scaling.md); "
                "otherwise give LOCATION the master only.",
            )
        ]
    return []
