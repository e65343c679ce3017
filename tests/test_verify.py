"""Shadow-verify mode: every hit is checked against the database, query counts stay the same,
and a stale entry planted behind ormcache's back is caught."""

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.checks import Error, Warning
from django.db.models import Avg, Count
from django.template import Context, Template
from django.test.utils import CaptureQueriesContext, override_settings

import ormcache
from ormcache import checks, signals, verify
from testproject.blog.models import Author, Post
from tests.factories import CommentFactory, PostFactory, TagFactory

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def blog(backend):
    tags = TagFactory.create_batch(2)
    posts = [PostFactory(title=f"t{i}", rating=i, tags=tags[: i % 2 + 1]) for i in range(4)]
    for post in posts[:2]:
        CommentFactory.create_batch(2, post=post)
    return posts


@pytest.fixture
def stale_reports():
    found = []

    def remember(sender, **kwargs):
        found.append((sender, kwargs))

    signals.stale_detected.connect(remember)
    yield found
    signals.stale_detected.disconnect(remember)


def write_behind_ormcaches_back(backend, sql, params):
    """A raw DB-API cursor: no Django wrapper sees the statement, so nothing is bumped."""
    connection = backend.connection
    connection.ensure_connection()
    if connection.vendor == "sqlite":
        sql = sql.replace("%s", "?")
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql, params)
    finally:
        cursor.close()


def count_queries(backend, read):
    """The queries ``read()`` runs, as Django's assertNumQueries counts them."""
    with CaptureQueriesContext(backend.connection) as captured:
        read()
    return len(captured.captured_queries)


READS = {
    "get": lambda p: Post.objects.get(pk=p[1].pk),
    "filter": lambda p: list(Post.objects.filter(rating__gte=1)),
    "count": lambda p: Post.objects.filter(published=True).count(),
    "exists": lambda p: Post.objects.filter(rating=3).exists(),
    "aggregate": lambda p: Post.objects.aggregate(avg=Avg("rating"), n=Count("id")),
    "distinct-count": lambda p: Post.objects.values("rating").distinct().count(),
    "values": lambda p: list(Post.objects.values("title", "author__name")),
    "select_related": lambda p: [x.author.name for x in Post.objects.select_related("author")],
    "prefetch_related": lambda p: [
        [t.name for t in x.tags.all()] for x in Post.objects.prefetch_related("tags")
    ],
    "annotate": lambda p: list(Author.objects.annotate(n=Count("posts")).values_list("n")),
    "related-manager": lambda p: list(p[0].comments.all()),
}


@pytest.mark.parametrize("kind", READS)
def test_query_counts_are_those_of_plain_django(blog, backend, stale_reports, kind):
    read = READS[kind]
    with ormcache.disabled():
        plain = count_queries(backend, lambda: read(blog))
    hits = []
    receiver = signals.cache_hit.connect(lambda sender, **kw: hits.append(kw["key"]))
    try:
        with backend.settings(VERIFY="raise"):
            miss = count_queries(backend, lambda: read(blog))
            hits.clear()
            hit = count_queries(backend, lambda: read(blog))
    finally:
        signals.cache_hit.disconnect(receiver)
    assert hits, "the second read was not a hit"
    assert miss == hit == plain
    assert stale_reports == []


def test_verify_off_serves_hits_without_sql(blog, backend):
    Post.objects.count()
    with CaptureQueriesContext(backend.connection) as captured:
        Post.objects.count()
    assert captured.captured_queries == []


def test_a_planted_stale_entry_is_caught(blog, backend, stale_reports):
    post = blog[0]
    assert Post.objects.get(pk=post.pk).title == "t0"
    write_behind_ormcaches_back(
        backend, "UPDATE blog_post SET title = %s WHERE id = %s", ["x", post.pk]
    )
    # Without verify, the cache cannot know: this is what shadow-verify mode is for.
    assert Post.objects.get(pk=post.pk).title == "t0"
    with backend.settings(VERIFY="raise"), pytest.raises(ormcache.StaleCacheError) as caught:
        Post.objects.get(pk=post.pk)
    assert "blog_post" in str(caught.value)
    [(sender, details)] = stale_reports
    assert sender is Post
    assert details["kind"] == "query"
    assert details["db_alias"] == backend.db_alias
    assert details["tables"] == {backend.db_alias: ("blog_post",)}
    assert details["sql"].startswith("SELECT")
    assert "t0" in repr(details["cached"])
    assert "'x'" in repr(details["fresh"])


