"""Torture test: many processes read and write through ormcache; no read may be stale.

    scripts/torture                              # throwaway PostgreSQL + Redis, then this
    scripts/torture --redis-maxmemory 2mb        # with Redis evicting result and version keys
    scripts/torture --evict-versions 0.01        # and a process deleting version keys
    scripts/torture --no-invalidation            # the checker must find stale reads
    scripts/torture --l1 [--redis-maxmemory 2mb] # with the in-process tier in every process
    scripts/torture --granularity row --partitions  # row and partition versions (rows.py)
    scripts/torture --granularity table          # one version per table
    python benchmarks/torture.py --help          # against ORMCACHE_TEST_PG_* / _REDIS_URL

The database (``--database``, default ``ormcache_torture``) is dropped and created
again, and the Redis database is flushed: point it at throwaway servers only.

What runs: writer and reader OS processes (forked) against one PostgreSQL database and
one Redis, for a fixed number of reads (100,000 by default); writers keep writing until
the readers are done.

* Writers run transactions that lock one post (``select_for_update``), then increment
  its ``views``, insert comments, add a tag, sometimes roll back a savepoint, and then
  commit or roll back at random. Some writes are raw autocommit SQL through Django's
  connection (``UPDATE ... RETURNING``). The row lock makes every post's values exact
  and monotonic, so each writer logs what it committed, with a clock reading taken
  just before the commit and one taken after it returned (after ``on_commit``).
  Inside each transaction the writer also reads the post through the cache: the
  values must be those of the locked row (its own writes, and all earlier commits).
* Readers go through the cached managers: one post by pk, lists (``pk__in``, model
  instances and ``values_list``), comment counts, tag counts (m2m), ``Sum``/``Max``
  aggregates and ``Count`` annotations. Each read is logged with a clock reading
  taken before it started and one after it returned.

The checker then proves, for every value every read returned:

* **not stale**: it is at least the newest value committed before the read started
  (DESIGN invariants 1 and 3; values only grow, so for sums and counts the bound is
  the sum or count of those values);
* **not uncommitted**: it is at most the largest value whose commit had begun before
  the read ended (invariant 2: rolled-back and in-flight writes are never seen);
* and every read a writer made inside its transaction matched the locked row.

Each violation is shown with how ormcache answered that read (hit, miss or bypass),
from the ``ormcache.signals`` cache_hit/cache_miss signals, which also give the
summary's hit rate.

Clocks are ``time.monotonic_ns()``: CLOCK_MONOTONIC is one clock for all processes on
Linux. Exit code 0 when the outcome is the expected one (no violation; with
``--no-invalidation``, at least one stale read), 1 otherwise (or when a process failed).
"""

from __future__ import annotations

import argparse
import bisect
import json
import logging
import multiprocessing
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from django_redis.cache import RedisCache

VERSION_KEY_PREFIX = "ormcache:v:"
READ_KINDS = {  # kind: weight
    "get": 25,
    "list": 15,
    "values": 10,
    "comments": 15,
    "tags": 10,
    "aggregate": 10,
    "annotate": 15,
}
GROUP_SIZE = 8
#: The in-process tier's counters (ormcache.l1.Tier.counts) summed over all processes.
L1_COUNTS = ("served", "fetched", "untrusted", "invalidations", "flushes", "connects", "evicted")
HOT_POSTS = 4  # the first posts, all in group 0
HOT_SHARE = 0.6


# --- settings ---------------------------------------------------------------------------


class CountingRedisCache(RedisCache):
    """RedisCache that counts version keys readers had to install (they were missing).

    After the start, a version key goes missing only when Redis evicts it, so the count
    shows that ``--redis-maxmemory`` really evicted version keys, not only results.
    """

    installed_versions = 0

    def add(self, key: Any, *args: Any, **kwargs: Any) -> Any:
        added = super().add(key, *args, **kwargs)
        if added and str(key).startswith(VERSION_KEY_PREFIX):
            CountingRedisCache.installed_versions += 1
        return added


