"""Stampede protection: of the readers that miss one entry together, one fills it.

Concurrency is real: threads that overlap (a barrier starts them together, events
order the steps that matter), and forked processes on PostgreSQL + Redis for the
query path. The "expensive" query is made slow by an execute wrapper (any backend)
or by ``pg_sleep`` (PostgreSQL).
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import traceback

import pytest
from django.core.cache import caches
from django.db import connections
from django.db.models import CharField, F, Func, Value
from django.template import Context, Template

import ormcache
from ormcache import stampede, versions
from testproject.blog.models import Post
from tests.factories import PostFactory
from tests.routing import current_alias

pytestmark = pytest.mark.django_db(transaction=True)  # other threads/processes see the rows

TIMEOUT = 30.0  # safety net only


def run_together(count, function, *args):
    """Run ``function(*args)`` in ``count`` threads started together; their results."""
    barrier = threading.Barrier(count)
    results = [None] * count
    alias = current_alias.get()

    def worker(index):
        current_alias.set(alias)
        try:
            barrier.wait(TIMEOUT)
            results[index] = ("ok", function(*args))
        except BaseException:
            results[index] = ("error", traceback.format_exc())
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    for kind, value in results:
        assert kind == "ok", value
    return [value for _, value in results]


class SlowSelects:
    """An execute wrapper that makes SELECTs of one table slow, and counts them."""

    def __init__(self, table, seconds):
        self.table = table
        self.seconds = seconds
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, execute, sql, params, many, context):
        if sql.lstrip().upper().startswith("SELECT") and self.table in sql:
            with self._lock:
                self.count += 1
            time.sleep(self.seconds)
        return execute(sql, params, many, context)

    def read(self, read):
        with connections[current_alias.get()].execute_wrapper(self):
            return read()


def popular_read():
    return list(Post.objects.filter(rating__gte=0).values_list("title", flat=True))


@pytest.fixture
def posts(backend):
    return PostFactory.create_batch(3, rating=1)


# --- query results --------------------------------------------------------------------


def test_concurrent_misses_of_one_query_run_it_once(backend, posts):
    slow = SlowSelects("blog_post", 0.3)
    results = run_together(6, slow.read, popular_read)
    assert slow.count == 1
    assert all(result == results[0] for result in results)
    assert sorted(results[0]) == sorted(post.title for post in posts)


def test_without_protection_every_reader_runs_it(backend, posts):
    slow = SlowSelects("blog_post", 0.3)
    with backend.settings(STAMPEDE_WAIT=0):
        run_together(6, slow.read, popular_read)
    assert slow.count == 6


def test_waiting_is_bounded_then_readers_go_to_the_database(backend, posts):
    slow = SlowSelects("blog_post", 1.0)
    started = time.monotonic()
    with backend.settings(STAMPEDE_WAIT=0.2):
        run_together(4, slow.read, popular_read)
    assert slow.count == 4  # the filler took longer than the wait: everyone queried
    assert time.monotonic() - started < 1.0 + 0.2 + 1.5


def test_no_protection_in_verify_mode(backend, posts):
    slow = SlowSelects("blog_post", 0.2)
    with backend.settings(VERIFY="log"):
        run_together(3, slow.read, popular_read)
    assert slow.count == 3


def test_an_expensive_query_stays_protected_after_its_first_fill(backend, posts):
    slow = SlowSelects("blog_post", 0.3)
    slow.read(popular_read)  # its fill took 0.3 s: more than STAMPEDE_MIN_COST
    Post.objects.filter(pk=posts[0].pk).update(title="changed")
    run_together(6, slow.read, popular_read)
    assert slow.count == 2


def test_a_query_cheap_at_its_last_fill_takes_no_lock(backend, posts):
    """The lock's add and delete cost every miss two round trips: not for cheap queries."""
    from django.test.utils import override_settings

    from tests.counting_cache import CountingLocMemCache
    from tests.settings import CACHES

    if backend.cache_alias != "default":
        pytest.skip("counted on the locmem cache")
    counting = {"counting": {"BACKEND": "tests.counting_cache.CountingLocMemCache"}}

    def miss_calls():
        Post.objects.filter(pk=posts[0].pk).update(rating=F("rating") + 1)
        CountingLocMemCache.calls.clear()
        popular_read()
        return list(CountingLocMemCache.calls)

    with override_settings(CACHES={**CACHES, **counting}):
        with backend.settings(CACHE="counting", STAMPEDE_MIN_COST=60):
            popular_read()  # installs the version keys; its fill takes far less than 60 s
            assert miss_calls() == ["get_many", "set"]
        with backend.settings(CACHE="counting", STAMPEDE_MIN_COST=0):
            assert miss_calls() == ["get_many", "add", "set", "delete"]  # 0: always locked
        with backend.settings(CACHE="counting", STAMPEDE_MIN_COST=60):
            # New settings forget the costs: a query not filled since is locked again.
            assert miss_calls() == ["get_many", "add", "set", "delete"]


