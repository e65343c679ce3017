"""Per-view use: ``ormcache.cache_page`` with its own timeout, under the same rules."""

import time

import pytest
from django.test import Client
from django.test.utils import override_settings

import ormcache
from ormcache import pages
from tests.counting_cache import CountingLocMemCache
from tests.factories import PostFactory, UserFactory
from tests.test_pages_urls import (
    PAGE_MIDDLEWARE,
    calls,
    outcome,
    page_settings,
    site_fixture,  # noqa: F401  (the "site" fixture)
)

WITHOUT_PAGE_MIDDLEWARE = PAGE_MIDDLEWARE[:-1]


@pytest.fixture
def bare(backend):
    """The decorators alone: no CacheMiddleware."""
    calls.clear()
    with page_settings(backend, middleware=WITHOUT_PAGE_MIDDLEWARE):
        yield Client()


def test_a_decorated_view_is_cached_without_the_middleware(bare):
    post = PostFactory(title="First")
    assert outcome(bare.get("/t/decorated/")) == "miss"
    hit = bare.get("/t/decorated/")
    assert outcome(hit) == "hit"
    assert hit.content == b"decorated: First"
    assert calls["decorated"] == 1
    post.title = "Renamed"
    post.save()
    assert bare.get("/t/decorated/").content == b"decorated: Renamed"
    assert outcome(bare.get("/t/posts/")) is None  # no middleware, no decorator


def test_the_decorator_timeout_bounds_the_page(bare):
    PostFactory()
    bare.get("/t/short-lived/")
    assert outcome(bare.get("/t/short-lived/")) == "hit"
    time.sleep(2.2)  # memcached counts expiry in whole seconds
    assert outcome(bare.get("/t/short-lived/")) == "miss"


def test_the_decorator_applies_the_same_rules(bare):
    PostFactory()
    bare.get("/t/decorated-hello/")
    assert outcome(bare.get("/t/decorated-hello/")) == "hit"
    member = Client()
    member.force_login(UserFactory(username="ada"))
    for _ in range(2):
        response = member.get("/t/decorated-hello/")
        assert outcome(response) == "bypass (session of a logged-in user)"
        assert response.content == b"hello ada; posts: 1"
    assert outcome(bare.post("/t/decorated-hello/")) == "bypass (method POST)"


def test_the_middleware_leaves_a_decorated_view_to_its_decorator(site):
    PostFactory()
    assert outcome(site.get("/t/decorated/")) == "miss"
    assert outcome(site.get("/t/decorated/")) == "hit"
    assert calls["decorated"] == 1


def test_cache_page_accepts_no_arguments_and_rejects_bad_timeouts():
    def view(request):
        return None

    assert getattr(ormcache.cache_page(view), "_ormcache_cache_page", False)
    assert getattr(ormcache.cache_page()(view), "_ormcache_cache_page", False)
    for bad in (-1, "60", 1.5, True):
        with pytest.raises(ValueError):
            ormcache.cache_page(bad)


class TestRoundTrips:
    """Counted on a locmem cache: a hit is one get_many (the page and its versions)."""

    @pytest.fixture
    def counting(self, db):
        caches = {
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            "counting": {"BACKEND": "tests.counting_cache.CountingLocMemCache"},
        }
        middleware = override_settings(
            ROOT_URLCONF="tests.test_pages_urls", MIDDLEWARE=PAGE_MIDDLEWARE
        )
        with middleware, override_settings(CACHES=caches, ORMCACHE={"CACHE": "counting"}):
            CountingLocMemCache.calls.clear()
            yield CountingLocMemCache.calls

    def test_a_hit_is_one_get_many(self, counting):
        PostFactory()
        client = Client()
        client.get("/")
        counting.clear()
        assert outcome(client.get("/")) == "hit"
        assert counting == ["get_many"]

    def test_a_hit_in_a_process_that_never_saw_the_page_is_two(self, counting):
        PostFactory()
        client = Client()
        client.get("/")
        pages._version_keys_memo.clear()
        counting.clear()
        assert outcome(client.get("/")) == "hit"
        assert counting == ["get_many", "get_many"]
        counting.clear()
        assert outcome(client.get("/")) == "hit"
        assert counting == ["get_many"]
