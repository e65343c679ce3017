"""Stampede protection, measured: N processes miss one expensive query at the same moment.

    python benchmarks/stampede.py                          # 8 processes, pg_sleep(0.5), 5 rounds
    python benchmarks/stampede.py --query aggregate        # a real aggregate over 200k comments
    python benchmarks/stampede.py --processes 16 --rounds 10 --cache memcached

Needs PostgreSQL and Redis (or memcached): ORMCACHE_TEST_PG_HOST/_PORT/_USER and
ORMCACHE_TEST_REDIS_URL (or ORMCACHE_TEST_MEMCACHED), as ``scripts/test`` exports them.
It creates (once) and uses the database ``ormcache_bench_stampede``.

Each round, the parent invalidates the query's tables, then releases N forked
worker processes together (a barrier); each runs the query once through a
cached manager. Every worker counts the expensive statements its connection
sent to PostgreSQL (an execute wrapper). The same rounds run twice: with
stampede protection (``STAMPEDE_WAIT`` 5 s) and without (``STAMPEDE_WAIT`` 0).
Without protection every process misses and runs the query; with it, one runs
it and the others wait for its entry.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DATABASE = "ormcache_bench_stampede"
TIMEOUT = 120


def pg_settings(name: str) -> dict:
    return {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ["ORMCACHE_TEST_PG_HOST"],
        "PORT": os.environ.get("ORMCACHE_TEST_PG_PORT", "5432"),
        "USER": os.environ.get("ORMCACHE_TEST_PG_USER", "postgres"),
        "NAME": name,
    }


def create_database() -> None:
    import psycopg

    options = pg_settings("postgres")
    with psycopg.connect(
        host=options["HOST"],
        port=options["PORT"],
        user=options["USER"],
        dbname="postgres",
        autocommit=True,
    ) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]
        ).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{DATABASE}"')


def configure(cache: str) -> None:
    import django
    from django.conf import settings

    if cache == "redis":
        location = {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": os.environ["ORMCACHE_TEST_REDIS_URL"],
        }
    else:
        location = {
            "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
            "LOCATION": os.environ["ORMCACHE_TEST_MEMCACHED"],
        }
    settings.configure(
        DEBUG=False,
        USE_TZ=True,
        SECRET_KEY="bench",
        DATABASES={"default": pg_settings(DATABASE)},
        CACHES={"default": location},
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "ormcache",
            "testproject.blog",
        ],
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        ORMCACHE={"CACHE": "default", "TIMEOUT": 600},
    )
    django.setup()


def seed() -> None:
    from testproject.blog.models import Author, Comment, Post

    if Comment.objects.nocache().count() >= 200_000:
        return
    Comment.objects.all().delete()
    Post.objects.all().delete()
    Author.objects.all().delete()
    authors = Author.objects.bulk_create([Author(name=f"Author {i}") for i in range(50)])
    posts = Post.objects.bulk_create(
        [
            Post(author=authors[i % 50], title=f"Post {i}", slug=f"post-{i}", rating=i % 5)
            for i in range(2000)
        ]
    )
    for start in range(0, 200_000, 20_000):
        Comment.objects.bulk_create(
            [
                Comment(post=posts[i % 2000], author_name=f"r{i % 997}", body="x" * (i % 300))
                for i in range(start, start + 20_000)
            ]
        )


def expensive_query(kind: str, seconds: float):
    from django.db.models import Avg, CharField, Count, Func, Value
    from django.db.models.functions import Length

    from testproject.blog.models import Comment, Post

    if kind == "sleep":
        sleep = Func(Value(seconds), function="pg_sleep", output_field=CharField())
        return lambda: list(
            Post.objects.filter(title="Post 1").annotate(slept=sleep).values_list("id", "slept")
        )
    return lambda: list(
        Comment.objects.values("post__author__name")
        .annotate(n=Count("id"), length=Avg(Length("body")), readers=Count("author_name"))
        .order_by("post__author__name")
    )


def is_expensive(kind: str, sql: str) -> bool:
    if kind == "sleep":
        return "pg_sleep" in sql
    return "COUNT(" in sql and "blog_comment" in sql


def worker(kind, seconds, wait, rounds, start, results) -> None:
    from django.conf import settings
    from django.db import connection
    from django.test.utils import override_settings

    override_settings(ORMCACHE={**settings.ORMCACHE, "STAMPEDE_WAIT": wait}).enable()
    read = expensive_query(kind, seconds)
    counted = [0]

    def count(execute, sql, params, many, context):
        if is_expensive(kind, sql):
            counted[0] += 1
        return execute(sql, params, many, context)

    try:
        for _ in range(rounds):
            start.wait(TIMEOUT)
            counted[0] = 0
            began = time.perf_counter()
            with connection.execute_wrapper(count):
                rows = read()
            results.put(("ok", counted[0], time.perf_counter() - began, len(rows)))
    except BaseException:
        results.put(("error", traceback.format_exc(), 0, 0))
    finally:
        connection.close()


def run(kind: str, seconds: float, processes: int, rounds: int, wait: float) -> list[dict]:
    from django.core.cache import caches
    from django.db import connections

    import ormcache
    from testproject.blog.models import Comment, Post

    context = multiprocessing.get_context("fork")
    start = context.Barrier(processes + 1)
    results = context.Queue()
    connections.close_all()
    caches.close_all()  # a forked child must not share the parent's sockets
    pool = [
        context.Process(target=worker, args=(kind, seconds, wait, rounds, start, results))
        for _ in range(processes)
    ]
    for process in pool:
        process.start()
    report = []
    for _ in range(rounds):
        ormcache.invalidate(Post, Comment)  # the popular entry is now a miss everywhere
        start.wait(TIMEOUT)
        found = [results.get(timeout=TIMEOUT) for _ in pool]
        for kind_, value, _elapsed, _rows in found:
            if kind_ != "ok":
                raise SystemExit(f"a worker failed:\n{value}")
        report.append(
            {
                "queries": sum(value for _, value, _, _ in found),
                "latencies": [elapsed for _, _, elapsed, _ in found],
                "rows": {rows for _, _, _, rows in found},
            }
        )
    for process in pool:
        process.join(TIMEOUT)
    return report


def summarise(name: str, report: list[dict], processes: int) -> str:
    per_round = [entry["queries"] for entry in report]
    latencies = sorted(latency for entry in report for latency in entry["latencies"])
    return (
        f"{name:<22} {processes:>9} {len(report):>6} "
        f"{statistics.mean(per_round):>10.2f} {min(per_round):>5} {max(per_round):>5} "
        f"{sum(per_round):>7} {statistics.median(latencies) * 1000:>9.0f} "
        f"{latencies[-1] * 1000:>9.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--query", choices=["sleep", "aggregate"], default="sleep")
    parser.add_argument("--sleep", type=float, default=0.5, help="seconds of pg_sleep")
    parser.add_argument("--cache", choices=["redis", "memcached"], default="redis")
    args = parser.parse_args()

    create_database()
    configure(args.cache)
    from django.core.management import call_command

    call_command("migrate", verbosity=0, run_syncdb=True)
    seed()

    what = f"pg_sleep({args.sleep})" if args.query == "sleep" else "aggregate over 200k comments"
    print(f"\n{args.processes} processes miss one query together, {args.rounds} rounds: {what}")
    print(f"cache: {args.cache}; PostgreSQL database {DATABASE}\n")
    print(
        f"{'':<22} {'processes':>9} {'rounds':>6} {'queries/rd':>10} {'min':>5} {'max':>5} "
        f"{'total':>7} {'p50 ms':>9} {'max ms':>9}"
    )
    for name, wait in (("protection off", 0), ("protection on (5 s)", 5)):
        report = run(args.query, args.sleep, args.processes, args.rounds, wait)
        assert all(len(entry["rows"]) == 1 for entry in report), "workers saw different results"
        print(summarise(name, report, args.processes))


if __name__ == "__main__":
    main()
