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


def _error(code: int, msg: str, hint: str, obj: str = "settings.CACHES") -> Error:
    return Error(msg, hint=hint, obj=obj, id=f"ormcache.E{code:03d}")


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
                70,
                f"The cache {alias!r} that ormcache uses reads from Redis replicas ({client}).",
                "A replica lags its master, so it can serve a version from before a write "
                "and with it stale rows. For Sentinel use "
                "'ormcache.backends.redis_sentinel.SentinelClient' (docs/scaling.md); "
                "otherwise give LOCATION the master only.",
            )
        ]
    return []


@register(Tags.caches, Tags.database)
def check_triggers(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """``ORMCACHE["TRIGGERS"]``: a dict of known options naming PostgreSQL databases."""
    from .triggers import DEFAULTS

    raw = conf.get_settings().get("TRIGGERS")
    if raw is None:
        return []
    where = "settings.ORMCACHE"
    if not isinstance(raw, dict) or set(raw) - set(DEFAULTS):
        unknown = sorted(set(raw) - set(DEFAULTS)) if isinstance(raw, dict) else []
        return [
            _error(
                71,
                "ORMCACHE['TRIGGERS'] must be a dict"
                + (f"; unknown options: {', '.join(map(repr, unknown))}." if unknown else "."),
                f"Options: {', '.join(sorted(DEFAULTS))} (docs/scaling.md).",
                where,
            )
        ]
    problems = []
    databases = raw.get("databases", DEFAULTS["databases"])
    configured = getattr(settings, "DATABASES", {})
    if not isinstance(databases, (list, tuple)) or not all(
        alias in configured and "postgresql" in configured[alias].get("ENGINE", "")
        for alias in databases
    ):
        problems.append(
            _error(
                72,
                f"ORMCACHE['TRIGGERS']['databases'] must list PostgreSQL aliases, got {databases!r}.",
                "Triggers and the listener need PostgreSQL (LISTEN/NOTIFY).",
                where,
            )
        )
    for key in ("listen", "mark_django_sessions"):
        if key in raw and not isinstance(raw[key], bool):
            problems.append(
                _error(
                    73, f"ORMCACHE['TRIGGERS'][{key!r}] must be a bool.", "True or False.", where
                )
            )
    if "channel" in raw and not (isinstance(raw["channel"], str) and raw["channel"]):
        problems.append(
            _error(
                73,
                "ORMCACHE['TRIGGERS']['channel'] must be a non-empty str.",
                "e.g. 'ormcache'.",
                where,
            )
        )
    return problems
