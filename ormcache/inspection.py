"""What applies to a model or a URL: keys, dependencies, versions, and the reads a page makes.

Used by ``manage.py ormcache inspect``, the admin stats page and the debug
toolbar panel. Everything here only reads (it installs a fresh version token
where one is unknown, as any reader would), except ``inspect_url``, which runs
the view like a request from a browser: its writes happen.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import connections

from . import conf, reads, stats, tables, versions
from .query import CachedQuerySetMixin


def inspect_model(model: Any) -> dict[str, Any]:
    """Policy, tables, version keys and current tokens of one model, per database alias."""
    policy = conf.policy_for(model)
    deps = sorted(tables.tables_of_model(model))
    sharing = sorted({m._meta.label_lower for t in deps for m in tables.models_for_table(t)})
    manager = type(model._default_manager)
    return {
        "kind": "model",
        "model": model._meta.label_lower,
        "cached_manager": isinstance(model._default_manager.get_queryset(), CachedQuerySetMixin),
        "manager": f"{manager.__module__}.{manager.__qualname__}",
        "policy": {
            "enabled": policy.enabled and conf.is_enabled(),
            "timeout": policy.timeout,
            "user_scoped": policy.user_scoped,
            "stale_save": policy.stale_save,
            "longevity": "fixed" if policy.fixed else "invalidate",
        },
        "tables": deps,
        "models_in_these_tables": sharing,
        "versions": _versions(_by_alias(deps)),
        "stats": stats_dict(
            stats.read([model._meta.label_lower]).get(
                model._meta.label_lower, stats.ModelStats(model._meta.label_lower)
            )
        ),
    }


def inspect_url(
    url: str, *, username: str | None = None, host: str | None = None
) -> dict[str, Any]:
    """GET ``url`` through the whole stack and report what it read and what applies to it."""
    from django.test import Client
    from django.test.utils import override_settings

    host = host or _default_host()
    client = Client(HTTP_HOST=host, raise_request_exception=False)
    if username:
        user_model = apps.get_model(settings.AUTH_USER_MODEL)
        try:
            client.force_login(user_model._default_manager.get_by_natural_key(username))
        except user_model.DoesNotExist as exc:
            raise LookupError(f"No user {username!r}.") from exc
    with reads.recording() as events:
        response = client.get(url)
    page_header = page_cache_header(response)
    note = ""
    if not events and page_header.startswith("hit"):
        # The page cache answered without running the view: run it once more with the
        # page cache off to see what the page depends on.
        note = "served by the page cache; the reads are those of a second run without it"
        raw = conf.get_settings()
        pages_off = {**(raw.get("PAGES") or {}), "enabled": False}
        with override_settings(ORMCACHE={**raw, "PAGES": pages_off}), reads.recording() as events:
            client.get(url)
    read_list = [
        {
            "model": event.model._meta.label_lower if event.model is not None else None,
            "database": event.db_alias,
            "outcome": event.outcome,
            "reason": event.reason,
            "tables": sorted(event.tables) if event.tables is not None else None,
            "sql": getattr(event, "sql", None),
        }
        for event in events
    ]
    dependencies: dict[str, set[str]] = {}
    unknown = False
    for event in events:
        if event.tables is None:
            unknown = True
            continue
        dependencies.setdefault(event.db_alias, set()).update(event.tables)
    return {
        "kind": "url",
        "url": url,
        "host": host,
        "user": username,
        "status": response.status_code,
        "page_cache": page_header or None,
        "page_key": _page_key(url, host),
        "note": note,
        "reads": read_list,
        "dependencies": {alias: sorted(found) for alias, found in sorted(dependencies.items())},
        "unknown_dependencies": unknown,
        "versions": _versions({a: sorted(t) for a, t in dependencies.items()}),
    }


def _by_alias(deps: list[str]) -> dict[str, list[str]]:
    return {alias: deps for alias in connections}


def _versions(deps_by_alias: dict[str, list[str]]) -> dict[str, dict[str, str]]:
    """Per alias: version key -> the current token, described for people."""
    found = {}
    for alias, deps in sorted(deps_by_alias.items()):
        current = reads.current_versions(alias, deps)
        if current is None:
            found[alias] = {"error": "cache unavailable"}
            continue
        found[alias] = {key: describe_token(token) for key, token in current.items()}
    return found


def describe_token(token: Any, *, short: bool = False) -> str:
    """A token as text: hex digits plus when it was bumped, or what kind of token it is."""
    when = versions.bumped_at(token)
    if when is not None:
        stamp = datetime.datetime.fromtimestamp(when, tz=datetime.timezone.utc)
        moment = f"{stamp:%H:%M:%S}" if short else f"bumped {stamp:%Y-%m-%d %H:%M:%S} UTC"
        return f"{token & (2**64 - 1):016x} ({moment})"
    if isinstance(token, str) and token.startswith("pending"):
        if short:
            return "pending (a write has not committed)"
        return f"{token} (a write has not committed yet: nothing is stored)"
    return repr(token)


def _default_host() -> str:
    for host in settings.ALLOWED_HOSTS:
        if host == "*":
            return "localhost"
        if host.startswith("."):
            return host[1:]
        return host
    return "localhost"


def page_cache_header(response: Any) -> str:
    """What the page cache did with a response (its ``X-Ormcache`` header), or ""."""
    try:
        from ormcache import pages

        name = pages.options().header
    except Exception:  # the page cache is optional
        name = "X-Ormcache"
    return response.headers.get(name or "X-Ormcache", "")


def _page_key(url: str, host: str) -> str | None:
    """The key the page cache stores a GET of ``url`` under (before any Vary of the view)."""
    try:
        from django.test import RequestFactory

        from ormcache import pages

        return pages.Page(RequestFactory(HTTP_HOST=host).get(url)).key("GET")
    except Exception:
        return None


def stats_dict(item: stats.ModelStats) -> dict[str, Any]:
    return item.as_dict()
