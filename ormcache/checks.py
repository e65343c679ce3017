"""System checks for ``settings.ORMCACHE``: bad settings fail at start, with a hint.

Errors (``ormcache.E0xx``) stop ``runserver``, ``migrate`` and ``check``;
warnings (``ormcache.W0xx``) are printed. Every check reads the settings when it
runs, so ``override_settings`` applies.
"""

from __future__ import annotations

import re
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from . import advisor, conf, stats

_LOCAL_BACKENDS = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)


_error = conf.settings_error


def _valid_timeout(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)


@register(Tags.caches, Tags.models)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    raw = getattr(settings, "ORMCACHE", {})
    if not isinstance(raw, dict):
        return [_error(1, "ORMCACHE must be a dict.", f"Got {type(raw).__name__}.")]
    problems: list[Any] = []
    unknown = conf.unknown_keys("ORMCACHE", raw, conf.SETTINGS_KEYS)
    if unknown:
        problems.append(_error(2, *unknown))
    problems += _check_cache(raw)
    if "TIMEOUT" in raw and not _valid_timeout(raw["TIMEOUT"]):
        problems.append(
            _error(
                4,
                f"ORMCACHE['TIMEOUT'] must be a non-negative int or None, got {raw['TIMEOUT']!r}.",
                "Use seconds, e.g. 3600, or None for no expiry.",
            )
        )
    if "ENABLED" in raw and not isinstance(raw["ENABLED"], bool):
        problems.append(
            _error(
                12,
                f"ORMCACHE['ENABLED'] must be True or False, got {raw['ENABLED']!r}.",
                "Set it to a bool.",
            )
        )
    problems += _check_databases(raw.get("DATABASES", {}))
    problems += _check_fault_tolerance(raw)
    problems += _check_helpers(raw)
    problems += [_error(code, msg, hint) for code, msg, hint in stats.check(raw.get("STATS"))]
    problems += [_error(code, msg, hint) for code, msg, hint in advisor.check(raw.get("ADVISOR"))]
    models = raw.get("MODELS", {})
    if not isinstance(models, dict):
        problems.append(
            _error(
                5,
                "ORMCACHE['MODELS'] must be a dict of label -> policy.",
                'For example {"blog.post": {"timeout": 600}}.',
            )
        )
    else:
        for label, policy in models.items():
            problems += _check_label(label) + _check_policy(label, policy)
        problems += _check_longevity()
        problems += _check_partitions()
    return problems


def _positive_int_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0)


def _check_fault_tolerance(raw: dict[str, Any]) -> list[Any]:
    problems: list[Any] = []
    breaker = raw.get("BREAKER", {})
    hint = 'For example {"threshold": 3, "cooldown": 5}.'
    if not isinstance(breaker, dict) or set(breaker) - {"threshold", "cooldown"}:
        problems.append(
            _error(15, "ORMCACHE['BREAKER'] must be a dict with 'threshold' and 'cooldown'.", hint)
        )
    else:
        threshold = breaker.get("threshold", 3)
        cooldown = breaker.get("cooldown", 5)
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            problems.append(
                _error(15, f"BREAKER['threshold'] must be an int >= 1, got {threshold!r}.", hint)
            )
        if isinstance(cooldown, bool) or not isinstance(cooldown, (int, float)) or cooldown < 0:
            problems.append(
                _error(15, f"BREAKER['cooldown'] must be seconds >= 0, got {cooldown!r}.", hint)
            )
    key = raw.get("SIGNING_KEY")
    if key is not None and (not isinstance(key, (str, bytes)) or len(key) < 16):
        problems.append(
            _error(
                16,
                "ORMCACHE['SIGNING_KEY'] must be a str or bytes of at least 16 characters.",
                "Use a long random secret, e.g. secrets.token_urlsafe(32), kept out of the code.",
            )
        )
    for name in ("MAX_ENTRY_BYTES", "MAX_ENTRY_ROWS"):
        if name in raw and not _positive_int_or_none(raw[name]):
            problems.append(
                _error(
                    17,
                    f"ORMCACHE[{name!r}] must be a positive int or None, got {raw[name]!r}.",
                    "None means no limit.",
                )
            )
    return problems


