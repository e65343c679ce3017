"""The benchmarks, measured with pytest-benchmark (one pytest process per configuration).

- ``test_hit[kind]``: the read, repeated; pytest-benchmark calibrates how many calls
  make a round, runs rounds for ``--benchmark-max-time`` and reports the median round
  (time per call).
- ``test_miss[kind]``: pedantic rounds of one call each; before every round an untimed
  write invalidates everything the read depends on, so each timed call is the first
  read after a write (it runs the SQL and, with a cache, stores the result).
- ``test_write[kind]``: pedantic rounds of one write each; before every round an
  untimed read caches what the write has to invalidate.
- ``test_mixed``: pedantic rounds of the whole mixed sequence.

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
    finally:
        Comment.objects.filter(pk__in=mixed.created).delete()
