"""Every read kind is served from the cache the second time, with equal results."""

import pytest
from asgiref.sync import async_to_sync
from django.db.models import Avg, Count, F, FloatField, Max, Q, Sum

from testproject.blog.models import Author, Comment, FeaturedPost, Post, Tag
from tests.factories import (
    AuthorFactory,
    CommentFactory,
    FeaturedPostFactory,
    PostFactory,
    TagFactory,
)
from tests.helpers import assert_hits_database, assert_served_from_cache, plain


@pytest.fixture
def blog(backend):
    tags = TagFactory.create_batch(3)
    authors = AuthorFactory.create_batch(2)
    posts = [
        PostFactory(author=authors[i % 2], tags=tags[: (i % 3) + 1], published=i % 4 != 0)
        for i in range(8)
    ]
    for i, post in enumerate(posts):
        CommentFactory.create_batch(i % 3, post=post)
    return {"tags": tags, "authors": authors, "posts": posts}


READS = {
    "iteration": lambda b: list(Post.objects.all()),
    "filter": lambda b: list(Post.objects.filter(published=True, rating__gte=2)),
    "get": lambda b: Post.objects.get(pk=b["posts"][3].pk),
    "first": lambda b: Post.objects.order_by("title").first(),
    "last": lambda b: Post.objects.order_by("title").last(),
    "earliest": lambda b: Post.objects.earliest("pub_date"),
    "latest": lambda b: Post.objects.latest("pub_date"),
    "count": lambda b: Post.objects.filter(published=True).count(),
    "exists": lambda b: Post.objects.filter(rating=3).exists(),
    "aggregate": lambda b: Post.objects.aggregate(
        avg=Avg("rating"), n=Count("id"), top=Max("rating")
    ),
    "aggregate-join": lambda b: Author.objects.aggregate(comments=Count("posts__comments")),
    "values": lambda b: list(Post.objects.values("id", "title", "author__name")),
    "values_list": lambda b: list(Post.objects.values_list("id", "rating")),
    "values_list-flat": lambda b: list(Post.objects.values_list("title", flat=True)),
    "values_list-named": lambda b: list(Post.objects.values_list("id", "slug", named=True)),
    "in_bulk": lambda b: Post.objects.in_bulk([p.pk for p in b["posts"][:3]]),
    "select_related": lambda b: [
        (p.title, p.author.name) for p in Post.objects.select_related("author")
    ],
    "prefetch_related-m2m": lambda b: [
        (p.pk, [t.name for t in p.tags.all()]) for p in Post.objects.prefetch_related("tags")
    ],
    "prefetch_related-reverse-fk": lambda b: [
        (p.pk, [c.pk for c in p.comments.all()]) for p in Post.objects.prefetch_related("comments")
    ],
    "related-manager": lambda b: list(b["posts"][4].comments.all()),
    "related-manager-m2m": lambda b: list(b["tags"][0].posts.all()),
    "annotate": lambda b: list(Post.objects.annotate(n=Count("comments")).values_list("pk", "n")),
    "annotate-filter": lambda b: list(
        Author.objects.annotate(n=Count("posts")).filter(n__gte=1).values("name", "n")
    ),
    "distinct": lambda b: list(Tag.objects.filter(posts__published=True).distinct()),
    "slicing": lambda b: list(Post.objects.order_by("id")[2:5]),
    "union": lambda b: sorted(
        Post.objects.filter(rating=1)
        .order_by()
        .values_list("id")
        .union(Post.objects.filter(rating=3).order_by().values_list("id"))
        .order_by()
    ),
    "count-with-subquery": lambda b: Post.objects.filter(
        author__in=Author.objects.filter(name__startswith="Author")
    ).count(),
    "count-sliced": lambda b: Post.objects.order_by("id")[:5].count(),
    "count-distinct": lambda b: Tag.objects.filter(posts__isnull=False).distinct().count(),
    "count-grouped": lambda b: Post.objects.annotate(n=Count("comments")).filter(n__gt=0).count(),
    "aggregate-over-slice": lambda b: Post.objects.order_by("id")[:4].aggregate(s=Sum("rating")),
    "multi-table-inheritance": lambda b: list(FeaturedPost.objects.all()),
    "expressions": lambda b: list(
        Post.objects.filter(Q(rating__gt=F("views")) | Q(title__startswith="Post"))
        .annotate(double=F("rating") * 2)
        .values_list("id", "double")
    ),
}