def _check_helpers(raw: dict[str, Any]) -> list[Any]:
    """VERIFY (shadow-verify mode), STAMPEDE_WAIT and STAMPEDE_MIN_COST (stampede protection)."""
    problems: list[Any] = []
    mode = raw.get("VERIFY", "off")
    if mode not in conf.VERIFY_CHOICES:
        problems.append(
            _error(
                30,
                f"ORMCACHE['VERIFY'] must be one of "
                f"{', '.join(map(repr, conf.VERIFY_CHOICES))}, got {mode!r}.",
                "'off' (default) trusts hits; 'log' also runs every hit's query and logs a "
                "mismatch; 'raise' raises ormcache.StaleCacheError (for test suites).",
            )
        )
    elif mode == "raise" and not settings.DEBUG:
        problems.append(
            Warning(
                "ORMCACHE['VERIFY'] is 'raise' with DEBUG off.",
                hint="A stale entry then fails the request. Use 'log' in production and "
                "'raise' in test suites.",
                obj="settings.ORMCACHE",
                id="ormcache.W030",
            )
        )
    for code, name, default, hint in (
        (
            31,
            "STAMPEDE_WAIT",
            conf.DEFAULT_STAMPEDE_WAIT,
            "For example 5; 0 turns stampede protection off.",
        ),
        (
            32,
            "STAMPEDE_MIN_COST",
            conf.DEFAULT_STAMPEDE_MIN_COST,
            "For example 0.005: queries that took less at their last fill skip the fill "
            "lock; 0 locks every miss.",
        ),
    ):
        value = raw.get(name, default)
        if conf.seconds(value) is None:
            problems.append(
                _error(
                    code,
                    f"ORMCACHE['{name}'] must be a number of seconds >= 0, got {value!r}.",
                    hint,
                )
            )
    return problems


def _check_databases(databases: Any) -> list[Any]:
    hint = 'For example {"replica": {"versions_of": "default", "replication_lag": 2}}.'
    if not isinstance(databases, dict):
        return [_error(14, "ORMCACHE['DATABASES'] must be a dict of alias -> options.", hint)]
    problems: list[Any] = []
    known = set(getattr(settings, "DATABASES", {}))
    for alias, options in databases.items():
        if alias not in known:
            problems.append(
                _error(14, f"ORMCACHE['DATABASES'] names the unknown database {alias!r}.", hint)
            )
            continue
        if not isinstance(options, dict) or set(options) - conf.DATABASE_KEYS:
            problems.append(
                _error(
                    14,
                    f"ORMCACHE['DATABASES'][{alias!r}] must be a dict with keys among "
                    f"{', '.join(sorted(conf.DATABASE_KEYS))}.",
                    hint,
                )
            )
            continue
        primary = options.get("versions_of")
        if primary is not None and primary not in known:
            problems.append(
                _error(
                    14,
                    f"ORMCACHE['DATABASES'][{alias!r}]['versions_of'] names the unknown "
                    f"database {primary!r}.",
                    f"Use one of: {', '.join(sorted(known))}.",
                )
            )
        lag = options.get("replication_lag", 0)
        if isinstance(lag, bool) or not isinstance(lag, (int, float)) or lag < 0:
            problems.append(
                _error(
                    14,
                    f"ORMCACHE['DATABASES'][{alias!r}]['replication_lag'] must be a "
                    f"non-negative number of seconds, got {lag!r}.",
                    hint,
                )
            )
    return problems


def _check_cache(raw: dict[str, Any]) -> list[Any]:
    alias = raw.get("CACHE", conf.DEFAULT_CACHE_ALIAS)
    caches = getattr(settings, "CACHES", {})
    if alias not in caches:
        return [
            _error(
                3,
                f"ORMCACHE['CACHE'] names the cache alias {alias!r}, which is not in CACHES.",
                f"Use one of: {', '.join(map(repr, caches)) or '(no caches configured)'}.",
            )
        ]
    backend = caches[alias].get("BACKEND", "")
    options = caches[alias].get("OPTIONS") or {}
    ignores = options.get(
        "IGNORE_EXCEPTIONS", getattr(settings, "DJANGO_REDIS_IGNORE_EXCEPTIONS", False)
    )
    if backend.startswith("django_redis.") and ignores:
        return [
            _error(
                25,
                f"ormcache's cache {alias!r} has django-redis's IGNORE_EXCEPTIONS on: a "
                "version bump Redis refuses (down, or out of memory) would look delivered, "
                "and every process would go on serving what the write changed.",
                "ormcache already fails open on its own (the database answers while the "
                "cache is down, and lost bumps are made up for). Turn IGNORE_EXCEPTIONS off "
                "for this alias, or give ormcache its own alias in CACHES and ORMCACHE['CACHE'].",
            )
        ]
    if backend in _LOCAL_BACKENDS:
        return [
            Warning(
                f"ormcache uses the process-local cache {alias!r} ({backend.rsplit('.', 1)[-1]}).",
                hint="Invalidation does not cross processes: with several workers, a write in "
                "one leaves the others serving old rows. Use Redis or Memcached in production.",
                obj="settings.ORMCACHE",
                id="ormcache.W001",
            )
        ]
    return []


