"""SQL compiled once per query shape: reads of one shape with other values stay apart.

A read whose shape (everything but its WHERE values) was compiled before compiles
only its WHERE clause. These tests pin that reads reusing a shape answer for their
own values, that queries which differ outside the WHERE clause never share a shape,
and that a hit really skips Django's column setup.
"""

import datetime
from unittest import mock

import pytest
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import connections
from django.db.models import Case, Count, F, Q, Value, When
from django.db.models.sql.compiler import SQLCompiler
from django.db.models.sql.where import ExtraWhere
from django.utils import timezone

from ormcache import compiled, reads, rows
from testproject.blog.models import Author, Comment, Post, Reaction
from tests.conftest import BACKEND_PAIRS
from tests.factories import AuthorFactory, PostFactory, TagFactory


@pytest.fixture
def posts(backend):
    compiled.forget()
    first, second = AuthorFactory(name="Ann"), AuthorFactory(name="Bob")
    return [
        PostFactory(title="alpha", rating=1, author=first, published=True),
        PostFactory(title="beta", rating=2, author=second, published=False),
        PostFactory(title="gamma", rating=3, author=second, published=True),
    ]


def _column_setups(read):
    """How many times Django chose the columns of a query while ``read()`` ran."""
    original = SQLCompiler.get_select
    calls = []

    def counting(self, *args, **kwargs):
        calls.append(self)
        return original(self, *args, **kwargs)

    with mock.patch.object(SQLCompiler, "get_select", counting):
        read()
    return len(calls)


def _sql_count(backend, read):
    with backend.queries() as captured:
        read()
    return len(captured.captured_queries)


def test_a_read_of_a_known_shape_does_not_set_its_columns_up_again(backend, posts):
    Post.objects.get(pk=posts[0].pk)
    assert _column_setups(lambda: Post.objects.get(pk=posts[1].pk)) == 0
    # ...and answers for its own value, from the database and then from the cache.
    assert Post.objects.get(pk=posts[1].pk).title == "beta"
    assert _sql_count(backend, lambda: Post.objects.get(pk=posts[2].pk)) == 1
    assert _sql_count(backend, lambda: Post.objects.get(pk=posts[2].pk)) == 0
    assert Post.objects.get(pk=posts[2].pk).title == "gamma"


@pytest.mark.parametrize(
    "read",
    [
        pytest.param(
            lambda pk: Post.objects.select_related("author").get(pk=pk).author.name,
            id="select_related",
        ),
        pytest.param(
            lambda pk: list(
                Post.objects.filter(pk=pk).order_by("author__name").values_list("title")
            ),
            id="ordering-across-a-relation",
        ),
    ],
)
def test_a_reused_shape_depends_on_the_joins_django_adds_while_compiling(backend, posts, read):
    """Those joins are not in the query a reused shape leaves uncompiled: what ormcache
    works out from the query's structure comes from a compiled copy of it."""
    read(posts[0].pk)  # the shape is compiled in full and remembered
    # Memos of the tables and pins a SQL text reads are smaller and forgotten on
    # settings changes: the next read of the shape works them out again.
    reads._plans.clear()
    rows._candidates.clear()
    assert _column_setups(lambda: read(posts[1].pk)) == 1  # only the compiled copy
    before = read(posts[1].pk)
    Author.objects.filter(name="Bob").update(name="Rob")
    assert _sql_count(backend, lambda: read(posts[1].pk)) == 1  # it reads blog_author
    assert read(posts[1].pk) == ("Rob" if before == "Bob" else before)


def test_a_query_the_shape_cannot_hold_is_compiled_in_full(posts):
    def read():
        return dict(Author.objects.annotate(n=Count("posts")).values_list("name", "n"))

    read()
    assert _column_setups(read) == 1
    assert read() == {"Ann": 1, "Bob": 2}


