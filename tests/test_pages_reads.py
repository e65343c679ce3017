"""How the page cache finds the tables read by SQL that ormcache does not run itself."""

import pytest

from ormcache.page_reads import tables_named


@pytest.mark.parametrize(
    "sql, expected",
    [
        ('SELECT "blog_post"."id" FROM "blog_post"', {"blog_post"}),
        (
            "select count(*) from blog_post p join blog_comment c on c.post_id = p.id",
            {"blog_post", "blog_comment"},
        ),
        ('SELECT * FROM "BLOG_POST"', {"blog_post"}),
        ("SELECT * FROM `blog_tag`", {"blog_tag"}),
        ('SELECT * FROM "public"."auth_user"', {"auth_user"}),
        (
            "(SELECT id FROM blog_post) UNION (SELECT id FROM blog_featuredpost)",
            {"blog_post", "blog_featuredpost"},
        ),
        ("WITH x AS (SELECT * FROM blog_post_tags) SELECT * FROM x", {"blog_post_tags"}),
        # A table's name inside a string literal is not a read of it.
        ("SELECT id FROM blog_tag WHERE name = 'blog_post'", {"blog_tag"}),
        ("SELECT id FROM blog_tag WHERE name = 'it''s blog_post'", {"blog_tag"}),
        # FROM that names no relation; subqueries, aliases and FROM lists of model tables.
        ('SELECT EXTRACT(YEAR FROM U0."pub_date") FROM "blog_post" U0', {"blog_post"}),
        ("SELECT a IS DISTINCT FROM b FROM blog_post", {"blog_post"}),
        (
            'SELECT EXISTS(SELECT 1 AS "a" FROM "blog_comment" U0) FROM "blog_post"',
            {"blog_post", "blog_comment"},
        ),
        ('SELECT COUNT(*) FROM (SELECT "id" FROM "blog_post") subquery', {"blog_post"}),
        ("SELECT * FROM blog_post AS p, blog_tag t", {"blog_post", "blog_tag"}),
    ],
)
def test_tables_named(sql, expected, db):
    assert tables_named(sql) == frozenset(expected)


@pytest.mark.parametrize(
    "sql, reason",
    [
        ("SELECT 1", "SQL that names no table of an installed model"),
        (
            "SELECT * FROM my_reporting_view",
            "SQL that reads my_reporting_view, which is no installed model's table",
        ),
        (
            "SELECT p.title, l.v FROM blog_post p, legacy_kv l",
            "SQL that reads legacy_kv, which is no installed model's table",
        ),
        (
            'SELECT "blog_post"."id" FROM "blog_post" LEFT OUTER JOIN legacy ON (1 = 1)',
            "SQL that reads legacy, which is no installed model's table",
        ),
        (
            "SELECT id FROM blog_post WHERE id IN (SELECT * FROM generate_series(1, 3))",
            "SQL that reads generate_series(), which is no installed model's table",
        ),
        ("SELECT NOW(), id FROM blog_post", "SQL that calls NOW, whose result changes by itself"),
        (
            "SELECT id FROM blog_post ORDER BY random()",
            "SQL that calls RANDOM, whose result changes by itself",
        ),
        (
            "SELECT CURRENT_DATE, id FROM blog_post",
            "SQL that calls CURRENT_DATE, whose result changes by itself",
        ),
    ],
)
def test_sql_whose_reads_cannot_be_known(sql, reason, db):
    assert tables_named(sql) == reason


def test_a_column_named_like_a_clock_function_is_fine(db):
    assert tables_named('SELECT "blog_post"."date" FROM "blog_post"') == {"blog_post"}