@pytest.mark.parametrize("kind", list(READS))
def test_second_read_runs_no_sql(blog, backend, kind):
    FeaturedPostFactory(author=blog["authors"][0])
    assert_served_from_cache(backend, lambda: READS[kind](blog))


@pytest.mark.parametrize("kind", ["iteration", "get", "count", "aggregate", "values", "union"])
def test_cached_result_matches_the_database(blog, backend, kind):
    import ormcache

    cached = assert_served_from_cache(backend, lambda: READS[kind](blog))
    with ormcache.disabled():
        fresh = READS[kind](blog)
    assert plain(cached) == plain(fresh)


def test_hits_build_fresh_instances(blog, backend):
    first = Post.objects.get(pk=blog["posts"][0].pk)
    first.title = "changed in memory only"
    second = Post.objects.get(pk=blog["posts"][0].pk)
    assert second is not first
    assert second.title != "changed in memory only"


def test_iterator_is_not_cached(blog, backend):
    assert_hits_database(backend, lambda: list(Post.objects.iterator()))


def test_nocache_always_queries(blog, backend):
    assert_hits_database(backend, lambda: list(Post.objects.nocache().filter(rating=1)))


def test_nocache_survives_chaining(blog, backend):
    base = Post.objects.nocache()
    assert_hits_database(backend, lambda: base.filter(rating=1).order_by("id").count())


def test_cache_undoes_nocache(blog, backend):
    assert_served_from_cache(backend, lambda: list(Post.objects.nocache().cache().all()))


def test_cache_rejects_a_bad_timeout(blog, backend):
    with pytest.raises(ValueError):
        Post.objects.cache(timeout=-1)


def test_empty_in_filter_needs_no_query(blog, backend):
    with backend.queries() as captured:
        assert list(Post.objects.filter(pk__in=[])) == []
    assert captured.captured_queries == []


@pytest.mark.parametrize(
    "over",
    [lambda: Post.objects.distinct(), lambda: Post.objects.order_by("id")[:5]],
    ids=["distinct", "slice"],
)
def test_aggregates_with_another_output_field_are_not_shared(blog, backend, over):
    """Sum(x) and Sum(x, output_field=FloatField()) have the same SQL; the subquery form
    of aggregate() caches converted values, so each must get its own entry."""
    as_int = over().aggregate(s=Sum("rating"))
    as_float = over().aggregate(s=Sum("rating", output_field=FloatField()))
    assert type(as_int["s"]) is int and type(as_float["s"]) is float
    assert as_float["s"] == as_int["s"]
    assert_served_from_cache(backend, lambda: over().aggregate(s=Sum("rating")))


class TestAsync:
    def test_aget_acount_aexists_are_cached(self, blog, backend):
        pk = blog["posts"][2].pk

        async def reads():
            post = await Post.objects.aget(pk=pk)
            count = await Post.objects.filter(published=True).acount()
            exists = await Post.objects.filter(rating=4).aexists()
            first = await Post.objects.order_by("id").afirst()
            total = await Post.objects.aaggregate(s=Sum("rating"))
            return [post, count, exists, first, total]

        assert_served_from_cache(backend, async_to_sync(reads))

    def test_async_for_is_cached(self, blog, backend):
        async def read():
            return [post async for post in Post.objects.filter(rating__lt=3)]

        assert_served_from_cache(backend, async_to_sync(read))

    def test_async_and_sync_share_entries(self, blog, backend):
        sync_result = list(Post.objects.filter(rating=2))

        async def read():
            return [post async for post in Post.objects.filter(rating=2)]

        with backend.queries() as captured:
            async_result = async_to_sync(read)()
        assert captured.captured_queries == []
        assert plain(async_result) == plain(sync_result)


def test_comment_count_of_a_post(blog, backend):
    post = blog["posts"][5]
    assert_served_from_cache(backend, lambda: post.comments.count())
    assert Comment.objects.filter(post=post).count() == post.comments.count()


def test_the_output_field_in_an_aggregate_key_is_the_same_in_every_process():
    """The key of an aggregate over a distinct or sliced queryset holds its output field:
    no memory address (a callable default, on_delete, a lazy name) may end up in it."""
    from ormcache.query import _field_signature

    for name in ("author", "pub_date", "rating"):
        signature = _field_signature(Post._meta.get_field(name))
        assert " at 0x" not in signature, signature
    author = _field_signature(Post._meta.get_field("author"))
    assert "CASCADE" in author or "on_delete" in author  # the arguments are still there
