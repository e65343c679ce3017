"""Settings -> validated per-model policies.

ormcache reads ``settings.ORMCACHE`` where it is used (never at import time), so
``override_settings`` works in tests. The shape is::

    ORMCACHE = {
        "CACHE": "default",          # alias in settings.CACHES
        "TIMEOUT": 3600,             # seconds a cached result may live; None: no expiry
        "ENABLED": True,             # global switch
        "MODELS": {                  # label -> policy; "app.model", "app.*" or "*"
            "blog.post": {"timeout": 600},
            "blog.auditentry": {"enabled": False},
            "blog.bookmark": {"user_scoped": True},
        },
        "DATABASES": {               # per database alias, for read replicas
            "replica": {"versions_of": "default", "replication_lag": 2},
        },
    }

A replica alias shares the versions of its primary (``versions_of``), so a
write on the primary invalidates what was read from the replica; results read
from it within ``replication_lag`` seconds of a bump are not stored, since the
replica may not have replayed the write yet.

Labels are case-insensitive and the most specific entry wins, key by key:
``"*"`` sets defaults, ``"app.*"`` overrides them for one app, ``"app.model"``
for one model. Validation lives in ``checks.py``; this module only resolves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

DEFAULT_CACHE_ALIAS = "default"
DEFAULT_TIMEOUT = 3600

#: Top-level keys ``ORMCACHE`` accepts (anything else is a system check error).
SETTINGS_KEYS = frozenset(
    {
        "CACHE",
        "TIMEOUT",
        "ENABLED",
        "MODELS",
        "DATABASES",
        "BREAKER",
        "SIGNING_KEY",
        "MAX_ENTRY_BYTES",
        "MAX_ENTRY_ROWS",
    }
)
DEFAULT_BREAKER = {"threshold": 3, "cooldown": 5.0}
DEFAULT_MAX_ENTRY_BYTES = 1_000_000
DEFAULT_MAX_ENTRY_ROWS = 10_000
#: Keys of one ``ORMCACHE["DATABASES"]`` entry.
DATABASE_KEYS = frozenset({"versions_of", "replication_lag"})
#: Keys one model policy accepts, with the type each must have.
POLICY_KEYS = {
    "enabled": bool,
    "timeout": (int, type(None)),
    "user_scoped": bool,
    "stale_save": str,
}
STALE_SAVE_CHOICES = ("warn", "raise", "allow")


@dataclass(frozen=True)
class Policy:
    """How ormcache treats one model."""

    enabled: bool = True
    timeout: int | None = DEFAULT_TIMEOUT
    user_scoped: bool = False
    #: What saving an instance read from the cache does when its row changed since.
    stale_save: str = "warn"
    #: True when an ``ORMCACHE["MODELS"]`` entry other than ``"*"`` names the model,
    #: which is what installs caching on models whose manager is not a CachedManager.
    listed: bool = False


def get_settings() -> dict[str, Any]:
    value = getattr(settings, "ORMCACHE", None)
    return value if isinstance(value, dict) else {}


def cache_alias() -> str:
    return get_settings().get("CACHE", DEFAULT_CACHE_ALIAS)


def default_timeout() -> int | None:
    return get_settings().get("TIMEOUT", DEFAULT_TIMEOUT)


def is_enabled() -> bool:
    return bool(get_settings().get("ENABLED", True))


def model_entries() -> dict[str, dict[str, Any]]:
    """The MODELS mapping with lower-cased labels (invalid entries are left to checks)."""
    models = get_settings().get("MODELS") or {}
    if not isinstance(models, dict):
        return {}
    return {str(label).lower(): entry for label, entry in models.items() if isinstance(entry, dict)}


def breaker() -> tuple[int, float]:
    """(failures in a row that open the circuit breaker, seconds it stays open)."""
    options = {**DEFAULT_BREAKER, **(get_settings().get("BREAKER") or {})}
    return int(options["threshold"]), float(options["cooldown"])


def database_options(db_alias: str) -> dict[str, Any]:
    databases = get_settings().get("DATABASES") or {}
    options = databases.get(db_alias) if isinstance(databases, dict) else None
    return options if isinstance(options, dict) else {}


def versions_alias(db_alias: str) -> str:
    """The database alias whose table versions ``db_alias`` reads under."""
    return database_options(db_alias).get("versions_of") or db_alias


def replication_lag(db_alias: str) -> float:
    return float(database_options(db_alias).get("replication_lag") or 0)


# Resolved policies are memoised per ORMCACHE object; override_settings swaps the
# object (and fires setting_changed), so a stale memo can never be used.
_memo: dict[str, Policy] = {}
_memo_source: list[Any] = [None]


@receiver(setting_changed)
def _forget_policies(*, setting: str, **kwargs: Any) -> None:
    if setting in ("ORMCACHE", "CACHES", "DATABASES", "INSTALLED_APPS"):
        _memo.clear()
        _memo_source[0] = None


def policy_for_label(label: str) -> Policy:
    """The policy of ``"app_label.model_name"``, merged from least to most specific entry."""
    label = label.lower()
    source = getattr(settings, "ORMCACHE", None)
    if _memo_source[0] is not source:
        _memo.clear()
        _memo_source[0] = source
    policy = _memo.get(label)
    if policy is None:
        policy = _memo[label] = _resolve(label)
    return policy


def policy_for(model: Any) -> Policy:
    return policy_for_label(model._meta.label_lower)


def _resolve(label: str) -> Policy:
    entries = model_entries()
    app_label = label.split(".", 1)[0]
    merged: dict[str, Any] = {"timeout": default_timeout()}
    listed = False
    for pattern in ("*", f"{app_label}.*", label):
        entry = entries.get(pattern)
        if entry is None:
            continue
        listed = listed or pattern != "*"
        merged.update({key: value for key, value in entry.items() if key in POLICY_KEYS})
    return Policy(
        enabled=bool(merged.get("enabled", True)),
        timeout=merged.get("timeout"),
        user_scoped=bool(merged.get("user_scoped", False)),
        stale_save=merged.get("stale_save", "warn"),
        listed=listed,
    )
