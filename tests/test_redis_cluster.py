"""ormcache on a real 3-master Redis Cluster (``RedisClusterCache``): hits, freshness,
multi-key reads and writes across slots, and a node restart under load."""

import pytest
from django.db import connections
from redis.cluster import key_slot

from ormcache import keys
from ormcache.backends import failover
from ormcache.backends.redis_cluster import VERSION_HASH_TAG
from testproject.blog.models import Author, Comment, Post
from tests import redis_topologies
from tests.factories import CommentFactory, PostFactory
from tests.helpers import assert_served_from_cache

pytestmark = pytest.mark.django_db(databases=redis_topologies.databases(), transaction=True)


@pytest.fixture(scope="module")
def cluster():
    topology = redis_topologies.start(redis_topologies.RedisClusterTopology)
    yield topology
    topology.close()


def cache_settings(cluster, **options):
    return {
        "BACKEND": "ormcache.backends.redis_cluster.RedisClusterCache",
        "LOCATION": cluster.location,
        "OPTIONS": {"socket_timeout": 0.25, "socket_connect_timeout": 0.25, **options},
    }


@pytest.fixture(params=[True, False], ids=["versions-tagged", "versions-spread"])
def on_cluster(request, cluster):
    settings = cache_settings(cluster, HASH_TAG_VERSIONS=request.param)
    with redis_topologies.ormcache_on("cluster", settings) as backend:
        yield backend


def comments_with_posts_and_authors():
    return [
        (c.body, c.post.title, c.post.author.name)
        for c in Comment.objects.select_related("post__author").order_by("pk")
    ]


def test_hits_and_freshness(on_cluster):
    post = PostFactory(title="before")
    CommentFactory(post=post, body="first")
    assert_served_from_cache(on_cluster, comments_with_posts_and_authors)
    # Writes of each table the read joins make it fresh.
    Post.objects.filter(pk=post.pk).update(title="after")
    assert comments_with_posts_and_authors()[0][1] == "after"
    assert_served_from_cache(on_cluster, comments_with_posts_and_authors)
    Author.objects.filter(pk=post.author_id).update(name="renamed")
    assert comments_with_posts_and_authors()[0][2] == "renamed"
    with connections[on_cluster.db_alias].cursor() as cursor:
        cursor.execute("UPDATE blog_comment SET body = 'raw'")
    assert comments_with_posts_and_authors()[0][0] == "raw"
    assert_served_from_cache(on_cluster, lambda: Post.objects.count())
    PostFactory()
    assert Post.objects.count() == 2


def test_multi_key_calls_span_slots(on_cluster):
    """get_many/set_many/delete_many of keys in many slots, as ormcache's reads and bumps do."""
    cache = on_cluster.cache
    data = {f"key-{n}": n for n in range(50)}
    slots = {key_slot(cache.make_key(key).encode()) for key in data}
    assert len(slots) > 10
    cache.set_many(data, timeout=60)
    assert cache.get_many(list(data)) == data
    cache.delete_many(list(data)[:25])
    assert cache.get_many(list(data)) == dict(list(data.items())[25:])


def test_version_keys_share_one_slot_when_tagged(on_cluster):
    tables = ["blog_post", "blog_author", "blog_comment"]
    version_keys = [keys.GLOBAL_VERSION_KEY, *keys.version_keys("default", tables)]
    made = [on_cluster.cache.make_key(key) for key in version_keys]
    slots = {key_slot(key.encode()) for key in made}
    if on_cluster.cache.hash_tag_versions:
        assert all(key.startswith(VERSION_HASH_TAG) for key in made)
        assert len(slots) == 1
    else:
        assert len(slots) > 1


def test_node_restart_under_load(cluster):
    """Restart the master that holds the version keys, then another, while readers and a
    writer run: no request fails, none waits long, no read is stale, and hits come back."""
    settings = cache_settings(cluster)
    with redis_topologies.ormcache_on("cluster", settings) as backend:
        post = PostFactory(title="write 0")
        slot = key_slot(backend.cache.make_key(keys.GLOBAL_VERSION_KEY).encode())
        owner = cluster.owner_of(slot)
        with redis_topologies.Load(post.pk) as load:
            for index in (owner, (owner + 1) % len(cluster.nodes)):
                cluster.restart(index)
        load.check(bound=2.0)
        Post.objects.filter(pk=post.pk).update(title="write 999")
        redis_topologies.wait_for_hits(backend, lambda: Post.objects.get(pk=post.pk).title)
        assert Post.objects.get(pk=post.pk).title == "write 999"


def test_a_new_master_of_the_versions_invalidates_everything(cluster):
    """What a Cluster failover looks like to the check: the versions' master has a
    replication id other than the one recorded. The next new connection to it (all
    connections are new after a failover) invalidates everything, once."""
    with redis_topologies.ormcache_on("cluster", cache_settings(cluster)) as backend:
        post = PostFactory(title="cached")
        read = lambda: Post.objects.get(pk=post.pk).title  # noqa: E731
        assert_served_from_cache(backend, read)
        marker = VERSION_HASH_TAG + super(type(backend.cache), backend.cache).make_key(
            failover.REPLID_KEY
        )
        port = cluster.nodes[cluster.owner_of(key_slot(marker.encode()))].port
        replid = failover.master_replid(redis_topologies.command(port, "INFO", "replication"))
        redis_topologies.command(port, "SET", marker, "a-master-before-the-failover")
        backend.cache._cache.get_client().disconnect_connection_pools()
        with backend.queries() as captured:
            read()
        assert captured.captured_queries, "expected a miss: everything was invalidated"
        assert replid in redis_topologies.command(port, "GET", marker)
        assert_served_from_cache(backend, read)  # once: the check passes from now on
