"""cached_as and cached_property: served from the cache, fresh after every kind of write."""

import pytest
from asgiref.sync import async_to_sync
from django.db import connections, transaction
from django.db.models import Count

import ormcache
from ormcache import reads, signals
from testproject.blog.models import Author, Comment, FeaturedPost, Post
from tests.factories import (
    CommentFactory,
    FeaturedPostFactory,
    PostFactory,
    TagFactory,
)


class Calls:
    """Counts how often a cached function really ran."""

    def __init__(self):
        self.count = 0

    def __call__(self):
        self.count += 1


@pytest.fixture
def post(backend):
    post = PostFactory(title="first", rating=1, tags=TagFactory.create_batch(2))
    CommentFactory.create_batch(2, post=post)
    return post


def assert_cached(backend, read, expected):
    """``read()`` returns ``expected``, and again without any SQL."""
    assert read() == expected
    with backend.queries() as captured:
        assert read() == expected
    assert captured.captured_queries == [], "expected a cache hit, got SQL"


# --- cached_as ------------------------------------------------------------------------

calls = Calls()


@ormcache.cached_as(Comment)
def comments_of(post):
    calls()
    return post.comments.filter(approved=True).count()


@ormcache.cached_as("blog.comment", Post)
def comment_total():
    calls()
    return Comment.objects.nocache().count()


@ormcache.cached_as(Post.objects.filter(published=True))
def published_titles():
    calls()
    return sorted(Post.objects.filter(published=True).values_list("title", flat=True))


@ormcache.cached_as(Post.objects.filter(author__name__startswith="A"))
def titles_by_a_authors():
    calls()
    return sorted(
        Post.objects.nocache().filter(author__name__startswith="A").values_list("title", flat=True)
    )


@ormcache.cached_as(Post)
def tag_names(post):
    calls()
    return sorted(tag.name for tag in Post.objects.nocache().get(pk=post.pk).tags.all())


@ormcache.cached_as()
def summary(post):
    calls()
    return f"{post.title}: {post.rating}"


@ormcache.cached_as(Post)
def comment_count_forgetting_comment(post):
    """Declares only Post, but reads Comment through a cached manager: learned."""
    calls()
    return Comment.objects.filter(post=post).count()


@pytest.fixture(autouse=True)
def _reset_calls():
    calls.count = 0


