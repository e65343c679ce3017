"""No stale fill (DESIGN invariant 3), with real concurrency and a deterministic order.

A reader that read rows before a write committed must never make them the current
cached value, however slow it is. Each test holds a reader between its SELECT and
its next cache call (its store; see ``tests/pausable_cache.py``), lets a writer
commit, lets the reader go on, and checks that a fresh read returns the committed
value. Events order every step; timeouts are only a safety net.

Concurrency is real: forked OS processes on PostgreSQL (+ Redis or Memcached),
overlapping threads on SQLite + locmem (locmem does not cross processes). Each test
uses the pair's cache through a pausable subclass under the alias ``pausable``.

The reader is held at its first cache call after the SELECT, not only at ``set()``:
with ormcache as designed that call is the store, and a read path that took its
version snapshot after the query would make a cache read there, which is held too.
(With a gate on ``set()`` alone, such a read path passes four of the five stale-fill
tests below.)

Why SQLite uses a file here: pytest-django's in-memory test database is shared
between threads (``file:memorydb_default?mode=memory&cache=shared``) and commits are
visible across connections, but shared-cache SQLite locks whole tables: a SELECT on
a table that another connection has written in an open transaction fails with
"database table is locked" instead of reading the committed rows. The tests below
need exactly that read, so on SQLite they use a file database in WAL mode under the
alias ``races``, attached to each thread's connection handler. It is not in
``settings.DATABASES``, which keeps it out of the suite's flush and out of every
other test.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import caches
from django.db import connections, transaction
from django.db.utils import load_backend
from django.test.utils import CaptureQueriesContext, override_settings

from ormcache import keys
from testproject.blog.models import Author, Comment, Post, Tag
from tests.factories import PostFactory
from tests.helpers import assert_served_from_cache
from tests.pausable_cache import Gate, is_result_store
from tests.routing import current_alias

pytestmark = pytest.mark.django_db(transaction=True)  # other processes see the rows

TIMEOUT = 30.0  # safety net only: every step waits for an event
CACHE_ALIAS = "pausable"
SQLITE_ALIAS = "races"


def wait(event: Any, what: str) -> None:
    assert event.wait(TIMEOUT), f"timed out waiting for {what}"


# --- running things concurrently ------------------------------------------------------


class _SqliteFile:
    """A file SQLite database under its own alias, attached per thread (see the docstring)."""

    def __init__(self, path: Any) -> None:
        self.settings_dict = {**connections.settings["default"], "NAME": str(path)}

    def attach(self) -> None:
        backend = load_backend(self.settings_dict["ENGINE"])
        connections[SQLITE_ALIAS] = backend.DatabaseWrapper(self.settings_dict, SQLITE_ALIAS)

    def detach(self) -> None:
        connections[SQLITE_ALIAS].close()
        del connections[SQLITE_ALIAS]

    def create_schema(self) -> None:
        connection = connections[SQLITE_ALIAS]
        with connection.cursor() as cursor:
            # Readers never wait for a writer, and a writer never waits for readers.
            cursor.execute("PRAGMA journal_mode=WAL")
        with connection.schema_editor() as editor:
            for model in (Author, Tag, Post, Comment):
                editor.create_model(model)


class Worker:
    def __init__(self, name: str, handle: Any, results: Any) -> None:
        self.name = name
        self._handle = handle
        self._results = results

    def result(self) -> Any:
        """What the worker's function returned; fails the test with its traceback."""
        try:
            kind, value = self._results.get(timeout=TIMEOUT)
        except queue.Empty:
            pytest.fail(f"{self.name} did not finish within {TIMEOUT}s")
        self._handle.join(TIMEOUT)
        if kind == "error":
            pytest.fail(f"{self.name} failed:\n{value}")
        return value

    def stop(self) -> None:
        self._handle.join(TIMEOUT)
        if isinstance(self._handle, multiprocessing.Process) and self._handle.is_alive():
            self._handle.terminate()
            self._handle.join(TIMEOUT)


def _worker_main(
    alias: str, sqlite: _SqliteFile | None, function: Any, args: tuple, results: Any
) -> None:
    current_alias.set(alias)
    if sqlite is not None:
        sqlite.attach()
    try:
        results.put(("ok", function(*args)))
    except BaseException:
        results.put(("error", traceback.format_exc()))
    finally:
        if sqlite is not None:
            sqlite.detach()
        else:
            connections[alias].close()


