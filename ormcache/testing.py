"""Helpers for your project's tests: assert what the cache did, and start each test clean.

Assertions (context managers; each returns a record of what happened)::

    from ormcache.testing import assert_hits_database, assert_served_from_cache

    Post.objects.get(pk=1)                    # fills the cache
    with assert_served_from_cache():
        Post.objects.get(pk=1)                # every ormcache read in here must be a hit
    Post.objects.filter(pk=1).update(title="new")
    with assert_hits_database():
        Post.objects.get(pk=1)                # and this one must go to the database

Django's ``TestCase``: mix in ``OrmcacheTestMixin`` (``assertServedFromCache()``,
``assertHitsDatabase()``, and a clean cache in every test). pytest: the ``ormcache``
fixture (registered by ormcache's pytest plugin, loaded automatically when ormcache
is installed). No caching at all in a project's test settings, in one line::

    ORMCACHE = {**ORMCACHE, "ENABLED": False}

Why tests need a clean cache: Django rolls every ``TestCase`` test back, but the cache
is not a database and keeps what the test stored, under the version the test's writes
left. A later test that reads the same query before writing could be served rows that
were rolled back. ``reset_cache()`` (called by the mixin and the fixture before each
test) makes every entry of every earlier test a miss; it bumps one key, so it is cheap.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import connections

from . import health, reads
from .reads import ReadEvent

__all__ = [
    "OrmcacheTestMixin",
    "Record",
    "assert_hits_database",
    "assert_served_from_cache",
    "disabled",
    "reset_cache",
]

#: Same as ``ormcache.disabled``: a block (or a test, as a decorator) without caching.
disabled = reads.disabled


@dataclass
class Record:
    """What happened inside an assertion block."""

    #: One ``ormcache.reads.ReadEvent`` per read made through ormcache.
    reads: list[ReadEvent] = field(default_factory=list)
    #: ``(database alias, SQL)`` of every statement sent to any database.
    queries: list[tuple[str, str]] = field(default_factory=list)

    @property
    def hits(self) -> list[ReadEvent]:
        return [event for event in self.reads if event.outcome == "hit"]

    @property
    def database_reads(self) -> list[ReadEvent]:
        """The reads that went to the database: misses and bypasses."""
        return [event for event in self.reads if event.outcome != "hit"]

    def describe(self) -> str:
        lines = [f"{len(self.reads)} read(s) through ormcache:"]
        for event in self.reads:
            label = event.model._meta.label_lower if event.model is not None else "?"
            reason = f" ({event.reason})" if event.reason else ""
            lines.append(f"  {label} on {event.db_alias!r}: {event.outcome}{reason}")
        lines.append(f"{len(self.queries)} SQL statement(s):")
        lines.extend(f"  [{alias}] {sql}" for alias, sql in self.queries)
        return "\n".join(lines)


@contextlib.contextmanager
def _recording() -> Iterator[Record]:
    record = Record()

    def watch(execute: Callable[..., Any], sql: Any, params: Any, many: bool, context: Any) -> Any:
        record.queries.append((context["connection"].alias, str(sql)))
        return execute(sql, params, many, context)

    with contextlib.ExitStack() as stack:
        # execute_wrapper neither connects nor queries: databases a test may not use
        # stay untouched.
        for alias in connections:
            stack.enter_context(connections[alias].execute_wrapper(watch))
        events = stack.enter_context(reads.recording())
        yield record
        record.reads = list(events)


@contextlib.contextmanager
def assert_served_from_cache(*, strict: bool = False) -> Iterator[Record]:
    """Every read made through ormcache in the block is a cache hit, and there is one.

    ``strict=True`` also fails if any SQL statement reaches any database in the
    block (reads of models ormcache does not cache, sessions, writes...).
    """
    with _recording() as record:
        yield record
    problems = []
    if not record.reads:
        problems.append(
            "no read went through ormcache (is the model's manager a CachedManager, "
            "or its label in ORMCACHE['MODELS']?)"
        )
    if record.database_reads:
        problems.append(f"{len(record.database_reads)} read(s) went to the database")
    if strict and record.queries:
        problems.append(f"{len(record.queries)} SQL statement(s) ran (strict=True)")
    if problems:
        raise AssertionError(
            "Expected the block to be served from the cache, but "
            + "; ".join(problems)
            + ".\n"
            + record.describe()
        )


@contextlib.contextmanager
def assert_hits_database() -> Iterator[Record]:
    """The block goes to the database: at least one read through ormcache was a miss or
    a bypass, or (for code that does not read through ormcache) SQL reached a database.
    Fails when everything in the block came from the cache."""
    with _recording() as record:
        yield record
    if not record.database_reads and not record.queries:
        raise AssertionError(
            "Expected the block to hit the database, but it was served from the cache.\n"
            + record.describe()
        )


def reset_cache() -> None:
    """Start clean: every cached entry becomes a miss, and the circuit breaker forgets
    past failures. Only ormcache's own keys are affected (one version bump)."""
    from . import invalidate_all

    health.reset()
    invalidate_all()


class OrmcacheTestMixin:
    """For Django's ``TestCase``/``TransactionTestCase``: a clean cache in every test,
    and assertions with the unittest naming::

        class PostTests(OrmcacheTestMixin, TestCase):
            def test_list_is_cached(self):
                list(Post.objects.all())
                with self.assertServedFromCache():
                    list(Post.objects.all())
    """

    #: Call ``reset_cache()`` before each test (turn off to share entries on purpose).
    ormcache_reset = True

    def setUp(self) -> None:
        if self.ormcache_reset:
            reset_cache()
        super().setUp()  # type: ignore[misc]

    def assertServedFromCache(  # unittest style names
        self, *, strict: bool = False
    ) -> contextlib.AbstractContextManager[Record]:
        return assert_served_from_cache(strict=strict)

    def assertHitsDatabase(self) -> contextlib.AbstractContextManager[Record]:
        return assert_hits_database()


class OrmcacheFixture:
    """What the pytest fixture ``ormcache`` yields (see ``ormcache.pytest_plugin``)."""

    served_from_cache = staticmethod(assert_served_from_cache)
    hits_database = staticmethod(assert_hits_database)
    disabled = staticmethod(disabled)
    reset = staticmethod(reset_cache)
