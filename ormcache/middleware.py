"""The page cache middleware: ``"ormcache.middleware.CacheMiddleware"``, last in MIDDLEWARE.

For each request it opens a ``pages.Page``: in ``process_view``, once the URL
is resolved, it applies the privacy rules and answers from the cache when a
current page is there; otherwise the view runs while its reads are recorded,
and the response is stored with their version snapshot. Every response says
what happened in the ``X-Ormcache`` header: ``hit``, ``miss`` or ``bypass
(reason)``. See ``pages.py`` for the keys and the storage, ``page_rules.py``
for the rules and docs/pages.md for the whole story.

It goes last in ``MIDDLEWARE``: the privacy rules need ``request.user`` (from
AuthenticationMiddleware, after SessionMiddleware) and the messages (from
MessageMiddleware), and every middleware above it then processes hits and
misses alike, so a cached page gets the same per-request headers and cookies
as a fresh one. The system checks ``ormcache.E024``/``W020`` say so at start.

Sync and async: under WSGI it is a plain middleware; under ASGI its
``__call__`` is a coroutine, and the parts that touch the session, the
database or the cache run in the request's sync thread (``process_view`` is
adapted by Django, ``finish`` goes through ``sync_to_async``).
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async

from . import pages


class CacheMiddleware:
    """Serve anonymous GET/HEAD pages from the cache while what they read is unchanged."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        page = pages.attach(request, pages.Page(request))
        with page.recording():
            response = self.get_response(request)
        return page.finish(response)

    async def __acall__(self, request: Any) -> Any:
        page = pages.attach(request, pages.Page(request))
        with page.recording():
            response = await self.get_response(request)
        if not page.may_store:
            return page.finish(response)  # headers only: no need for a thread
        return await sync_to_async(page.finish, thread_sensitive=True)(response)

    def process_view(self, request: Any, view_func: Any, view_args: Any, view_kwargs: Any) -> Any:
        page = pages.attached(request)
        if page is None:
            return None
        return page.lookup(view_func)