@dataclass
class Workers:
    """Threads (SQLite + locmem) or forked processes (PostgreSQL + Redis), alike for tests."""

    alias: str
    sqlite: _SqliteFile | None
    _events: list[Any] = field(default_factory=list)
    _started: list[Worker] = field(default_factory=list)

    @property
    def processes(self) -> bool:
        return self.sqlite is None

    def event(self) -> Any:
        made = multiprocessing.get_context("fork").Event() if self.processes else threading.Event()
        self._events.append(made)
        return made

    def gate(self, **options: Any) -> Gate:
        return Gate(self.event, timeout=TIMEOUT, **options)

    def start(self, name: str, function: Any, *args: Any) -> Worker:
        if self.processes:
            context = multiprocessing.get_context("fork")
            results = context.Queue()
            # A forked child must never share the parent's database or cache connections.
            connections.close_all()
            for cache in caches.all(initialized_only=True):
                cache.close()
            handle = context.Process(
                target=_worker_main, args=(self.alias, None, function, args, results), name=name
            )
        else:
            results = queue.Queue()
            handle = threading.Thread(
                target=_worker_main,
                args=(self.alias, self.sqlite, function, args, results),
                name=name,
                daemon=True,
            )
        handle.start()
        worker = Worker(name, handle, results)
        self._started.append(worker)
        return worker

    def close(self) -> None:
        # After a failed assertion, workers may still wait: let every one of them go on.
        for event in self._events:
            event.set()
        for worker in self._started:
            worker.stop()


@dataclass
class Race:
    alias: str
    workers: Workers

    def assert_current(self, pk: int, expected: int) -> None:
        """A fresh read returns ``expected``, and the read after it is served from the cache."""
        assert views(pk) == expected, "a fresh read returned a stale value from the cache"
        with CaptureQueriesContext(connections[self.alias]) as captured:
            assert views(pk) == expected
        assert captured.captured_queries == [], "the current value is not served from the cache"


PAUSABLE_BACKENDS = {
    "django.core.cache.backends.locmem.LocMemCache": "PausableLocMemCache",
    "django_redis.cache.RedisCache": "PausableRedisCache",
    "django.core.cache.backends.memcached.PyMemcacheCache": "PausablePyMemcacheCache",
}


def _pausable_cache_settings(cache_alias: str) -> dict[str, Any]:
    """The backend pair's cache, as its pausable subclass (locmem: a LOCATION of its own)."""
    pair_cache = settings.CACHES[cache_alias]
    pausable = f"tests.pausable_cache.{PAUSABLE_BACKENDS[pair_cache['BACKEND']]}"
    if pausable.endswith("LocMemCache"):
        return {"BACKEND": pausable, "LOCATION": "ormcache-races"}
    return {**pair_cache, "BACKEND": pausable}


def _empty_cache(backend) -> None:
    """Start from an empty cache (memcached: a new global version, see Backend.clear)."""
    if backend.cache_alias == "memcached":
        backend.clear()
    else:
        caches[CACHE_ALIAS].clear()


@pytest.fixture
def race(backend, tmp_path):
    """The backend pair with the pausable cache, and workers for its kind of concurrency."""
    sqlite = None
    alias = backend.db_alias
    if backend.connection.vendor == "sqlite":
        sqlite = _SqliteFile(tmp_path / "races.sqlite3")
        sqlite.attach()
        sqlite.create_schema()
        alias = SQLITE_ALIAS
    caches_setting = {**settings.CACHES, CACHE_ALIAS: _pausable_cache_settings(backend.cache_alias)}
    token = current_alias.set(alias)
    workers = Workers(alias, sqlite)
    try:
        with override_settings(CACHES=caches_setting), backend.settings(CACHE=CACHE_ALIAS):
            _empty_cache(backend)
            try:
                yield Race(alias, workers)
            finally:
                workers.close()
                _empty_cache(backend)
    finally:
        current_alias.reset(token)
        if sqlite is not None:
            sqlite.detach()


@pytest.fixture
def post(race):
    return PostFactory(views=0)


# --- what the workers do ---------------------------------------------------------------


def views(pk: int) -> int:
    """The read every test races: one row through the cached manager."""
    return Post.objects.get(pk=pk).views


def held_reader(pk: int, gate: Gate) -> tuple[int, Any]:
    with gate.armed(connections[current_alias.get()]):
        value = views(pk)
    return value, gate.held_call


def autocommit_writer(pk: int, value: int) -> None:
    Post.objects.filter(pk=pk).update(views=value)


def atomic_writer(pk: int, value: int, began: Any, go_update: Any, updated: Any, go_commit: Any):
    """Lock the row, update it, commit: each step when the test says so."""
    with transaction.atomic(using=current_alias.get()):
        # The transaction is open for real. (nocache: see test_select_for_update_*.)
        Post.objects.nocache().select_for_update().get(pk=pk)
        began.set()
        wait(go_update, "the go to update")
        Post.objects.filter(pk=pk).update(views=value)
        updated.set()
        wait(go_commit, "the go to commit")


class _RollBack(Exception):
    pass