def _check_label(label: Any) -> list[Any]:
    if not isinstance(label, str) or (label != "*" and label.count(".") != 1):
        return [
            _error(
                8,
                f"ORMCACHE['MODELS'] label {label!r} is not 'app_label.model_name', "
                "'app_label.*' or '*'.",
                "Labels look like 'blog.post' (case does not matter).",
            )
        ]
    if label == "*":
        return []
    app_label, model_name = label.lower().split(".")
    try:
        app_config = apps.get_app_config(app_label)
    except LookupError:
        known = ", ".join(sorted(c.label for c in apps.get_app_configs()))
        return [
            _error(
                6,
                f"ORMCACHE['MODELS'] names the unknown app {app_label!r} in {label!r}.",
                f"Installed app labels: {known}.",
            )
        ]
    if model_name != "*":
        try:
            app_config.get_model(model_name)
        except LookupError:
            known = ", ".join(sorted(str(m._meta.model_name) for m in app_config.get_models()))
            return [
                _error(
                    7,
                    f"ORMCACHE['MODELS'] names the unknown model {label!r}.",
                    f"Models of {app_label!r}: {known or '(none)'}.",
                )
            ]
    return []


def _check_policy(label: Any, policy: Any) -> list[Any]:
    if not isinstance(policy, dict):
        return [
            _error(
                9,
                f"The policy of {label!r} must be a dict.",
                'For example {"enabled": True, "timeout": 600, "user_scoped": False}.',
            )
        ]
    problems: list[Any] = []
    unknown = sorted(set(policy) - set(conf.POLICY_KEYS))
    if unknown:
        problems.append(
            _error(
                9,
                f"Unknown policy keys for {label!r}: {', '.join(map(repr, unknown))}.",
                f"Allowed keys: {', '.join(sorted(conf.POLICY_KEYS))}.",
            )
        )
    if "timeout" in policy and not _valid_timeout(policy["timeout"]):
        problems.append(
            _error(
                10,
                f"The timeout of {label!r} must be a non-negative int or None, "
                f"got {policy['timeout']!r}.",
                "Use seconds, e.g. 600, or None for no expiry.",
            )
        )
    if "stale_save" in policy and policy["stale_save"] not in conf.STALE_SAVE_CHOICES:
        problems.append(
            _error(
                13,
                f"'stale_save' of {label!r} must be one of "
                f"{', '.join(map(repr, conf.STALE_SAVE_CHOICES))}, got {policy['stale_save']!r}.",
                "'warn' logs and saves (the default), 'raise' refuses the save, "
                "'allow' skips the check.",
            )
        )
    if "longevity" in policy and policy["longevity"] not in conf.LONGEVITY_CHOICES:
        problems.append(
            _error(
                18,
                f"'longevity' of {label!r} must be one of "
                f"{', '.join(map(repr, conf.LONGEVITY_CHOICES))}, got {policy['longevity']!r}.",
                "'invalidate' (the default): writes make cached reads misses; 'fixed': "
                "cached reads live out their timeout (data may lag by that much).",
            )
        )
    if "granularity" in policy and policy["granularity"] not in conf.GRANULARITY_CHOICES:
        problems.append(
            _error(
                80,
                f"'granularity' of {label!r} must be one of "
                f"{', '.join(map(repr, conf.GRANULARITY_CHOICES))}, "
                f"got {policy['granularity']!r}.",
                "'row' (the default): reads pinned to primary keys depend on those rows; "
                "'table': every read depends on its whole tables.",
            )
        )
    for key in ("enabled", "user_scoped"):
        if key in policy and not isinstance(policy[key], bool):
            problems.append(
                _error(
                    11,
                    f"{key!r} of {label!r} must be True or False, got {policy[key]!r}.",
                    "Set it to a bool.",
                )
            )
    return problems


