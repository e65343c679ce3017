"""The window between a commit made outside Django and ormcache's bump of the table.

    python benchmarks/notify_window.py                  # 500 writes, prints the summary
    python benchmarks/notify_window.py --writes 2000 --json out.json
    scripts/bench-scaling                               # with throwaway PostgreSQL + Redis

Needs PostgreSQL and Redis: ORMCACHE_TEST_PG_HOST/_PORT/_USER and
ORMCACHE_TEST_REDIS_URL, as ``scripts/test`` and ``scripts/bench-scaling`` export them.
It creates (once) and uses the database ``ormcache_bench_notify``.

Set-up as in production: ``triggers install`` on the blog's tables, and the listener
as a process of its own (``listener.run_forever``, what ``manage.py ormcache listen``
runs). A writer that is not Django (a plain psycopg connection, as psql or another
service would be) updates a post in autocommit; the moment ``execute`` returns, the
transaction has committed. The benchmark then polls the table's version key in Redis
(one GET per ~0.1 ms) until it changes: the time in between is the window in which a
reader could still be served the entry from before the write.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATABASE = "ormcache_bench_notify"


def pg_params(name: str) -> dict:
    return {
        "host": os.environ["ORMCACHE_TEST_PG_HOST"],
        "port": os.environ.get("ORMCACHE_TEST_PG_PORT", "5432"),
        "user": os.environ.get("ORMCACHE_TEST_PG_USER", "postgres"),
        "dbname": name,
    }


def create_database() -> None:
    import psycopg

    with psycopg.connect(**pg_params("postgres"), autocommit=True) as connection:
        if not connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]
        ).fetchone():
            connection.execute(f'CREATE DATABASE "{DATABASE}"')


def configure() -> None:
    from benchmarks.topologies import setup_django

    params = pg_params(DATABASE)
    database = {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": params["host"],
        "PORT": params["port"],
        "USER": params["user"],
        "NAME": DATABASE,
    }
    cache = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": os.environ["ORMCACHE_TEST_REDIS_URL"],
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.25, "SOCKET_TIMEOUT": 0.25},
    }
    setup_django(
        {"default": database},
        {"default": cache},
        {"MODELS": {"blog.*": {"enabled": True}}, "TRIGGERS": {"databases": ["default"]}},
    )


def run_listener() -> None:
    """The child process: what ``manage.py ormcache listen`` runs."""
    import signal

    from ormcache import listener

    signal.signal(signal.SIGTERM, lambda *_: listener.stop_all())
    listener.run_forever(["default"])


def measure(writes: int) -> list[float]:
    import psycopg
    from django.core.cache import cache

    from ormcache import keys
    from testproject.blog.models import Author, Post

    author = Author.objects.create(name="Ann", email="ann@example.com")
    post = Post.objects.create(author=author, title="t", slug=f"t-{time.time_ns()}")
    redis = cache.client.get_client()
    version_key = cache.make_key(keys.version_key("default", "blog_post"))
    windows = []
    with psycopg.connect(**pg_params(DATABASE), autocommit=True) as outsider:
        for n in range(writes):
            before = redis.get(version_key)
            outsider.execute("UPDATE blog_post SET title = %s WHERE id = %s", [f"w{n}", post.pk])
            committed = time.perf_counter()
            deadline = committed + 5
            while redis.get(version_key) == before:
                if time.perf_counter() > deadline:
                    raise RuntimeError("no bump within 5 s: is the listener running?")
                time.sleep(0.0001)
            windows.append(time.perf_counter() - committed)
            time.sleep(0.005)
    return windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=500)
    parser.add_argument("--json", help="also write the summary to this file")
    parser.add_argument("--listener", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.listener:
        configure()
        run_listener()
        return

    create_database()
    configure()
    from django.core.cache import cache
    from django.core.management import call_command

    from ormcache import keys, triggers

    call_command("migrate", verbosity=0)
    triggers.install("default")
    global_key = keys.GLOBAL_VERSION_KEY
    before = cache.get(global_key)
    child = subprocess.Popen([sys.executable, __file__, "--listener"])
    try:
        deadline = time.monotonic() + 30
        while cache.get(global_key) == before:  # the listener bumps it once it listens
            if time.monotonic() > deadline or child.poll() is not None:
                raise RuntimeError("the listener did not start")
            time.sleep(0.05)
        windows = measure(args.writes)
    finally:
        child.terminate()
        child.wait(10)
    ms = sorted(w * 1000 for w in windows)
    summary = {
        "writes": len(ms),
        "median_ms": statistics.median(ms),
        "p90_ms": ms[int(0.90 * len(ms))],
        "p99_ms": ms[min(len(ms) - 1, int(0.99 * len(ms)))],
        "max_ms": ms[-1],
        "min_ms": ms[0],
    }
    print("| writes | min ms | median ms | p90 ms | p99 ms | max ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(
        f"| {summary['writes']} | {summary['min_ms']:.2f} | {summary['median_ms']:.2f} | "
        f"{summary['p90_ms']:.2f} | {summary['p99_ms']:.2f} | {summary['max_ms']:.2f} |"
    )
    print(
        f"\nCommit (psycopg execute returned) to the bump visible in Redis; {os.cpu_count()} CPUs."
    )
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