def rolled_back_writer(
    pk: int, value: int, updated: Any, go_roll_back: Any, rolled_back: Any, go_on: Any
) -> int:
    """Update, read the own write, roll back; later use the connection again."""
    try:
        with transaction.atomic(using=current_alias.get()):
            Post.objects.filter(pk=pk).update(views=value)
            own = views(pk)
            updated.set()
            wait(go_roll_back, "the go to roll back")
            raise _RollBack
    except _RollBack:
        pass
    rolled_back.set()
    wait(go_on, "the go to use the connection again")
    Post.objects.filter(pk=pk).exists()  # the next request on this connection
    return own


# --- the races ---------------------------------------------------------------------------


def test_autocommit_write_while_a_reader_holds_old_rows(race, post):
    """Reader SELECTs 0 and stalls before storing; an autocommit write of 1 commits."""
    gate = race.workers.gate()
    reader = race.workers.start("reader", held_reader, post.pk, gate)
    wait(gate.after_select.reached, "the reader to hold its rows")

    race.workers.start("writer", autocommit_writer, post.pk, 1).result()
    gate.after_select.release.set()

    assert reader.result()[0] == 0  # the reader did read the old row
    race.assert_current(post.pk, 1)


def test_transaction_commits_while_a_reader_holds_rows_read_before_its_update(race, post):
    """The writer's transaction is open; the reader SELECTs 0 before the UPDATE, stalls;
    the writer updates to 1 and commits; then the reader stores."""
    began, go_update, updated, go_commit = (race.workers.event() for _ in range(4))
    go_commit.set()
    writer = race.workers.start(
        "writer", atomic_writer, post.pk, 1, began, go_update, updated, go_commit
    )
    wait(began, "the writer's transaction")
    gate = race.workers.gate()
    reader = race.workers.start("reader", held_reader, post.pk, gate)
    wait(gate.after_select.reached, "the reader to hold its rows")

    go_update.set()
    writer.result()  # updated and committed
    gate.after_select.release.set()

    value, held_call = reader.result()
    assert value == 0
    race.assert_current(post.pk, 1)
    assert is_result_store(held_call)


def test_reader_snapshots_before_the_update_and_selects_before_the_commit(race, post):
    """Reader takes its snapshot, the writer UPDATEs (uncommitted), the reader SELECTs the
    old row and stalls before storing; the writer commits; the reader stores."""
    began, go_update, updated, go_commit = (race.workers.event() for _ in range(4))
    go_update.set()
    gate = race.workers.gate(before_select=True)
    reader = race.workers.start("reader", held_reader, post.pk, gate)
    wait(gate.before_select.reached, "the reader's snapshot")

    writer = race.workers.start(
        "writer", atomic_writer, post.pk, 1, began, go_update, updated, go_commit
    )
    wait(updated, "the uncommitted update")
    gate.before_select.release.set()
    wait(gate.after_select.reached, "the reader to hold its rows")

    go_commit.set()
    writer.result()
    gate.after_select.release.set()

    value, held_call = reader.result()
    assert value == 0  # read committed: the uncommitted 1 was not visible
    race.assert_current(post.pk, 1)
    assert is_result_store(held_call)


def test_reader_starts_between_the_update_and_the_commit(race, post):
    """The writer UPDATEs (uncommitted); a reader reads the old row and is held if it
    stores anything; the writer commits; then the reader goes on."""
    began, go_update, updated, go_commit = (race.workers.event() for _ in range(4))
    go_update.set()
    writer = race.workers.start(
        "writer", atomic_writer, post.pk, 1, began, go_update, updated, go_commit
    )
    wait(updated, "the uncommitted update")
    gate = race.workers.gate()
    reader = race.workers.start("reader", held_reader, post.pk, gate)
    # Reached when held, or when the read ended without a cache call after its SELECT
    # (ormcache stores nothing while a table it read has a pending write).
    wait(gate.after_select.reached, "the reader's rows")

    go_commit.set()
    writer.result()
    gate.after_select.release.set()

    assert reader.result()[0] == 0
    race.assert_current(post.pk, 1)


def test_pending_version_evicted_between_the_update_and_the_commit(race, post):
    """The cache loses the pending version the writer's UPDATE set (eviction, restart);
    a reader installs a fresh one, SELECTs the old row and stalls before storing; the
    writer commits; the reader stores. Only the commit-time bump can kill that entry."""
    began, go_update, updated, go_commit = (race.workers.event() for _ in range(4))
    go_update.set()
    writer = race.workers.start(
        "writer", atomic_writer, post.pk, 1, began, go_update, updated, go_commit
    )
    wait(updated, "the uncommitted update")
    table = Post._meta.db_table
    # The table's key, and the row's (row-level versions: the reader depends on that one).
    for pending_key in (
        keys.version_key(race.alias, table),
        keys.row_key(race.alias, table, str(post.pk)),
    ):
        assert str(caches[CACHE_ALIAS].get(pending_key)).startswith("pending:")
        caches[CACHE_ALIAS].delete(pending_key)  # what allkeys-lru may do at any time

    gate = race.workers.gate()
    reader = race.workers.start("reader", held_reader, post.pk, gate)
    wait(gate.after_select.reached, "the reader to hold its rows")

    go_commit.set()
    writer.result()
    gate.after_select.release.set()

    value, held_call = reader.result()
    assert value == 0
    race.assert_current(post.pk, 1)
    assert is_result_store(held_call)


