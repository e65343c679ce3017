"""Row-level versions (ormcache/rows.py): pinned reads survive writes to other rows and
are never stale; writes whose rows are unknown still invalidate the whole table."""

import uuid

import pytest
from django.db import connections, transaction
from django.db.models import F

from ormcache import keys, row_statements, rows
from testproject.blog.models import Author, Comment, FeaturedPost, Post, Tag
from tests.counting_cache import CountingLocMemCache
from tests.factories import AuthorFactory, CommentFactory, FeaturedPostFactory, PostFactory
from tests.helpers import assert_served_from_cache, title

pytestmark = pytest.mark.usefixtures("row_granularity")


@pytest.fixture
def row_granularity(backend):
    models = {
        "blog.*": {"enabled": True, "granularity": "row"},
        "blog.comment": {"partition_by": "post"},
    }
    with backend.settings(MODELS=models):
        yield


@pytest.fixture
def posts(backend):
    author = AuthorFactory()
    return [PostFactory(author=author, title=f"post {i}") for i in range(3)]


def sql_count(backend, read):
    with backend.queries() as captured:
        value = read()
    return value, len(captured)


# --- reads pinned to rows -------------------------------------------------------------


def test_a_get_survives_writes_to_other_rows(backend, posts):
    first, second, third = posts
    assert_served_from_cache(backend, lambda: title(first.pk))
    second.title = "changed"
    second.save()
    Post.objects.filter(pk=third.pk).update(views=F("views") + 1)
    Post.objects.filter(pk__in=[second.pk, third.pk]).delete()
    PostFactory(author=first.author)  # an insert: the row read proved its row exists
    assert sql_count(backend, lambda: title(first.pk)) == ("post 0", 0)


@pytest.mark.parametrize(
    "write",
    ["save", "update", "update_in", "bulk_update", "raw", "filter_update", "delete"],
)
def test_writes_to_the_row_refresh_it(backend, posts, write):
    first, second, _ = posts
    assert_served_from_cache(backend, lambda: list(Post.objects.filter(pk=first.pk)))
    if write == "save":
        first.title = "new"
        first.save()
    elif write == "update":
        Post.objects.filter(pk=first.pk).update(title="new")
    elif write == "update_in":
        Post.objects.filter(pk__in=[second.pk, first.pk]).update(title="new")
    elif write == "bulk_update":
        first.title = "new"
        Post.objects.bulk_update([first], ["title"])
    elif write == "raw":
        with connections[backend.db_alias].cursor() as cursor:
            cursor.execute("UPDATE blog_post SET title = %s WHERE id = %s", ["new", first.pk])
    elif write == "filter_update":  # rows unknown to ormcache: the table is bumped
        Post.objects.filter(title__startswith="post 0").update(title="new")
    else:
        first.delete()
        assert list(Post.objects.filter(pk=first.pk)) == []
        return
    assert [p.title for p in Post.objects.filter(pk=first.pk)] == ["new"]


def test_a_missing_row_appears_when_inserted(backend, posts):
    pk = max(p.pk for p in posts) + 100
    with pytest.raises(Post.DoesNotExist):
        Post.objects.get(pk=pk)
    assert not Post.objects.filter(pk=pk).exists()
    assert Post.objects.filter(pk__in=[posts[0].pk, pk]).count() == 1
    PostFactory(pk=pk, author=posts[0].author, title="late")
    assert Post.objects.get(pk=pk).title == "late"
    assert Post.objects.filter(pk=pk).exists()
    assert Post.objects.filter(pk__in=[posts[0].pk, pk]).count() == 2


def test_counts_over_pinned_rows_follow_inserts(backend, posts):
    """A count returns one row whatever it counts: it always depends on inserts."""
    pk = max(p.pk for p in posts) + 1
    assert_served_from_cache(backend, lambda: Post.objects.filter(pk__in=[pk]).count())
    PostFactory(author=posts[0].author)  # takes the next id
    assert Post.objects.filter(pk__in=[pk]).count() == 1


def test_a_read_with_a_join_depends_on_the_joined_table(backend, posts):
    def author_name():
        return Post.objects.select_related("author").get(pk=posts[0].pk).author.name

    assert_served_from_cache(backend, author_name)
    Author.objects.filter(pk=posts[0].author_id).update(name="renamed")
    assert author_name() == "renamed"


