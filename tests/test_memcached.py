"""Memcached's own limits, on the real memcached scripts/test starts (PostgreSQL + Memcached):
items over 1 MB, keys over 250 bytes, evicted version keys. The core, never-stale and page
tests run on this pair too (the ``backend`` fixture)."""

import logging

import pytest
from django.conf import settings
from django.core.cache import caches

from ormcache import keys, signals
from testproject.blog.models import Post
from tests.conftest import BACKEND_PAIRS
from tests.factories import PostFactory

MEMCACHED_PAIR = [pair for pair in BACKEND_PAIRS if pair.id == "postgres-memcached"]
on_memcached = pytest.mark.parametrize("backend", MEMCACHED_PAIR, indirect=True)

A_BIT_OVER_ONE_MB = 1_100_000  # memcached's default item limit is 1 MiB (-I 1m)


@pytest.fixture
def refusals():
    found = []

    def note(sender, **kwargs):
        found.append(kwargs)

    signals.not_stored.connect(note)
    yield found
    signals.not_stored.disconnect(note)


@on_memcached
def test_a_result_over_max_entry_bytes_is_read_from_the_database(backend, refusals):
    post = PostFactory(body="x" * A_BIT_OVER_ONE_MB)
    with backend.queries() as queries:
        for _ in range(2):
            assert len(Post.objects.get(pk=post.pk).body) == A_BIT_OVER_ONE_MB
    assert len(queries) == 2  # never stored, so never a hit
    assert len(refusals) == 2
    assert all("more than MAX_ENTRY_BYTES" in refusal["reason"] for refusal in refusals)


@on_memcached
def test_memcached_refusing_an_item_costs_a_miss_not_an_error(backend, caplog):
    """With ormcache's limit off, memcached itself refuses the item: the read still works."""
    post = PostFactory(body="y" * A_BIT_OVER_ONE_MB)
    with (
        backend.settings(MAX_ENTRY_BYTES=None),
        caplog.at_level(logging.INFO, logger="ormcache"),
        backend.queries() as queries,
    ):
        for _ in range(2):
            assert Post.objects.get(pk=post.pk).body == post.body
    assert len(queries) == 2
    assert caches["memcached"].get("no-such-key", "absent") == "absent"  # the client is fine
    small = PostFactory(body="small")
    with backend.settings(MAX_ENTRY_BYTES=None), backend.queries() as queries:
        Post.objects.get(pk=small.pk)
        Post.objects.get(pk=small.pk)
    assert len(queries) == 1  # and caching goes on for the rest


def test_version_keys_fit_memcached_whatever_the_names():
    """Memcached keys: at most 250 bytes, no spaces or control characters."""
    cache = caches["memcached"] if "memcached" in settings.CACHES else None
    long_names = [
        keys.version_key("replica" * 30, "a_very_long_table_name" * 20),
        keys.version_key("default", 'schema"."table with spaces\n'),
        keys.version_key("ünïcode", "tàble"),
    ]
    for key in long_names:
        assert len(key.encode()) <= 250
        assert all(33 <= ord(char) < 127 for char in key), key
        if cache is not None:
            cache.set(key, "token", 5)
            assert cache.get(key) == "token"


@on_memcached
def test_an_evicted_version_key_costs_a_miss_never_a_stale_read(backend):
    post = PostFactory(title="old")
    assert Post.objects.get(pk=post.pk).title == "old"  # stored
    version_key = keys.version_key(backend.db_alias, "blog_post")
    caches["memcached"].delete(version_key)  # as memcached's LRU would
    Post.objects.filter(pk=post.pk).update(title="new")
    with backend.queries() as queries:
        assert Post.objects.get(pk=post.pk).title == "new"
    assert len(queries) == 1
