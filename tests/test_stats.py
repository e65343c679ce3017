"""Stats: per-model counters fed by the signals, kept in-process and flushed in batches."""

import threading

import pytest
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.test.utils import override_settings

import ormcache
from ormcache import signals, stats
from testproject.blog.models import Author, Post
from tests.counting_cache import CountingLocMemCache
from tests.factories import PostFactory

FLUSH_ALWAYS = {"enabled": True, "flush_interval": 0}


@pytest.fixture
def stats_on(backend):
    """Stats on, flushed on every event, starting from zero."""
    with backend.settings(STATS=FLUSH_ALWAYS):
        stats.reset()
        yield backend
        stats.reset()


def read_post_list():
    return list(Post.objects.filter(published=True))


def test_hits_misses_stores_and_invalidations_per_model(stats_on):
    PostFactory()
    stats.reset()
    read_post_list()  # miss + store
    read_post_list()  # hit
    read_post_list()  # hit
    Author.objects.count()  # miss + store
    Post.objects.update(rating=3)  # invalidates blog.post

    found = stats.read()
    post, author = found["blog.post"], found["blog.author"]
    assert (post.hits, post.misses, post.stores, post.invalidations) == (2, 1, 1, 1)
    assert post.hit_ratio == pytest.approx(2 / 3)
    assert (author.hits, author.misses, author.stores, author.invalidations) == (0, 1, 1, 0)
    assert author.hit_ratio == 0
    # The bytes of the stored entries, as encoded for the cache.
    assert post.stored_bytes > author.stored_bytes > 0
    total = stats.totals(found)
    assert (total.hits, total.misses, total.stores, total.invalidations) == (2, 2, 2, 1)


def test_results_too_large_to_store_are_counted(stats_on):
    """MAX_ENTRY_BYTES (or memcached's 1 MB): read from the database each time, and counted."""
    post = PostFactory(body="x" * 5000)
    stats.reset()
    with stats_on.settings(STATS=FLUSH_ALWAYS, MAX_ENTRY_BYTES=4000):
        Post.objects.get(pk=post.pk)
        Post.objects.get(pk=post.pk)
    found = stats.read()["blog.post"]
    assert (found.hits, found.misses, found.stores, found.not_stored) == (0, 2, 0, 2)
    assert stats.totals({"blog.post": found}).not_stored == 2


def test_invalidate_all_counts_under_star(stats_on):
    stats.reset()
    ormcache.invalidate_all()
    assert stats.read()["*"].invalidations == 1


def test_an_untouched_model_is_not_listed(stats_on):
    stats.reset()
    read_post_list()
    assert "blog.tag" not in stats.read()


def test_counts_stay_in_process_until_the_interval_passes(backend):
    """Batching: reads write nothing to the cache until a flush is due."""
    PostFactory()
    with backend.settings(STATS={"enabled": True, "flush_interval": 3600, "flush_every": 10**6}):
        stats.reset()
        read_post_list()
        read_post_list()
        counts = stats.local_counts()
        assert counts.pop(("blog.post", "stored_bytes")) > 0
        assert counts == {
            ("blog.post", "misses"): 1,
            ("blog.post", "stores"): 1,
            ("blog.post", "hits"): 1,
        }
        assert backend.cache.get(stats.total_key("blog.post", "hits")) is None
        assert stats.flush() is True
        assert stats.local_counts() == {}
        assert backend.cache.get(stats.total_key("blog.post", "hits")) == 1
        stats.reset()


def test_flush_every_n_events(backend):
    PostFactory()
    with backend.settings(STATS={"enabled": True, "flush_interval": 3600, "flush_every": 3}):
        stats.reset()
        read_post_list()  # miss, store: 2 events
        assert backend.cache.get(stats.total_key("blog.post", "misses")) is None
        read_post_list()  # hit: the third event flushes
        assert backend.cache.get(stats.total_key("blog.post", "misses")) == 1
        assert backend.cache.get(stats.total_key("blog.post", "hits")) == 1
        assert stats.local_counts() == {}
        stats.reset()


@pytest.mark.django_db
def test_a_hit_makes_no_extra_cache_call():
    """With stats on, a hit is still exactly one get_many: counting never touches the cache."""
    caches_setting = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "counting": {"BACKEND": "tests.counting_cache.CountingLocMemCache"},
    }
    PostFactory()
    ormcache_setting = {
        "CACHE": "counting",
        "STATS": {"enabled": True, "flush_interval": 3600, "flush_every": 10**6},
    }
    with override_settings(CACHES=caches_setting, ORMCACHE=ormcache_setting):
        stats.reset()
        read_post_list()
        CountingLocMemCache.calls.clear()
        read_post_list()
        assert CountingLocMemCache.calls == ["get_many"]
        assert stats.local_counts()[("blog.post", "hits")] == 1
        stats.reset()


