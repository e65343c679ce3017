"""ormcache's pytest plugin (entry point ``pytest11``: loaded when ormcache is installed).

Fixtures:

``ormcache``
    Resets ormcache's cache before the test (see ``ormcache.testing.reset_cache``) and
    gives the assertions::

        def test_post_is_cached(ormcache, db):
            Post.objects.get(pk=1)
            with ormcache.served_from_cache():
                Post.objects.get(pk=1)
            with ormcache.hits_database():
                Post.objects.nocache().get(pk=1)

``ormcache_disabled``
    The test runs with caching off (reads go to the database; writes still invalidate).

Nothing here imports Django until a fixture is used, so the plugin is harmless in
projects that do not use Django.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def ormcache() -> Iterator[Any]:
    from ormcache.testing import OrmcacheFixture, reset_cache

    reset_cache()
    yield OrmcacheFixture()


@pytest.fixture
def ormcache_disabled() -> Iterator[None]:
    from ormcache.testing import disabled

    with disabled():
        yield