def test_a_table_read_twice_is_not_pinned(backend, posts):
    first, second, _ = posts
    query = Post.objects.filter(pk=first.pk, id__in=Post.objects.filter(title="post 1")).query
    str(query)  # compiled, as the read path sees it
    assert rows.read_pins(query) == ()
    same = Post.objects.filter(pk=first.pk, id__in=Post.objects.filter(title="post 0"))
    assert_served_from_cache(backend, lambda: list(same))
    second.title = "post 0"
    second.save()  # changes what the subquery returns: the whole table counts
    assert len(list(same)) == 1


def test_negated_and_or_filters_are_not_pinned(backend, posts):
    from django.db.models import Q

    for queryset in (
        Post.objects.exclude(pk=posts[0].pk),
        Post.objects.filter(Q(pk=posts[0].pk) | Q(title="post 1")),
    ):
        str(queryset.query)
        assert rows.read_pins(queryset.query) == ()


def test_table_granularity_depends_on_the_table(backend, posts):
    models = {"blog.*": {"enabled": True, "granularity": "table"}}
    with backend.settings(MODELS=models):
        assert_served_from_cache(backend, lambda: title(posts[0].pk))
        posts[1].save()
        assert sql_count(backend, lambda: title(posts[0].pk))[1] == 1


def test_multi_table_inheritance(backend, posts):
    featured = FeaturedPostFactory(author=posts[0].author, title="featured")
    assert_served_from_cache(backend, lambda: FeaturedPost.objects.get(pk=featured.pk).title)
    Post.objects.filter(pk=featured.pk).update(title="parent changed")
    assert FeaturedPost.objects.get(pk=featured.pk).title == "parent changed"


def test_a_hit_is_one_round_trip(backend, posts):
    if backend.cache_alias != "default":
        pytest.skip("counted on the locmem cache")
    caches = {"counting": {"BACKEND": "tests.counting_cache.CountingLocMemCache"}}
    from django.test.utils import override_settings

    with override_settings(CACHES={**_caches(), **caches}), backend.settings(CACHE="counting"):
        title(posts[0].pk)
        CountingLocMemCache.calls.clear()
        title(posts[0].pk)
        assert CountingLocMemCache.calls == ["get_many"]


def _caches():
    from django.conf import settings

    return settings.CACHES


# --- partitions -----------------------------------------------------------------------


def count(post):
    return Comment.objects.filter(post_id=post.pk).count()


def test_a_partition_survives_inserts_into_other_partitions(backend, posts):
    first, second, _ = posts
    assert_served_from_cache(backend, lambda: first.comments.count())
    assert_served_from_cache(backend, lambda: list(first.comments.all()))
    CommentFactory(post=second)
    Comment.objects.bulk_create([Comment(post=second, author_name="x", body="y")])
    assert sql_count(backend, lambda: first.comments.count()) == (0, 0)
    CommentFactory(post=first)
    assert first.comments.count() == 1


def test_moving_a_row_refreshes_both_partitions(backend, posts):
    first, second, _ = posts
    comment = CommentFactory(post=first)
    assert count(first) == 1
    assert count(second) == 0
    comment.post = second
    comment.save()
    assert (count(first), count(second)) == (0, 1)
    Comment.objects.filter(pk=comment.pk).update(post=first)
    assert (count(first), count(second)) == (1, 0)


def test_deletes_refresh_partitions(backend, posts):
    first, second, _ = posts
    CommentFactory.create_batch(2, post=first)
    CommentFactory(post=second)
    assert (count(first), count(second)) == (2, 1)
    first.comments.first().delete()
    assert count(first) == 1
    second.delete()  # the ORM's cascade: DELETE ... WHERE post_id IN (...)
    assert count(first) == 1
    assert Comment.objects.filter(post_id=second.pk).count() == 0


def test_prefetches_are_partition_reads(backend, posts):
    CommentFactory(post=posts[0])

    def comments():
        return [
            len(p.comments.all()) for p in Post.objects.order_by("id").prefetch_related("comments")
        ]

    assert_served_from_cache(backend, comments)
    CommentFactory(post=posts[1])
    assert comments() == [1, 1, 0]


# --- transactions ---------------------------------------------------------------------


