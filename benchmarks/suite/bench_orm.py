"""The benchmarks, measured with pytest-benchmark (one pytest process per configuration).

- ``test_hit[kind]``: the read, repeated; pytest-benchmark calibrates how many calls
  make a round, runs rounds for ``--benchmark-max-time`` and reports the median round
  (time per call).
- ``test_miss[kind]``: pedantic rounds of one call each; before every round an untimed
  write invalidates everything the read depends on, so each timed call is the first
  read after a write (it runs the SQL and, with a cache, stores the result).
- ``test_write[kind]``: pedantic rounds of one write each; before every round an
  untimed read caches what the write has to invalidate.
- ``test_mixed``: pedantic rounds of the whole mixed sequence. It also reports the share
  of its reads that sent no SQL (``reads_without_sql``, over the timed rounds) and, after
  the rounds, how many of its distinct reads (up to ``BENCH_RECHECKS``) answered
  differently from plain Django in another process on the same database (``stale``).

Pedantic rounds are as many as fit a time budget (``BENCH_BUDGET`` seconds per
benchmark, setup included), at least ``BENCH_MIN_ROUNDS`` and at most
``BENCH_MAX_ROUNDS``: a 20 µs write gets hundreds of rounds, a 20 ms read still gets
a median of many.

Under plain Django "hit" and "miss" are the same read (there is no cache), measured
the same way, so each ratio compares like with like. Before timing, each read is
checked once with a query counter: the number of SQL statements a hit and a miss send
is stored in ``extra_info["queries"]`` (a cached hit must send none).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from suite import workload
from suite.conftest import count_queries, setting

BUDGET = float(setting("BENCH_BUDGET_MS", 1500)) / 1000
MIN_ROUNDS = setting("BENCH_MIN_ROUNDS", 15)
MAX_ROUNDS = setting("BENCH_MAX_ROUNDS", 400)
WARMUP_ROUNDS = setting("BENCH_WARMUP_ROUNDS", 3)
MIXED_ROUNDS = setting("BENCH_MIXED_ROUNDS", 5)
MIXED_OPERATIONS = setting("BENCH_MIXED_OPERATIONS", 500)
#: Distinct reads of the mixed sequence compared with the database after its rounds.
RECHECKS = setting("BENCH_RECHECKS", 300)


def rounds_within_budget(setup: Callable[[], Any], target: Callable[..., Any]) -> int:
    """How many (setup, target) rounds fit the budget, from timing three of them."""
    started = time.perf_counter()
    for _ in range(3):
        args, kwargs = _call_setup(setup)
        target(*args, **kwargs)
    per_round = (time.perf_counter() - started) / 3
    return max(MIN_ROUNDS, min(MAX_ROUNDS, int(BUDGET / per_round)))


def _call_setup(setup: Callable[[], Any]) -> tuple[tuple, dict]:
    returned = setup()
    return returned if returned is not None else ((), {})


def pedantic(benchmark, target, setup) -> None:
    rounds = rounds_within_budget(setup, target)
    benchmark.pedantic(target, setup=setup, rounds=rounds, warmup_rounds=WARMUP_ROUNDS)


@pytest.fixture(scope="module")
def reads(targets):
    return workload.reads(targets)


@pytest.fixture(scope="module")
def invalidations(targets):
    return workload.invalidations(targets)


@pytest.mark.parametrize("kind", workload.READS)
def test_hit(benchmark, reads, kind):
    read = reads[kind]
    read()  # fill the cache
    read()
    with count_queries() as queries:
        read()
    benchmark.group = "hit"
    benchmark.extra_info["queries"] = queries.count
    benchmark(read)


@pytest.mark.parametrize("kind", workload.READS)
def test_miss(benchmark, reads, invalidations, kind):
    read, invalidate = reads[kind], invalidations[kind]
    read()
    invalidate()
    with count_queries() as queries:
        read()
    benchmark.group = "miss"
    benchmark.extra_info["queries"] = queries.count
    pedantic(benchmark, read, invalidate)


@pytest.mark.parametrize("kind", workload.WRITES)
def test_write(benchmark, targets, kind):
    """Each write on the same post; the read before it caches what it invalidates."""
    from suite.blog.models import Comment, Post

    post = Post.objects.get(pk=targets.post_pk)
    created: list[int] = []

    def save_setup():
        return (workload.read_get(post.pk),), {}

    def save(instance):
        instance.views += 1
        instance.save()

    def create():
        created.append(workload.create_comment(post.pk, len(created)).pk)

    def read_post():
        workload.read_get(post.pk)

    def read_comment_count():
        workload.read_count(post)

    def m2m_setup():
        post.tags.remove(targets.tag_pk)
        list(post.tags.all())

    setup, write = {
        "save": (save_setup, save),
        "update": (read_post, lambda: workload.increment_views(post.pk)),
        "create": (read_comment_count, create),
        "m2m_add": (m2m_setup, lambda: post.tags.add(targets.tag_pk)),
    }[kind]
    benchmark.group = "write"
    try:
        pedantic(benchmark, write, setup)
    finally:
        Comment.objects.filter(pk__in=created).delete()
        post.tags.remove(targets.tag_pk)


def test_mixed(benchmark):
    from suite.blog.models import Comment

    mixed = workload.MixedWorkload.build(MIXED_OPERATIONS)
    benchmark.group = "mixed"
    benchmark.extra_info["operations"] = len(mixed.operations)
    benchmark.extra_info["mix"] = mixed.counts()
    try:
        benchmark.pedantic(mixed.run, rounds=MIXED_ROUNDS, warmup_rounds=1)
        # The warm-up round filled the cache: the share is that of the timed rounds.
        timed = mixed.served[1:] or mixed.served
        totals = {kind: [0, 0] for kind in workload.READS if any(kind in run for run in timed)}
        for run in timed:
            for kind, (reads, without_sql) in run.items():
                totals[kind][0] += reads
                totals[kind][1] += without_sql
        benchmark.extra_info["reads_without_sql"] = sum(w for _, w in totals.values()) / sum(
            r for r, _ in totals.values()
        )
        benchmark.extra_info["reads_without_sql_by_kind"] = {
            kind: without_sql / reads for kind, (reads, without_sql) in totals.items()
        }
        checked, stale, examples = recheck(mixed.rechecks(RECHECKS))
        benchmark.extra_info["rechecked"] = checked
        benchmark.extra_info["stale"] = stale
        benchmark.extra_info["stale_examples"] = examples
    finally:
        Comment.objects.filter(pk__in=mixed.created).delete()


def recheck(reads: list[tuple[str, Any]]) -> tuple[int, int, list[str]]:
    """Read each again through the library, and through plain Django in another process
    (same database, no cache): how many answers differ (stale), with a few examples."""
    import json
    import os
    import subprocess
    import sys

    cached = [workload.answer(kind, argument) for kind, argument in reads]
    script = (
        "import json, sys, django; django.setup(); from suite import workload; "
        "reads = json.load(sys.stdin); "
        "print(json.dumps([workload.answer(k, a) for k, a in reads]))"
    )
    env = {**os.environ, "BENCH_LIBRARY": "plain", "DJANGO_SETTINGS_MODULE": "suite.settings"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(reads),
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    fresh = json.loads(done.stdout)
    cached = json.loads(json.dumps(cached))  # the same JSON round trip as the fresh side
    stale = [
        f"{kind}({argument!r}): cached {mine!r}, database {theirs!r}"
        for (kind, argument), mine, theirs in zip(reads, cached, fresh, strict=True)
        if mine != theirs
    ]
    return len(reads), len(stale), [line[:300] for line in stale[:5]]