class TestCachedAs:
    def test_second_call_runs_no_sql(self, backend, post):
        assert_cached(backend, lambda: comments_of(post), 2)
        assert calls.count == 1

    def test_hit_is_one_round_trip(self, backend, post):
        comments_of(post)
        cache = backend.cache
        seen = []
        original = cache.get_many

        def counting(keys, *args, **kwargs):
            seen.append(list(keys))
            return original(keys, *args, **kwargs)

        cache.get_many = counting
        try:
            assert comments_of(post) == 2
        finally:
            del cache.get_many
        assert len(seen) == 1

    @pytest.mark.parametrize(
        "write",
        [
            "create",
            "save",
            "delete",
            "queryset_update",
            "queryset_delete",
            "bulk_create",
            "bulk_update",
            "get_or_create",
            "raw_sql",
            "cascade",
        ],
    )
    def test_fresh_after_each_kind_of_write_to_a_model_dependency(self, backend, post, write):
        assert_cached(backend, lambda: comments_of(post), 2)
        comment = Comment.objects.filter(post=post).first()
        if write == "create":
            CommentFactory(post=post)
            expected = 3
        elif write == "save":
            comment.approved = False
            comment.save()
            expected = 1
        elif write == "delete":
            comment.delete()
            expected = 1
        elif write == "queryset_update":
            Comment.objects.filter(post=post).update(approved=False)
            expected = 0
        elif write == "queryset_delete":
            Comment.objects.filter(post=post).delete()
            expected = 0
        elif write == "bulk_create":
            Comment.objects.bulk_create(
                [Comment(post=post, author_name="x", body="y") for _ in range(3)]
            )
            expected = 5
        elif write == "bulk_update":
            comment.approved = False
            Comment.objects.bulk_update([comment], ["approved"])
            expected = 1
        elif write == "get_or_create":
            Comment.objects.get_or_create(post=post, author_name="new", body="b")
            expected = 3
        elif write == "raw_sql":
            with connections[backend.db_alias].cursor() as cursor:
                cursor.execute(
                    "UPDATE blog_comment SET approved = %s WHERE post_id = %s", [False, post.pk]
                )
            expected = 0
        else:  # deleting the author cascades to the post and its comments
            Author.objects.filter(pk=post.author_id).delete()
            expected = 0
        assert comments_of(post) == expected
        assert_cached(backend, lambda: comments_of(post), expected)

    def test_label_and_model_dependencies(self, backend, post):
        assert_cached(backend, comment_total, 2)
        CommentFactory(post=post)
        assert comment_total() == 3
        # a write to the other dependency recomputes too
        before = calls.count
        Post.objects.filter(pk=post.pk).update(rating=5)
        assert comment_total() == 3
        assert calls.count == before + 1

    def test_queryset_dependency(self, backend, post):
        assert_cached(backend, published_titles, ["first"])
        PostFactory(title="second", author=post.author)
        assert published_titles() == ["first", "second"]
        Post.objects.filter(pk=post.pk).update(published=False)
        assert published_titles() == ["second"]

    def test_queryset_dependency_covers_its_joins(self, backend, post):
        Author.objects.filter(pk=post.author_id).update(name="Alice")
        assert_cached(backend, titles_by_a_authors, ["first"])
        Author.objects.filter(pk=post.author_id).update(name="Bob")
        assert titles_by_a_authors() == []

    def test_instance_dependency(self, backend, post):
        @ormcache.cached_as(post)
        def title():
            calls()
            return Post.objects.nocache().get(pk=post.pk).title

        assert_cached(backend, title, "first")
        Post.objects.filter(pk=post.pk).update(title="renamed")
        assert title() == "renamed"

    def test_model_dependency_includes_its_m2m_tables(self, backend, post):
        names = tag_names(post)
        assert_cached(backend, lambda: tag_names(post), names)
        post.tags.add(TagFactory(name="zzz"))
        assert tag_names(post)[-1] == "zzz"
        post.tags.clear()
        assert tag_names(post) == []

    def test_instance_arguments_are_dependencies_and_keyed_by_their_fields(self, backend, post):
        assert_cached(backend, lambda: summary(post), "first: 1")
        post.title = "unsaved"
        assert summary(post) == "unsaved: 1"  # never the value of other field values
        fresh = Post.objects.nocache().get(pk=post.pk)
        assert summary(fresh) == "first: 1"
        Post.objects.filter(pk=post.pk).update(rating=4)  # another process's write
        assert summary(Post.objects.nocache().get(pk=post.pk)) == "first: 4"

    def test_a_forgotten_dependency_read_through_a_cached_manager_is_learned(self, backend, post):
        assert_cached(backend, lambda: comment_count_forgetting_comment(post), 2)
        CommentFactory(post=post)
        assert comment_count_forgetting_comment(post) == 3

    def test_arguments_key_the_value(self, backend, post):
        other = PostFactory()
        CommentFactory(post=other)
        assert comments_of(post) == 2
        assert comments_of(other) == 1
        assert comments_of(post=post) == 2  # bound to the signature: same entry
        assert calls.count == 2

    def test_unkeyable_arguments_need_a_key(self, backend):
        @ormcache.cached_as(Post)
        def f(thing):
            return 1

        with pytest.raises(TypeError, match="key="):
            f(object())

    def test_callable_key(self, backend, post):
        class Request:
            def __init__(self, pk):
                self.pk = pk

        @ormcache.cached_as(Comment, key=lambda request: request.pk)
        def count_for(request):
            calls()
            return Comment.objects.filter(post_id=request.pk).count()

        assert_cached(backend, lambda: count_for(Request(post.pk)), 2)
        CommentFactory(post=post)
        assert count_for(Request(post.pk)) == 3

    def test_string_key_names_the_entry(self, backend, post):
        first = ormcache.cached_as(Comment, key="comment-count")(lambda: Comment.objects.count())
        second = ormcache.cached_as(Comment, key="comment-count")(lambda: -1)
        assert first() == 2
        assert second() == 2  # same name and arguments: the same entry

    def test_peek_never_computes(self, backend, post):
        assert comments_of.peek(post) is ormcache.NOT_CACHED
        assert not ormcache.NOT_CACHED
        assert calls.count == 0
        comments_of(post)
        assert comments_of.peek(post) == 2
        CommentFactory(post=post)
        assert comments_of.peek(post) is ormcache.NOT_CACHED
        assert calls.count == 1

    def test_invalidate_one_call(self, backend, post):
        external = {"value": 1}

        @ormcache.cached_as(Post)
        def read(n):
            calls()
            return external["value"] * n

        assert read(1) == 1
        assert read(2) == 2
        external["value"] = 10
        assert read(1) == 1  # ormcache cannot see this change...
        assert read.invalidate(1) is True
        assert read(1) == 10  # ...until told
        assert read(2) == 2  # other calls keep their entries
        assert calls.count == 3

    def test_invalidate_wins_over_a_computation_in_flight(self, backend, post):
        # invariant 3 for invalidate(): a computation that began before it can never
        # store its (old) value as current.
        external = {"value": "old"}

        @ormcache.cached_as(Post)
        def read():
            value = external["value"]
            read.invalidate()  # the change and its invalidation land mid-computation
            external["value"] = "new"
            return value

        assert read() == "old"
        assert read.peek() is ormcache.NOT_CACHED

    def test_async_function(self, backend, post):
        @ormcache.cached_as(Comment)
        async def acount(post_pk):
            calls()
            return await Comment.objects.filter(post_id=post_pk).acount()

        assert_cached(backend, lambda: async_to_sync(acount)(post.pk), 2)
        assert calls.count == 1
        CommentFactory(post=post)
        assert async_to_sync(acount)(post.pk) == 3
        assert async_to_sync(acount.apeek)(post.pk) == 3
        assert async_to_sync(acount.ainvalidate)(post.pk)
        assert acount.peek(post.pk) is ormcache.NOT_CACHED

    def test_bad_options(self):
        with pytest.raises(ValueError):
            ormcache.cached_as(Post, timeout=-1)
        with pytest.raises(TypeError):
            ormcache.cached_as(42)
        with pytest.raises(TypeError):
            ormcache.cached_as(Post, key=3)

    def test_none_and_falsy_values_are_cached(self, backend, post):
        @ormcache.cached_as(Post)
        def nothing():
            calls()
            return None

        nothing()
        nothing()
        assert calls.count == 1