def test_a_row_written_in_a_transaction(backend, posts):
    first = posts[0]
    assert_served_from_cache(backend, lambda: title(first.pk))
    with transaction.atomic(using=backend.db_alias):
        Post.objects.filter(pk=first.pk).update(title="inside")
        assert title(first.pk) == "inside"  # its own write
    assert title(first.pk) == "inside"
    try:
        with transaction.atomic(using=backend.db_alias):
            Post.objects.filter(pk=first.pk).update(title="rolled back")
            raise RuntimeError
    except RuntimeError:
        pass
    assert title(first.pk) == "inside"


def test_pending_row_keys_stop_fills(backend, posts):
    """Between a write in a transaction and its commit, the row's key is pending."""
    first = posts[0]
    version_key = keys.row_key(backend.db_alias, "blog_post", str(first.pk))
    with transaction.atomic(using=backend.db_alias):
        Post.objects.filter(pk=first.pk).update(title="inside")
        assert str(backend.cache.get(version_key)).startswith("pending:")
    assert type(backend.cache.get(version_key)) is int


# --- the statement parser -------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "params", "expected"),
    [
        (
            'UPDATE "blog_post" SET "title" = %s WHERE "blog_post"."id" = %s',
            ("a", 7),
            {("t", "blog_post"), ("r", "blog_post", "7")},
        ),
        (
            'DELETE FROM "blog_post" WHERE "blog_post"."id" IN (%s, %s)',
            (1, 2),
            {("t", "blog_post"), ("r", "blog_post", "1"), ("r", "blog_post", "2")},
        ),
        (
            'INSERT INTO "blog_post" ("title") VALUES (%s), (%s) RETURNING "blog_post"."id"',
            ("a", "b"),
            {("t", "blog_post"), ("i", "blog_post")},
        ),
        (
            'INSERT INTO "blog_comment" ("post_id", "body") VALUES (%s, %s), (%s, %s)',
            (1, "a", 2, "b"),
            {
                ("t", "blog_comment"),
                ("i", "blog_comment"),
                ("p", "blog_comment", "post_id", "1"),
                ("p", "blog_comment", "post_id", "2"),
            },
        ),
        (
            'UPDATE "blog_comment" SET "body" = %s WHERE "blog_comment"."id" = %s',
            ("a", 1),
            {("t", "blog_comment"), ("r", "blog_comment", "1"), ("pw", "blog_comment")},
        ),
        (
            'DELETE FROM "blog_comment" WHERE "blog_comment"."post_id" IN (%s)',
            (3,),
            {("t", "blog_comment"), ("rw", "blog_comment"), ("p", "blog_comment", "post_id", "3")},
        ),
        (
            'UPDATE "blog_comment" SET "post_id" = %s WHERE "blog_comment"."post_id" = %s',
            (4, 3),
            {("t", "blog_comment"), ("rw", "blog_comment"), ("pw", "blog_comment")},
        ),
    ],
)
def test_recognised_statements(row_granularity, sql, params, expected):
    assert row_statements.changes(sql, params, False, sql.split('"')[1]) == expected