def test_rollback_leaves_no_trace(race, post):
    """The writer updates to 99, reads its own write, and rolls back while another reader
    reads. Nobody ever sees 99, and caching resumes once the connection is used again."""
    updated, go_roll_back, rolled_back, go_on = (race.workers.event() for _ in range(4))
    writer = race.workers.start(
        "writer", rolled_back_writer, post.pk, 99, updated, go_roll_back, rolled_back, go_on
    )
    wait(updated, "the uncommitted update")
    gate = race.workers.gate()
    reader = race.workers.start("reader", held_reader, post.pk, gate)
    wait(gate.after_select.reached, "the concurrent reader")
    gate.after_select.release.set()
    assert reader.result()[0] == 0

    go_roll_back.set()
    wait(rolled_back, "the rollback")
    assert views(post.pk) == 0  # not the writer's own, rolled-back read

    go_on.set()
    assert writer.result() == 99  # the writer did see its own write
    race.assert_current(post.pk, 0)


# --- found by benchmarks/torture.py and while writing these tests ------------------------


def two_transactions_writer(pk: int, first: str, updated: Any, go_commit: Any) -> None:
    """Two transactions back to back on one connection, no statement between them."""
    with contextlib.suppress(_RollBack), transaction.atomic(using=current_alias.get()):
        Post.objects.filter(pk=pk).update(views=1)
        if first == "rolls back":
            raise _RollBack
    with transaction.atomic(using=current_alias.get()):
        Post.objects.filter(pk=pk).update(views=2)
        updated.set()
        wait(go_commit, "the go to commit")


@pytest.mark.parametrize("lost_by", ["eviction", "another commit"])
@pytest.mark.parametrize("first", ["commits", "rolls back"])
def test_each_transaction_on_a_connection_bumps_at_its_commit(race, post, first, lost_by):
    """A connection ends a transaction that wrote the post (commit or rollback), then at
    once opens a second one that UPDATEs views=2. While that one is open, its pending
    version is lost (evicted, or replaced by another writer's commit on another row) and
    a reader caches the committed row. The second commit must bump again.

    PostgreSQL starts a transaction without a statement, so ormcache sees no statement
    between the two transactions; SQLite sends BEGIN through the connection."""
    if lost_by == "another commit" and not race.workers.processes:
        pytest.skip("SQLite has one writer at a time; the eviction case covers it")
    committed = 1 if first == "commits" else 0
    updated, go_commit = race.workers.event(), race.workers.event()
    writer = race.workers.start(
        "writer", two_transactions_writer, post.pk, first, updated, go_commit
    )
    wait(updated, "the second, uncommitted update")
    if lost_by == "eviction":
        caches[CACHE_ALIAS].delete(keys.version_key(race.alias, Post._meta.db_table))
    else:
        other = PostFactory()
        race.workers.start("other writer", autocommit_writer, other.pk, 7).result()
    assert race.workers.start("reader", views, post.pk).result() == committed

    go_commit.set()
    writer.result()
    race.assert_current(post.pk, 2)


def test_select_for_update_does_not_stop_caching_the_same_sql(backend):
    """SQLite has no FOR UPDATE, so ``select_for_update()`` compiles to the very SQL of the
    plain query. ormcache memoises "uncacheable" per SQL text (reads.dependencies), so one
    locking read must not make the plain query uncacheable for the life of the process.
    The memo is also shared by all aliases, so SQLite's verdict reaches PostgreSQL's plain
    query of the same text: the check runs once, on SQLite. The query shape is unique to
    this test, so a failure here cannot leak into other tests."""
    if backend.db_alias != "default":
        pytest.skip("PostgreSQL compiles FOR UPDATE into the SQL; the SQLite case covers it")
    post = PostFactory(slug="sfu-probe")

    def plain():
        return Post.objects.filter(slug=post.slug, views__gte=0).only("slug", "views").get()

    with transaction.atomic(using=backend.db_alias):
        Post.objects.select_for_update().filter(slug=post.slug, views__gte=0).only(
            "slug", "views"
        ).get()
    assert_served_from_cache(backend, plain)