def configure(
    database: str, granularity: str | None = None, partitions: bool = False, l1: bool = False
) -> None:
    """Django settings for the run; ``granularity`` and ``partitions`` set the policy of
    every blog model ("table" or "row" versions; comments partitioned by post); ``l1``
    turns on the in-process tier in every process."""
    import django
    from django.conf import settings

    for name in ("ORMCACHE_TEST_PG_HOST", "ORMCACHE_TEST_REDIS_URL"):
        if not os.environ.get(name):
            sys.exit(f"{name} is not set: run scripts/torture, which starts the servers.")
    models: dict[str, dict[str, Any]] = {"blog.*": {}}
    if granularity:
        models["blog.*"]["granularity"] = granularity
    if partitions:
        models["blog.comment"] = {"partition_by": "post"}
    settings.configure(
        DEBUG=False,
        USE_TZ=True,
        SECRET_KEY="torture",
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "HOST": os.environ["ORMCACHE_TEST_PG_HOST"],
                "PORT": os.environ.get("ORMCACHE_TEST_PG_PORT", "5432"),
                "USER": os.environ.get("ORMCACHE_TEST_PG_USER", "postgres"),
                "NAME": database,
            }
        },
        CACHES={
            "default": {
                "BACKEND": "__main__.CountingRedisCache",
                "LOCATION": os.environ["ORMCACHE_TEST_REDIS_URL"],
                "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2},
            }
        },
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "ormcache",
            "testproject.blog",
        ],
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        ORMCACHE={
            "CACHE": "default",
            "TIMEOUT": 600,
            "MODELS": models,
            **({"L1": {"enabled": True}} if l1 else {}),
        },
        SILENCED_SYSTEM_CHECKS=["ormcache.W001"],
    )
    django.setup()


def create_database(database: str) -> None:
    """A fresh, empty database for this run (dropped first if it exists)."""
    import psycopg

    with psycopg.connect(
        host=os.environ["ORMCACHE_TEST_PG_HOST"],
        port=os.environ.get("ORMCACHE_TEST_PG_PORT", "5432"),
        user=os.environ.get("ORMCACHE_TEST_PG_USER", "postgres"),
        dbname="postgres",
        autocommit=True,
    ) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{database}"')


def switch_off_invalidation() -> None:
    """--no-invalidation: no write bumps any version (ormcache itself is not changed).

    ormcache attaches ``watch_writes`` to every connection when it is created; stop
    that, and take it off the connections that exist already.
    """
    from django.db import connections
    from django.db.backends.signals import connection_created

    from ormcache.invalidation import watch_writes

    connection_created.disconnect(dispatch_uid="ormcache.watch_connection")
    for connection in connections.all():
        while watch_writes in connection.execute_wrappers:
            connection.execute_wrappers.remove(watch_writes)


def invalidation_is_on() -> bool:
    from django.db import connection

    from ormcache.invalidation import watch_writes

    return watch_writes in connection.execute_wrappers


# --- the data ---------------------------------------------------------------------------


def seed(posts: int, body_size: int, rng: random.Random) -> dict[str, Any]:
    """Posts with views, comments and tags; returns their pks and starting values."""
    from testproject.blog.models import Author, Comment, Post, Tag

    authors = Author.objects.bulk_create([Author(name=f"Author {i}") for i in range(5)])
    tags = Tag.objects.bulk_create([Tag(name=f"tag{i}") for i in range(30)])
    created = Post.objects.bulk_create(
        [
            Post(
                author=rng.choice(authors),
                title=f"Post {i}",
                slug=f"post-{i}",
                body=f"{i} " + "x" * body_size,
                views=0,
            )
            for i in range(posts)
        ]
    )
    Comment.objects.bulk_create(
        [Comment(post=post, author_name="seed", body="first") for post in created for _ in range(2)]
    )
    Through = Post.tags.through
    Through.objects.bulk_create([Through(post=post, tag=tags[0]) for post in created])
    return {
        "pks": [post.pk for post in created],
        "tag_pks": [tag.pk for tag in tags],
        "initial": {"views": 0, "comments": 2, "tags": 1},
    }


def groups_of(pks: list[int]) -> list[list[int]]:
    return [pks[i : i + GROUP_SIZE] for i in range(0, len(pks), GROUP_SIZE)]


# --- processes --------------------------------------------------------------------------


