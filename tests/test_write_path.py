"""Every write made through Django makes the dependent cached reads fresh."""

import pytest
from django.db import connections

from testproject.blog.models import Author, Categorisation, Comment, FeaturedPost, Post, Tag
from tests.factories import (
    AuthorFactory,
    CategoryFactory,
    CommentFactory,
    FeaturedPostFactory,
    PostFactory,
    TagFactory,
)
from tests.helpers import assert_served_from_cache


@pytest.fixture
def post(backend):
    post = PostFactory(title="before", rating=1, tags=TagFactory.create_batch(2))
    CommentFactory.create_batch(2, post=post)
    return post


def titles():
    return sorted(Post.objects.values_list("title", flat=True))


def test_save_refreshes_reads(backend, post):
    assert_served_from_cache(backend, titles)
    post.title = "after"
    post.save()
    assert titles() == ["after"]


def test_create_refreshes_counts_and_missing_rows(backend, post):
    assert_served_from_cache(backend, lambda: Post.objects.count())
    assert not Post.objects.filter(title="new").exists()
    Post.objects.create(author=post.author, title="new", slug="new")
    assert Post.objects.count() == 2
    assert Post.objects.filter(title="new").exists()


def test_delete_refreshes_reads_of_cascaded_tables(backend, post):
    assert_served_from_cache(backend, lambda: Comment.objects.count())
    assert_served_from_cache(backend, lambda: list(post.tags.all()))
    post.author.delete()  # cascades to the post, its comments and its tag links
    assert Comment.objects.count() == 0
    assert Post.objects.count() == 0
    assert Tag.objects.filter(posts__isnull=False).count() == 0


@pytest.mark.parametrize("side", ["forward", "reverse"])
def test_m2m_add_remove_clear_set(backend, post, side):
    extra = TagFactory(name="extra")

    def names():
        return sorted(t.name for t in Post.objects.get(pk=post.pk).tags.all())

    assert_served_from_cache(backend, names)
    if side == "forward":
        post.tags.add(extra)
    else:
        extra.posts.add(post)
    assert "extra" in names()
    if side == "forward":
        post.tags.remove(extra)
    else:
        extra.posts.remove(post)
    assert "extra" not in names()
    post.tags.set([extra]) if side == "forward" else extra.posts.set([post])
    assert "extra" in names()
    post.tags.clear() if side == "forward" else extra.posts.clear()
    assert "extra" not in names()


def test_m2m_prefetch_is_fresh_after_add(backend, post):
    extra = TagFactory(name="zzz")

    def prefetched():
        return [sorted(t.name for t in p.tags.all()) for p in Post.objects.prefetch_related("tags")]

    assert_served_from_cache(backend, prefetched)
    extra.posts.add(post)
    assert "zzz" in prefetched()[0]


def test_explicit_through_model(backend, post):
    category = CategoryFactory()
    assert_served_from_cache(backend, lambda: list(category.posts.all()))
    Categorisation.objects.create(category=category, post=post, weight=3)
    assert [p.pk for p in category.posts.all()] == [post.pk]


def test_queryset_update(backend, post):
    assert_served_from_cache(backend, lambda: Post.objects.get(pk=post.pk).rating)
    Post.objects.filter(pk=post.pk).update(rating=5)
    assert Post.objects.get(pk=post.pk).rating == 5


def test_queryset_delete(backend, post):
    assert_served_from_cache(backend, lambda: Comment.objects.filter(post=post).count())
    Comment.objects.filter(post=post).delete()
    assert Comment.objects.filter(post=post).count() == 0


def test_bulk_create_and_bulk_update(backend, post):
    assert_served_from_cache(backend, lambda: Tag.objects.count())
    created = Tag.objects.bulk_create([Tag(name=f"bulk{i}") for i in range(3)])
    assert Tag.objects.count() == 5
    tags = list(Tag.objects.filter(name__startswith="bulk"))
    for tag in tags:
        tag.name = tag.name.upper()
    Tag.objects.bulk_update(tags, ["name"])
    assert sorted(Tag.objects.filter(name__startswith="BULK").values_list("name", flat=True)) == [
        "BULK0",
        "BULK1",
        "BULK2",
    ]
    assert len(created) == 3


