"""Versions never repeat: restarts, evictions, expiry and invalidate_all() cannot revive an entry."""

import pytest

import ormcache
from ormcache import keys, versions
from testproject.blog.models import Post
from tests.factories import PostFactory
from tests.helpers import assert_served_from_cache


@pytest.fixture
def post(backend):
    return PostFactory(title="v1")


def read():
    return list(Post.objects.values_list("title", flat=True))


def queries_for(backend, function):
    with backend.queries() as captured:
        function()
    return len(captured.captured_queries)


def test_tokens_are_unique_and_carry_their_time():
    tokens = {versions.new_token() for _ in range(10_000)}
    assert len(tokens) == 10_000
    assert all(versions.bumped_at(token) > 1.7e9 for token in tokens)


def test_evicted_version_key_is_a_miss(backend, post):
    assert_served_from_cache(backend, read)
    backend.cache.delete(keys.version_key(backend.db_alias, "blog_post"))
    assert queries_for(backend, read) == 1
    assert_served_from_cache(backend, read)


def test_evicted_global_key_is_a_miss(backend, post):
    assert_served_from_cache(backend, read)
    backend.cache.delete(keys.GLOBAL_VERSION_KEY)
    assert queries_for(backend, read) == 1


def test_restart_then_write_never_revives_old_entries(backend, post):
    """The cache loses its versions but keeps an old entry (a restart with persistence)."""
    assert_served_from_cache(backend, read)
    result_keys = _result_keys(backend)
    saved = {key: backend.cache.get(key) for key in result_keys}
    backend.flush()
    Post.objects.update(title="v2")
    backend.cache.set_many(saved)  # the stale entry survives; its versions do not
    assert read() == ["v2"]


def test_invalidate_all_then_eviction_does_not_revive(backend, post):
    assert_served_from_cache(backend, read)
    ormcache.invalidate_all()
    backend.cache.delete(keys.GLOBAL_VERSION_KEY)
    assert queries_for(backend, read) == 1


def test_old_snapshot_never_matches_again(backend, post):
    seen = set()
    version_key = keys.version_key(backend.db_alias, "blog_post")
    for _ in range(20):
        read()
        seen.add(backend.cache.get(version_key))
        Post.objects.update(rating=1)
        backend.cache.delete(version_key)
    assert len(seen) == 20


def _result_keys(backend):
    stored = []

    def remember(sender, **kwargs):
        stored.append(kwargs["key"])

    ormcache.signals.cache_stored.connect(remember)
    try:
        ormcache.invalidate(Post)
        read()
    finally:
        ormcache.signals.cache_stored.disconnect(remember)
    return stored
