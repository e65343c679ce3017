"""System checks for ``ORMCACHE["DOWNSTREAM"]`` (E060-E069, W060-W069).

A purger that cannot be built, or a header a proxy would reject, fails at start,
not at the first write in production.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from . import conf

_HEADER = re.compile(r"[!#$%&'*+.^_`|~\w-]+")
_KEY_PREFIX = re.compile(r"[A-Za-z0-9_.$-]{1,40}")
_HINT = 'For example {"enabled": True, "surrogate_key_header": "xkey", "purgers": [...]}.'


def _error(code: int, msg: str, hint: str = _HINT) -> Error:
    return conf.settings_error(code, msg, hint)


def _seconds(value: Any, *, allow_none: bool = False) -> bool:
    if value is None:
        return allow_none
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def _whole_seconds(value: Any, *, allow_none: bool = False) -> bool:
    return _seconds(value, allow_none=allow_none) and not isinstance(value, float)


#: key -> (valid?, what it must be)
_VALUES = {
    "enabled": (lambda v: isinstance(v, bool), "True or False"),
    "mark_private": (lambda v: isinstance(v, bool), "True or False"),
    "surrogate_key_header": (
        lambda v: v is None or (isinstance(v, str) and (v == "" or _HEADER.fullmatch(v))),
        'a header name ("Surrogate-Key", "xkey"), or None for none',
    ),
    "key_prefix": (
        lambda v: isinstance(v, str) and _KEY_PREFIX.fullmatch(v),
        "1 to 40 letters, digits or _.$-",
    ),
    "s_maxage": (
        lambda v: _whole_seconds(v, allow_none=True),
        "whole seconds >= 0, or None for the page's own lifetime",
    ),
    "max_age": (lambda v: _whole_seconds(v), "whole seconds >= 0"),
    "purge_delay": (lambda v: _seconds(v), "seconds >= 0"),
    "repurge_after": (
        lambda v: v is None or (_seconds(v) and v > 0),
        "seconds > 0, or None for no second purge",
    ),
    "max_pending": (lambda v: _whole_seconds(v) and v >= 1, "an int >= 1"),
    "retries": (lambda v: _whole_seconds(v), "an int >= 0"),
}


@register(Tags.caches)
def check_downstream(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    raw = getattr(settings, "ORMCACHE", {})
    if not isinstance(raw, dict) or "DOWNSTREAM" not in raw:
        return []
    given = raw["DOWNSTREAM"]
    if not isinstance(given, dict):
        return [_error(60, f"ORMCACHE['DOWNSTREAM'] must be a dict, got {given!r}.")]
    problems: list[Any] = []
    unknown = conf.unknown_keys("ORMCACHE['DOWNSTREAM']", given, conf.DOWNSTREAM_DEFAULTS)
    if unknown:
        problems.append(_error(61, *unknown))
    for key, (valid, must_be) in _VALUES.items():
        if key in given and not valid(given[key]):
            problems.append(
                _error(62, f"DOWNSTREAM[{key!r}] must be {must_be}, got {given[key]!r}.")
            )
    problems += _check_purgers(given.get("purgers", ()))
    if not problems and given.get("enabled") is True:
        problems += _warnings(conf.downstream_options())
    return problems


def _check_purgers(purgers: Any) -> list[Any]:
    from .purge import build_purger

    hint = (
        'A list of dicts: {"class": "ormcache.purge.HTTPPurger", '
        '"urls": ["http://127.0.0.1:6081/"]}; the other keys are the class\'s arguments.'
    )
    if isinstance(purgers, (str, dict)) or not isinstance(purgers, (list, tuple)):
        return [_error(63, f"DOWNSTREAM['purgers'] must be a list, got {purgers!r}.", hint)]
    problems = []
    for entry in purgers:
        if not isinstance(entry, dict):
            problems.append(_error(63, f"A purger must be a dict, got {entry!r}.", hint))
            continue
        try:
            purger = build_purger(entry)
        except (ImportError, AttributeError, ValueError) as exc:
            problems.append(_error(64, f"Purger {entry!r} cannot be built: {exc}.", hint))
            continue
        except TypeError as exc:
            problems.append(_error(64, f"Purger {entry!r} got bad arguments: {exc}.", hint))
            continue
        if not callable(getattr(purger, "purge", None)):
            problems.append(_error(64, f"Purger {entry!r} has no purge(keys) method.", hint))
    return problems


def _warnings(options: dict[str, Any]) -> list[Any]:
    found = []
    if not options["purgers"] and options["s_maxage"] != 0:
        found.append(
            Warning(
                "ORMCACHE['DOWNSTREAM'] marks pages shareable but has no purgers: a proxy or "
                "CDN may serve a page for up to s-maxage after the data it shows changed.",
                hint="Add a purger, connect ormcache.signals.purge_requested to your CDN's "
                "purge API (and silence this warning), or set s_maxage to 0 (revalidate).",
                obj="settings.ORMCACHE",
                id="ormcache.W060",
            )
        )
    middleware = list(getattr(settings, "MIDDLEWARE", None) or ())
    pages = conf.page_options()
    if "ormcache.middleware.CacheMiddleware" not in middleware or pages["enabled"] is not True:
        found.append(
            Warning(
                "ORMCACHE['DOWNSTREAM'] is enabled but the page cache is not in use: only "
                "views with ormcache's cache_page decorator get downstream headers.",
                hint="Add ormcache.middleware.CacheMiddleware last in MIDDLEWARE and leave "
                "PAGES['enabled'] on.",
                obj="settings.ORMCACHE",
                id="ormcache.W061",
            )
        )
    return found