def test_get_or_create_and_update_or_create(backend, post):
    assert_served_from_cache(backend, lambda: Author.objects.filter(name="Ada").exists())
    _author, created = Author.objects.get_or_create(name="Ada")
    assert created and Author.objects.filter(name="Ada").exists()
    assert_served_from_cache(backend, lambda: Author.objects.get(name="Ada").email)
    Author.objects.update_or_create(name="Ada", defaults={"email": "ada@example.com"})
    assert Author.objects.get(name="Ada").email == "ada@example.com"


def test_raw_sql_through_connection_cursor(backend, post):
    assert_served_from_cache(backend, titles)
    with connections[backend.db_alias].cursor() as cursor:
        cursor.execute("UPDATE blog_post SET title = %s WHERE id = %s", ["raw", post.pk])
    assert titles() == ["raw"]


@pytest.mark.parametrize(
    "sql",
    [
        'UPDATE "blog_post" SET "title" = %s WHERE "blog_post"."id" = %s',
        "update blog_post set title = %s where id = %s",
    ],
)
def test_executemany_with_an_iterator_writes_every_row(backend, post, sql):
    """executemany() takes an iterator: ormcache must not use it up before the database."""
    other = PostFactory(title="other")
    assert_served_from_cache(backend, titles)
    with connections[backend.db_alias].cursor() as cursor:
        cursor.executemany(sql, (row for row in [["one", post.pk], ["two", other.pk]]))
    assert titles() == ["one", "two"]


def test_raw_sql_the_parser_cannot_name_invalidates_everything(backend, post):
    assert_served_from_cache(backend, titles)
    with connections[backend.db_alias].cursor() as cursor:
        cursor.execute(
            "WITH changed AS (SELECT id FROM blog_post) "
            "UPDATE blog_post SET title = %s WHERE id IN (SELECT id FROM changed)",
            ["cte"],
        )
    assert titles() == ["cte"]


def test_multi_table_inheritance_parent_write(backend, post):
    featured = FeaturedPostFactory(title="child", author=post.author)
    assert_served_from_cache(backend, lambda: FeaturedPost.objects.get(pk=featured.pk).title)
    Post.objects.filter(pk=featured.pk).update(title="via parent")
    assert FeaturedPost.objects.get(pk=featured.pk).title == "via parent"


def test_write_to_joined_table_refreshes_select_related(backend, post):
    def author_names():
        return [p.author.name for p in Post.objects.select_related("author")]

    assert_served_from_cache(backend, author_names)
    Author.objects.filter(pk=post.author_id).update(name="Renamed")
    assert author_names() == ["Renamed"]


def test_write_to_subquery_table_refreshes_outer_read(backend, post):
    def posts_by_named_authors():
        return list(Post.objects.filter(author__in=Author.objects.filter(name="Grace")))

    assert_served_from_cache(backend, posts_by_named_authors)
    Author.objects.filter(pk=post.author_id).update(name="Grace")
    assert [p.pk for p in posts_by_named_authors()] == [post.pk]


def test_aggregate_over_join_refreshes(backend, post):
    from django.db.models import Count

    def counted():
        return Author.objects.aggregate(n=Count("posts__comments"))["n"]

    assert_served_from_cache(backend, counted)
    CommentFactory(post=post)
    assert counted() == 3


def test_writes_to_unrelated_tables_keep_entries(backend, post):
    assert_served_from_cache(backend, titles)
    AuthorFactory()  # writes blog_author only
    with backend.queries() as captured:
        titles()
    assert captured.captured_queries == []


def test_a_connection_opened_inside_a_users_execute_wrapper_keeps_the_watcher(backend, post):
    """Django's ``execute_wrapper()`` block pops the last wrapper on exit: ormcache's,
    if the connection opened (and ormcache attached itself) inside the block."""
    from django.db.backends.signals import connection_created

    connection = connections[backend.db_alias]
    saved = list(connection.execute_wrappers)
    seen = []

    def logger(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    try:
        connection.execute_wrappers.clear()  # as on a connection object never used yet
        with connection.execute_wrapper(logger):
            # What Django sends when it opens the connection inside the block.
            connection_created.send(sender=type(connection), connection=connection)
            assert_served_from_cache(backend, titles)
        assert logger not in connection.execute_wrappers
        Post.objects.filter(pk=post.pk).update(title="after")
        assert titles() == ["after"]
    finally:
        connection.execute_wrappers[:] = saved