def expensive_read(seconds):
    sleep = Func(Value(seconds), function="pg_sleep", output_field=CharField())
    return list(
        Post.objects.filter(rating__gte=0)
        .annotate(slept=sleep, doubled=F("rating") * 2)
        .values_list("title", "doubled", "slept")
    )


def _process_reader(alias, barrier, seconds, results):
    current_alias.set(alias)
    counted = []

    def count(execute, sql, params, many, context):
        if "pg_sleep" in sql:
            counted.append(sql)
        return execute(sql, params, many, context)

    try:
        barrier.wait(TIMEOUT)
        with connections[alias].execute_wrapper(count):
            rows = expensive_read(seconds)
        results.put(("ok", len(counted), sorted(rows)))
    except BaseException:
        results.put(("error", traceback.format_exc(), None))
    finally:
        connections[alias].close()


def run_processes(backend, count, seconds):
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(count)
    results = context.Queue()
    # A forked child must never share the parent's database or cache connections.
    connections.close_all()
    caches.close_all()
    processes = [
        context.Process(target=_process_reader, args=(backend.db_alias, barrier, seconds, results))
        for _ in range(count)
    ]
    for process in processes:
        process.start()
    collected = [results.get(timeout=TIMEOUT) for _ in processes]
    for process in processes:
        process.join(TIMEOUT)
    for kind, value, _rows in collected:
        assert kind == "ok", value
    return sum(queries for _, queries, _ in collected), [rows for _, _, rows in collected]


@pytest.mark.parametrize("protected", [True, False])
def test_processes_missing_an_expensive_query(backend, posts, protected):
    """Real processes on PostgreSQL + Redis (or memcached): pg_sleep makes the query slow."""
    if backend.db_alias == "default" or backend.cache_alias == "default":
        pytest.skip("needs a database and a cache shared by processes")
    with backend.settings(STAMPEDE_WAIT=5 if protected else 0):
        queries, rows = run_processes(backend, 6, 0.5)
    assert queries == (1 if protected else 6)
    assert all(found == rows[0] for found in rows)


# --- freshness while waiting -----------------------------------------------------------


def test_a_waiter_never_takes_an_entry_older_than_the_versions(backend, posts, monkeypatch):
    """A fills under snapshot S1 and is held; B waits on A's lock; a write moves the
    versions to S2; B must not take A's (S1) entry: it fills S2 itself."""
    state = {"value": "old"}
    filling, release_filler, waiting = threading.Event(), threading.Event(), threading.Event()
    lost = []
    original = stampede._try_lock

    def spy(cache, key, snapshot, wait):
        taken = original(cache, key, snapshot, wait)
        if taken is None and threading.current_thread().name == "waiter":
            lost.append(snapshot)
            waiting.set()
        return taken

    monkeypatch.setattr(stampede, "_try_lock", spy)

    @ormcache.cached_as(Post)
    def current_value():
        value = state["value"]
        if threading.current_thread().name == "filler":
            filling.set()
            assert release_filler.wait(TIMEOUT)
        return value

    alias = current_alias.get()
    results = {}

    def call(name):
        current_alias.set(alias)
        results[name] = current_value()

    filler = threading.Thread(target=call, args=("filler",), name="filler", daemon=True)
    filler.start()
    assert filling.wait(TIMEOUT)
    waiter = threading.Thread(target=call, args=("waiter",), name="waiter", daemon=True)
    waiter.start()
    assert waiting.wait(TIMEOUT)
    state["value"] = "new"
    Post.objects.filter(pk=posts[0].pk).update(rating=2)  # the write: versions move
    waiter.join(TIMEOUT)
    assert results["waiter"] == "new"  # not the old value the filler is about to store
    release_filler.set()
    filler.join(TIMEOUT)
    assert results["filler"] == "old"  # it began before the write: its own value is fine
    assert current_value() == "new"  # and its entry was dead on arrival


