"""Wiring at start-up: the write watcher on every connection, caching for listed
third-party models, and the system checks."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig, apps
from django.db import connections
from django.db.backends.signals import connection_created


class OrmcacheConfig(AppConfig):
    name = "ormcache"
    verbose_name = "ormcache"

    def ready(self) -> None:
        from django.db.models.signals import post_save, pre_save

        from . import checks, downstream_checks, l1, stats  # noqa: F401  (registers the checks)
        from .installer import install_listed_models
        from .stale import check_before_save, forget_after_save

        connection_created.connect(watch_connection, dispatch_uid="ormcache.watch_connection")
        for connection in connections.all(initialized_only=True):
            watch_connection(connection=connection)
        install_listed_models(apps.get_models())
        pre_save.connect(check_before_save, dispatch_uid="ormcache.stale_save")
        post_save.connect(forget_after_save, dispatch_uid="ormcache.stale_save")
        stats.sync()  # connects the stats counters when ORMCACHE["STATS"] turns them on
        # Scaled-out set-ups: Redis replicas, Sentinel and Cluster checks; writes outside
        # Django (ORMCACHE["TRIGGERS"]): mark Django's own sessions, start listener threads.
        from . import listener, scaling_checks, triggers  # noqa: F401  (registers checks)

        connection_created.connect(triggers.mark_django_session, dispatch_uid="ormcache.triggers")
        listener.start_in_process()


def watch_connection(sender: Any = None, connection: Any = None, **kwargs: Any) -> None:
    """Attach the write watcher once per connection object (it persists across reconnects)."""
    from .invalidation import watch_writes

    if watch_writes not in connection.execute_wrappers:
        # First in the list, not last: a connection opened inside a user's
        # ``with connection.execute_wrapper(w):`` would otherwise put us after ``w``,
        # and the block's exit (a plain ``pop()``) would remove us instead of ``w``.
        connection.execute_wrappers.insert(0, watch_writes)