class _Counters:
    """Cache hits and misses seen through ormcache.signals, and ormcache warnings."""

    def __init__(self) -> None:
        from ormcache import signals

        self.hits = 0
        self.misses = 0
        self.warnings = 0
        signals.cache_hit.connect(self._hit, weak=False)
        signals.cache_miss.connect(self._miss, weak=False)
        counters = self

        class _Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                counters.warnings += 1

        logging.getLogger("ormcache").addHandler(_Handler(logging.WARNING))

    def _hit(self, sender: Any, **kwargs: Any) -> None:
        self.hits += 1

    def _miss(self, sender: Any, **kwargs: Any) -> None:
        self.misses += 1

    def as_dict(self) -> dict[str, int]:
        from ormcache import l1

        tier = l1._tiers.get("default")
        own = tier.counts if tier is not None and tier.pid == os.getpid() else {}
        return {
            "hits": self.hits,
            "misses": self.misses,
            "warnings": self.warnings,
            "installed_versions": CountingRedisCache.installed_versions,
            **{f"l1_{name}": own.get(name, 0) for name in L1_COUNTS},
        }


def _in_child(role: str, index: int, log_dir: str, options: dict, work: Any) -> None:
    """Process body: run ``work``, write its log, exit 0; a crash writes a traceback."""
    from django.db import connections

    if not options["invalidation"]:
        switch_off_invalidation()
    CountingRedisCache.installed_versions = 0  # count this process's own
    counters = _Counters()
    path = Path(log_dir) / f"{role}-{index}.json"
    try:
        log = work(index, options, counters)
        if invalidation_is_on() != options["invalidation"]:
            raise RuntimeError("the invalidation switch did not hold in this process")
        log.update(role=role, index=index, **counters.as_dict())
        path.write_text(json.dumps(log))
    except BaseException:
        path.with_suffix(".error").write_text(traceback.format_exc())
        raise
    finally:
        connections.close_all()


def reader(index: int, options: dict, counters: _Counters) -> dict:
    from django.db.models import Count, Max, Sum

    from testproject.blog.models import Comment, Post, Tag

    rng = random.Random(options["seed"] * 1000 + 500 + index)
    pks = options["data"]["pks"]
    groups = groups_of(pks)
    kinds = list(READ_KINDS)
    weights = list(READ_KINDS.values())
    clock = time.monotonic_ns
    reads = []
    for _ in range(options["reads_per_reader"]):
        kind = rng.choices(kinds, weights)[0]
        # Most reads go to a few hot posts and the first group, where writers write
        # too: the reads repeat (so the cache gets hits) and race with the writes.
        hot = rng.random() < HOT_SHARE
        pk = rng.choice(pks[:HOT_POSTS]) if hot else rng.choice(pks)
        group = 0 if hot else rng.randrange(len(groups))
        hits, misses = counters.hits, counters.misses
        started = clock()
        if kind == "get":
            arg, result = pk, Post.objects.get(pk=pk).views
        elif kind == "list":
            wanted = groups[group] if rng.random() < 0.5 else sorted(rng.sample(pks, 6))
            arg, result = wanted, [[p.pk, p.views] for p in Post.objects.filter(pk__in=wanted)]
        elif kind == "values":
            arg = group
            result = list(
                map(list, Post.objects.filter(pk__in=groups[group]).values_list("pk", "views"))
            )
        elif kind == "comments":
            arg, result = pk, Comment.objects.filter(post_id=pk).count()
        elif kind == "tags":
            arg, result = pk, Tag.objects.filter(posts__pk=pk).count()
        elif kind == "aggregate":
            found = Post.objects.filter(pk__in=groups[group]).aggregate(
                total=Sum("views"), top=Max("views")
            )
            arg, result = group, [found["total"], found["top"]]
        else:  # annotate
            arg = group
            result = list(
                map(
                    list,
                    Post.objects.filter(pk__in=groups[group])
                    .annotate(n=Count("comments"))
                    .values_list("pk", "n"),
                )
            )
        ended = clock()
        hits, misses = counters.hits - hits, counters.misses - misses
        outcome = "hit" if hits and not misses else "miss" if misses else "bypass"
        reads.append([kind, arg, started, ended, result, outcome])
    return {"reads": reads}


class _RollBack(Exception):
    pass


