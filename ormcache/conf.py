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
            "blog.leaderboard": {"longevity": "fixed", "timeout": 60},
            "blog.comment": {"granularity": "row", "partition_by": "post"},
        },
        "DATABASES": {               # per database alias, for read replicas
            "replica": {"versions_of": "default", "replication_lag": 2},
        },
        "VERIFY": "off",             # shadow-verify hits: "off", "log" or "raise"
        "STAMPEDE_WAIT": 5.0,        # seconds to wait for another reader's fill; 0: never
        "STAMPEDE_MIN_COST": 0.005,  # queries faster than this (last fill) take no lock
        "PAGES": {"timeout": 600},   # the page cache (docs/pages.md)
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
from django.core.checks import Error
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
        "VERIFY",
        "STAMPEDE_WAIT",
        "STAMPEDE_MIN_COST",
        "PAGES",
        "STATS",
        "TRIGGERS",
        "DOWNSTREAM",
        "ADVISOR",
        "L1",
    }
)
DEFAULT_BREAKER = {"threshold": 3, "cooldown": 5.0}
DEFAULT_MAX_ENTRY_BYTES = 1_000_000
DEFAULT_MAX_ENTRY_ROWS = 10_000
#: ``ORMCACHE["VERIFY"]``: shadow-verify mode (see verify.py).
VERIFY_CHOICES = ("off", "log", "raise")
#: ``ORMCACHE["STAMPEDE_WAIT"]``: seconds a reader waits for another to fill a miss.
DEFAULT_STAMPEDE_WAIT = 5.0
#: ``ORMCACHE["STAMPEDE_MIN_COST"]``: a query whose last fill took less (seconds) fills
#: without the lock (its two round trips cost every miss more than a stampede would).
DEFAULT_STAMPEDE_MIN_COST = 0.005
#: Keys of one ``ORMCACHE["DATABASES"]`` entry.
DATABASE_KEYS = frozenset({"versions_of", "replication_lag"})
#: Keys one model policy accepts, with the type each must have.
POLICY_KEYS = {
    "enabled": bool,
    "timeout": (int, type(None)),
    "user_scoped": bool,
    "stale_save": str,
    "longevity": str,
    "granularity": str,
    "partition_by": (str, type(None)),
}
STALE_SAVE_CHOICES = ("warn", "raise", "allow")
#: ``"invalidate"``: writes make cached reads misses (never stale); ``"fixed"``: cached
#: reads live out their timeout whatever is written (see longevity.py).
LONGEVITY_CHOICES = ("invalidate", "fixed")
#: ``"table"``: a read depends on the version of every table it reads; ``"row"``: a read
#: pinned to known primary keys depends on those rows' versions instead (see rows.py).
GRANULARITY_CHOICES = ("table", "row")
DEFAULT_GRANULARITY = "row"


@dataclass(frozen=True)
class Policy:
    """How ormcache treats one model."""

    enabled: bool = True
    timeout: int | None = DEFAULT_TIMEOUT
    user_scoped: bool = False
    #: What saving an instance read from the cache does when its row changed since.
    stale_save: str = "warn"
    #: ``"invalidate"`` (default) or ``"fixed"``: see ``LONGEVITY_CHOICES``.
    longevity: str = "invalidate"
    #: ``"table"`` or ``"row"`` (default): see ``GRANULARITY_CHOICES``.
    granularity: str = DEFAULT_GRANULARITY
    #: A field (name or attname) whose values partition the model's rows: reads pinned to
    #: some of its values depend on those partitions only (rows.py). None: no partitions.
    partition_by: str | None = None
    #: True when an ``ORMCACHE["MODELS"]`` entry other than ``"*"`` names the model,
    #: which is what installs caching on models whose manager is not a CachedManager.
    listed: bool = False

    @property
    def fixed(self) -> bool:
        """A fixed lifetime that applies: without a timeout > 0 (a check error) it does not."""
        return (
            self.longevity == "fixed"
            and isinstance(self.timeout, int)
            and not isinstance(self.timeout, bool)
            and self.timeout > 0
        )


_UNSET = object()
# settings.ORMCACHE, read once and forgotten when override_settings changes it
# (reading a setting through Django's lazy settings object costs microseconds,
# and the read path asks several times per query).
_settings_memo: list[Any] = [_UNSET]


def get_settings() -> dict[str, Any]:
    value = _settings_memo[0]
    if value is _UNSET:
        raw = getattr(settings, "ORMCACHE", None)
        value = _settings_memo[0] = raw if isinstance(raw, dict) else {}
    return value


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


def verify_mode() -> str:
    """``"off"``, ``"log"`` or ``"raise"`` (an invalid value is left to checks: off)."""
    mode = get_settings().get("VERIFY", "off")
    return mode if mode in VERIFY_CHOICES else "off"