@pytest.mark.parametrize(
    ("read", "expected"),
    [
        pytest.param(
            lambda p: [
                list(Post.objects.filter(pk__in=[x.pk for x in p[:n]]).order_by("id"))
                for n in (1, 2, 3)
            ],
            lambda p: [p[:1], p[:2], p[:3]],
            id="in-lists-of-other-lengths",
        ),
        pytest.param(
            lambda p: [Post.objects.filter(title=t).exists() for t in ("alpha", "nope", "gamma")],
            lambda p: [True, False, True],
            id="exists",
        ),
        pytest.param(
            lambda p: [
                [x.author.name for x in Post.objects.select_related("author").filter(rating=r)]
                for r in (1, 2)
            ],
            lambda p: [["Ann"], ["Bob"]],
            id="select_related",
        ),
        pytest.param(
            lambda p: [
                list(
                    Post.objects.filter(published=flag)
                    .order_by("id")
                    .values_list("title", flat=True)
                )
                for flag in (True, False)
            ],
            lambda p: [["alpha", "gamma"], ["beta"]],
            id="values_list",
        ),
        pytest.param(
            lambda p: [
                list(Post.objects.order_by(order).values_list("title", flat=True)[:2])
                for order in ("title", "-title")
            ],
            lambda p: [["alpha", "beta"], ["gamma", "beta"]],
            id="ordering-is-shape",
        ),
        pytest.param(
            lambda p: [
                [
                    (x.title, x.flag)
                    for x in Post.objects.annotate(flag=Value(v)).filter(rating__lte=r)
                ]
                for v, r in ((1, 1), (True, 1), ("x", 2))
            ],
            lambda p: [[("alpha", 1)], [("alpha", True)], [("beta", "x"), ("alpha", "x")]],
            id="constants-in-the-select-list",
        ),
        pytest.param(
            lambda p: [
                list(
                    Post.objects.extra(select={"k": "%s"}, select_params=(7,))
                    .filter(rating=r)
                    .values_list("k", "title")
                )
                for r in (1, 3)
            ],
            lambda p: [[(7, "alpha")], [(7, "gamma")]],
            id="select-params-before-where-params",
        ),
        pytest.param(
            lambda p: [
                sorted(
                    (x.title, "body" in x.__dict__)
                    for x in Post.objects.only(*fields).filter(rating__gte=2)
                )
                for fields in (("title",), ("title", "body"))
            ],
            lambda p: [[("beta", False), ("gamma", False)], [("beta", True), ("gamma", True)]],
            id="deferred-fields",
        ),
        pytest.param(
            lambda p: [
                list(Post.objects.filter(title__contains=t).values_list("title", flat=True))
                for t in ("mm", "et", "%")
            ],
            lambda p: [["gamma"], ["beta"], []],
            id="contains-escapes-its-value",
        ),
    ],
)
def test_reads_sharing_a_shape_answer_for_their_own_values(posts, read, expected):
    wanted = expected(posts)
    assert read(posts) == wanted  # the first of each shape compiled in full
    assert read(posts) == wanted  # hits
    Post.objects.filter(pk=posts[0].pk).update(views=5)  # a write: misses, shapes reused
    assert read(posts) == wanted


@pytest.mark.parametrize(
    "read",
    [
        pytest.param(
            lambda r: list(
                Post.objects.alias(v=Value(1))
                .filter(rating=r)
                .order_by("v", "id")
                .values_list("title", flat=True)
            ),
            id="a-constant-in-the-ordering",
        ),
        pytest.param(
            lambda r: list(
                Post.objects.extra(select={"k": "%s"}, select_params=(1,))
                .filter(rating=r)
                .order_by("k", "id")
                .values_list("title", flat=True)
            ),
            id="an-extra-select-in-the-ordering",
        ),
    ],
)
def test_parameters_after_the_where_clause_keep_the_query_out_of_the_shapes(backend, posts, read):
    """The first read's WHERE value equals the ordering's constant: its parameters end with
    the WHERE clause's by coincidence, not because nothing follows it."""
    assert read(1) == ["alpha"]
    assert read(3) == ["gamma"]
    assert _column_setups(lambda: read(2)) == 1


def test_a_models_ordering_by_an_expression_keeps_its_queries_out_of_the_shapes(
    backend, posts, monkeypatch
):
    """Meta.ordering is read while compiling, not from the query; an expression in it can
    hold parameters or read the active time zone."""
    ordering = [Case(When(published=True, then=Value(0)), default=Value(1)), "id"]
    monkeypatch.setattr(Post._meta, "ordering", ordering)

    def read(rating):
        return [post.title for post in Post.objects.filter(rating=rating)]

    assert read(1) == ["alpha"]
    assert read(3) == ["gamma"]
    monkeypatch.setattr(Post._meta, "ordering", [F("rating").desc()])  # no parameter
    read(1)
    assert _column_setups(lambda: read(2)) == 1


def test_an_ordering_by_a_related_models_expression_keeps_the_query_out_of_the_shapes(
    backend, posts, monkeypatch
):
    """``order_by("author")`` orders by the author's Meta.ordering, read while compiling."""
    monkeypatch.setattr(Author._meta, "ordering", [F("name").desc()])

    def read(rating):
        return list(Post.objects.filter(rating__gte=rating).order_by("author", "id"))

    assert [post.title for post in read(1)] == ["beta", "gamma", "alpha"]
    assert _column_setups(lambda: read(2)) == 1