def test_a_failed_filler_hands_over_before_the_wait_ends(backend, posts):
    started_failing = threading.Event()
    calls = []

    @ormcache.cached_as(Post)
    def flaky():
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            started_failing.set()
            time.sleep(0.2)
            raise RuntimeError("the filler fails")
        return "value"

    alias = current_alias.get()
    outcome = {}

    def call(name):
        current_alias.set(alias)
        try:
            outcome[name] = flaky()
        except RuntimeError as exc:
            outcome[name] = exc

    with backend.settings(STAMPEDE_WAIT=10):
        first = threading.Thread(target=call, args=("first",), name="first", daemon=True)
        first.start()
        assert started_failing.wait(TIMEOUT)
        begun = time.monotonic()
        second = threading.Thread(target=call, args=("second",), name="second", daemon=True)
        second.start()
        second.join(TIMEOUT)
        first.join(TIMEOUT)
    assert isinstance(outcome["first"], RuntimeError)
    assert outcome["second"] == "value"
    assert time.monotonic() - begun < 5  # took over, did not wait the 10 s


# --- helpers ---------------------------------------------------------------------------


def test_cached_as_computes_once_under_a_stampede(backend, posts):
    calls = []

    @ormcache.cached_as(Post)
    def expensive():
        calls.append(1)
        time.sleep(0.3)
        return sum(Post.objects.nocache().values_list("rating", flat=True))

    assert run_together(6, expensive) == [3] * 6
    assert len(calls) == 1


def test_async_cached_as_computes_once_under_a_stampede(backend, posts):
    import asyncio

    from asgiref.sync import async_to_sync

    calls = []

    @ormcache.cached_as(Post)
    async def expensive():
        calls.append(1)
        await asyncio.sleep(0.3)
        return "value"

    async def many():
        return await asyncio.gather(*(expensive() for _ in range(5)))

    assert async_to_sync(many)() == ["value"] * 5
    assert len(calls) == 1


def test_fragments_render_once_under_a_stampede(backend, posts):
    renders = []

    class Slow:
        def __str__(self):
            renders.append(1)
            time.sleep(0.3)
            return "slow"

    template = Template(
        "{% load ormcache %}{% cachedfragment 'slow' posts %}{{ slow }}{% endcachedfragment %}"
    )

    def render():
        return template.render(Context({"posts": Post.objects.all(), "slow": Slow()}))

    assert run_together(5, render) == ["slow"] * 5
    assert len(renders) == 1


# --- the mechanism ---------------------------------------------------------------------


def test_nothing_is_locked_when_nothing_would_be_stored(backend):
    taken = []

    class Spy:
        def add(self, *args, **kwargs):
            taken.append(args)
            return True

        def delete(self, *args):
            pass

    def fill(snapshot):
        return "filled"

    def poll():
        raise AssertionError("no one waits")

    pending = (versions.new_token(), versions.new_pending_token())
    assert stampede.compute(Spy(), "k", pending, fill=fill, poll=poll) == "filled"
    assert stampede.compute(Spy(), "k", (1,), fill=fill, poll=poll, protect=False) == "filled"
    with backend.settings(STAMPEDE_WAIT=0):
        assert stampede.compute(Spy(), "k", (1,), fill=fill, poll=poll) == "filled"
    assert taken == []
    assert stampede.compute(Spy(), "k", (1,), fill=fill, poll=poll) == "filled"
    assert len(taken) == 1


def test_a_failing_cache_means_computing(backend):
    class Broken:
        def add(self, *args, **kwargs):
            raise ConnectionError("down")

    assert stampede.compute(Broken(), "k", (1,), fill=lambda s: "filled", poll=None) == "filled"


def test_lock_keys_name_the_snapshot():
    assert stampede.lock_key("k", (1, 2)) != stampede.lock_key("k", (1, 3))
    assert stampede.lock_key("k", (1, 2)) == stampede.lock_key("k", (1, 2))
    assert stampede.lock_key("k", (1,)).startswith("ormcache:l:")