def writer(index: int, options: dict, counters: _Counters) -> dict:
    from django.db import connection, transaction
    from django.db.models import F

    import ormcache
    from testproject.blog.models import Comment, Post, Tag

    rng = random.Random(options["seed"] * 1000 + index)
    pks = options["data"]["pks"]
    tag_pks = options["data"]["tag_pks"]
    stop = options["stop"]
    clock = time.monotonic_ns
    commits: list[list] = []  # [pk, before commit, after commit, views, comments, tags]
    stats: Counter[str] = Counter()
    wrong_in_transaction: list[str] = []

    def exact_state(pk: int) -> tuple[int, int, set[int]]:
        with ormcache.disabled():
            views = Post.objects.select_for_update().get(pk=pk).views  # locks the post
            comments = Comment.objects.filter(post_id=pk).count()
            tags = set(
                Post.tags.through.objects.filter(post_id=pk).values_list("tag_id", flat=True)
            )
        return views, comments, tags

    while not stop.is_set():
        pk = rng.choice(pks[:HOT_POSTS]) if rng.random() < HOT_SHARE else rng.choice(pks)
        if rng.random() < 0.15:
            # Raw SQL in autocommit: committed (and bumped) when execute returns.
            before = clock()
            with connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE blog_post SET views = views + 1 WHERE id = %s RETURNING views", [pk]
                )
                (views,) = cursor.fetchone()
            commits.append([pk, before, clock(), views, None, None])
            stats["autocommit"] += 1
        else:
            roll_back = rng.random() < options["rollback_rate"]
            try:
                with transaction.atomic():
                    views, comments, tags = exact_state(pk)
                    # One kind of write per transaction (sometimes all), so that each
                    # table is free of pending writes part of the time and reads can hit.
                    action = rng.choices(["views", "comments", "tag", "all"], [5, 3, 1, 1])[0]
                    if action in ("views", "all"):
                        Post.objects.filter(pk=pk).update(views=F("views") + 1)
                        views += 1
                    if action in ("comments", "all"):
                        for _ in range(rng.randint(1, 3)):
                            Comment.objects.create(post_id=pk, author_name=f"w{index}", body="+")
                            comments += 1
                        if rng.random() < 0.3:
                            try:
                                with transaction.atomic():
                                    Comment.objects.create(post_id=pk, author_name="x", body="-")
                                    raise _RollBack
                            except _RollBack:
                                stats["savepoint_rollbacks"] += 1
                    if action in ("tag", "all"):
                        new = [t for t in tag_pks if t not in tags]
                        if new:
                            chosen = rng.choice(new)
                            Post(pk=pk).tags.add(chosen)
                            tags.add(chosen)
                    # Reads inside the transaction, through the cache, must match the locked
                    # row: its own writes (invariant 2) and everything committed before.
                    seen = (
                        Post.objects.get(pk=pk).views,
                        Comment.objects.filter(post_id=pk).count(),
                        Tag.objects.filter(posts__pk=pk).count(),
                    )
                    stats["reads_in_transaction"] += 3
                    if seen != (views, comments, len(tags)):
                        wrong_in_transaction.append(
                            f"post {pk} (views, comments, tags): read {seen},"
                            f" the locked row has {(views, comments, len(tags))}"
                        )
                    before = clock()
                    if roll_back:
                        raise _RollBack
                commits.append([pk, before, clock(), views, comments, len(tags)])
                stats["committed"] += 1
            except _RollBack:
                stats["rolled_back"] += 1
        if options["write_pause"]:
            # Pacing only (nothing is ordered by it): quiet spells let the cache fill.
            time.sleep(rng.expovariate(1 / options["write_pause"]))
    return {"commits": commits, "stats": dict(stats), "wrong_in_transaction": wrong_in_transaction}


def evictor(index: int, options: dict, counters: _Counters) -> dict:
    """--evict-versions: delete random version keys now and then, as a cache may at any time.

    Pending versions of open transactions go too, so readers install fresh tokens and fill
    the cache while a write is uncommitted: only the commit-time bump protects them then.
    """
    from django.core.cache import caches

    from ormcache import keys

    rng = random.Random(options["seed"] * 1000 + 900 + index)
    tables = ["blog_post", "blog_comment", "blog_tag", "blog_post_tags"]
    version_keys = [keys.GLOBAL_VERSION_KEY, *keys.version_keys("default", tables)]
    cache = caches["default"]
    deleted = 0
    while not options["stop"].wait(rng.expovariate(1 / options["evict_versions"])):
        cache.delete(rng.choice(version_keys))
        deleted += 1
    return {"deleted_versions": deleted}


# --- the checker ------------------------------------------------------------------------


