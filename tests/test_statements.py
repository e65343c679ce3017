"""Which tables a statement writes, from the head of the SQL."""

import pytest

from ormcache.statements import EVERYTHING, NOTHING, tables_written


@pytest.mark.parametrize(
    "sql, expected",
    [
        ('SELECT "a"."id" FROM "a"', NOTHING),
        ("(SELECT 1) UNION (SELECT 2)", NOTHING),
        ("SAVEPOINT s1", NOTHING),
        ("RELEASE SAVEPOINT s1", NOTHING),
        ("SET TIME ZONE 'UTC'", NOTHING),
        ("PRAGMA foreign_keys = OFF", NOTHING),
        ('INSERT INTO "blog_post" ("a") VALUES (%s)', {"blog_post"}),
        ("insert or replace into Foo values (1)", {"foo"}),
        ('UPDATE "blog_post" SET "a" = 1', {"blog_post"}),
        ('update public."Foo" set a = 1', {"Foo"}),
        ('DELETE FROM "blog_comment" WHERE id = 1', {"blog_comment"}),
        ("DELETE FROM ONLY t", {"t"}),
        ('TRUNCATE "a", "b" RESTART IDENTITY;', {"a", "b"}),
        ("TRUNCATE TABLE a", {"a"}),
        ("TRUNCATE a CASCADE", EVERYTHING),
        ("CREATE TABLE x (id int)", EVERYTHING),
        ("ALTER TABLE x ADD COLUMN y int", EVERYTHING),
        ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", EVERYTHING),
        ("WITH d AS (DELETE FROM a RETURNING *) SELECT * FROM d", EVERYTHING),
        ("WITH q AS (SELECT 1) SELECT * FROM q", NOTHING),
        ("DELETE FROM a; DELETE FROM b", EVERYTHING),
        # Several statements: the head names only the first one's.
        ("SELECT 1; UPDATE blog_post SET title = 'x'", EVERYTHING),
        ("SET search_path TO public; UPDATE blog_post SET title = 'x'", EVERYTHING),
        ("VALUES (1); DELETE FROM blog_post", EVERYTHING),
        ("PREPARE q AS UPDATE blog_post SET title = 'x'; EXECUTE q", EVERYTHING),
        ("EXECUTE q", EVERYTHING),
        # ...but several statements that all only read or set stay reads.
        (
            "SET SQL_AUTO_IS_NULL = 0; SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
            NOTHING,
        ),
        ("SET LOCAL statement_timeout = 1000; SELECT * FROM blog_post;", NOTHING),
        # A ";" in a literal, a quoted name or a comment ends nothing; nor does a last one.
        ("SELECT * FROM blog_post WHERE title = 'a;b'", NOTHING),
        ('SELECT "odd;name" FROM t -- ; drop', NOTHING),
        ("SELECT 1 /* ; */;", NOTHING),
        ("UPDATE t SET a = 'x;y' WHERE id = 1;", {"t"}),
        # EXPLAIN ANALYZE runs the statement; plain EXPLAIN does not.
        ("EXPLAIN ANALYZE UPDATE blog_post SET title = 'x'", EVERYTHING),
        ("EXPLAIN (ANALYZE, BUFFERS) DELETE FROM blog_post", EVERYTHING),
        ("EXPLAIN UPDATE blog_post SET title = 'x'", NOTHING),
        ("EXPLAIN ANALYZE SELECT * FROM blog_post", NOTHING),
        ("COPY t FROM STDIN", EVERYTHING),
    ],
)
def test_tables_written(sql, expected):
    assert tables_written(sql) == frozenset(expected)