def test_log_mode_logs_signals_and_serves_the_database(blog, backend, stale_reports, caplog):
    post = blog[0]
    assert Post.objects.get(pk=post.pk).title == "t0"
    write_behind_ormcaches_back(
        backend, "UPDATE blog_post SET title = %s WHERE id = %s", ["y", post.pk]
    )
    with backend.settings(VERIFY="log"), caplog.at_level(logging.ERROR, logger="ormcache"):
        assert Post.objects.get(pk=post.pk).title == "y"
    assert len(stale_reports) == 1
    assert any("stale cache entry" in record.getMessage() for record in caplog.records)


def test_a_planted_stale_aggregate_is_caught(blog, backend, stale_reports):
    assert Post.objects.values("rating").distinct().count() == 4
    write_behind_ormcaches_back(backend, "UPDATE blog_post SET rating = %s", [7])
    with backend.settings(VERIFY="log"):
        assert Post.objects.values("rating").distinct().count() == 1
    assert len(stale_reports) == 1


def test_a_write_that_lands_while_checking_is_not_reported(settings, stale_reports):
    with override_settings(ORMCACHE={**settings.ORMCACHE, "VERIFY": "raise"}):
        fresh = _check_a_moving_hit()
    assert fresh == [[("new",)]]
    assert stale_reports == []


def _check_a_moving_hit():
    return verify.check_hit(
        [[("old",)]],
        run=lambda: [[("new",)]],
        still_current=lambda: False,  # the versions moved: the database simply moved on
        model=Post,
        db_alias="default",
        key="k",
        sql="SELECT 1",
        params=(),
        tables={"blog_post"},
    )


def test_rows_in_another_order_are_not_stale():
    assert verify.same_rows([[(1,), (2,)], [(3,)]], [[(3,), (2,)], [(1,)]])
    assert not verify.same_rows([[(1,), (2,)]], [[(1,), (3,)]])
    assert not verify.same_rows([[(1,)]], [[(1,), (1,)]])
    assert verify.same_rows((1, "a"), (1, "a"))
    assert not verify.same_rows((1, "a"), (1, "b"))


def test_model_instances_compare_by_their_field_values(blog):
    first = Post.objects.nocache().get(pk=blog[0].pk)
    second = Post.objects.nocache().get(pk=blog[0].pk)
    assert verify.same_value([first], [second])
    second.title = "changed"
    assert not verify.same_value([first], [second])  # == on instances only compares pks


# --- helpers ----------------------------------------------------------------------------


def raw_title(backend, pk):
    """Reads through a raw cursor: ormcache neither caches nor sees it."""
    connection = backend.connection
    connection.ensure_connection()
    sql = "SELECT title FROM blog_post WHERE id = %s"
    if connection.vendor == "sqlite":
        sql = sql.replace("%s", "?")
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql, [pk])
        return cursor.fetchone()[0]
    finally:
        cursor.close()


def test_a_stale_cached_as_value_is_caught(blog, backend, stale_reports):
    post = blog[0]

    @ormcache.cached_as(Post)
    def title(pk):
        return raw_title(backend, pk)

    assert title(post.pk) == "t0"
    with backend.settings(VERIFY="raise"):
        assert title(post.pk) == "t0"  # checked, and right
        write_behind_ormcaches_back(
            backend, "UPDATE blog_post SET title = %s WHERE id = %s", ["z", post.pk]
        )
        with pytest.raises(ormcache.StaleCacheError, match="cached_as"):
            title(post.pk)
    [(_sender, details)] = stale_reports
    assert (details["kind"], details["cached"], details["fresh"]) == ("cached_as", "t0", "z")
    assert details["name"].endswith("title")


def test_a_stale_cached_property_is_caught(blog, backend, stale_reports):
    post = blog[0]
    assert Post.objects.get(pk=post.pk).comment_count == 2
    write_behind_ormcaches_back(
        backend, "UPDATE blog_comment SET approved = %s WHERE post_id = %s", [False, post.pk]
    )
    with backend.settings(VERIFY="log"):
        assert Post.objects.get(pk=post.pk).comment_count == 0
    # Recomputing the property hits the cached count query, which is checked too.
    reports = {details["kind"]: details for _sender, details in stale_reports}
    assert set(reports) == {"query", "cached_property"}
    assert (reports["cached_property"]["cached"], reports["cached_property"]["fresh"]) == (2, 0)


