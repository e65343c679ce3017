"""ormcache: a transparent, never-stale cache for Django's ORM and pages.

Public API::

    from ormcache import CachedManager

    class Post(models.Model):
        objects = CachedManager()

    Post.objects.filter(...).nocache()        # always from the database
    Post.objects.filter(...).cache(timeout=60)
    ormcache.invalidate(Post)                  # after writes ormcache cannot see
    ormcache.invalidate_all()
    with ormcache.disabled(): ...              # also a decorator

    @ormcache.cached_as(Comment)               # a function's result, never stale
    @ormcache.cached_property(depends_on=["blog.comment"])   # a model property
"""

from __future__ import annotations

from typing import Any

from .decorators import cache_page, no_page_cache
from .memoize import NOT_CACHED, cached_as, cached_property
from .query import CachedManager, CachedQuerySet, CachedQuerySetMixin
from .reads import disabled
from .stale import StaleObjectError
from .verify import StaleCacheError

__all__ = [
    "NOT_CACHED",
    "CachedManager",
    "CachedQuerySet",
    "CachedQuerySetMixin",
    "StaleCacheError",
    "StaleObjectError",
    "cache_page",
    "cached_as",
    "cached_property",
    "disabled",
    "invalidate",
    "invalidate_all",
    "no_page_cache",
]

__version__ = "0.1.0"


def invalidate(*models: Any) -> None:
    """Make every cached read of ``models`` (classes or "app.model" labels) a miss."""
    from django.apps import apps

    from .invalidation import invalidate_models

    resolved = [apps.get_model(model) if isinstance(model, str) else model for model in models]
    invalidate_models(resolved)


def invalidate_all() -> None:
    """Make every cached read a miss, on every database."""
    from .invalidation import invalidate_everything

    invalidate_everything()