def _check_partitions() -> list[Any]:
    """``partition_by`` must name a non-key field of the model with integer or UUID values."""
    from . import rows

    bad = []
    for model in apps.get_models(include_auto_created=True):
        name = rows.own_partition_by(model)
        if name is None:
            continue
        field = rows.partition_field(model, name)
        if field is None or field.primary_key or rows.value_kind(field) is None:
            bad.append(f"{model._meta.label_lower} ({name!r})")
    if not bad:
        return []
    return [
        _error(
            81,
            f"'partition_by' names no usable field: {', '.join(bad)}.",
            'Name a field of the model itself (e.g. a foreign key: "post" or "post_id") '
            "whose values are integers or UUIDs, other than its primary key.",
        )
    ]


def _check_longevity() -> list[Any]:
    """Fixed-lifetime models, as resolved (an "app.*" entry applies to each of its models)."""
    untimed, private, unguarded = [], [], []
    for model in apps.get_models():
        policy = conf.policy_for(model)
        if policy.longevity != "fixed" or not policy.enabled:
            continue
        label = model._meta.label_lower
        if not policy.fixed:
            untimed.append(f"{label} (timeout {policy.timeout!r})")
        if policy.user_scoped:
            private.append(label)
        if policy.stale_save == "allow":
            unguarded.append(label)
    problems: list[Any] = []
    if untimed:
        problems.append(
            _error(
                19,
                f"Fixed-lifetime models need a timeout > 0: {', '.join(untimed)}.",
                "The timeout is how old their cached reads may get: set one, e.g. "
                '{"longevity": "fixed", "timeout": 60}. Until then they are invalidated.',
            )
        )
    if private:
        problems.append(
            Warning(
                f"Fixed-lifetime models that are also user_scoped: {', '.join(private)}.",
                hint="A user's own writes to them do not show until the timeout passes. "
                "Private data is usually better invalidated.",
                obj="settings.ORMCACHE",
                id="ormcache.W018",
            )
        )
    if unguarded:
        problems.append(
            Warning(
                f"Fixed-lifetime models with stale_save 'allow': {', '.join(unguarded)}.",
                hint="An instance from the cache may be up to its timeout old, and saving it "
                "silently writes its old values over newer ones. Use 'warn' or 'raise'.",
                obj="settings.ORMCACHE",
                id="ormcache.W019",
            )
        )
    return problems


# --- The page cache: ORMCACHE["PAGES"] and the middleware's place (E020-E029, W020-W029) ---

_PAGE_MIDDLEWARE = "ormcache.middleware.CacheMiddleware"
#: Middleware the page cache must come after, and why.
_PAGE_NEEDS_BEFORE = {
    "django.contrib.sessions.middleware.SessionMiddleware": "to tell logged-in sessions apart",
    "django.contrib.auth.middleware.AuthenticationMiddleware": "to know request.user",
    "django.contrib.messages.middleware.MessageMiddleware": "to see pending messages",
    "django.middleware.csrf.CsrfViewMiddleware": "to see pages that used the CSRF token",
}
_DJANGO_PAGE_CACHE = (
    "django.middleware.cache.UpdateCacheMiddleware",
    "django.middleware.cache.FetchFromCacheMiddleware",
    "django.middleware.cache.CacheMiddleware",
)


