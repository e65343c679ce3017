"""Several databases: versions per alias, using(), and a read replica sharing its primary's versions."""

import pytest

from testproject.blog.models import Post
from tests.factories import PostFactory
from tests.helpers import assert_served_from_cache

REPLICA = pytest.mark.django_db(transaction=True, databases="__all__")


def titles(alias):
    return list(Post.objects.using(alias).values_list("title", flat=True))


def test_using_routes_and_caches_per_alias(backend):
    PostFactory(title="x")
    assert_served_from_cache(backend, lambda: titles(backend.db_alias))


@REPLICA
def test_replica_without_shared_versions_keeps_its_own(backend):
    """Documented behaviour: an alias has its own versions unless configured otherwise."""
    post = PostFactory(title="v1")
    assert_served_from_cache(backend, lambda: titles(backend.replica_alias))
    Post.objects.using(backend.db_alias).filter(pk=post.pk).update(title="v2")
    # A write on the primary does not touch the replica alias' versions: this is why
    # replicas must be configured with "versions_of".
    assert titles(backend.replica_alias) == ["v1"]


@REPLICA
def test_replica_sharing_the_primary_versions_is_fresh(backend):
    replica = backend.replica_alias
    options = {replica: {"versions_of": backend.db_alias}}
    with backend.settings(DATABASES=options):
        post = PostFactory(title="v1")
        assert_served_from_cache(backend, lambda: titles(replica))
        Post.objects.using(backend.db_alias).filter(pk=post.pk).update(title="v2")
        assert titles(replica) == ["v2"]
        assert_served_from_cache(backend, lambda: titles(replica))


@REPLICA
def test_replica_reads_within_the_lag_are_not_stored(backend):
    replica = backend.replica_alias
    options = {replica: {"versions_of": backend.db_alias, "replication_lag": 60}}
    with backend.settings(DATABASES=options):
        post = PostFactory(title="v1")
        Post.objects.using(backend.db_alias).filter(pk=post.pk).update(title="v2")
        for _ in range(2):
            with backend.queries() as primary, _queries(replica) as from_replica:
                titles(replica)
            assert len(from_replica.captured_queries) == 1
            assert primary.captured_queries == []


def _queries(alias):
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    return CaptureQueriesContext(connections[alias])
