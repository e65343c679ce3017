"""View decorators for the page cache: cache one view, or keep one view out of it.

``@cache_page(timeout)`` caches a single view with its own timeout, under the
same rules as ``CacheMiddleware`` (which leaves such a view to its decorator).
It needs no middleware, though the privacy rules do need ``request.user``
(AuthenticationMiddleware) as usual. ``@no_page_cache`` keeps a view out of
the page cache, whatever the middleware would decide; its queries are still
cached.

A ``TemplateResponse`` is rendered inside the decorator, so that the reads of
its template are recorded with the view's; template-response middleware then
sees it already rendered.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, overload

from asgiref.sync import iscoroutinefunction, sync_to_async

from . import page_rules, pages

View = Callable[..., Any]


@overload
def cache_page(view: View, /) -> View: ...
@overload
def cache_page(
    timeout: int | None = None, *, key_prefix: str | None = None
) -> Callable[[View], View]: ...


def cache_page(timeout: Any = None, *, key_prefix: str | None = None) -> Any:
    """Cache this view's pages while what they read is unchanged (at most ``timeout`` s).

    ``@cache_page``, ``@cache_page(600)`` or ``@cache_page(600, key_prefix="v2")``;
    without a timeout, ``ORMCACHE["PAGES"]["timeout"]`` applies.
    """
    if callable(timeout):
        return cache_page()(timeout)
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0
    ):
        raise ValueError("timeout must be a non-negative int or None")

    def decorator(view: View) -> View:
        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
                page = pages.Page(request, timeout=timeout, key_prefix=key_prefix)
                cached = await sync_to_async(page.lookup, thread_sensitive=True)(
                    view, deferring=False
                )
                if cached is not None:
                    return cached
                with page.recording():
                    response = await view(request, *args, **kwargs)
                    if _needs_render(response):
                        response = await sync_to_async(response.render, thread_sensitive=True)()
                if not page.may_store:
                    return page.finish(response)
                return await sync_to_async(page.finish, thread_sensitive=True)(response)

            wrapper = async_wrapper
        else:

            @functools.wraps(view)
            def sync_wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
                page = pages.Page(request, timeout=timeout, key_prefix=key_prefix)
                cached = page.lookup(view, deferring=False)
                if cached is not None:
                    return cached
                with page.recording():
                    response = view(request, *args, **kwargs)
                    if _needs_render(response):
                        response = response.render()
                return page.finish(response)

            wrapper = sync_wrapper
        setattr(wrapper, page_rules.CACHE_PAGE_ATTR, True)
        return wrapper

    return decorator


def no_page_cache(view: View) -> View:
    """Never store or serve this view's pages from the page cache."""
    if iscoroutinefunction(view):

        @functools.wraps(view)
        async def async_wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
            return _opt_out(await view(request, *args, **kwargs))

        wrapper: View = async_wrapper
    else:

        @functools.wraps(view)
        def sync_wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
            return _opt_out(view(request, *args, **kwargs))

        wrapper = sync_wrapper
    setattr(wrapper, page_rules.OPT_OUT_ATTR, True)
    return wrapper


def _opt_out(response: Any) -> Any:
    # The response says so too, for code paths that never see the view function.
    setattr(response, page_rules.OPT_OUT_ATTR, True)
    return response


def _needs_render(response: Any) -> bool:
    return callable(getattr(response, "render", None)) and not getattr(
        response, "is_rendered", True
    )
