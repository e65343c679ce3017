"""Per read kind: a cache hit against plain Django, on one backend pair.

    python benchmarks/read_kinds.py                     # SQLite + locmem
    python benchmarks/read_kinds.py --backend postgres-redis   # needs the env vars below
    python benchmarks/read_kinds.py --backend postgres-locmem --caches locmem,redis,memcached
                                # one run, one database: the hit on each cache side by side

PostgreSQL uses ORMCACHE_TEST_PG_HOST/_PORT/_USER, Redis ORMCACHE_TEST_REDIS_URL and
Memcached ORMCACHE_TEST_MEMCACHED
(``scripts/test`` prints how it starts them). "Plain Django" runs the same code inside
``ormcache.disabled()``, which sends every read straight to Django's compiler.

This is the small per-kind table of the core issue; the side-by-side suite against
the peers lives beside it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import timeit
from collections.abc import Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


CACHE_SETTINGS = {
    "locmem": lambda: {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "redis": lambda: {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": os.environ["ORMCACHE_TEST_REDIS_URL"],
    },
    "memcached": lambda: {
        "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
        "LOCATION": os.environ["ORMCACHE_TEST_MEMCACHED"],
    },
}


def configure(backend: str, extra_caches: Iterable[str] = ()) -> None:
    import django
    from django.conf import settings

    databases = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
    caches = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    if backend.startswith("postgres"):
        databases["default"] = {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ["ORMCACHE_TEST_PG_HOST"],
            "PORT": os.environ.get("ORMCACHE_TEST_PG_PORT", "5432"),
            "USER": os.environ.get("ORMCACHE_TEST_PG_USER", "postgres"),
            "NAME": "postgres",
        }
    caches["default"] = CACHE_SETTINGS[backend.split("-")[1]]()
    caches.update({name: CACHE_SETTINGS[name]() for name in extra_caches})
    settings.configure(
        DEBUG=False,
        USE_TZ=True,
        SECRET_KEY="bench",
        DATABASES=databases,
        CACHES=caches,
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
    import random

    from django.core.management import call_command

    from testproject.blog.models import Author, Comment, Post, Tag

    call_command(
        "flush", interactive=False, verbosity=0
    ) if Post.objects.nocache().exists() else None
    rng = random.Random(7)
    authors = Author.objects.bulk_create([Author(name=f"Author {i}") for i in range(20)])
    tags = Tag.objects.bulk_create([Tag(name=f"tag{i}") for i in range(20)])
    posts = Post.objects.bulk_create(
        [
            Post(
                author=rng.choice(authors),
                title=f"Post {i}",
                slug=f"post-{i}",
                body="x" * 1000,
                published=rng.random() < 0.8,
                rating=rng.randint(0, 5),
            )
            for i in range(500)
        ]
    )
    Through = Post.tags.through
    Through.objects.bulk_create(
        [Through(post=p, tag=t) for p in posts for t in rng.sample(tags, 3)]
    )
    Comment.objects.bulk_create(
        [Comment(post=rng.choice(posts), author_name="r", body="nice") for _ in range(3000)]
    )


def reads():
    from django.db.models import Avg, Count

    from testproject.blog.models import Author, Post

    post_pk = Post.objects.nocache().order_by("id").values_list("pk", flat=True)[250]
    author = Author.objects.nocache().order_by("id").first()
    return {
        "get by pk": lambda: Post.objects.get(pk=post_pk),
        "filter 20 + select_related": lambda: list(
            Post.objects.filter(published=True).select_related("author")[:20]
        ),
        "count": lambda: Post.objects.filter(published=True).count(),
        "exists": lambda: Post.objects.filter(body__contains="y").exists(),
        "aggregate(Avg, Count)": lambda: Post.objects.filter(published=True).aggregate(
            Avg("rating"), Count("id")
        ),
        "values_list flat": lambda: list(
            Post.objects.filter(rating=3).values_list("title", flat=True)[:50]
        ),
        "prefetch_related m2m": lambda: [
            [t.name for t in p.tags.all()]
            for p in Post.objects.filter(author=author).prefetch_related("tags")[:20]
        ],
        "comment count (related)": lambda: Post.objects.get(pk=post_pk).comments.count(),
        "annotate Count": lambda: list(
            Post.objects.annotate(n=Count("comments")).order_by("-n").values("id", "n")[:10]
        ),
    }


def median_us(function, number: int, repeat: int) -> float:
    times = timeit.repeat(function, number=number, repeat=repeat)
    return statistics.median(times) / number * 1e6


def compare_caches(caches: list[str], args: argparse.Namespace) -> None:
    """One database, one run: each read's hit on every cache, next to plain Django."""
    from django.core.management import call_command
    from django.test.utils import override_settings

    import ormcache

    call_command("migrate", verbosity=0, run_syncdb=True)
    seed()
    rows = []
    for name, read in reads().items():
        with ormcache.disabled():
            row = [median_us(read, args.number, args.repeat)]
        for cache in caches:
            with override_settings(ORMCACHE={"CACHE": cache, "TIMEOUT": 600}):
                read()  # fill
                row.append(median_us(read, args.number, args.repeat))
        rows.append((name, row))
    print(f"\ndatabase: {args.backend.split('-')[0]}   (median of {args.repeat} x {args.number} "
          "calls, µs/call; the hit columns never touch the database)\n")  # fmt: skip
    columns = ["plain Django", *(f"hit {cache}" for cache in caches)]
    print(f"{'read kind':<30} " + " ".join(f"{c:>14}" for c in columns))
    print("-" * (31 + 15 * len(columns)))
    for name, row in rows:
        print(f"{name:<30} " + " ".join(f"{value:>14.1f}" for value in row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backend",
        choices=["sqlite-locmem", "postgres-locmem", "postgres-redis", "postgres-memcached"],
        default="sqlite-locmem",
    )
    parser.add_argument(
        "--caches",
        default="",
        help="comma-separated caches (locmem, redis, memcached): one hit column per cache",
    )
    parser.add_argument("--number", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    caches = [name for name in args.caches.split(",") if name]
    unknown = sorted(set(caches) - set(CACHE_SETTINGS))
    if unknown:
        parser.error(f"unknown caches: {', '.join(unknown)}")
    configure(args.backend, caches)
    if caches:
        compare_caches(caches, args)
        return

    from django.core.management import call_command

    import ormcache

    call_command("migrate", verbosity=0, run_syncdb=True)
    seed()
    rows = []
    for name, read in reads().items():
        with ormcache.disabled():
            plain = median_us(read, args.number, args.repeat)
        read()  # fill
        hit = median_us(read, args.number, args.repeat)
        rows.append((name, plain, hit))

    print(f"\nbackend: {args.backend}   (median of {args.repeat} x {args.number} calls, µs/call)\n")
    print(f"{'read kind':<30} {'plain Django':>13} {'ormcache hit':>13} {'speed-up':>9}")
    print("-" * 68)
    for name, plain, hit in rows:
        print(f"{name:<30} {plain:>13.1f} {hit:>13.1f} {plain / hit:>8.1f}x")


if __name__ == "__main__":
    main()