def test_a_stale_fragment_is_caught(blog, backend, stale_reports):
    post = blog[0]
    template = Template(
        "{% load ormcache %}{% cachedfragment 'title' pk %}{{ title }}{% endcachedfragment %}"
    )

    def render():
        return template.render(Context({"pk": post.pk, "title": raw_title(backend, post.pk)}))

    assert render() == "t0"
    write_behind_ormcaches_back(
        backend, "UPDATE blog_post SET title = %s WHERE id = %s", ["w", post.pk]
    )
    with backend.settings(VERIFY="log"):
        assert render() == "w"
    [(_sender, details)] = stale_reports
    assert details["kind"] == "fragment"


# --- running the project's own tests in "raise" mode -------------------------------------

#: The suite's modules about results (not about hit/miss bookkeeping of the helpers, whose
#: tests count computations that verify mode repeats on purpose).
OWN_TESTS = [
    "tests/test_read_path.py",
    "tests/test_write_path.py",
    "tests/test_dependencies.py",
    "tests/test_transactions.py",
    "tests/test_tables_counted.py",
]


def test_the_suite_passes_in_verify_raise_mode():
    """Run part of this suite in a child pytest with VERIFY="raise": every hit is checked."""
    env = {
        **os.environ,
        "ORMCACHE_TEST_VERIFY": "raise",
        "ORMCACHE_TEST_PG_DBNAME": "test_ormcache_verify",  # not this run's test database
    }
    redis_url = env.get("ORMCACHE_TEST_REDIS_URL", "")
    if re.search(r"/\d+$", redis_url):
        env["ORMCACHE_TEST_REDIS_URL"] = re.sub(r"/\d+$", "/1", redis_url)  # another Redis db
    env.pop("ORMCACHE_TEST_MEMCACHED", None)  # one shared server: leave it to this run
    env.pop("CI", None)  # the child runs without memcached on purpose
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *OWN_TESTS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    checked = re.search(r"ormcache verify: (\d+) cache hits checked", output)
    assert checked, output[-2000:]
    assert int(checked.group(1)) > 200
    assert re.search(r"\d+ passed", output)


# --- settings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"VERIFY": "on"}, ["ormcache.E030"]),
        ({"VERIFY": "log"}, []),
        ({"VERIFY": "off"}, []),
        ({"STAMPEDE_WAIT": -1}, ["ormcache.E031"]),
        ({"STAMPEDE_WAIT": "5"}, ["ormcache.E031"]),
        ({"STAMPEDE_WAIT": True}, ["ormcache.E031"]),
        ({"STAMPEDE_WAIT": 0}, []),
        ({"STAMPEDE_WAIT": 2.5}, []),
        ({"STAMPEDE_WAIT": float("nan")}, ["ormcache.E031"]),
        ({"STAMPEDE_MIN_COST": -0.1}, ["ormcache.E032"]),
        ({"STAMPEDE_MIN_COST": "fast"}, ["ormcache.E032"]),
        ({"STAMPEDE_MIN_COST": 0}, []),
        ({"STAMPEDE_MIN_COST": 0.01}, []),
    ],
)
def test_checks(settings, overrides, expected):
    with override_settings(ORMCACHE={**settings.ORMCACHE, **overrides}):
        found = [
            problem.id
            for problem in checks.check_settings()
            if isinstance(problem, Error) and problem.id.startswith("ormcache.E03")
        ]
    assert found == expected


def test_raise_mode_in_production_warns(settings):
    overrides = {**settings.ORMCACHE, "VERIFY": "raise"}
    with override_settings(ORMCACHE=overrides, DEBUG=False):
        ids = [p.id for p in checks.check_settings() if isinstance(p, Warning)]
    assert "ormcache.W030" in ids
    with override_settings(ORMCACHE=overrides, DEBUG=True):
        ids = [p.id for p in checks.check_settings() if isinstance(p, Warning)]
    assert "ormcache.W030" not in ids
