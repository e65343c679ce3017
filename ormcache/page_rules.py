"""Which requests and responses the page cache may serve and store.

invariant 7 (pages never leak): a page is stored only when it was built for an
anonymous visitor and depends on nothing private, and it is served only to
anonymous visitors. Each rule returns the reason for a bypass, or "" when the
page may go on; the reasons end up in the ``X-Ormcache`` header.

Before the cache is looked up, so a private request is never answered from it:

- ``method_rule`` and ``path_rule``: GET/HEAD only, ``exclude_paths``/``include_paths``;
- ``view_rule``: the view opted out (``no_page_cache``, Django's ``never_cache``)
  or belongs to an admin site;
- ``credentials_rule``: an Authorization header, a logged-in session, an
  authenticated ``request.user``, pending messages.

After the view, before anything is stored:

- ``after_view``: what building the page did with the request (logged someone
  in, used the session, the CSRF token or messages);
- ``response_rule``: what the response says about itself (status, streaming,
  cookies, Cache-Control, Vary), read with ``django.utils.cache``'s helpers.

And for downstream caches, ``gets_a_cookie_above``: the middleware above the
page cache will add a cookie to this response (a hit too), so it is not shared.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Any

from django.apps import apps
from django.conf import settings
from django.utils.cache import get_max_age, has_vary_header

try:  # Django >= 6.1 splits header values in django.utils.http
    from django.utils.http import (  # type: ignore[attr-defined,unused-ignore]
        split_directive_names,
        split_header_value,
    )
except ImportError:  # older Django: django.utils.cache.cc_delim_re
    from django.utils.cache import cc_delim_re  # type: ignore[attr-defined,unused-ignore]

    def split_header_value(value: str, sep: str = ",") -> Iterator[str]:
        for part in cc_delim_re.split(value):
            if part.strip():
                yield part.strip()

    def split_directive_names(value: str) -> Iterator[str]:
        for part in split_header_value(value):
            yield part.split("=", 1)[0].strip().lower()


#: Set on views (and their wrappers) by ``ormcache.decorators``.
OPT_OUT_ATTR = "_ormcache_no_page_cache"
CACHE_PAGE_ATTR = "_ormcache_cache_page"

_SAFE_METHODS = ("GET", "HEAD")
_REFUSING_DIRECTIVES = ("private", "no-store", "no-cache")


def method_rule(request: Any) -> str:
    if request.method not in _SAFE_METHODS:
        return f"method {request.method}"
    return ""


def path_rule(
    request: Any, exclude: tuple[re.Pattern, ...], include: tuple[re.Pattern, ...]
) -> str:
    path = request.path
    if any(pattern.search(path) for pattern in exclude):
        return "excluded path"
    if include and not any(pattern.search(path) for pattern in include):
        return "path not included"
    return ""


def view_rule(view_func: Any, resolver_match: Any) -> str:
    """The rules that depend on the view only (opt-outs, admin)."""
    for func in _unwrapped(view_func):
        if getattr(func, OPT_OUT_ATTR, False):
            return "view opted out"
        if getattr(func, "__code__", None) in _never_cache_codes():
            return "never_cache"
    if is_admin_view(view_func, resolver_match):
        return "admin"
    return ""


def credentials_rule(request: Any) -> str:
    """Private requests: credentials, a logged-in session, a logged-in user, pending messages.

    Loads the session when the request carries its cookie (Django would load it
    anyway to find the user); the caller keeps those reads out of the page.
    """
    if "HTTP_AUTHORIZATION" in request.META:
        return "Authorization header"
    if settings.SESSION_COOKIE_NAME in request.COOKIES:
        session = getattr(request, "session", None)
        if session is None:
            # A session we cannot look into: it may well be a logged-in user's.
            return "session cookie, and no SessionMiddleware before ormcache"
        if _auth_session_key() in session:
            return "session of a logged-in user"
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return "authenticated user"
    if _message_count(request):
        return "pending messages"
    return ""


def after_view(request: Any, session_used: bool) -> str:
    """What building the page did that makes it private to this visitor."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return "authenticated user"
    if session_used:
        return "the page used the session"
    if request.META.get("CSRF_COOKIE_NEEDS_UPDATE") or request.META.get("CSRF_COOKIE_USED"):
        return "the page used the CSRF token"
    if _message_count(request):
        return "messages"
    return ""