@register(Tags.caches, Tags.security)
def check_pages(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """``ORMCACHE["PAGES"]`` and the position of the page cache middleware."""
    raw = getattr(settings, "ORMCACHE", {})
    pages = raw.get("PAGES", {}) if isinstance(raw, dict) else {}
    return _check_page_settings(pages) + _check_page_middleware()


def _check_page_settings(pages: Any) -> list[Any]:
    hint = 'For example {"timeout": 600, "exclude_paths": [r"^/account/"]}.'
    if not isinstance(pages, dict):
        return [_error(20, "ORMCACHE['PAGES'] must be a dict.", hint)]
    problems: list[Any] = []
    unknown = conf.unknown_keys("ORMCACHE['PAGES']", pages, conf.PAGES_DEFAULTS)
    if unknown:
        problems.append(_error(21, *unknown))
    if "enabled" in pages and not isinstance(pages["enabled"], bool):
        problems.append(
            _error(22, f"PAGES['enabled'] must be True or False, got {pages['enabled']!r}.", hint)
        )
    if "timeout" in pages and not _valid_timeout(pages["timeout"]):
        problems.append(
            _error(
                22,
                f"PAGES['timeout'] must be a non-negative int or None, got {pages['timeout']!r}.",
                "Seconds a page may live at most; None: until what it read changes.",
            )
        )
    if "key_prefix" in pages and not (
        isinstance(pages["key_prefix"], str) and re.fullmatch(r"[\w.:-]*", pages["key_prefix"])
    ):
        problems.append(
            _error(
                22,
                f"PAGES['key_prefix'] must be a str of letters, digits and _.:-, "
                f"got {pages['key_prefix']!r}.",
                'For example "v2".',
            )
        )
    header = pages.get("header", "")
    if header is not None and not (
        isinstance(header, str) and (header == "" or re.fullmatch(r"[!#$%&'*+.^_`|~\w-]+", header))
    ):
        problems.append(
            _error(
                22,
                f"PAGES['header'] must be a header name, or None for no header, got {header!r}.",
                'The default is "X-Ormcache".',
            )
        )
    headers = pages.get("vary_on_headers", ())
    if not (isinstance(headers, (list, tuple)) and all(isinstance(h, str) for h in headers)):
        problems.append(
            _error(
                22,
                f"PAGES['vary_on_headers'] must be a list of header names, got {headers!r}.",
                'For example ["Accept-Language"].',
            )
        )
    for name in ("exclude_paths", "include_paths"):
        problems += _check_patterns(name, pages.get(name, ()))
    return problems


def _check_patterns(name: str, patterns: Any) -> list[Any]:
    hint = r'A list of regular expressions searched in request.path, e.g. [r"^/account/"].'
    if isinstance(patterns, str) or not isinstance(patterns, (list, tuple)):
        return [_error(23, f"PAGES[{name!r}] must be a list of regexes, got {patterns!r}.", hint)]
    problems: list[Any] = []
    for pattern in patterns:
        try:
            re.compile(pattern)
        except (re.error, TypeError) as exc:
            problems.append(
                _error(23, f"PAGES[{name!r}] has a bad regex {pattern!r}: {exc}.", hint)
            )
    return problems


def _check_page_middleware() -> list[Any]:
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    positions = [i for i, path in enumerate(middleware) if _is_a(path, _PAGE_MIDDLEWARE)]
    if not positions:
        return []
    ours = positions[0]
    problems: list[Any] = []
    for path, why in _PAGE_NEEDS_BEFORE.items():
        later = [i for i, entry in enumerate(middleware) if i > ours and _is_a(entry, path)]
        if later:
            problems.append(
                Error(
                    f"{middleware[ours]} comes before {middleware[later[0]]} in MIDDLEWARE.",
                    hint=f"The page cache needs {path.rsplit('.', 1)[-1]} above it {why}: "
                    "put ormcache's CacheMiddleware last.",
                    obj="settings.MIDDLEWARE",
                    id="ormcache.E024",
                )
            )
    if ours != len(middleware) - 1:
        problems.append(
            Warning(
                f"{middleware[ours]} is not the last entry of MIDDLEWARE.",
                hint="Middleware below it runs inside the cached part: what it adds to a "
                "response is stored and served to everyone. Put it last.",
                obj="settings.MIDDLEWARE",
                id="ormcache.W020",
            )
        )
    if any(_is_a(entry, path) for entry in middleware for path in _DJANGO_PAGE_CACHE):
        problems.append(
            Warning(
                "Django's cache middleware is installed with ormcache's page cache.",
                hint="Django's serves pages until a timeout, without ormcache's privacy "
                "rules or invalidation. Remove it.",
                obj="settings.MIDDLEWARE",
                id="ormcache.W021",
            )
        )
    return problems


def _is_a(entry: Any, dotted_path: str) -> bool:
    """``entry`` (a MIDDLEWARE string) is ``dotted_path`` or a subclass of it."""
    if entry == dotted_path:
        return True
    from django.utils.module_loading import import_string

    try:
        found, wanted = import_string(entry), import_string(dotted_path)
    except ImportError:
        return False
    return isinstance(found, type) and isinstance(wanted, type) and issubclass(found, wanted)
