"""Under ASGI: the middleware is async-capable, and the rules and invalidation hold.

Django's AsyncClient drives the ASGI request handler, so every middleware in the
chain runs in async mode; sync views run in the request's sync thread.
"""

from asgiref.sync import async_to_sync, iscoroutinefunction, sync_to_async
from django.http import HttpResponse
from django.test import AsyncClient

from ormcache.middleware import CacheMiddleware
from testproject.blog.models import Post
from tests.factories import PostFactory, UserFactory
from tests.test_pages_urls import calls, outcome, site_fixture  # noqa: F401  ("site" fixture)


def run(coroutine_function):
    return async_to_sync(coroutine_function)()


def test_the_middleware_is_sync_and_async_capable():
    async def async_handler(request):
        return HttpResponse()

    assert CacheMiddleware.sync_capable and CacheMiddleware.async_capable
    assert iscoroutinefunction(CacheMiddleware(async_handler))
    assert not iscoroutinefunction(CacheMiddleware(lambda request: HttpResponse()))


def test_sync_and_async_views_are_cached_and_refreshed(site):
    PostFactory(title="First")

    async def scenario():
        client = AsyncClient()
        for url, view in (("/t/posts/", "posts"), ("/t/async-posts/", "async_posts")):
            assert outcome(await client.get(url)) == "miss"
            hit = await client.get(url)
            assert outcome(hit) == "hit"
            assert b"First" in hit.content
            assert calls[view] == 1
        await sync_to_async(PostFactory)(title="Second")
        for url in ("/t/posts/", "/t/async-posts/"):
            again = await client.get(url)
            assert outcome(again) == "miss"
            assert b"First, Second" in again.content

    run(scenario)


def test_raw_sql_of_an_async_view_is_a_dependency(site):
    PostFactory()

    async def scenario():
        client = AsyncClient()
        assert (await client.get("/t/async-raw/")).content == b"async raw: 1"
        assert outcome(await client.get("/t/async-raw/")) == "hit"
        await sync_to_async(PostFactory)()
        fresh = await client.get("/t/async-raw/")
        assert outcome(fresh) == "miss"
        assert fresh.content == b"async raw: 2"

    run(scenario)


def test_private_requests_under_asgi(site):
    PostFactory()
    user = UserFactory(username="ada")

    async def scenario():
        anonymous, member = AsyncClient(), AsyncClient()
        await anonymous.get("/t/hello/")
        await sync_to_async(member.force_login)(user)
        for _ in range(2):
            response = await member.get("/t/hello/")
            assert outcome(response) == "bypass (session of a logged-in user)"
            assert response.content == b"hello ada; posts: 1"
        response = await anonymous.get("/t/hello/", headers={"Authorization": "Bearer x"})
        assert outcome(response) == "bypass (Authorization header)"
        assert outcome(await anonymous.get("/admin/login/")) == "bypass (admin)"
        response = await anonymous.get("/t/hello/")
        assert outcome(response) == "hit"
        assert response.content == b"hello anonymous; posts: 1"
        assert calls["hello"] == 4

    run(scenario)


def test_304_under_asgi(site):
    PostFactory()

    async def scenario():
        client = AsyncClient()
        etag = (await client.get("/t/async-posts/")).headers["ETag"]
        response = await client.get("/t/async-posts/", headers={"If-None-Match": etag})
        assert response.status_code == 304
        assert calls["async_posts"] == 1

    run(scenario)


def test_async_view_decorators(site):
    PostFactory()

    async def scenario():
        client = AsyncClient()
        assert outcome(await client.get("/t/async-decorated/")) == "miss"
        assert outcome(await client.get("/t/async-decorated/")) == "hit"
        assert calls["async_decorated"] == 1
        await Post.objects.filter().aupdate(title="changed")
        assert outcome(await client.get("/t/async-decorated/")) == "miss"
        for _ in range(2):
            response = await client.get("/t/async-opted-out/")
            assert outcome(response) == "bypass (view opted out)"
        assert calls["async_opted_out"] == 2

    run(scenario)