def gets_a_cookie_above(request: Any) -> bool:
    """Whether Django's middleware above the page cache will set a cookie on the response.

    Such a response is not for shared caches, even when its page is the anonymous one:
    SessionMiddleware saves the session and sets its cookie when it was modified or
    ``SESSION_SAVE_EVERY_REQUEST`` is on, and deletes the cookie of a session that is
    empty (expired, say); CsrfViewMiddleware renews a missing or malformed token's
    cookie (``CSRF_COOKIE_NEEDS_UPDATE``).
    """
    if request.META.get("CSRF_COOKIE_NEEDS_UPDATE"):
        return True
    session = getattr(request, "session", None)
    if session is None or not callable(getattr(session, "is_empty", None)):
        return False
    empty = session.is_empty()
    if empty:
        return settings.SESSION_COOKIE_NAME in request.COOKIES
    return bool(getattr(session, "modified", False) or settings.SESSION_SAVE_EVERY_REQUEST)


def response_rule(response: Any) -> str:
    if getattr(response, OPT_OUT_ATTR, False):
        return "view opted out"
    if response.status_code != 200:
        return f"status {response.status_code}"
    if response.streaming:
        return "streaming response"
    if response.cookies or response.has_header("Set-Cookie"):
        return "Set-Cookie"
    if response.has_header("Cache-Control"):
        directives = set(split_directive_names(response.headers["Cache-Control"]))
        for directive in _REFUSING_DIRECTIVES:
            if directive in directives:
                return f"Cache-Control: {directive}"
        if get_max_age(response) == 0:
            return "Cache-Control: max-age=0"
    if has_vary_header(response, "*"):
        return "Vary: *"
    return ""


def is_admin_view(view_func: Any, resolver_match: Any = None) -> bool:
    """True for any view of a ``django.contrib.admin`` site, whatever its URL.

    ``AdminSite.urls`` always has the application namespace "admin", whatever the
    site's name and prefix; its views carry ``admin_site`` or ``model_admin``
    (Django's wrappers) or are bound methods of the site (login, logout, the
    catch-all view) or of a ModelAdmin.
    """
    if resolver_match is not None and "admin" in getattr(resolver_match, "app_names", ()):
        return True
    owners = _admin_classes()
    if not owners:
        return False
    for func in _unwrapped(view_func):
        for attr in ("admin_site", "model_admin", "__self__"):
            if isinstance(getattr(func, attr, None), owners):
                return True
    return False


def _unwrapped(func: Any) -> Iterator[Any]:
    """The view and everything it wraps (decorators, partials, class-based views)."""
    seen: set[int] = set()
    while func is not None and id(func) not in seen and len(seen) < 32:
        seen.add(id(func))
        yield func
        view_class = getattr(func, "view_class", None)
        if view_class is not None:
            yield view_class
        func = getattr(func, "__wrapped__", None) or getattr(func, "func", None)


@functools.cache
def _never_cache_codes() -> frozenset[Any]:
    """The code of Django's ``never_cache`` wrappers, to recognise the views it wraps."""
    from django.views.decorators.cache import never_cache

    def sync_view(request: Any) -> None:  # pragma: no cover - never called
        return None

    async def async_view(request: Any) -> None:  # pragma: no cover - never called
        return None

    codes = set()
    for view in (sync_view, async_view):
        code = getattr(never_cache(view), "__code__", None)
        if code is not None:
            codes.add(code)
    return frozenset(codes)


def _admin_classes() -> tuple[type, ...]:
    if not apps.is_installed("django.contrib.admin"):
        return ()
    from django.contrib.admin.options import BaseModelAdmin
    from django.contrib.admin.sites import AdminSite

    return (AdminSite, BaseModelAdmin)


def _auth_session_key() -> str:
    from django.contrib.auth import SESSION_KEY

    return SESSION_KEY


def _message_count(request: Any) -> int:
    """Messages loaded or queued for this request (0 without the messages framework)."""
    from django.contrib.messages import get_messages

    return len(get_messages(request))
