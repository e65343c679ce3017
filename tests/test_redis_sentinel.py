"""ormcache on a real Sentinel set-up (1 master, 1 replica, 3 sentinels) through
django-redis's SentinelConnectionFactory and ormcache's SentinelClient: hits,
freshness, and a failover (the master killed) during reads and writes."""

import signal

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test.utils import override_settings

from ormcache import keys
from testproject.blog.models import Post
from tests import redis_topologies
from tests.factories import PostFactory
from tests.helpers import assert_served_from_cache

pytestmark = pytest.mark.django_db(databases=redis_topologies.databases(), transaction=True)

SERVICE = redis_topologies.SERVICE
#: The longest a request may take while the master is down: ormcache's cache calls
#: time out (0.25 s each) until the breaker opens, then the database answers alone.
BOUND = 2.0


@pytest.fixture(scope="module")
def sentinel():
    topology = redis_topologies.start(redis_topologies.RedisSentinelTopology)
    yield topology
    topology.close()


def cache_settings(sentinel, client="ormcache.backends.redis_sentinel.SentinelClient"):
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": f"redis://{SERVICE}/0",
        "OPTIONS": {
            "CLIENT_CLASS": client,
            "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
            "SENTINELS": sentinel.sentinel_addresses,
            "SOCKET_CONNECT_TIMEOUT": 0.25,
            "SOCKET_TIMEOUT": 0.25,
        },
    }


@pytest.fixture
def on_sentinel(sentinel):
    with redis_topologies.ormcache_on("sentinel", cache_settings(sentinel)) as backend:
        yield backend


def raw(port, *args):
    return redis_topologies.command(port, *args)


def test_hits_and_freshness(on_sentinel):
    post = PostFactory(title="before")
    assert_served_from_cache(on_sentinel, lambda: Post.objects.get(pk=post.pk).title)
    post.title = "after"
    post.save()
    assert Post.objects.get(pk=post.pk).title == "after"
    assert_served_from_cache(on_sentinel, lambda: list(Post.objects.values_list("title")))
    Post.objects.create(author=post.author, title="second", slug="second")
    assert len(list(Post.objects.values_list("title"))) == 2


def test_reads_and_writes_go_to_the_master(sentinel, on_sentinel):
    post = PostFactory(title="before")
    Post.objects.get(pk=post.pk)
    master = sentinel.master_address()
    assert raw(master[1], "EXISTS", version_key(on_sentinel)).startswith(":1")
    client = on_sentinel.cache.client
    assert {client.get_next_client_index(write=False) for _ in range(20)} == {0}


def test_replica_reading_client_is_a_check_error(sentinel):
    """django-redis's own SentinelClient reads from replicas, which may lag a bump."""
    caches = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "sentinel": cache_settings(sentinel, client="django_redis.client.SentinelClient"),
    }
    with (
        override_settings(CACHES=caches, ORMCACHE={"CACHE": "sentinel"}),
        pytest.raises(SystemCheckError, match=r"ormcache\.E070"),
    ):
        call_command("check")


def version_key(backend):
    return str(backend.cache.make_key(keys.version_key(backend.db_alias, "blog_post")))


def test_failover_during_reads_and_writes(sentinel, on_sentinel):
    """Kill the master while readers and a writer run: no request fails or waits beyond
    the bound, no read is stale, and hits come back on the new master."""
    sentinel.restore()  # a replica to promote, whatever the tests before did
    post = PostFactory(title="write 0")
    read = lambda: Post.objects.get(pk=post.pk).title  # noqa: E731
    assert_served_from_cache(on_sentinel, read)
    with redis_topologies.Load(post.pk) as load:
        redis_topologies.wait_for(lambda: load.writes > 3, "writes before the failover")
        old = sentinel.kill_master()
        sentinel.wait_for_failover(old)
        writes = load.writes
        redis_topologies.wait_for(lambda: load.writes > writes + 5, "writes after it")
    load.check(bound=BOUND)
    redis_topologies.wait_for_hits(on_sentinel, read)
    assert read() == f"write {load.committed}"


def test_failover_that_loses_a_bump(sentinel, on_sentinel):
    """A bump the old master acknowledged but never replicated: the promoted replica
    serves the token from before the write again, and the entry cached under it must
    not be served. Readers run through the failover; the process never lost a bump
    itself (as another web process would not have), so only the new-master check
    stands between them and the stale entry."""
    sentinel.restore()  # a replica to promote, whatever the tests before did
    post = PostFactory(title="write 1000")
    read = lambda: Post.objects.get(pk=post.pk).title  # noqa: E731
    assert_served_from_cache(on_sentinel, read)
    master = sentinel.master()
    replica = next(server for server in sentinel.redis if server is not master)
    token_before = raw(replica.port, "GET", version_key(on_sentinel))
    try:
        replica.process.send_signal(signal.SIGSTOP)
        raw(master.port, "CLIENT", "KILL", "TYPE", "replica")
        Post.objects.filter(pk=post.pk).update(title="write 1001")  # bumped on the master only
        assert raw(master.port, "GET", version_key(on_sentinel)) != token_before
        old = sentinel.kill_master()
        replica.process.send_signal(signal.SIGCONT)
        with redis_topologies.Load(post.pk, first=1002, writer=False) as load:
            load.committed = 1001
            assert sentinel.wait_for_failover(old)[1] == replica.port
            reads = load.reads
            redis_topologies.wait_for(lambda: load.reads > reads + 50, "reads after it")
        load.check(bound=BOUND)
        # The promoted replica holds the token from before "write 1001"...
        assert raw(replica.port, "GET", version_key(on_sentinel)) == token_before
        # ...yet the entry cached under it was never served: the new master was detected.
        redis_topologies.wait_for_hits(on_sentinel, read)
        assert read() == "write 1001"
    finally:
        replica.process.send_signal(signal.SIGCONT)