class History:
    """For each (post, field): the values committed, by when their commit began and ended."""

    def __init__(self, initial: dict[str, int], commits: list[list]) -> None:
        self.initial = initial
        ended: dict[tuple, list[tuple[int, int]]] = defaultdict(list)
        began: dict[tuple, list[tuple[int, int]]] = defaultdict(list)
        for pk, before, after, *values in commits:
            for field, value in zip(("views", "comments", "tags"), values, strict=True):
                if value is not None:
                    ended[pk, field].append((after, value))
                    began[pk, field].append((before, value))
        self._ended = {key: self._prefix_max(events) for key, events in ended.items()}
        self._began = {key: self._prefix_max(events) for key, events in began.items()}

    @staticmethod
    def _prefix_max(events: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
        events.sort()
        times, highest, top = [], [], None
        for when, value in events:
            top = value if top is None else max(top, value)
            times.append(when)
            highest.append(top)
        return times, highest

    def _at(self, table: dict, pk: int, field: str, when: int) -> int:
        times, highest = table.get((pk, field), ([], []))
        i = bisect.bisect_left(times, when)
        return max(self.initial[field], highest[i - 1]) if i else self.initial[field]

    def committed_before(self, pk: int, field: str, when: int) -> int:
        """The newest value committed (commit returned) before ``when``: a lower bound."""
        return self._at(self._ended, pk, field, when)

    def begun_before(self, pk: int, field: str, when: int) -> int:
        """The largest value whose commit had begun before ``when``: an upper bound."""
        return self._at(self._began, pk, field, when)


@dataclass
class Violation:
    kind: str  # "stale", "uncommitted" or "wrong rows"
    process: str
    read: str
    what: str
    got: Any
    needed: str
    outcome: str  # how ormcache answered the read: "hit", "miss" or "bypass"
    started: int

    def __str__(self) -> str:
        return (
            f"{self.kind}: {self.process} {self.read} ({self.outcome}) {self.what}"
            f" returned {self.got}, needed {self.needed}"
        )


def check(reads: list[tuple[str, list]], history: History, pks: list[int]) -> list[Violation]:
    """Every value every read returned, against the bounds; returns the violations."""
    groups = groups_of(pks)
    violations = []
    for process, (kind, arg, started, ended, result, outcome) in reads:

        def bound(what: str, got: int, low: int, high: int) -> None:
            if got < low:
                found = ("stale", f">= {low}")
            elif got > high:
                found = ("uncommitted", f"<= {high}")
            else:
                return
            violations.append(
                Violation(found[0], process, kind, what, got, found[1], outcome, started)  # noqa: B023
            )

        def field_bound(pk: int, field: str, got: int) -> None:
            low = history.committed_before(pk, field, started)  # noqa: B023
            high = history.begun_before(pk, field, ended)  # noqa: B023
            bound(f"post {pk} {field}", got, low, high)

        if kind == "get":
            field_bound(arg, "views", result)
        elif kind in ("comments", "tags"):
            field_bound(arg, kind, result)
        elif kind in ("list", "values", "annotate"):
            wanted = arg if kind == "list" else groups[arg]
            if sorted(pk for pk, _ in result) != sorted(wanted):
                violations.append(
                    Violation(
                        "wrong rows", process, kind, str(wanted), result, "all", outcome, started
                    )
                )
            for pk, value in result:
                field_bound(pk, "comments" if kind == "annotate" else "views", value)
        elif kind == "aggregate":
            total, top = result
            lows = [history.committed_before(pk, "views", started) for pk in groups[arg]]
            highs = [history.begun_before(pk, "views", ended) for pk in groups[arg]]
            bound(f"group {arg} Sum(views)", total, sum(lows), sum(highs))
            bound(f"group {arg} Max(views)", top, max(lows), max(highs))
    return violations


# --- running ----------------------------------------------------------------------------


def redis_client() -> Any:
    from django_redis import get_redis_connection

    return get_redis_connection("default")


def run(args: argparse.Namespace) -> int:
    from django.core.management import call_command
    from django.db import connections

    rng = random.Random(args.seed)
    started = time.monotonic()
    create_database(args.database)
    call_command("migrate", verbosity=0)
    data = seed(args.posts, args.body_size, rng)

    redis = redis_client()
    redis.flushdb()
    old_config = redis.config_get("maxmemory*")
    if args.redis_maxmemory:
        redis.config_set("maxmemory", args.redis_maxmemory)
        redis.config_set("maxmemory-policy", "allkeys-lru")
    evicted_at_start = int(redis.info("stats")["evicted_keys"])

    invalidation = not args.no_invalidation
    if not invalidation:
        switch_off_invalidation()
    context = multiprocessing.get_context("fork")
    stop = context.Event()
    options = {
        "seed": args.seed,
        "data": data,
        "invalidation": invalidation,
        "reads_per_reader": -(-args.reads // args.readers),
        "rollback_rate": args.rollback_rate,
        "write_pause": args.write_pause,
        "evict_versions": args.evict_versions,
        "stop": stop,
    }
    log_dir = args.keep_logs or tempfile.mkdtemp(prefix="ormcache-torture-")
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    connections.close_all()  # a forked child must never share the parent's connection

    def spawn(role: str, index: int, work: Any) -> Any:
        process = context.Process(
            target=_in_child, args=(role, index, log_dir, options, work), name=f"{role}-{index}"
        )
        process.start()
        return process

    writers = [spawn("writer", i, writer) for i in range(args.writers)]
    readers = [spawn("reader", i, reader) for i in range(args.readers)]
    if args.evict_versions:
        writers.append(spawn("evictor", 0, evictor))
    load_started = time.monotonic()
    try:
        for process in readers:
            process.join()
    finally:
        stop.set()
        for process in writers:
            process.join(60)
            if process.is_alive():
                process.terminate()
                process.join()
        for process in readers:
            if process.is_alive():
                process.terminate()
                process.join()
    load_seconds = time.monotonic() - load_started

    evicted = int(redis.info("stats")["evicted_keys"]) - evicted_at_start
    used_memory = redis.info("memory")["used_memory_human"]
    for name, value in old_config.items():
        redis.config_set(name, value)

    failed = [p.name for p in writers + readers if p.exitcode != 0]
    logs = {}
    for path in sorted(Path(log_dir).glob("*.json")):
        logs[path.stem] = json.loads(path.read_text())
    for path in sorted(Path(log_dir).glob("*.error")):
        print(f"--- {path.stem} failed ---\n{path.read_text()}", file=sys.stderr)
    if not args.keep_logs:
        shutil.rmtree(log_dir, ignore_errors=True)
    if failed or len(logs) != len(writers + readers):
        print(f"FAILED: processes {failed or '?'} did not finish cleanly", file=sys.stderr)
        return 1

    writer_logs = [log for log in logs.values() if log["role"] == "writer"]
    deleted = sum(log.get("deleted_versions", 0) for log in logs.values())
    reader_logs = {name: log for name, log in logs.items() if log["role"] == "reader"}
    commits = [commit for log in writer_logs for commit in log["commits"]]
    history = History(data["initial"], commits)
    reads = [(name, read) for name, log in reader_logs.items() for read in log["reads"]]
    check_started = time.monotonic()
    violations = check(reads, history, data["pks"])
    wrong_in_transaction = [e for log in writer_logs for e in log["wrong_in_transaction"]]
    check_seconds = time.monotonic() - check_started

    stats: Counter[str] = Counter()
    for log in writer_logs:
        stats.update(log["stats"])
    totals: Counter[str] = Counter()
    for log in logs.values():
        totals.update({k: log[k] for k in ("hits", "misses", "warnings", "installed_versions")})
        totals.update({f"l1_{k}": log.get(f"l1_{k}", 0) for k in L1_COUNTS})
    outcomes = Counter(read[5] for _, read in reads)
    kinds = Counter(read[0] for _, read in reads)
    by_kind = Counter(v.kind for v in violations)

    mode = "no invalidation" if args.no_invalidation else "invalidation on"
    mode += f", redis maxmemory {args.redis_maxmemory} allkeys-lru" if args.redis_maxmemory else ""
    mode += f", a version key deleted every {args.evict_versions} s" if args.evict_versions else ""
    mode += ", L1 on" if args.l1 else ""
    committed = stats["committed"] + stats["autocommit"]
    expected_violations = args.no_invalidation
    if expected_violations:  # the checker must notice; anything may go wrong then
        ok = by_kind["stale"] > 0
    else:
        ok = not violations and not wrong_in_transaction

    print()
    print(f"ormcache torture -- mode: {mode}")
    print(
        f"  processes   {args.writers} writers, {args.readers} readers;"
        f" {args.posts} posts; seed {args.seed}"
    )
    print(
        f"  time        {load_seconds:.1f} s under load, {time.monotonic() - started:.1f} s"
        f" in all (check {check_seconds:.1f} s)"
    )
    print(f"  reads       {len(reads)}: " + ", ".join(f"{k} {kinds[k]}" for k in READ_KINDS))
    print(
        f"  cache       reads: {outcomes['hit']} hits ({100 * outcomes['hit'] / len(reads):.1f}%),"
        f" {outcomes['miss']} misses, {outcomes['bypass']} bypassed;"
        f" all processes: {totals['hits']} hits, {totals['misses']} misses;"
        f" ormcache warnings {totals['warnings']}"
    )
    print(
        f"  writes      {committed} committed ({stats['committed']} transactions,"
        f" {stats['autocommit']} raw autocommit UPDATEs), {stats['rolled_back']} rolled back,"
        f" {stats['savepoint_rollbacks']} savepoints rolled back;"
        f" {stats['reads_in_transaction']} reads in transactions, {len(wrong_in_transaction)} wrong"
    )
    print(
        f"  redis       {evicted} keys evicted; {totals['installed_versions']} version keys found"
        f" missing and installed again; {deleted} deleted by the evictor;"
        f" {used_memory} used at the end"
    )
    if args.l1:
        print(
            f"  l1          {totals['l1_served']} get_many answered from memory alone,"
            f" {totals['l1_fetched']} needed Redis ({totals['l1_untrusted']} with memory not"
            f" trusted); {totals['l1_invalidations']} keys invalidated by Redis,"
            f" {totals['l1_flushes']} flushes, {totals['l1_evicted']} dropped for size;"
            f" {totals['l1_connects']} tracker connections"
        )
    bad_reads = len({(v.process, v.started) for v in violations})
    print(
        f"  violations  {len(violations)}"
        + (" (" + ", ".join(f"{k} {n}" for k, n in by_kind.items()) + ")" if violations else "")
        + (f" in {bad_reads} reads" if violations else "")
    )
    for violation in violations[:5]:
        print(f"    - {violation}")
    for error in wrong_in_transaction[:5]:
        print(f"    - wrong read in a writer's transaction: {error}")
    expectation = "at least one stale read" if expected_violations else "no violation"
    print(f"  result      {'OK' if ok else 'UNEXPECTED'} (expected {expectation})")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--writers", type=int, default=3, help="writer processes (3)")
    parser.add_argument("--readers", type=int, default=5, help="reader processes (5)")
    parser.add_argument("--reads", type=int, default=100_000, help="reads in all (100000)")
    parser.add_argument("--posts", type=int, default=40, help="posts written and read (40)")
    parser.add_argument("--body-size", type=int, default=2000, help="bytes per post body")
    parser.add_argument(
        "--rollback-rate", type=float, default=0.3, help="share of rolled-back transactions"
    )
    parser.add_argument(
        "--write-pause", type=float, default=0.1, help="mean seconds between a writer's writes"
    )
    parser.add_argument(
        "--redis-maxmemory", metavar="SIZE", help="e.g. 2mb: CONFIG SET maxmemory, allkeys-lru"
    )
    parser.add_argument(
        "--evict-versions",
        type=float,
        metavar="SECONDS",
        help="one more process deletes a random version key every SECONDS on average",
    )
    parser.add_argument(
        "--no-invalidation",
        action="store_true",
        help="remove ormcache's write watcher in every process: the checker must fail",
    )
    parser.add_argument(
        "--granularity",
        choices=["table", "row"],
        help="versions of the blog models (default: ormcache's default granularity)",
    )
    parser.add_argument(
        "--partitions", action="store_true", help='comments get "partition_by": "post"'
    )
    parser.add_argument(
        "--l1", action="store_true", help='every process with ORMCACHE["L1"] on (in-process tier)'
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database", default="ormcache_torture", help="dropped and recreated")
    parser.add_argument("--keep-logs", metavar="DIR", help="keep the per-process logs here")
    args = parser.parse_args()
    if args.writers < 1 or args.readers < 1 or args.reads < 1 or args.posts < GROUP_SIZE:
        parser.error(f"need a writer, a reader, a read and at least {GROUP_SIZE} posts")
    configure(args.database, args.granularity, args.partitions, args.l1)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