def test_a_statement_text_seen_before_answers_for_its_own_parameters(row_granularity):
    """What the text says is worked out once per text; the rows come from each call's
    parameters."""
    sql = 'UPDATE "blog_post" SET "title" = %s WHERE "blog_post"."id" IN (%s, %s)'
    rows_of = lambda params: row_statements.changes(sql, params, False, "blog_post")  # noqa: E731
    table = ("t", "blog_post")
    assert rows_of(("a", 1, 2)) == {table, ("r", "blog_post", "1"), ("r", "blog_post", "2")}
    assert rows_of(("a", 3, 4)) == {table, ("r", "blog_post", "3"), ("r", "blog_post", "4")}
    assert rows_of(("a", 3)) is None
    assert rows_of(("a", 3, 4.0)) is None


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        ('UPDATE "blog_post" SET "title" = %s', ("a",)),  # every row
        ('UPDATE "blog_post" SET "id" = %s WHERE "blog_post"."id" = %s', (9, 1)),
        ('UPDATE "blog_post" SET "title" = %s WHERE "blog_post"."views" > %s', ("a", 1)),
        ('UPDATE "blog_post" SET "title" = %s WHERE "blog_post"."id" = %s OR 1=1', ("a", 1)),
        (
            'UPDATE "blog_post" SET "t" = %s WHERE "blog_post"."id" IN (SELECT U0."id" FROM x U0)',
            ("a",),
        ),
        ('UPDATE "blog_post" SET "title" = %s WHERE "blog_post"."id" = %s', ("a", "1")),
        ('UPDATE "blog_post" SET "title" = %s WHERE "blog_post"."id" = %s', ("a", 1.0)),
        ('UPDATE "blog_post" SET "title" = %s WHERE "blog_post"."id" = %s', ("a",)),
        ('UPDATE "blog_post" SET "title" = \'x\' WHERE "blog_post"."id" = %s', (1,)),
        ('DELETE FROM "blog_post" WHERE "blog_author"."id" = %s', (1,)),
        ('DELETE FROM "blog_post"', ()),
        (
            'INSERT INTO "blog_post" ("id") VALUES (%s) ON CONFLICT("id") DO UPDATE SET "id" = 1',
            (1,),
        ),
        ('INSERT INTO "blog_post" ("id") SELECT "id" FROM "blog_author"', ()),
        ('INSERT OR REPLACE INTO "blog_post" ("id") VALUES (%s)', (1,)),
    ],
)
def test_unrecognised_statements_are_table_writes(row_granularity, sql, params):
    assert row_statements.changes(sql, params, False, "blog_post") is None


def test_keys_are_memcached_safe():
    long_value = "x" * 400
    for key in (
        keys.row_key("default", "t" * 120, long_value),
        keys.partition_key("default", "t" * 120, "c" * 120, long_value),
        keys.row_key("default", "blog_post", uuid.uuid4().hex),
        keys.row_key("default", "blog_post", "a value with spaces"),
    ):
        assert len(key) <= keys.MAX_KEY_LENGTH
        assert " " not in key
        assert key.startswith(keys.version_key("default", key.split(":")[3]))


def test_canonical_values():
    value = uuid.uuid4()
    assert rows.canonical("uuid", value) == rows.canonical("uuid", str(value)) == value.hex
    assert rows.canonical("int", 5) == "5"
    for bad in (True, 5.0, "5", None):
        assert rows.canonical("int", bad) is None
    assert rows.canonical(None, 5) is None


def test_partition_policy_facts(backend):
    assert rows.table_rows("blog_comment").partition_column == "post_id"
    assert rows.table_rows("blog_post").row_reads
    assert Tag._meta.db_table == "blog_tag"
    assert rows.table_rows("blog_tag").partition_column is None


@pytest.mark.parametrize(
    ("policy", "code"),
    [
        ({"granularity": "rows"}, "ormcache.E080"),
        ({"partition_by": "body"}, "ormcache.E081"),
        ({"partition_by": "id"}, "ormcache.E081"),
        ({"partition_by": "nothing"}, "ormcache.E081"),
    ],
)
def test_bad_row_policies_are_check_errors(backend, policy, code):
    from ormcache.checks import check_settings

    with backend.settings(MODELS={"blog.comment": policy}):
        assert code in [problem.id for problem in check_settings()]
    with backend.settings(MODELS={"blog.comment": {"partition_by": "post_id"}}):
        assert not [p for p in check_settings() if p.id in ("ormcache.E080", "ormcache.E081")]


def test_m2m_tables_have_their_own_partitions(backend, posts):
    from tests.factories import TagFactory

    first, second, _ = posts
    tag, other = TagFactory(), TagFactory()
    first.tags.add(tag)
    models = {
        "blog.*": {"enabled": True, "granularity": "row"},
        "blog.post_tags": {"partition_by": "post"},
    }
    with backend.settings(MODELS=models):
        from ormcache.checks import check_settings

        assert not [p for p in check_settings() if p.id in ("ormcache.E007", "ormcache.E081")]

        def names(post):
            return sorted(t.name for t in Post.objects.get(pk=post.pk).tags.all())

        assert_served_from_cache(backend, lambda: names(first))
        second.tags.add(other)
        second.tags.remove(other)
        assert sql_count(backend, lambda: names(first)) == ([tag.name], 0)
        first.tags.add(other)
        assert names(first) == sorted([tag.name, other.name])
        first.tags.clear()
        assert names(first) == []