class TestCachedAsTransactions:
    def test_a_transaction_that_wrote_a_dependency_computes_and_stores_nothing(self, backend, post):
        assert comments_of(post) == 2
        with transaction.atomic(using=backend.db_alias):
            CommentFactory(post=post)
            assert comments_of(post) == 3  # its own write
            assert comments_of(post) == 3
            assert calls.count == 3  # bypassed both times
        assert comments_of(post) == 3

    def test_rollback_leaves_no_trace(self, backend, post):
        assert comments_of(post) == 2
        with pytest.raises(RuntimeError), transaction.atomic(using=backend.db_alias):
            CommentFactory(post=post)
            assert comments_of(post) == 3
            raise RuntimeError
        assert_cached(backend, lambda: comments_of(post), 2)

    def test_reads_of_written_tables_inside_the_computation_are_not_stored(self, backend, post):
        with transaction.atomic(using=backend.db_alias):
            CommentFactory(post=post)
            # Declares Post only; its read of Comment bypasses, so nothing is stored.
            assert comment_count_forgetting_comment(post) == 3
        assert comment_count_forgetting_comment(post) == 3

    def test_pending_versions_are_not_stored(self, backend, post):
        from ormcache import versions

        versions.bump_tables(backend.db_alias, ["blog_comment"], pending=True)
        assert comments_of(post) == 2
        assert comments_of.peek(post) is ormcache.NOT_CACHED
        versions.bump_tables(backend.db_alias, ["blog_comment"])
        comments_of(post)
        assert comments_of.peek(post) == 2


