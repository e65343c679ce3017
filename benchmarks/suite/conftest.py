"""Set Django up for the configuration in the environment (see settings.py) and hand
the benchmarks their targets.

The database is a ready copy of the seeded data set that run.py made for this run
alone; the cache starts empty (Redis is flushed, locmem is new with the process).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import django
import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "suite.settings")
django.setup()


def _flush_redis() -> None:
    from django.conf import settings

    if settings.REDIS_URL:
        import redis

        redis.Redis.from_url(settings.REDIS_URL).flushdb()


_flush_redis()


def setting(name: str, default: int) -> int:
    """A knob run.py passes through the environment (rounds, sizes)."""
    return int(os.environ.get(name, default))


class QueryCounter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute, sql, params, many, context):  # Django's execute_wrapper API
        self.count += 1
        return execute(sql, params, many, context)


@contextlib.contextmanager
def count_queries() -> Iterator[QueryCounter]:
    """Count the SQL statements that reach the database inside the block."""
    from django.db import connection

    counter = QueryCounter()
    with connection.execute_wrapper(counter):
        yield counter


@pytest.fixture(scope="session")
def targets():
    from suite.workload import find_targets

    return find_targets()
