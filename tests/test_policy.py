"""Per-model policy from settings: on/off, timeouts, most specific label wins."""

import pytest
from django.contrib.auth.models import Group, User
from django.test.utils import override_settings

import ormcache
from ormcache import conf
from testproject.blog.models import AuditEntry, Author, Post, Tag
from tests.counting_cache import CountingLocMemCache
from tests.factories import AuthorFactory, PostFactory
from tests.helpers import assert_hits_database, assert_served_from_cache


def stored_ttl(backend, key):
    if backend.cache_alias == "redis":
        return backend.cache.ttl(key)
    if backend.cache_alias == "memcached":
        return memcached_ttl(backend, key)
    import time

    expiry = backend.cache._expire_info[backend.cache.make_key(key)]
    return None if expiry is None else round(expiry - time.time())


def memcached_ttl(backend, key):
    """Remaining TTL from memcached's meta protocol (``mg <key> t``)."""
    import socket

    from django.conf import settings

    host, port = settings.CACHES["memcached"]["LOCATION"].split(":")
    with socket.create_connection((host, int(port)), timeout=2) as sock:
        sock.sendall(f"mg {backend.cache.make_key(key)} t\r\n".encode())
        reply = sock.recv(128).decode()
    flags = dict((part[0], part[1:]) for part in reply.split()[1:])
    return int(flags["t"])


def last_stored_key(read):
    keys = []

    def remember(sender, **kwargs):
        keys.append(kwargs["key"])

    ormcache.signals.cache_stored.connect(remember)
    try:
        read()
    finally:
        ormcache.signals.cache_stored.disconnect(remember)
    assert keys, "nothing was stored"
    return keys[-1]


class TestResolution:
    @override_settings(
        ORMCACHE={
            "MODELS": {
                "*": {"timeout": 10},
                "BLOG.*": {"timeout": 20, "user_scoped": True},
                "Blog.Post": {"timeout": 30},
            }
        }
    )
    def test_most_specific_wins_key_by_key_and_case_insensitively(self):
        post = conf.policy_for(Post)
        assert (post.timeout, post.user_scoped, post.enabled) == (30, True, True)
        assert conf.policy_for(Author).timeout == 20
        assert conf.policy_for(Group).timeout == 10
        assert conf.policy_for(Group).listed is False
        assert post.listed is True

    @override_settings(ORMCACHE={"TIMEOUT": 99})
    def test_global_timeout_is_the_default(self):
        assert conf.policy_for(Post).timeout == 99

    def test_override_settings_takes_effect(self):
        assert conf.policy_for(Post).timeout == 300
        with override_settings(ORMCACHE={"TIMEOUT": 7}):
            assert conf.policy_for(Post).timeout == 7
        assert conf.policy_for(Post).timeout == 300


def test_disabled_model_is_never_cached(backend):
    AuthorFactory()
    with backend.settings(MODELS={"blog.author": {"enabled": False}}):
        assert_hits_database(backend, lambda: list(Author.objects.all()))


def test_disabled_model_is_not_cached_as_part_of_a_join(backend):
    PostFactory()
    with backend.settings(MODELS={"blog.author": {"enabled": False}}):
        assert_hits_database(
            backend, lambda: [p.author.name for p in Post.objects.select_related("author")]
        )
        assert_hits_database(backend, lambda: Post.objects.filter(author__name="x").count())
        assert_served_from_cache(backend, lambda: list(Post.objects.filter(rating=0)))


def test_model_disabled_in_settings_with_a_plain_manager(backend):
    AuditEntry.objects.create(message="hello")
    assert_hits_database(backend, lambda: list(AuditEntry.objects.all()))


def test_global_switch(backend):
    PostFactory()
    with backend.settings(ENABLED=False):
        assert_hits_database(backend, lambda: list(Post.objects.all()))


def test_policy_timeout_reaches_the_cache(backend):
    PostFactory()
    with backend.settings(MODELS={"blog.post": {"timeout": 123}}):
        key = last_stored_key(lambda: list(Post.objects.filter(rating=0)))
        assert 115 <= stored_ttl(backend, key) <= 123


def test_query_timeout_overrides_policy(backend):
    PostFactory()
    key = last_stored_key(lambda: list(Post.objects.cache(timeout=45).filter(rating=0)))
    assert 40 <= stored_ttl(backend, key) <= 45


def test_shortest_timeout_of_the_models_read_wins(backend):
    PostFactory()
    with backend.settings(MODELS={"blog.post": {"timeout": 500}, "blog.author": {"timeout": 50}}):
        key = last_stored_key(lambda: list(Post.objects.select_related("author")))
        assert 45 <= stored_ttl(backend, key) <= 50


class TestListedThirdPartyModels:
    def test_listed_model_gets_caching_installed(self, backend):
        Group.objects.create(name="editors")
        assert_served_from_cache(backend, lambda: list(Group.objects.all()))
        Group.objects.create(name="readers")
        assert sorted(Group.objects.values_list("name", flat=True)) == ["editors", "readers"]

    def test_installation_survives_an_app_registry_reset(self, backend):
        from django.apps import apps

        apps.clear_cache()  # what registering a model or running migrations does
        Group.objects.create(name="editors")
        assert_served_from_cache(backend, lambda: list(Group.objects.all()))

    def test_unlisted_model_is_untouched(self, backend):
        User.objects.create(username="u")
        assert_hits_database(backend, lambda: list(User.objects.all()))
        assert type(User.objects).__name__ == "UserManager"

    def test_installed_manager_keeps_its_methods_and_migrations(self, backend):
        assert Group.objects.get_by_natural_key  # GroupManager's own method
        assert Group.objects.nocache().model is Group
        deconstructed = Group.objects.deconstruct()
        assert deconstructed[1] == "django.contrib.auth.models.GroupManager"

    def test_related_managers_of_installed_models_are_cached(self, backend):
        user = User.objects.create(username="member")
        group = Group.objects.create(name="staff")
        user.groups.add(group)
        assert_served_from_cache(backend, lambda: list(user.groups.all()))


def test_from_queryset_on_a_plain_queryset_is_cached(backend):
    from django.db import models

    from ormcache import CachedManager, CachedQuerySetMixin

    class TagQuerySet(models.QuerySet):
        def named(self, name):
            return self.filter(name=name)

    manager_class = CachedManager.from_queryset(TagQuerySet)
    assert issubclass(manager_class._queryset_class, CachedQuerySetMixin)
    manager = manager_class()
    manager.model = Tag
    Tag.objects.create(name="django")
    assert_served_from_cache(backend, lambda: list(manager.named("django")))
    assert_served_from_cache(backend, lambda: list(Tag.objects.popular()))


class TestOneRoundTrip:
    """Counted on a locmem cache (on SQLite); Redis answers get_many in one command."""

    @pytest.fixture
    def counting(self, db):
        caches = {
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            "counting": {"BACKEND": "tests.counting_cache.CountingLocMemCache"},
        }
        with override_settings(CACHES=caches, ORMCACHE={"CACHE": "counting"}):
            CountingLocMemCache.calls.clear()
            yield CountingLocMemCache.calls

    def test_a_hit_is_one_get_many(self, counting):
        PostFactory()

        def read():
            return [p.author.name for p in Post.objects.select_related("author").filter(rating=0)]

        read()
        counting.clear()
        read()
        assert counting == ["get_many"]

    def test_count_hit_is_one_get_many(self, counting):
        PostFactory()
        Post.objects.filter(rating=0).count()
        counting.clear()
        Post.objects.filter(rating=0).count()
        assert counting == ["get_many"]
