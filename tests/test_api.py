"""The public API: disabled(), invalidate(), invalidate_all()."""

import pytest
from asgiref.sync import async_to_sync

import ormcache
from testproject.blog.models import Author, Post
from tests.factories import AuthorFactory, PostFactory
from tests.helpers import assert_hits_database, assert_served_from_cache


@pytest.fixture
def posts(backend):
    return PostFactory.create_batch(2)


def read():
    return list(Post.objects.filter(rating__gte=0))


class TestDisabled:
    def test_context_manager(self, backend, posts):
        with ormcache.disabled():
            assert_hits_database(backend, read)
        assert_served_from_cache(backend, read)

    def test_nothing_is_stored_while_disabled(self, backend, posts):
        with ormcache.disabled():
            read()
        with backend.queries() as captured:
            read()
        assert len(captured.captured_queries) == 1

    def test_decorator(self, backend, posts):
        @ormcache.disabled()
        def decorated():
            return read()

        assert_hits_database(backend, decorated)

    def test_async_decorator(self, backend, posts):
        @ormcache.disabled()
        async def decorated():
            return [post async for post in Post.objects.filter(rating__gte=0)]

        assert_hits_database(backend, async_to_sync(decorated))

    def test_exception_inside_restores_caching(self, backend, posts):
        with pytest.raises(RuntimeError), ormcache.disabled():
            raise RuntimeError("boom")
        assert_served_from_cache(backend, read)

    def test_exception_inside_decorated_function_restores_caching(self, backend, posts):
        @ormcache.disabled()
        def failing():
            read()
            raise ValueError("boom")

        with pytest.raises(ValueError):
            failing()
        assert_served_from_cache(backend, read)

    def test_nesting(self, backend, posts):
        with ormcache.disabled():
            with ormcache.disabled():
                pass
            assert_hits_database(backend, read)
        assert_served_from_cache(backend, read)

    def test_writes_still_invalidate_while_disabled(self, backend, posts):
        assert_served_from_cache(backend, read)
        with ormcache.disabled():
            Post.objects.update(title="while disabled")
        assert {post.title for post in read()} == {"while disabled"}


class TestInvalidate:
    def test_invalidate_model(self, backend, posts):
        assert_served_from_cache(backend, read)
        ormcache.invalidate(Post)
        with backend.queries() as captured:
            read()
        assert len(captured.captured_queries) == 1

    def test_invalidate_by_label(self, backend, posts):
        assert_served_from_cache(backend, lambda: list(Author.objects.all()))
        ormcache.invalidate("blog.Author")
        with backend.queries() as captured:
            list(Author.objects.all())
        assert len(captured.captured_queries) == 1

    def test_invalidate_other_model_keeps_entries(self, backend, posts):
        AuthorFactory()
        assert_served_from_cache(backend, read)
        ormcache.invalidate(Author)
        assert_served_from_cache(backend, read)

    def test_invalidate_all(self, backend, posts):
        assert_served_from_cache(backend, read)
        assert_served_from_cache(backend, lambda: list(Author.objects.all()))
        ormcache.invalidate_all()
        with backend.queries() as captured:
            read()
            list(Author.objects.all())
        assert len(captured.captured_queries) == 2

    def test_cache_server_flush_is_a_miss_not_stale(self, backend, posts):
        assert_served_from_cache(backend, read)
        backend.flush()  # versions gone: unknown, so a miss
        with backend.queries() as captured:
            read()
        assert len(captured.captured_queries) == 1
        assert_served_from_cache(backend, read)