@pytest.mark.parametrize("backend", BACKEND_PAIRS[:1], indirect=True)  # SQLite's function
def test_the_active_time_zone_is_part_of_the_shape(backend, posts, monkeypatch):
    """An ``__hour`` in the ordering converts to the active time zone while compiling.
    SQLite and PostgreSQL pass the zone as a parameter (no shape is kept then); MySQL
    and Oracle write it into the SQL text, or leave it out for the connection's own zone,
    which is what this backend is made to do here."""
    connection = connections[backend.db_alias]
    operations = type(connection.ops)
    extract = operations.datetime_extract_sql

    def like_mysql(self, lookup_type, sql, params, tzname):
        if settings.USE_TZ and tzname and tzname != self.connection.timezone_name:
            return extract(self, lookup_type, sql, params, tzname)
        return f"django_datetime_extract('{lookup_type}', {sql}, NULL, NULL)", params

    monkeypatch.setattr(operations, "datetime_extract_sql", like_mysql)
    for title, hour in (("alpha", 10), ("beta", 15), ("gamma", 20)):
        when = datetime.datetime(2024, 1, 1, hour, tzinfo=datetime.timezone.utc)
        Post.objects.filter(title=title).update(pub_date=when)

    def read(rating):
        posts = Post.objects.filter(rating__gte=rating).order_by("pub_date__hour", "id")
        return [post.title for post in posts]

    assert read(2) == ["beta", "gamma"]  # compiled, and its shape kept, in UTC
    with timezone.override("Asia/Tokyo"):  # 19:00, 00:00 and 05:00 there
        assert read(1) == ["beta", "gamma", "alpha"]


def test_a_joined_models_ordering_is_checked_before_its_shape_is_reused(
    backend, posts, monkeypatch
):
    def read(rating):
        posts = Post.objects.filter(rating__gte=rating).order_by("author", "id")
        return [post.title for post in posts]

    assert read(1) == ["alpha", "beta", "gamma"]  # Ann's, then Bob's two (Meta.ordering)
    monkeypatch.setattr(Author._meta, "ordering", ["-name"])
    assert read(0) == ["beta", "gamma", "alpha"]


def test_a_models_ordering_is_part_of_its_queries_shapes(backend, posts, monkeypatch):
    def read():
        return list(Post.objects.filter(published=True).values_list("title", flat=True))

    monkeypatch.setattr(Post._meta, "ordering", ["title"])
    assert read() == ["alpha", "gamma"]
    monkeypatch.setattr(Post._meta, "ordering", ["-title"])
    assert read() == ["gamma", "alpha"]


def test_a_join_with_a_condition_of_its_own_keeps_the_query_out_of_the_shapes(
    backend, posts, monkeypatch
):
    """A GenericRelation's join looks its content type up while compiling."""
    post_type = ContentType.objects.get_for_model(Post)
    comment_type = ContentType.objects.get_for_model(Comment)
    Reaction.objects.create(content_type=comment_type, object_id=posts[0].pk, kind="x")

    def read():
        return list(Post.objects.filter(reactions__kind="x").values_list("title", flat=True))

    assert read() == []
    assert post_type != comment_type
    field = Post._meta.get_field("reactions")
    monkeypatch.setattr(field, "get_content_type", lambda: comment_type)
    assert read() == ["alpha"]


def test_a_join_with_a_condition_without_parameters_is_compiled_every_time(
    backend, posts, monkeypatch
):
    """A condition of the join's own, here set on the foreign key itself."""
    field = Post._meta.get_field("author")
    monkeypatch.setattr(field, "get_extra_restriction", lambda *aliases: ExtraWhere(["1 = 1"], []))

    def read():
        return list(Post.objects.filter(author__name="Ann").values_list("title", flat=True))

    assert read() == ["alpha"]
    assert _column_setups(read) == 1


def test_an_empty_in_list_still_sends_no_sql(backend, posts):
    list(Post.objects.filter(pk__in=[posts[0].pk]))
    assert _sql_count(backend, lambda: list(Post.objects.filter(pk__in=[]))) == 0
    assert list(Post.objects.filter(pk__in=[])) == []


def test_a_read_of_a_shape_after_a_tag_write_sees_it(posts):
    tag = TagFactory(name="news")
    read = lambda: list(Post.objects.filter(tags__name="news").values_list("title", flat=True))  # noqa: E731
    assert read() == []
    posts[1].tags.add(tag)
    assert read() == ["beta"]


class TestFreeze:
    def test_bools_are_not_the_ints_they_equal(self):
        assert compiled._freeze(True, {}) != compiled._freeze(1, {})
        assert compiled._freeze((False,), {}) != compiled._freeze((0,), {})

    def test_unknown_objects_are_refused(self):
        with pytest.raises(compiled._NotFrozen):
            compiled._freeze(1.5, {})
        with pytest.raises(compiled._NotFrozen):
            compiled._freeze(Count("id", filter=Q(rating=1)), {})

    def test_a_models_field_is_frozen_as_itself(self):
        field = Post._meta.get_field("title")
        assert compiled._freeze([field], {}) == (list, field)
        assert compiled._freeze([field], {}) != compiled._freeze([Post._meta.get_field("slug")], {})
