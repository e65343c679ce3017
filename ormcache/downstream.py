"""Headers for the caches in front of the site: proxies (Varnish, Squid) and CDNs.

The page cache decides, for each response, whether it is a *shared* page (built
for anonymous visitors from data ormcache versions) or not. This module says so
to downstream caches, in ``ORMCACHE["DOWNSTREAM"]`` terms:

- A shared page gets ``Cache-Control: public, max-age=<max_age>,
  s-maxage=<lifetime>`` (the page's own lifetime, at most ``s_maxage``), its
  version ``ETag`` (set by the page cache), and a surrogate-key header naming
  every table it read, plus one key every shared page carries (``<prefix>-all``).
  When a table's version is bumped, ``purge.py`` purges its key downstream.
- A private page (built for or from one visitor: credentials, a logged-in user,
  the session, the CSRF token, messages, cookies set, admin, user-scoped models)
  gets ``private`` and loses ``public``/``s-maxage``, whatever the view said, so a
  proxy cannot leak it either. That holds with ``enabled`` off too
  (``mark_private``).
- Any other page the page cache did not store, when ``enabled``, gets
  ``private`` unless the view chose its own ``Cache-Control``: ormcache could
  not purge it, so a proxy must not keep it. A page is marked shared before it
  is stored (the stored copy carries the marks), and unmarked if the store fails.
- A shared page on a response the middleware above will add a cookie to (a hit
  too) is made private like the pages of one visitor.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.core.signals import setting_changed
from django.utils.cache import patch_cache_control

from . import conf, keys, page_rules

#: The surrogate key of a table on a database alias is ``<prefix>-<alias>-<table>``,
#: from the parts of its version key (already restricted to ``[A-Za-z0-9_.$-]``); a row-level
#: key (rows.py) names its table the same way, so a page that read rows of a table is
#: purged with the table. A fixed-lifetime read's key (``...:fixed``, longevity.py) maps to
#: ``...-<table>-fixed``: writes do not purge it, explicit invalidation does.
_VERSION_KEY = re.compile(
    rf"^{re.escape(keys.PREFIX)}:v:([^:]+):([^:]+)"
    r"(?::(?:rw|pw|i|r:[^:]+|p:[^:]+(?::[^:]+)?)|(:fixed))?$"
)
#: Directives that make a response shareable; a private page must not keep them.
_SHARED_DIRECTIVES = ("public", "s-maxage")
_ONE_YEAR = 365 * 24 * 3600


@dataclass(frozen=True)
class DownstreamOptions:
    """``ORMCACHE["DOWNSTREAM"]``, validated for use (the checks report what was wrong)."""

    enabled: bool
    surrogate_key_header: str
    key_prefix: str
    s_maxage: int | None
    max_age: int
    mark_private: bool

    @property
    def everything_key(self) -> str:
        """The surrogate key every shared page carries: purging it purges them all."""
        return f"{self.key_prefix}-all"


_options_memo: list[Any] = [None, None]


def options() -> DownstreamOptions:
    """The downstream options, memoised per ``ORMCACHE`` object."""
    source = conf.get_settings()
    if _options_memo[0] is not source:
        _options_memo[:] = [source, _build_options(conf.downstream_options())]
    return _options_memo[1]


def _forget(*, setting: str, **kwargs: Any) -> None:
    if setting == "ORMCACHE":
        _options_memo[:] = [None, None]


setting_changed.connect(_forget, dispatch_uid="ormcache.downstream")


def _build_options(raw: dict[str, Any]) -> DownstreamOptions:
    header = raw["surrogate_key_header"]
    s_maxage = raw["s_maxage"]
    max_age = raw["max_age"]
    return DownstreamOptions(
        enabled=raw["enabled"] is True,
        surrogate_key_header=header if isinstance(header, str) else "",
        key_prefix=str(raw["key_prefix"] or "ormcache"),
        s_maxage=s_maxage if s_maxage is None or _seconds(s_maxage) else 0,
        max_age=max_age if _seconds(max_age) else 0,
        mark_private=raw["mark_private"] is not False,
    )


def _seconds(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def surrogate_key(version_key: str) -> str | None:
    """The surrogate key of a version key (None for the global version)."""
    found = _VERSION_KEY.match(version_key)
    if found is None or found.group(2) == "*":
        return None
    suffix = "-fixed" if found.group(3) else ""
    return f"{options().key_prefix}-{found.group(1)}-{found.group(2)}{suffix}"


def surrogate_keys(version_keys: Iterable[str]) -> list[str]:
    """The keys a page carries: one per table it read, and the everything key."""
    found = {key for key in map(surrogate_key, version_keys) if key}
    return [*sorted(found), options().everything_key]


def mark_shared(
    response: Any, version_keys: Iterable[str], lifetime: int | None
) -> Callable[[], None]:
    """Say that ``response`` may be kept by shared caches until its tables change.

    ``lifetime``: how long ormcache keeps the page itself (None: until it changes).
    The view's own ``max-age``/``s-maxage`` win when it set them. Returns a function
    that takes the marks off again: the page cache marks a page before storing it
    (the stored copy carries the marks), and a page it then could not store is not
    shared (ormcache could not purge it).
    """
    settings = options()
    if not settings.enabled:
        return _nothing_to_undo
    names = ("Cache-Control", settings.surrogate_key_header)
    before = {name: response.headers.get(name) for name in names if name}

    def unmark() -> None:
        for name, value in before.items():
            if value is None:
                response.headers.pop(name, None)
            else:
                response.headers[name] = value

    s_maxage = lifetime
    if settings.s_maxage is not None and (s_maxage is None or settings.s_maxage < s_maxage):
        s_maxage = settings.s_maxage
    current = _directives(response)
    directives: dict[str, Any] = {"public": True}
    if "s-maxage" not in current:
        directives["s_maxage"] = _ONE_YEAR if s_maxage is None else s_maxage
    if "max-age" not in current:
        directives["max_age"] = settings.max_age
    patch_cache_control(response, **directives)
    if settings.surrogate_key_header:
        response.headers[settings.surrogate_key_header] = " ".join(surrogate_keys(version_keys))
    return unmark


def _nothing_to_undo() -> None:
    return None


def mark_not_shared(response: Any, *, private: bool) -> None:
    """A page the page cache did not store: ``private`` says it was built for one visitor."""
    settings = options()
    if private and (settings.mark_private or settings.enabled):
        _make_private(response)
    elif settings.enabled and not response.has_header("Cache-Control"):
        patch_cache_control(response, private=True)


def _make_private(response: Any) -> None:
    current = _directives(response)
    if "no-store" in current and "private" in current:
        return
    if any(directive in current for directive in _SHARED_DIRECTIVES):
        kept = [
            part
            for part in response.headers["Cache-Control"].split(",")
            if part.split("=", 1)[0].strip().lower() not in _SHARED_DIRECTIVES
        ]
        response.headers["Cache-Control"] = ",".join(kept).strip(", ")
        if not response.headers["Cache-Control"]:
            del response.headers["Cache-Control"]
    extra: dict[str, Any] = {"private": True}
    if "max-age" not in _directives(response) and "no-store" not in current:
        extra["no_cache"] = True  # browsers: ask again (the ETag makes it cheap)
    patch_cache_control(response, **extra)
    options_ = options()
    if options_.surrogate_key_header and response.has_header(options_.surrogate_key_header):
        del response.headers[options_.surrogate_key_header]


def _directives(response: Any) -> set[str]:
    if not response.has_header("Cache-Control"):
        return set()
    return set(page_rules.split_directive_names(response.headers["Cache-Control"]))