def seconds(value: Any) -> float | None:
    """``value`` as a number of seconds >= 0, or None when it is not one (checks say so)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        return None
    return float(value)


def stampede_wait() -> float:
    """Seconds a reader waits for the reader that is filling the same miss (0: no waiting)."""
    return seconds(get_settings().get("STAMPEDE_WAIT", DEFAULT_STAMPEDE_WAIT)) or 0.0


def stampede_min_cost() -> float:
    """Seconds below which a query's miss is not worth the fill lock (0: always lock)."""
    return seconds(get_settings().get("STAMPEDE_MIN_COST", DEFAULT_STAMPEDE_MIN_COST)) or 0.0


def database_options(db_alias: str) -> dict[str, Any]:
    databases = get_settings().get("DATABASES") or {}
    options = databases.get(db_alias) if isinstance(databases, dict) else None
    return options if isinstance(options, dict) else {}


def versions_alias(db_alias: str) -> str:
    """The database alias whose table versions ``db_alias`` reads under."""
    return database_options(db_alias).get("versions_of") or db_alias


def replication_lag(db_alias: str) -> float:
    return float(database_options(db_alias).get("replication_lag") or 0)


# Resolved policies, forgotten with the settings memo above.
_memo: dict[str, Policy] = {}


#: Called (without arguments) whenever settings that shape ormcache's memos change.
forget_hooks: list[Any] = []


@receiver(setting_changed)
def _forget_policies(*, setting: str, **kwargs: Any) -> None:
    if setting in ("ORMCACHE", "CACHES", "DATABASES", "INSTALLED_APPS"):
        _settings_memo[0] = _UNSET
        _memo.clear()
        for hook in forget_hooks:
            hook()


def policy_for_label(label: str) -> Policy:
    """The policy of ``"app_label.model_name"``, merged from least to most specific entry."""
    label = label.lower()
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
        longevity=merged.get("longevity", "invalidate"),
        granularity=merged.get("granularity", DEFAULT_GRANULARITY),
        partition_by=merged.get("partition_by"),
        listed=listed,
    )


# --- The page cache: ORMCACHE["PAGES"] (see pages.py and docs/pages.md) ---------------

#: Keys ``ORMCACHE["PAGES"]`` accepts, with their defaults. A missing ``timeout``
#: means ``ORMCACHE["TIMEOUT"]``; ``header`` None or "" sends no header.
PAGES_DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "timeout": None,
    "exclude_paths": (),
    "include_paths": (),
    "vary_on_headers": (),
    "key_prefix": "",
    "header": "X-Ormcache",
}


def page_options() -> dict[str, Any]:
    """``ORMCACHE["PAGES"]`` over the defaults (bad values are left to the checks)."""
    raw = get_settings().get("PAGES")
    options = dict(PAGES_DEFAULTS)
    options["timeout"] = default_timeout()
    if isinstance(raw, dict):
        options.update({key: value for key, value in raw.items() if key in PAGES_DEFAULTS})
    return options


def settings_error(code: int, msg: str, hint: str) -> Error:
    """The system-check error ``ormcache.E<code>`` about ``settings.ORMCACHE``."""
    return Error(msg, hint=hint, obj="settings.ORMCACHE", id=f"ormcache.E{code:03d}")


def unknown_keys(section: str, given: Any, allowed: Any) -> tuple[str, str] | None:
    """(message, hint) naming the keys of ``given`` not in ``allowed``, or None: one
    wording for every settings dict the system checks validate."""
    unknown = sorted(set(given) - set(allowed), key=str)
    if not unknown:
        return None
    return (
        f"Unknown {section} keys: {', '.join(map(repr, unknown))}.",
        f"Allowed keys: {', '.join(sorted(allowed))}.",
    )


# --- Downstream caches: ORMCACHE["DOWNSTREAM"] (see downstream.py, purge.py) ----------

#: Keys ``ORMCACHE["DOWNSTREAM"]`` accepts, with their defaults (docs/downstream.md).
DOWNSTREAM_DEFAULTS: dict[str, Any] = {
    "enabled": False,
    "surrogate_key_header": "Surrogate-Key",
    "key_prefix": "ormcache",
    "s_maxage": 300,
    "max_age": 0,
    "mark_private": True,
    "purgers": (),
    "purge_delay": 0.05,
    "repurge_after": 2.0,
    "max_pending": 10_000,
    "retries": 2,
}


def downstream_options() -> dict[str, Any]:
    """``ORMCACHE["DOWNSTREAM"]`` over the defaults (bad values are left to the checks)."""
    raw = get_settings().get("DOWNSTREAM")
    options = dict(DOWNSTREAM_DEFAULTS)
    if isinstance(raw, dict):
        options.update({key: value for key, value in raw.items() if key in DOWNSTREAM_DEFAULTS})
    return options
