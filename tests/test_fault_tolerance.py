"""Fail open, lose no invalidation, survive bad data: against a real Redis that the tests
kill, pause and restart."""

import logging
import pickle
import time

import pytest
from django.core.cache import caches
from django.test.utils import override_settings

import ormcache
from ormcache import health, keys, storage
from testproject.blog.models import Post
from tests.factories import PostFactory
from tests.helpers import sql_count, title
from tests.redis_process import RedisProcess

COOLDOWN = 0.3


@pytest.fixture
def redis_server():
    server = RedisProcess()
    yield server
    server.close()


@pytest.fixture
def flaky(db, redis_server):
    """ormcache on its own Redis, with short socket timeouts and a quick breaker."""
    cache_settings = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "flaky": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": redis_server.url,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        },
    }
    ormcache_settings = {
        "CACHE": "flaky",
        "BREAKER": {"threshold": 2, "cooldown": COOLDOWN},
        "MODELS": {"blog.*": {"enabled": True}},
    }
    health.reset()
    with override_settings(CACHES=cache_settings, ORMCACHE=ormcache_settings):
        yield redis_server
    health.reset()


def wait_for_cooldown():
    time.sleep(COOLDOWN + 0.05)


class TestFailOpen:
    @pytest.mark.parametrize("outage", ["killed", "paused"])
    def test_reads_and_writes_succeed_while_redis_is_down(self, flaky, outage):
        post = PostFactory(title="v1")
        title(post.pk)
        flaky.kill() if outage == "killed" else flaky.pause()
        try:
            assert title(post.pk) == "v1"
            Post.objects.filter(pk=post.pk).update(title="v2")  # a write never fails
            assert title(post.pk) == "v2"
            assert Post.objects.count() == 1
        finally:
            if outage == "paused":
                flaky.resume()

    def test_breaker_opens_and_then_costs_no_cache_call(self, flaky):
        post = PostFactory()
        flaky.pause()
        try:
            title(post.pk)
            title(post.pk)
            assert not health.available("flaky")
            started = time.monotonic()
            for _ in range(20):
                title(post.pk)
            # 20 reads with the breaker open make no cache call, so none waits
            # for the 0.2 s socket timeout (a hang detector, not a benchmark).
            assert time.monotonic() - started < 2
        finally:
            flaky.resume()

    def test_caching_resumes_after_a_restart(self, flaky):
        post = PostFactory(title="v1")
        flaky.kill()
        title(post.pk)
        title(post.pk)
        flaky.start()
        wait_for_cooldown()
        assert title(post.pk) == "v1"
        assert sql_count(lambda: title(post.pk)) == 0


class TestLoseNoInvalidation:
    def test_bump_skipped_by_the_open_breaker_is_not_stale_after(self, flaky):
        """The cache comes back with its data (old entry, old version) after a write
        whose bump was never sent."""
        post = PostFactory(title="v1")
        title(post.pk)
        assert sql_count(lambda: title(post.pk)) == 0
        flaky.pause()
        try:
            title(post.pk)
            title(post.pk)  # two failures: the breaker opens
        finally:
            flaky.resume()
        assert not health.available("flaky")
        Post.objects.filter(pk=post.pk).update(title="v2")  # the bump is not even tried
        wait_for_cooldown()
        assert title(post.pk) == "v2"

    def test_bump_lost_while_paused_is_not_stale_after(self, flaky):
        post = PostFactory(title="v1")
        title(post.pk)
        flaky.pause()
        try:
            Post.objects.filter(pk=post.pk).update(title="v2")  # the bump times out
        finally:
            flaky.resume()
        wait_for_cooldown()
        assert title(post.pk) == "v2"

    def test_bump_lost_while_killed_and_restarted_empty(self, flaky):
        post = PostFactory(title="v1")
        title(post.pk)
        flaky.kill()
        Post.objects.filter(pk=post.pk).update(title="v2")
        flaky.start()
        wait_for_cooldown()
        assert title(post.pk) == "v2"

    def test_resync_happens_once(self, flaky):
        post = PostFactory(title="v1")
        flaky.pause()
        try:
            Post.objects.filter(pk=post.pk).update(title="v2")
        finally:
            flaky.resume()
        wait_for_cooldown()
        title(post.pk)
        assert not health.lost_bumps("flaky")
        assert sql_count(lambda: title(post.pk)) == 0