class TestCachedAsSettings:
    def test_disabled_globally(self, backend, post):
        with backend.settings(ENABLED=False):
            comments_of(post)
            comments_of(post)
        assert calls.count == 2

    def test_disabled_block(self, backend, post):
        with ormcache.disabled():
            comments_of(post)
            comments_of(post)
        assert calls.count == 2

    def test_a_disabled_model_is_never_cached(self, backend, post):
        with backend.settings(MODELS={"blog.comment": {"enabled": False}}):
            comments_of(post)
            comments_of(post)
            assert calls.count == 2
        comments_of(post)
        comments_of(post)
        assert calls.count == 3

    def test_timeouts(self, backend, post):
        stored = []

        def remember(sender, **kwargs):
            stored.append(kwargs["key"])

        @ormcache.cached_as(Comment, timeout=0)
        def zero():
            calls()
            return 1

        signals.cache_stored.connect(remember)
        try:
            zero()
            zero()
        finally:
            signals.cache_stored.disconnect(remember)
        assert calls.count == 2  # timeout 0: stored, but expired at once
        with backend.settings(MODELS={"blog.comment": {"timeout": 0}}):
            comments_of(post)
            comments_of(post)
        assert calls.count == 4

    def test_override_settings_cache_alias(self, backend, post):
        from django.test.utils import override_settings

        comments_of(post)
        assert comments_of.peek(post) == 2
        other = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "other"}
        with (
            override_settings(CACHES={**connections_caches(), "other": other}),
            backend.settings(CACHE="other"),
        ):
            assert comments_of.peek(post) is ormcache.NOT_CACHED
            assert_cached(backend, lambda: comments_of(post), 2)
        assert comments_of.peek(post) == 2


def connections_caches():
    from django.conf import settings

    return settings.CACHES


# --- cached_property ------------------------------------------------------------------


@pytest.fixture
def author_post_count():
    """A property of Post on its own model: the author's number of posts."""

    def count(self):
        calls()
        return Post.objects.filter(author_id=self.author_id).count()

    prop = ormcache.cached_property(count)
    prop.__set_name__(Post, "author_post_count")
    Post.author_post_count = prop
    yield prop
    del Post.author_post_count


