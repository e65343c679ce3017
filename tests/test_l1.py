"""The in-process tier (L1): hits with no Redis command, never stale, bounded trust and
memory. Against real Redis servers of the tests' own (killed, paused, flushed, evicting)
and writes made by other real processes."""

import os
import subprocess
import sys
import textwrap
import time

import pytest
import redis
from django.core.cache import caches
from django.core.checks import run_checks
from django.test.utils import override_settings

from ormcache import health, keys, l1, versions
from testproject.blog.models import Post
from tests.factories import PostFactory
from tests.helpers import sql_count, title
from tests.redis_process import RedisProcess

MAX_SILENCE = 0.3
#: Commands the test's own connection (INFO) or the tracker's heartbeat send.
NOT_READS = {"cmdstat_info", "cmdstat_ping", "cmdstat_hello", "cmdstat_client|setinfo"}


@pytest.fixture
def server():
    process = RedisProcess()
    yield process
    process.close()


def cache_settings(url, **options):
    return {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "l1": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2, **options},
        },
    }


@pytest.fixture
def tier_on(db, server):
    """ormcache on the test's Redis with L1 on (max_silence 0.3 s)."""
    ormcache_settings = {
        "CACHE": "l1",
        "BREAKER": {"threshold": 2, "cooldown": 0.3},
        "MODELS": {"blog.*": {"enabled": True}},
        "L1": {"enabled": True, "max_silence": MAX_SILENCE, "max_bytes": 4 * 1024 * 1024},
    }
    health.reset()
    with override_settings(CACHES=cache_settings(server.url), ORMCACHE=ormcache_settings):
        yield server
    health.reset()
    l1.reset()


def tier():
    return l1.tier_for("l1", caches["l1"])


def redis_calls(server):
    stats = redis.Redis.from_url(server.url).info("commandstats")
    return {name: value["calls"] for name, value in stats.items() if name not in NOT_READS}