class TestBadData:
    @pytest.fixture
    def stored(self, flaky):
        post = PostFactory(title="v1")
        keys_stored = []

        def remember(sender, **kwargs):
            keys_stored.append(kwargs["key"])

        ormcache.signals.cache_stored.connect(remember)
        try:
            title(post.pk)
        finally:
            ormcache.signals.cache_stored.disconnect(remember)
        return post, keys_stored[0]

    def raw_client(self):
        return caches["flaky"].client.get_client()

    def redis_key(self, key):
        return caches["flaky"].make_key(key)

    @pytest.mark.parametrize(
        "value",
        [
            b"\x00garbage\xff",
            pickle.dumps({"foreign": "format"}),
            b"",
        ],
        ids=["garbage", "foreign-pickle", "empty"],
    )
    def test_undecodable_values_are_a_miss(self, stored, value, caplog):
        post, key = stored
        self.raw_client().set(self.redis_key(key), value)
        with caplog.at_level(logging.WARNING, logger="ormcache"):
            assert title(post.pk) == "v1"
        assert "ormcache" in caplog.text
        assert sql_count(lambda: title(post.pk)) == 0  # stored again, cleanly

    @pytest.mark.parametrize("damage", ["truncated", "other-schema", "not-ours", "wrong-type"])
    def test_damaged_entries_are_a_miss(self, stored, damage, caplog):
        post, key = stored
        cache = caches["flaky"]
        entry = cache.get(key)
        if damage == "truncated":
            bad = entry[: len(entry) // 2]
        elif damage == "other-schema":
            bad = storage.MAGIC + b"\x00" * 8 + entry[len(storage.MAGIC) + 8 :]
        elif damage == "not-ours":
            bad = b"OC1" + entry[3:]  # an entry of an older ormcache layout
        else:
            bad = ("snapshot", [[(1,)]])
        Post.objects.filter(pk=post.pk).update(title="v2")
        cache.set(key, bad)  # under the current versions: a wrong result if trusted
        with caplog.at_level(logging.WARNING, logger="ormcache"):
            assert title(post.pk) == "v2"
        assert "ignoring the entry" in caplog.text

    def test_bad_version_token_is_a_miss(self, stored):
        post, _key = stored
        caches["flaky"].set(keys.version_key("default", "blog_post"), "not a token")
        assert title(post.pk) == "v1"


class TestSecurity:
    @pytest.fixture
    def signed(self, flaky):
        with override_settings(
            ORMCACHE={"CACHE": "flaky", "SIGNING_KEY": "a-long-enough-secret-key!"}
        ):
            yield flaky

    def test_signed_entries_round_trip(self, signed):
        post = PostFactory(title="v1")
        title(post.pk)
        assert sql_count(lambda: title(post.pk)) == 0

    def test_forged_entry_is_refused(self, signed, caplog):
        post = PostFactory(title="v1")
        stored = []
        ormcache.signals.cache_stored.connect(
            lambda sender, **kw: stored.append(kw["key"]), weak=False
        )
        try:
            title(post.pk)
        finally:
            ormcache.signals.cache_stored.receivers.clear()
        key = stored[0]
        entry = caches["flaky"].get(key)
        snapshot, rows = pickle.loads(entry[3 + 8 + 32 :])
        forged_rows = [[tuple("forged" if v == "v1" else v for v in row) for row in rows[0]]]
        payload = pickle.dumps((snapshot, forged_rows))
        forged = entry[: 3 + 8] + b"\x00" * 32 + payload  # attacker does not know the key
        caches["flaky"].set(key, forged)
        with caplog.at_level(logging.WARNING, logger="ormcache"):
            assert title(post.pk) == "v1"
        assert "signature" in caplog.text

    def test_unsigned_entries_are_refused_when_signing(self, flaky):
        post = PostFactory(title="v1")
        title(post.pk)  # stored unsigned
        with override_settings(
            ORMCACHE={"CACHE": "flaky", "SIGNING_KEY": "a-long-enough-secret-key!"}
        ):
            assert sql_count(lambda: title(post.pk)) == 1

    def test_row_limit(self, flaky):
        PostFactory.create_batch(5)
        with override_settings(ORMCACHE={"CACHE": "flaky", "MAX_ENTRY_ROWS": 3}):
            list(Post.objects.all())
            assert sql_count(lambda: list(Post.objects.all())) == 1
            list(Post.objects.all()[:2])
            assert sql_count(lambda: list(Post.objects.all()[:2])) == 0

    def test_byte_limit(self, flaky):
        PostFactory.create_batch(3, body="x" * 5000)
        skipped = []

        def count(sender, **kwargs):
            skipped.append(kwargs["reason"])

        ormcache.signals.not_stored.connect(count)
        try:
            with override_settings(ORMCACHE={"CACHE": "flaky", "MAX_ENTRY_BYTES": 4000}):
                list(Post.objects.all())
                assert sql_count(lambda: list(Post.objects.all())) == 1
        finally:
            ormcache.signals.not_stored.disconnect(count)
        assert len(skipped) == 2 and "more than MAX_ENTRY_BYTES (4000)" in skipped[0]

    def test_keys_never_contain_user_input(self, flaky):
        PostFactory()
        user_input = "'; FLUSHALL; {{evil}} \r\n"
        list(Post.objects.filter(title=user_input))
        client = caches["flaky"].client.get_client()
        for key in client.keys("*"):
            assert b"FLUSHALL" not in key and b"\r\n" not in key