class TestCachedProperty:
    def test_shared_across_instances(self, backend, post):
        def read():
            return Post.objects.nocache().get(pk=post.pk)

        first = read()
        assert first.comment_count == 2
        second = read()
        with backend.queries() as captured:
            assert second.comment_count == 2
        assert captured.captured_queries == []

    def test_behaves_like_django_cached_property_within_an_instance(self, backend, post):
        instance = Post.objects.nocache().get(pk=post.pk)
        assert instance.comment_count == 2
        assert instance.__dict__["comment_count"] == 2
        CommentFactory(post=post)
        assert instance.comment_count == 2  # kept on the instance, like Django's
        del instance.comment_count
        assert instance.comment_count == 3
        assert isinstance(Post.comment_count, ormcache.cached_property)

    @pytest.mark.parametrize("write", ["create", "update", "delete", "raw_sql"])
    def test_fresh_after_writes_to_depends_on(self, backend, post, write):
        assert Post.objects.nocache().get(pk=post.pk).comment_count == 2
        if write == "create":
            CommentFactory(post=post)
            expected = 3
        elif write == "update":
            Comment.objects.filter(post=post).update(approved=False)
            expected = 0
        elif write == "delete":
            Comment.objects.filter(post=post).first().delete()
            expected = 1
        else:
            with connections[backend.db_alias].cursor() as cursor:
                cursor.execute("DELETE FROM blog_comment WHERE post_id = %s", [post.pk])
            expected = 0
        assert Post.objects.nocache().get(pk=post.pk).comment_count == expected

    def test_fresh_after_writes_to_its_own_model(self, backend, post, author_post_count):
        other = PostFactory(author=post.author)
        assert Post.objects.nocache().get(pk=post.pk).author_post_count == 2
        other.delete()
        assert Post.objects.nocache().get(pk=post.pk).author_post_count == 1

    def test_keyed_by_primary_key(self, backend, post):
        other = PostFactory()
        CommentFactory(post=other)
        assert Post.objects.nocache().get(pk=post.pk).comment_count == 2
        assert Post.objects.nocache().get(pk=other.pk).comment_count == 1

    def test_unsaved_instance_computes_without_caching(self, backend, post, author_post_count):
        for _ in range(2):
            assert Post(author=post.author, title="x").author_post_count == 1
        assert calls.count == 2

    def test_multi_table_inheritance(self, backend):
        featured = FeaturedPostFactory()
        CommentFactory(post=featured)
        assert FeaturedPost.objects.nocache().get(pk=featured.pk).comment_count == 1
        CommentFactory(post=featured)
        assert FeaturedPost.objects.nocache().get(pk=featured.pk).comment_count == 2

    def test_disabled(self, backend, post):
        with backend.settings(ENABLED=False):
            first = Post.objects.get(pk=post.pk)
            first.comment_count  # noqa: B018
            second = Post.objects.get(pk=post.pk)
            with backend.queries() as captured:
                assert second.comment_count == 2
            assert len(captured.captured_queries) == 1

    def test_only_models(self):
        with pytest.raises(TypeError):

            class NotAModel:
                @ormcache.cached_property
                def value(self):
                    return 1

            NotAModel().value  # noqa: B018


# --- recorders (the page cache) -------------------------------------------------------


def test_recorders_learn_the_dependencies_of_a_hit(backend, post):
    comments_of(post)
    with reads.recording() as events:
        assert comments_of(post) == 2
    assert [event.outcome for event in events] == ["hit"]
    assert "blog_comment" in events[0].tables
    assert events[0].versions


def test_signals_for_helpers(backend, post):
    seen = []

    def remember(signal):
        def receiver(sender, **kwargs):
            seen.append((signal, sender, kwargs["key"].split(":")[1]))

        return receiver

    receivers = {
        signal: remember(name)
        for name, signal in [
            ("hit", signals.cache_hit),
            ("miss", signals.cache_miss),
            ("stored", signals.cache_stored),
        ]
    }
    for signal, receiver in receivers.items():
        signal.connect(receiver)
    try:
        comments_of(post)
        comments_of(post)
    finally:
        for signal, receiver in receivers.items():
            signal.disconnect(receiver)
    helper_events = [(name, key) for name, sender, key in seen if key == "f"]
    assert helper_events == [("miss", "f"), ("stored", "f"), ("hit", "f")]


def test_the_annotation_of_a_view_takes_precedence_on_its_instances(backend, post):
    annotated = Post.objects.annotate(comment_count=Count("comments")).get(pk=post.pk)
    assert annotated.comment_count == 2
    assert calls.count == 0


def test_demo_reading_stats_are_fresh(backend, post, client):
    from testproject.blog.summaries import reading_stats

    Post.objects.filter(pk=post.pk).update(body="one two three")
    assert_cached(backend, reading_stats, {"words": 3, "minutes": 1})
    PostFactory(body="four five", published=False)
    assert reading_stats()["words"] == 3  # recomputed (a write to Post); drafts do not count
    Post.objects.filter(pk=post.pk).update(body="one")
    assert reading_stats()["words"] == 1
    assert "Words published" in client.get("/stats/").content.decode()