def settle():
    """Give the tracker time to hear a pong (the trust window opens on the first one)."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        versions.get_cache().get_many([keys.GLOBAL_VERSION_KEY])
        found = tier()
        if found.tracker is not None and time.monotonic() - found.tracker.heard_at < 0.05:
            return
        time.sleep(0.02)
    raise AssertionError("the tracker never heard from Redis")


def cached_post():
    """A post read twice (a miss stored in Redis, then fetched and kept in memory), with
    the tracker ready to trust memory."""
    post = PostFactory(title="v1")
    title(post.pk)
    title(post.pk)
    settle()
    return post


def run_other_process(server, code):
    """Run ``code`` in a new Python process with ormcache (L1 on) on the same Redis."""
    script = textwrap.dedent(
        f"""
        import django
        from django.conf import settings
        settings.configure(
            CACHES={{"default": {{"BACKEND": "django_redis.cache.RedisCache",
                                  "LOCATION": {server.url!r}}}}},
            ORMCACHE={{"L1": {{"enabled": True}}}},
            INSTALLED_APPS=[],
        )
        django.setup()
        from ormcache import keys, versions
        """
    ) + textwrap.dedent(code)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=30)


class TestHits:
    def test_a_hit_sends_no_command_to_redis_and_no_sql(self, tier_on):
        post = cached_post()
        before = redis_calls(tier_on)
        assert sql_count(lambda: [title(post.pk) for _ in range(20)]) == 0
        assert redis_calls(tier_on) == before
        assert tier().counts["served"] >= 20

    def test_aggregates_lists_and_counts_are_served_from_memory(self, tier_on):
        posts = PostFactory.create_batch(3)

        def read():
            list(Post.objects.filter(pk__in=[p.pk for p in posts]).order_by("pk"))
            Post.objects.count()
            Post.objects.filter(title__contains="x").exists()

        read()
        read()
        settle()
        before = redis_calls(tier_on)
        assert sql_count(read) == 0
        assert redis_calls(tier_on) == before

    def test_own_write_is_seen_at_once(self, tier_on):
        post = PostFactory(title="v1")
        title(post.pk)
        title(post.pk)
        Post.objects.filter(pk=post.pk).update(title="v2")
        assert title(post.pk) == "v2"
        post.title = "v3"
        post.save()
        assert title(post.pk) == "v3"


class TestCoherence:
    def test_a_bump_by_another_process_reaches_memory(self, tier_on):
        post = cached_post()
        assert sql_count(lambda: title(post.pk)) == 0
        run_other_process(tier_on, "versions.bump_global()")
        assert sql_count(lambda: title(post.pk)) == 1  # the new token: a miss

    def test_a_pending_token_of_another_process_is_never_trusted_from_memory(self, tier_on):
        post = cached_post()
        run_other_process(tier_on, "versions.bump_global(pending=True)")
        # Pending: every read goes to the database and nothing is stored, in memory or not.
        assert sql_count(lambda: title(post.pk)) == 1
        assert sql_count(lambda: title(post.pk)) == 1
        assert keys.GLOBAL_VERSION_KEY not in tier().entries

    def test_flushdb_clears_memory(self, tier_on):
        post = cached_post()
        assert tier().entries
        redis.Redis.from_url(tier_on.url).flushdb()
        assert sql_count(lambda: title(post.pk)) == 1
        assert tier().counts["flushes"] == 1

    def test_memory_never_holds_a_key_redis_evicted(self, tier_on):
        posts = PostFactory.create_batch(30)
        for _ in range(2):
            for post in posts:
                title(post.pk)
        settle()
        client = redis.Redis.from_url(tier_on.url)
        client.config_set("maxmemory-policy", "allkeys-random")
        client.config_set("maxmemory", client.info("memory")["used_memory"] + 100_000)
        invalidations = tier().counts["invalidations"]
        for index in range(5000):
            client.set(f"filler:{index}", b"x" * 1000)
            if index % 10 == 0 and client.info("stats")["evicted_keys"] >= 40:
                break
        # Every command may evict while memory is over the limit (INFO too): stop that first.
        client.config_set("maxmemory", 0)
        versions.get_cache().get_many([keys.GLOBAL_VERSION_KEY])  # drain
        cache = caches["l1"]
        held = list(tier().entries)
        present = client.exists(*[cache.make_key(name) for name in held]) if held else 0
        assert present == len(held)
        assert tier().counts["invalidations"] > invalidations
        for post in posts:
            assert title(post.pk) == post.title

    def test_a_fetch_overtaken_by_an_invalidation_is_not_kept(self, tier_on):
        """The write lands while get_many is in flight: what it read must not be kept."""
        real = caches["l1"]
        other = redis.Redis.from_url(tier_on.url)
        name = keys.GLOBAL_VERSION_KEY
        settle()
        versions.get_cache().set(name, 1, timeout=None)

        class Racing:
            def __getattr__(self, attribute):
                return getattr(real, attribute)

            def get_many(self, names):
                found = real.get_many(names)
                other.set(real.make_key(name), 2)  # a writer, right after Redis answered
                time.sleep(0.05)  # its invalidation reaches the tracker
                return found

        wrapper = l1.L1Cache(Racing(), "l1")
        assert wrapper.get_many([name]) == {name: 1}
        assert name not in tier().entries
        assert l1.L1Cache(real, "l1").get_many([name]) == {name: 2}

    def test_a_failed_fetch_raises_the_caches_own_error(self, tier_on):
        """The read path tells an outage (which the breaker counts) from a bad value by
        the error: the tier must not replace it with one of its own."""
        real = caches["l1"]
        settle()
        versions.get_cache().get_many([keys.GLOBAL_VERSION_KEY])  # the tracker is up

        class Down:
            def __getattr__(self, attribute):
                return getattr(real, attribute)

            def get_many(self, names):
                raise redis.exceptions.ConnectionError("Redis went away")

        with pytest.raises(redis.exceptions.ConnectionError):
            l1.L1Cache(Down(), "l1").get_many([keys.GLOBAL_VERSION_KEY, "ormcache:v:other"])
        assert not tier().fetching


class TestPagesAndExpiry:
    def test_a_page_hit_sends_no_command_to_redis(self, tier_on):
        from django.test import Client

        from tests.test_pages_urls import PAGE_MIDDLEWARE, calls, outcome

        calls.clear()
        PostFactory(title="First")
        with override_settings(ROOT_URLCONF="tests.test_pages_urls", MIDDLEWARE=PAGE_MIDDLEWARE):
            client = Client()
            assert outcome(client.get("/t/posts/")) == "miss"
            assert outcome(client.get("/t/posts/")) == "hit"  # from Redis, kept in memory
            settle()
            before = redis_calls(tier_on)
            for _ in range(5):
                response = client.get("/t/posts/")
                assert outcome(response) == "hit" and response.content == b"posts: First"
            assert redis_calls(tier_on) == before
            Post.objects.update(title="Second")  # the bump reaches memory: a miss
            assert outcome(client.get("/t/posts/")) == "miss"
        assert calls["posts"] == 2

    def test_a_key_that_expires_in_redis_leaves_memory(self, tier_on):
        cache = versions.get_cache()
        name = f"{keys.PREFIX}:r:expiring"
        cache.set(name, b"entry", timeout=1)
        cache.get_many([name])
        cache.get_many([name])
        assert name in tier().entries
        deadline = time.monotonic() + 5
        while name in tier().entries and time.monotonic() < deadline:
            time.sleep(0.1)
            cache.get_many([keys.GLOBAL_VERSION_KEY])  # drain
        assert name not in tier().entries  # Redis's active expiry sent the invalidation


class TestBoundedTrust:
    def test_a_paused_redis_is_not_trusted_after_max_silence(self, tier_on):
        post = cached_post()
        tier_on.pause()
        try:
            time.sleep(MAX_SILENCE + 0.1)
            # Memory is not trusted: Redis is asked (and times out), the database answers.
            assert sql_count(lambda: title(post.pk)) == 1
            assert tier().counts["untrusted"] >= 1
        finally:
            tier_on.resume()

    def test_a_lost_tracker_clears_memory_and_comes_back(self, tier_on):
        post = cached_post()
        assert tier().entries
        tier_on.restart()  # every connection drops; the data is gone too
        health.reset()
        assert title(post.pk) == "v1"
        assert not tier().entries or tier().counts["connects"] == 2
        time.sleep(l1.RECONNECT_INTERVAL)
        for _ in range(3):
            title(post.pk)
        settle()
        assert tier().counts["connects"] == 2
        assert sql_count(lambda: title(post.pk)) == 0

    def test_no_tracker_no_trust(self, tier_on):
        """While the tracker cannot connect, every read asks Redis as without L1."""
        post = PostFactory(title="v1")
        tier_on.kill()
        try:
            assert title(post.pk) == "v1"
            assert not tier().entries
        finally:
            tier_on.start()


class TestMemoryBound:
    def test_memory_stays_under_max_bytes(self, db, server):
        ormcache_settings = {
            "CACHE": "l1",
            "MODELS": {"blog.*": {"enabled": True}},
            "L1": {"enabled": True, "max_bytes": 16384},
        }
        with override_settings(CACHES=cache_settings(server.url), ORMCACHE=ormcache_settings):
            posts = PostFactory.create_batch(40, body="b" * 400)
            for _ in range(2):
                for post in posts:
                    title(post.pk)
            found = tier()
            assert 0 < found.size <= 16384
            assert found.counts["evicted"] > 0
            assert found.size == sum(size for _, size in found.entries.values())
        l1.reset()

    def test_a_forked_child_has_its_own_tier(self, tier_on):
        post = PostFactory(title="v1")
        title(post.pk)
        parent = tier()
        pid = os.fork()
        if pid == 0:  # the child: a new tier, never the parent's socket
            code = 0 if tier() is not parent and not tier().entries else 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert tier() is parent


def test_a_cache_without_tracking_is_passed_through(db):
    """Checks refuse it (E094); if run anyway, L1 stays out of the way: no memory, no errors."""
    with override_settings(
        ORMCACHE={"MODELS": {"blog.*": {"enabled": True}}, "L1": {"enabled": True}}
    ):
        post = PostFactory(title="v1")
        for _ in range(3):
            assert title(post.pk) == "v1"
        found = l1.tier_for("default", caches["default"])
        assert not found.usable and not found.entries and found.tracker is None
    l1.reset()


class TestChecks:
    def errors(self, caches_setting, l1_setting):
        with override_settings(CACHES=caches_setting, ORMCACHE={"CACHE": "l1", "L1": l1_setting}):
            return sorted(e.id for e in run_checks() if e.id.startswith("ormcache.E09"))

    def test_redis_is_accepted(self):
        assert self.errors(cache_settings("redis://127.0.0.1:1/0"), {"enabled": True}) == []

    def test_djangos_own_redis_cache_is_accepted(self):
        setting = {
            "l1": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": "redis://127.0.0.1:1/0",
            }
        }
        assert self.errors(setting, {"enabled": True}) == []

    @pytest.mark.parametrize(
        "backend",
        [
            "django.core.cache.backends.locmem.LocMemCache",
            "ormcache.backends.redis_cluster.RedisClusterCache",
        ],
    )
    def test_caches_without_tracking_are_refused(self, backend):
        setting = {"l1": {"BACKEND": backend, "LOCATION": "redis://127.0.0.1:1/0"}}
        assert self.errors(setting, {"enabled": True}) == ["ormcache.E094"]
        assert self.errors(setting, {"enabled": False}) == []

    def test_sentinel_and_replicas_are_refused(self):
        sentinel = cache_settings(
            "redis://mymaster/0", CLIENT_CLASS="ormcache.backends.redis_sentinel.SentinelClient"
        )
        assert self.errors(sentinel, {"enabled": True}) == ["ormcache.E094"]
        replicas = cache_settings("redis://127.0.0.1:1/0,redis://127.0.0.1:2/0")
        assert self.errors(replicas, {"enabled": True}) == ["ormcache.E095"]

    @pytest.mark.parametrize(
        ("value", "code"),
        [
            ("on", "ormcache.E090"),
            ({"enabled": True, "size": 1}, "ormcache.E091"),
            ({"enabled": "yes"}, "ormcache.E091"),
            ({"max_bytes": 10}, "ormcache.E092"),
            ({"max_silence": 0}, "ormcache.E093"),
        ],
    )
    def test_bad_values(self, value, code):
        assert code in self.errors(cache_settings("redis://127.0.0.1:1/0"), value)