def test_counts_from_many_threads_add_up(backend):
    """Concurrent readers: no count is lost, in-process or across flushes."""
    PostFactory()
    read_post_list()  # fill, so the threads hit
    threads_count, reads_each = 4, 50
    barrier = threading.Barrier(threads_count)
    with backend.settings(STATS={"enabled": True, "flush_interval": 3600, "flush_every": 7}):
        stats.reset()

        def reader():
            barrier.wait()
            for _ in range(reads_each):
                stats._on_hit(Post)  # the receiver, as the signal calls it

        threads = [threading.Thread(target=reader) for _ in range(threads_count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert stats.read(["blog.post"])["blog.post"].hits == threads_count * reads_each
        stats.reset()


def test_stats_off_connects_no_receiver(backend):
    with backend.settings(STATS={"enabled": False}):
        for signal, receiver in stats._RECEIVERS:
            assert receiver not in signal.receivers.values()
    with backend.settings(STATS=True):
        for signal, receiver in stats._RECEIVERS:
            assert receiver in signal.receivers.values()
    with backend.settings():
        assert not any(
            receiver in signal.receivers.values() for signal, receiver in stats._RECEIVERS
        )


def test_other_receivers_are_not_disturbed(stats_on):
    seen = []

    def receiver(sender, **kwargs):
        seen.append(sender)

    signals.cache_miss.connect(receiver)
    try:
        read_post_list()
    finally:
        signals.cache_miss.disconnect(receiver)
    assert seen == [Post]
    assert stats.read()["blog.post"].misses == 1


def test_history_samples_hits_and_misses(stats_on):
    PostFactory()
    stats.reset()
    read_post_list()
    read_post_list()
    read_post_list()
    samples = stats.history(samples=5)
    assert len(samples) == 5
    assert [s.start for s in samples] == sorted(s.start for s in samples)
    assert samples[-1].hits == 2 and samples[-1].misses == 1
    assert samples[-1].hit_ratio == pytest.approx(2 / 3)
    assert all(s.hits == s.misses == 0 and s.hit_ratio is None for s in samples[:-1])


def test_history_keys_expire(stats_on, monkeypatch):
    """The cache keeps a rolling window: a history key lives history_length buckets."""
    written = []
    real_add = stats._add

    def spy(cache, key, delta, timeout):
        written.append((key, timeout))
        real_add(cache, key, delta, timeout)

    monkeypatch.setattr(stats, "_add", spy)
    with stats_on.settings(STATS={**FLUSH_ALWAYS, "history_interval": 30, "history_length": 4}):
        read_post_list()
        # Keys are ormcache:s:<generation>:... (reset() starts a new generation).
        history_keys = [(k, t) for k, t in written if ":t:30:" in k]
        assert history_keys and all(t == 30 * 5 for _k, t in history_keys)
        # Totals live on; the per-model window keys live window_length buckets.
        window_keys = [(k, t) for k, t in written if ":w:3600:" in k]
        assert window_keys and all(t == 3600 * 169 for _k, t in window_keys)
        assert all(t is None for k, t in written if ":t:30:" not in k and ":w:3600:" not in k)
        stats.reset()


def test_reset_forgets_shared_and_local_counts(stats_on):
    read_post_list()
    assert stats.read()
    assert stats.window(3600)
    stats.reset()
    assert stats.read() == {}
    assert stats.window(3600) == {}
    assert all(s.hits == s.misses == 0 for s in stats.history(samples=3))
    read_post_list()  # counting goes on in the new generation
    assert stats.read()["blog.post"].hits == 1  # the result is still cached


@pytest.mark.django_db
def test_a_dead_cache_keeps_counts_for_the_next_flush():
    """Fail open: a flush against a failing cache loses nothing now and raises nothing."""
    caches_setting = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "flaky": {"BACKEND": "tests.test_stats.FlakyCache"},
    }
    ormcache_setting = {
        "CACHE": "flaky",
        "STATS": {"enabled": True, "flush_interval": 3600, "flush_every": 10**6},
        "BREAKER": {"threshold": 100, "cooldown": 0},
    }
    with override_settings(CACHES=caches_setting, ORMCACHE=ormcache_setting):
        stats.reset()
        stats._on_hit(Post)
        stats._on_hit(Post)
        FlakyCache.broken = True
        try:
            assert stats.flush() is False  # logged, not raised
        finally:
            FlakyCache.broken = False
        assert stats.local_counts() == {("blog.post", "hits"): 2}
        assert stats.flush() is True
        assert caches["flaky"].get(stats.total_key("blog.post", "hits")) == 2
        stats.reset()


def test_counts_are_dropped_after_too_many_failed_flushes():
    with override_settings(
        CACHES={
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            "flaky": {"BACKEND": "tests.test_stats.FlakyCache"},
        },
        ORMCACHE={"CACHE": "flaky", "STATS": {"enabled": True, "flush_interval": 3600}},
    ):
        stats.reset()
        stats._on_hit(Post)
        FlakyCache.broken = True
        try:
            for _ in range(stats._MAX_RETRIES + 1):
                stats.flush()
        finally:
            FlakyCache.broken = False
        assert stats.local_counts() == {}
        stats.reset()


class FlakyCache(LocMemCache):
    """A LocMemCache whose incr fails like a refused connection while ``broken``."""

    broken = False

    def incr(self, *args, **kwargs):
        if FlakyCache.broken:
            raise ConnectionError("refused")
        return super().incr(*args, **kwargs)

    def add(self, *args, **kwargs):
        if FlakyCache.broken:
            raise ConnectionError("refused")
        return super().add(*args, **kwargs)


@pytest.mark.parametrize(
    "value, expected",
    [
        (True, []),
        (False, []),
        ({"enabled": True, "flush_interval": 0.5, "flush_every": 10}, []),
        ("yes", ["ormcache.E040"]),
        ({"enable": True}, ["ormcache.E040"]),
        ({"enabled": "yes"}, ["ormcache.E041"]),
        ({"flush_interval": -1}, ["ormcache.E042"]),
        ({"flush_interval": "10"}, ["ormcache.E042"]),
        ({"flush_every": 0}, ["ormcache.E043"]),
        ({"flush_every": 2.5}, ["ormcache.E043"]),
        ({"history_interval": 0}, ["ormcache.E044"]),
        ({"history_length": True}, ["ormcache.E045"]),
    ],
)
def test_checks(value, expected):
    from ormcache.checks import check_settings

    with override_settings(ORMCACHE={"STATS": value}):
        found = check_settings()
    assert sorted(m.id for m in found if m.id.startswith("ormcache.E04")) == expected
    assert all(m.hint for m in found)
