"""Dependencies: every table read counts; uncertain or non-deterministic reads are not cached."""

import pytest
from django.db.models import Exists, OuterRef, Subquery
from django.db.models.expressions import RawSQL
from django.db.models.functions import Now, Random

from ormcache.dependencies import tables_read
from ormcache.keys import Uncacheable
from testproject.blog.models import Author, Comment, FeaturedPost, Post, PublishedPost, Tag
from tests.factories import CommentFactory, FeaturedPostFactory, PostFactory, TagFactory
from tests.helpers import assert_hits_database, assert_served_from_cache


def tables(queryset):
    """Tables read, found as the read path finds them: after compiling the query, with
    the FROM clause the compiler recorded."""
    compiler = queryset.query.get_compiler("default")
    compiler.as_sql()
    return set(tables_read(queryset.query, from_aliases=compiler.from_aliases))


class TestTablesRead:
    def test_plain(self, db):
        assert tables(Post.objects.all()) == {"blog_post"}

    def test_select_related_and_lookups_across_relations(self, db):
        assert tables(Post.objects.select_related("author")) == {"blog_post", "blog_author"}
        assert tables(Comment.objects.filter(post__author__name="x")) == {
            "blog_comment",
            "blog_post",
            "blog_author",
        }

    def test_m2m_through_table(self, db):
        assert tables(Post.objects.filter(tags__name="x")) == {
            "blog_post",
            "blog_post_tags",
            "blog_tag",
        }

    def test_multi_table_inheritance_parent(self, db):
        assert tables(FeaturedPost.objects.all()) == {"blog_featuredpost", "blog_post"}

    def test_proxy(self, db):
        assert tables(PublishedPost.objects.all()) == {"blog_post"}

    def test_subquery_exists_and_in(self, db):
        recent = Comment.objects.filter(post=OuterRef("pk"))
        assert tables(Post.objects.filter(Exists(recent))) == {"blog_post", "blog_comment"}
        assert tables(Post.objects.filter(~Exists(recent))) == {"blog_post", "blog_comment"}
        assert tables(Post.objects.annotate(last=Subquery(recent.values("body")[:1]))) == {
            "blog_post",
            "blog_comment",
        }
        assert tables(Post.objects.filter(author__in=Author.objects.filter(name="x"))) == {
            "blog_post",
            "blog_author",
        }

    def test_union(self, db):
        posts = Post.objects.order_by().values("id")
        combined = posts.union(Comment.objects.order_by().values("id")).order_by()
        assert tables(combined) == {"blog_post", "blog_comment"}

    def test_joins_the_sql_left_out_are_not_read(self, db):
        # filter(post_id=...) and filter(post__id=...) compare the foreign key column:
        # Django trims the join to blog_post but keeps it in alias_map (refcount 0).
        assert tables(Comment.objects.filter(post_id=1)) == {"blog_comment"}
        assert tables(Comment.objects.filter(post__id=1)) == {"blog_comment"}
        assert tables(Comment.objects.filter(post__title="x")) == {"blog_comment", "blog_post"}
        assert tables(Comment.objects.filter(post__id=1).order_by("post__title")) == {
            "blog_comment",
            "blog_post",
        }

    def test_case_when_over_a_relation(self, db):
        from django.db.models import Case, IntegerField, Value, When

        annotated = Post.objects.annotate(
            flag=Case(When(tags__name="x", then=Value(1)), default=0, output_field=IntegerField())
        )
        assert tables(annotated) == {"blog_post", "blog_post_tags", "blog_tag"}

    @pytest.mark.parametrize(
        "make",
        [
            lambda: Post.objects.order_by("?"),
            lambda: Post.objects.annotate(r=Random()),
            lambda: Post.objects.filter(pub_date__lte=Now()),
            lambda: Post.objects.annotate(x=RawSQL("SELECT 1", [])),
            lambda: Post.objects.extra(where=["1 = 1"]),
            lambda: Post.objects.extra(tables=["blog_tag"]),
            lambda: Post.objects.select_for_update(),
        ],
        ids=[
            "order_by_random",
            "random",
            "now",
            "rawsql",
            "extra_where",
            "extra_tables",
            "for_update",
        ],
    )
    def test_uncacheable(self, db, make):
        with pytest.raises(Uncacheable):
            tables_read(make().query)


@pytest.mark.parametrize(
    "read",
    [
        lambda: list(Post.objects.order_by("?")),
        lambda: list(Post.objects.filter(pub_date__lte=Now())),
        lambda: list(Post.objects.annotate(x=RawSQL("1", []))),
        lambda: Post.objects.filter(pub_date__lte=Now()).count(),
    ],
    ids=["random-order", "now", "rawsql", "count-now"],
)
def test_uncacheable_reads_go_to_the_database(backend, read):
    PostFactory()
    assert_hits_database(backend, read)


def test_exists_subquery_is_fresh_after_a_write_to_the_inner_table(backend):
    post = PostFactory()
    commented = Exists(Comment.objects.filter(post=OuterRef("pk")))

    def read():
        return list(Post.objects.filter(commented).values_list("pk", flat=True))

    assert_served_from_cache(backend, read)
    CommentFactory(post=post)
    assert read() == [post.pk]


def test_prefetch_through_m2m_is_fresh_after_tag_rename(backend):
    tag = TagFactory(name="old")
    PostFactory(tags=[tag])

    def read():
        return [[t.name for t in p.tags.all()] for p in Post.objects.prefetch_related("tags")]

    assert_served_from_cache(backend, read)
    Tag.objects.filter(pk=tag.pk).update(name="new")
    assert read() == [["new"]]


def test_child_read_is_fresh_after_parent_row_change(backend):
    featured = FeaturedPostFactory(rating=1)
    assert_served_from_cache(backend, lambda: FeaturedPost.objects.get(pk=featured.pk).rating)
    post = Post.objects.get(pk=featured.pk)
    post.rating = 4
    post.save()
    assert FeaturedPost.objects.get(pk=featured.pk).rating == 4


def test_count_of_a_related_manager_survives_writes_to_the_parent_table(backend):
    """The count reads blog_comment only: saving posts (its own or another) keeps it."""
    post, other = PostFactory(), PostFactory()
    CommentFactory(post=post)
    assert_served_from_cache(backend, lambda: post.comments.count())
    other.title = "changed"
    other.save()
    post.title = "changed too"
    post.save()
    with backend.queries() as captured:
        assert post.comments.count() == 1
    assert captured.captured_queries == []
    CommentFactory(post=post)
    assert post.comments.count() == 2
