"""Shared fixtures: every test that takes ``backend`` runs once per backend pair.

Pairs: SQLite + locmem, PostgreSQL + Redis and PostgreSQL + Memcached. The last two
need the services ``scripts/test`` starts; without them they are skipped, except
under ``CI=true`` where a missing service is an error.
"""

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from django.conf import settings
from django.core.cache import caches
from django.db import connections
from django.test.utils import CaptureQueriesContext, override_settings

from ormcache import conf, health, signals, verify, versions
from tests.routing import current_alias

IN_CI = os.environ.get("CI", "").lower() == "true"

# A whole run under another default granularity ("table" or "row", see ormcache/rows.py):
# the default of every policy that does not set one, also in tests that replace MODELS.
if os.environ.get("ORMCACHE_TEST_GRANULARITY"):
    conf.DEFAULT_GRANULARITY = os.environ["ORMCACHE_TEST_GRANULARITY"]
HAVE_POSTGRES_REDIS = "pg" in settings.DATABASES and "redis" in settings.CACHES
HAVE_POSTGRES_MEMCACHED = "pg" in settings.DATABASES and "memcached" in settings.CACHES

if IN_CI and not (HAVE_POSTGRES_REDIS and HAVE_POSTGRES_MEMCACHED):
    raise pytest.UsageError(
        "CI=true but PostgreSQL, Redis or memcached is not configured: "
        "run the suite with scripts/test."
    )

BACKEND_PAIRS = [
    pytest.param(("default", "default"), id="sqlite-locmem"),
    pytest.param(
        ("pg", "redis"),
        id="postgres-redis",
        marks=pytest.mark.skipif(
            not HAVE_POSTGRES_REDIS, reason="PostgreSQL/Redis not running (use scripts/test)"
        ),
    ),
    pytest.param(
        ("pg", "memcached"),
        id="postgres-memcached",
        marks=pytest.mark.skipif(
            not HAVE_POSTGRES_MEMCACHED,
            reason="PostgreSQL/memcached not running (use scripts/test)",
        ),
    ),
]


class WithoutVerifyChecks(CaptureQueriesContext):
    """CaptureQueriesContext without the queries shadow-verify mode runs to check hits."""

    def __enter__(self):
        self._checks = []
        self._watching = self.connection.execute_wrapper(self._note)
        self._watching.__enter__()
        return super().__enter__()

    def __exit__(self, *exc_info):
        try:
            super().__exit__(*exc_info)
        finally:
            self._watching.__exit__(*exc_info)

    def _note(self, execute, sql, params, many, context):
        self._checks.append(verify.shadowing.get())
        return execute(sql, params, many, context)

    @property
    def captured_queries(self):
        queries = super().captured_queries
        if not any(self._checks) or len(queries) != len(self._checks):
            return queries
        return [query for query, check in zip(queries, self._checks, strict=True) if not check]

    def __len__(self):
        return len(self.captured_queries)

    def __getitem__(self, index):
        return self.captured_queries[index]


@dataclass
class Backend:
    db_alias: str
    cache_alias: str

    @property
    def replica_alias(self):
        """Another alias of the same database, standing in for a read replica."""
        return "replica" if self.db_alias == "default" else "pg_replica"

    @property
    def connection(self):
        return connections[self.db_alias]

    @property
    def cache(self):
        return caches[self.cache_alias]

    @contextmanager
    def queries(self):
        """Capture the SQL statements run on this backend's database.

        In shadow-verify mode (``ORMCACHE_TEST_VERIFY``) a hit also runs its query to
        check it; those checks are left out, so "a hit runs no SQL" means the same in
        both modes.
        """
        with WithoutVerifyChecks(self.connection) as captured:
            yield captured

    def clear(self):
        """Start from an empty cache.

        memcached's flush_all has one-second resolution: what is stored in the same
        second as the flush reads as flushed. So memcached gets a new global version
        instead, which makes every entry dead just the same.
        """
        if self.cache_alias == "memcached":
            with self.settings():
                versions.bump_global()
        else:
            self.cache.clear()

    def flush(self):
        """Empty the cache server as a restart would (waiting out memcached's resolution)."""
        self.cache.clear()
        if self.cache_alias == "memcached":
            time.sleep(1.05)

    def settings(self, **overrides):
        """override_settings for ORMCACHE, keeping this backend's cache alias."""
        value = {**settings.ORMCACHE, "CACHE": self.cache_alias, **overrides}
        return override_settings(ORMCACHE=value)


# Shadow-verify runs (ORMCACHE_TEST_VERIFY, see tests/test_verify.py) report how many
# cache hits were checked against the database, so a run that checked nothing shows.
_verified_hits = [0]


def _count_verified_hit(sender, **kwargs):
    if verify.enabled():
        _verified_hits[0] += 1


if os.environ.get("ORMCACHE_TEST_VERIFY"):
    signals.cache_hit.connect(_count_verified_hit)


def pytest_terminal_summary(terminalreporter):
    if os.environ.get("ORMCACHE_TEST_VERIFY"):
        terminalreporter.write_line(
            f"ormcache verify: {_verified_hits[0]} cache hits checked against the database"
        )


def pytest_collection_modifyitems(items):
    """Tests taking ``backend`` may use every database (replica mirrors only when they ask)."""
    primaries = [
        alias
        for alias, conf in settings.DATABASES.items()
        if not conf.get("TEST", {}).get("MIRROR")
    ]
    for item in items:
        if "backend" not in getattr(item, "fixturenames", ()):
            continue
        marker = item.get_closest_marker("django_db")
        kwargs = dict(marker.kwargs) if marker else {}
        kwargs.setdefault("databases", primaries)
        # The new marker must be the closest: drop the test's own, put ours first.
        item.own_markers[:] = [m for m in item.own_markers if m.name != "django_db"]
        item.own_markers.insert(0, pytest.mark.django_db(**kwargs).mark)


@pytest.fixture(params=BACKEND_PAIRS)
def backend(request):
    db_alias, cache_alias = request.param
    token = current_alias.set(db_alias)
    pair = Backend(db_alias, cache_alias)
    pair.clear()
    health.reset()  # a slow moment in one test must not open the breaker for the next
    with pair.settings():
        try:
            yield pair
        finally:
            current_alias.reset(token)
            pair.clear()
