"""The read path: serve a query's rows from the cache, or run it and store them.

One function, ``fetch``, used by the SQL compiler hook (rows of iteration,
``get``, ``exists``, ``values``...) and by the aggregation hook (``count``,
``aggregate``). For one read it:

1. builds the result key from the database alias, SQL, parameters and shape;
2. finds the tables the query reads (memoised per SQL text: the text names them);
3. fetches the result key and the version keys of those tables in one
   ``get_many`` (a hit costs one round trip);
4. serves the stored rows iff the versions stored with them equal the current
   ones; otherwise runs the query and stores the rows with the versions read
   *before* running it.

invariant 3 (no stale fill): the snapshot is taken before the query runs, so a
write that commits and bumps while the query is in flight makes the stored
entry dead on arrival.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db import connections

from . import (
    conf,
    keys,
    longevity,
    rows,
    signals,
    stale,
    stampede,
    storage,
    transaction,
    verify,
    versions,
)
from .keys import Uncacheable

logger = logging.getLogger("ormcache")

_disabled_depth: contextvars.ContextVar[int] = contextvars.ContextVar(
    "ormcache_disabled", default=0
)
# Set while an aggregation is being filled, so the inner SQL is not cached twice.
_filling_aggregate: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "ormcache_filling_aggregate", default=False
)

_MEMO_SIZE = 4096


@dataclass(frozen=True)
class _Plan:
    """What a read needs besides its parameters, worked out once per SQL text.

    The SQL text names every table the query reads, so its dependencies, the
    version keys, the policies involved and the key prefix follow from it.
    """

    deps: frozenset[str]
    version_keys: list[str]
    timeout: int | None
    labels: tuple[str, ...]
    sql_digest: bytes
    #: Every model involved is fixed-lifetime: the read depends on fixed keys (longevity.py).
    fixed: bool = False
    #: Some table it reads has row-level versions: its pins decide its keys (rows.py).
    pinnable: bool = False


_plans: OrderedDict[tuple, _Plan | str] = OrderedDict()
conf.forget_hooks.append(_plans.clear)


def is_disabled() -> bool:
    return _disabled_depth.get() > 0 or not conf.is_enabled()


def plan(db_alias: str, model: Any, sql: str, find: Callable[[], frozenset[str]]) -> _Plan:
    """The memoised plan of a read; raises Uncacheable (also memoised) when it has none."""
    memo_key = (db_alias, model, sql)
    found = _plans.get(memo_key)
    if found is None:
        try:
            deps = find()
            timeout, labels, fixed = _policies(model, deps)
            found = _Plan(
                deps,
                version_keys_for(db_alias, deps, fixed=fixed),
                timeout,
                labels,
                keys.sql_digest(db_alias, sql),
                fixed,
                not fixed and any(rows.table_rows(table).pinnable for table in deps),
            )
        except Uncacheable as exc:
            found = str(exc)
        _plans[memo_key] = found
        if len(_plans) > _MEMO_SIZE:
            _plans.popitem(last=False)
    if isinstance(found, str):
        raise Uncacheable(found)
    return found


def _policies(model: Any, deps: frozenset[str]) -> tuple[int | None, tuple[str, ...], bool]:
    """The timeout for an entry, the labels involved and whether it is fixed-lifetime.

    Uncacheable if any model involved is off. The stricter rule: the shortest timeout,
    and fixed only when every model is.
    """
    timeouts: list[int] = []
    involved = longevity.models_of(deps, [model])
    labels = []
    for each in involved:
        policy = conf.policy_for(each)
        if not policy.enabled:
            # A disabled model is never served from the cache, also not in a join.
            raise Uncacheable(f"caching is disabled for {each._meta.label_lower}")
        if policy.timeout is not None:
            timeouts.append(policy.timeout)
        labels.append(each._meta.label_lower)
    return (
        (min(timeouts) if timeouts else None),
        tuple(sorted(set(labels))),
        longevity.is_fixed(involved),
    )


@dataclass(frozen=True)
class ReadEvent:
    """One read, as reported to active recorders (the page cache, the stale-save guard).

    ``versions`` maps each version key the read depends on to the token it was
    read under (taken before the query ran); ``tables`` is None when the read's
    dependencies are unknown, in which case nothing built from it may be cached.
    """

    model: Any
    db_alias: str
    tables: frozenset[str] | None
    versions: dict[str, Any]
    outcome: str  # "hit", "miss" or "bypass"
    reason: str = ""
    #: For a fixed-lifetime read: when (``time.time()``) its rows reach the fixed timeout,
    #: so what is built from them must expire by then too. None: writes end it.
    expires: float | None = None


_recorders: contextvars.ContextVar[tuple[list[ReadEvent], ...]] = contextvars.ContextVar(
    "ormcache_recorders", default=()
)
# Set while ormcache itself runs a read's SQL, so SQL watchers can tell it apart.
running_cached_read: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "ormcache_running_cached_read", default=False
)


@contextlib.contextmanager
def recording() -> Iterator[list[ReadEvent]]:
    """Collect a ReadEvent for every read made through ormcache inside the block."""
    events: list[ReadEvent] = []
    token = _recorders.set((*_recorders.get(), events))
    try:
        yield events
    finally:
        _recorders.reset(token)


def _report(event: ReadEvent) -> None:
    for events in _recorders.get():
        events.append(event)


def version_keys_for(db_alias: str, tables: Iterable[str], *, fixed: bool = False) -> list[str]:
    """The version keys a read of ``tables`` on ``db_alias`` depends on (global first);
    ``fixed``: the keys of a fixed-lifetime read instead (longevity.py)."""
    return longevity.read_keys(db_alias, tables, fixed=fixed)


def current_versions(db_alias: str, tables: Iterable[str]) -> dict[str, Any] | None:
    """The tokens a reader of ``tables`` depends on now (installing missing ones), or None.

    The keys follow the tables' longevity: the fixed keys when every model is fixed.
    """
    tables = frozenset(tables)
    fixed = longevity.is_fixed(longevity.models_of(tables))
    version_keys = version_keys_for(db_alias, tables, fixed=fixed)
    cache = versions.get_cache()
    try:
        found = versions.read_many(cache, version_keys)
        missing = [k for k in version_keys if k not in found]
        if missing:
            found.update(versions.ensure(cache, missing))
    except versions.CacheUnavailable:
        return None
    return {k: found[k] for k in version_keys}


def fetch(
    *,
    model: Any,
    db_alias: str,
    sql: str,
    params: Any,
    shape: str,
    find_dependencies: Callable[[], frozenset[str]],
    run: Callable[[], Any],
    timeout: Any = None,
    find_pins: Callable[[], tuple[rows.Pin, ...]] | None = None,
) -> Any:
    """Return what ``run()`` returns, from the cache when a current entry exists.

    ``find_pins`` gives the rows (or partitions) the query is pinned to (rows.py); its
    read then depends on their versions instead of their tables'.
    """
    recording_now = bool(_recorders.get())
    if _filling_aggregate.get() or (is_disabled() and not recording_now):
        return run()
    try:
        read_plan = plan(db_alias, model, sql, find_dependencies)
    except Uncacheable as exc:
        if recording_now:
            return _bypass(model, db_alias, _known_tables(sql, find_dependencies), str(exc), run)
        return _run(run)
    deps, policy_timeout, labels = read_plan.deps, read_plan.timeout, read_plan.labels
    if is_disabled():
        return _bypass(model, db_alias, deps, "disabled", run)
    try:
        key = keys.result_key(read_plan.sql_digest, keys.freeze_params(params), shape)
    except Uncacheable as exc:
        return _bypass(model, db_alias, deps, str(exc), run)
    connection = connections[db_alias]
    dirty = transaction.dirty_tables(connection)
    if dirty and ("*" in dirty or not dirty.isdisjoint(deps)):
        # invariant 2: the transaction wrote these tables; only the database has its rows.
        return _bypass(model, db_alias, deps, "written in this transaction", run)
    if transaction.in_user_transaction(connection) and _sees_a_snapshot(connection):
        # REPEATABLE READ / SERIALIZABLE: the transaction's rows may be older than the cache's.
        return _bypass(model, db_alias, deps, "snapshot isolation", run)

    started = time.perf_counter()
    version_keys = read_plan.version_keys
    pins: tuple[rows.Pin, ...] = ()
    # How many trailing keys (an insert key) an entry whose rows prove the pinned rows
    # exist leaves out of its snapshot (rows.proves_rows).
    droppable = 0
    if read_plan.pinnable and find_pins is not None:
        pins = _pins(find_pins)
        if pins:
            alias = conf.versions_alias(db_alias)
            version_keys, droppable = rows.read_keys(alias, deps, pins)
    cache = versions.get_cache()
    try:
        found = versions.read_many(cache, [key, *version_keys])
    except versions.CacheUnavailable:
        return _bypass(model, db_alias, deps, "cache unavailable", run)
    current = [found.get(version_key) for version_key in version_keys]
    entry = storage.load(found.get(key), key) if key in found else None
    stored, read_at = _stored_snapshot(entry, read_plan.fixed)
    if None not in current and _current(stored, tuple(current), droppable):
        assert entry is not None  # a snapshot was found in it
        tokens = dict(zip(version_keys, current, strict=True))
        stale.last_hit.set((db_alias, tokens))  # the stale-save guard marks the instances
        if recording_now:
            expires = _expires(read_plan, read_at)
            _report(ReadEvent(model, db_alias, deps, tokens, "hit", expires=expires))
        if signals.cache_hit.receivers:
            signals.cache_hit.send(
                model,
                labels=labels,
                db_alias=db_alias,
                key=key,
                elapsed=time.perf_counter() - started,
            )
        if verify.enabled() and not read_plan.fixed:
            # Shadow-verify: the hit runs its query too, so query counts do not change.
            # (A fixed-lifetime hit may differ from the database by design: not checked.)
            return verify.check_hit(
                entry[1],
                run=lambda: _run(run),
                still_current=lambda: (
                    _poll(cache, key, version_keys, read_plan.fixed, droppable)[2] == tuple(current)
                ),
                model=model,
                db_alias=db_alias,
                key=key,
                sql=sql,
                params=params,
                tables=deps,
                labels=labels,
            )
        return entry[1]

    # Miss. invariant 3: take the snapshot before running the query.
    if None in current:
        missing = [k for k, token in zip(version_keys, current, strict=True) if token is None]
        try:
            installed = versions.ensure(cache, missing)
        except versions.CacheUnavailable:
            return _bypass(model, db_alias, deps, "cache unavailable", run)
        current = [installed.get(k, token) for k, token in zip(version_keys, current, strict=True)]
    snapshot = tuple(current)
    if recording_now:
        tokens = dict(zip(version_keys, snapshot, strict=True))
        expires = _expires(read_plan, time.time())
        _report(ReadEvent(model, db_alias, deps, tokens, "miss", expires=expires))
    if signals.cache_miss.receivers:
        signals.cache_miss.send(
            model,
            labels=labels,
            db_alias=db_alias,
            key=key,
            elapsed=time.perf_counter() - started,
        )
    lagging = _replica_may_lag(db_alias, snapshot)

    def fill(snapshot: tuple) -> Any:
        read_at = time.time()
        began = time.perf_counter()
        result = _run(run)
        stampede.record_cost(read_plan.sql_digest, time.perf_counter() - began)
        if versions.storable(snapshot) and not _replica_may_lag(db_alias, snapshot):
            # A pending token means a transaction wrote a table and has not committed:
            # what we read may be about to change, so it is not kept.
            if droppable and rows.proves_rows(pins, result, shape):
                # Every pinned row exists: no insert can change this result (rows.py).
                snapshot = snapshot[:-droppable]
            _store(
                cache,
                key,
                # A fixed read's entry remembers when its rows were read (longevity.py).
                (*snapshot, read_at) if read_plan.fixed else snapshot,
                result,
                longevity.cap(timeout, policy_timeout, fixed=read_plan.fixed),
                model,
                labels,
                db_alias,
            )
        return result

    def poll() -> stampede.PollResult:
        hit, found_rows, now = _poll(cache, key, version_keys, read_plan.fixed, droppable)
        if hit and now is not None:
            stale.last_hit.set((db_alias, dict(zip(version_keys, now, strict=True))))
        return hit, found_rows, now

    # Stampede protection: of the readers missing this entry at once, one runs the query.
    protect = not lagging and stampede.worth_locking(read_plan.sql_digest)
    return stampede.compute(cache, key, snapshot, fill=fill, poll=poll, protect=protect)


def _stored_snapshot(entry: Any, fixed: bool) -> tuple[tuple | None, float | None]:
    """The versions an entry was stored under and, for a fixed read, when its rows were read.

    Entries of fixed and invalidated reads never match each other's plans (a policy
    changed by a deploy): their snapshots differ in length and in their last item.
    """
    if entry is None:
        return None, None
    snapshot = entry[0]
    if not fixed:
        return snapshot, None
    if not snapshot or type(snapshot[-1]) is not float:
        return None, None
    return snapshot[:-1], snapshot[-1]


def _current(stored: tuple | None, current: tuple, droppable: int) -> bool:
    """The entry's snapshot is current: equal to the current tokens, or to all of them
    but the ``droppable`` trailing insert keys its rows made irrelevant."""
    if stored is None:
        return False
    if stored == current:
        return True
    return (
        bool(droppable)
        and len(stored) + droppable == len(current)
        and (stored == current[:-droppable])
    )


def _pins(find_pins: Callable[[], tuple[rows.Pin, ...]]) -> tuple[rows.Pin, ...]:
    try:
        return find_pins()
    except Uncacheable:
        return ()


def _expires(read_plan: _Plan, read_at: float | None) -> float | None:
    if not read_plan.fixed or read_at is None or read_plan.timeout is None:
        return None
    return read_at + read_plan.timeout


def _poll(
    cache: Any, key: str, version_keys: list[str], fixed: bool, droppable: int = 0
) -> stampede.PollResult:
    """(a current entry was found, its rows, the current versions or None if unknown)."""
    try:
        found = versions.read_many(cache, [key, *version_keys])
    except versions.CacheUnavailable:
        return False, None, None
    current = tuple(found.get(k) for k in version_keys)
    if None in current:
        return False, None, None
    entry = storage.load(found.get(key), key) if key in found else None
    if entry is not None and _current(_stored_snapshot(entry, fixed)[0], current, droppable):
        return True, entry[1], current
    return False, None, current


def _known_tables(sql: str, find: Callable[[], frozenset[str]]) -> frozenset[str] | None:
    """The tables of a read that has no plan (a disabled model, say); None if unknowable."""
    try:
        return find()
    except Uncacheable:
        return None


def _replica_may_lag(db_alias: str, snapshot: tuple) -> bool:
    """True when a replica alias read within its replication lag of a bump."""
    lag = conf.replication_lag(db_alias)
    if not lag:
        return False
    recent = time.time() - lag
    return any((versions.bumped_at(token) or 0) > recent for token in snapshot)


def _run(run: Callable[[], Any]) -> Any:
    token = running_cached_read.set(True)
    try:
        return run()
    finally:
        running_cached_read.reset(token)


def _bypass(
    model: Any, db_alias: str, deps: frozenset[str] | None, reason: str, run: Callable[[], Any]
) -> Any:
    """Go to the database; recorders still learn what was read and under which versions."""
    if _recorders.get():
        tokens = current_versions(db_alias, deps) if deps is not None else None
        _report(
            ReadEvent(
                model,
                db_alias,
                deps if tokens is not None else None,
                tokens or {},
                "bypass",
                reason,
            )
        )
    return _run(run)


def _store(
    cache: Any,
    key: str,
    snapshot: tuple,
    result: Any,
    timeout: int | None,
    model: Any,
    labels: tuple[str, ...],
    db_alias: str,
) -> None:
    started = time.perf_counter()
    try:
        data = storage.dump(snapshot, result)
        versions.store(cache, key, data, timeout)
    except versions.CacheUnavailable:
        return
    except Exception as exc:  # too large, or unpicklable rows (e.g. memoryview columns)
        level = logging.INFO if isinstance(exc, storage.TooLarge) else logging.WARNING
        logger.log(level, "ormcache: not storing a result of %s: %s", model._meta.label, exc)
        if signals.not_stored.receivers:
            signals.not_stored.send(
                model, labels=labels, db_alias=db_alias, key=key, reason=str(exc), elapsed=0.0
            )
        return
    if signals.cache_stored.receivers:
        signals.cache_stored.send(
            model,
            labels=labels,
            db_alias=db_alias,
            key=key,
            elapsed=time.perf_counter() - started,
            size=len(data),
        )


def _sees_a_snapshot(connection: Any) -> bool:
    """True when a transaction reads a snapshot (REPEATABLE READ, SERIALIZABLE, SQLite in
    WAL mode): its rows may be older than committed data, so the cache must not take them.

    Seen from Django's ``OPTIONS``, from the server's default (PostgreSQL), from the SQL
    that set it (``note_statement``) and from SQLite's journal mode.
    """
    if connection.vendor == "sqlite":
        return _per_connection(connection, "wal", _sqlite_in_wal_mode)
    if _per_connection(connection, "set by SQL", lambda raw: False):
        return True
    level = getattr(connection, "isolation_level", None)
    if connection.vendor == "postgresql":
        if "isolation_level" not in (connection.settings_dict.get("OPTIONS") or {}):
            # Django says READ COMMITTED but leaves the level to the server's default,
            # which ALTER DATABASE/ROLE ... SET default_transaction_isolation may have set.
            return _per_connection(connection, "default", _postgresql_default_is_a_snapshot)
        # Django's own name for the driver's levels: psycopg 3's, or psycopg2's numbers
        # (REPEATABLE READ is 2 there, not 3).
        from django.db.backends.postgresql.psycopg_any import IsolationLevel

        return level in (IsolationLevel.REPEATABLE_READ, IsolationLevel.SERIALIZABLE)
    if connection.vendor == "mysql":
        return (connection.isolation_level or "repeatable read") in (
            "repeatable read",
            "serializable",
        )
    return False


_SNAPSHOT_SQL = re.compile(
    r"\b(?:ISOLATION\s+LEVEL\s+(?:REPEATABLE|SERIALIZABLE)|"
    r"(?:DEFAULT_)?TRANSACTION_ISOLATION\b[^;]*(?:REPEATABLE|SERIALIZABLE))",
    re.I,
)


def note_statement(connection: Any, sql: str) -> None:
    """Called with every statement that writes no table: remember one that sets a snapshot
    isolation level (``SET TRANSACTION ISOLATION LEVEL ...``, ``BEGIN ISOLATION LEVEL
    ...``, ``SET SESSION CHARACTERISTICS ...``), for the rest of the connection."""
    if sql[:24].lstrip()[:3].upper() in ("SET", "BEG", "STA") and _SNAPSHOT_SQL.search(sql):
        facts = connection.__dict__.setdefault("_ormcache_facts", {})
        facts["set by SQL"] = (connection.connection, True)


def _per_connection(connection: Any, name: str, find: Callable[[Any], bool]) -> bool:
    """A fact about the open database connection, worked out once per connection."""
    facts = connection.__dict__.setdefault("_ormcache_facts", {})
    raw = connection.connection
    known = facts.get(name)
    if known is not None and known[0] is raw:  # the object: ids of closed ones are reused
        return known[1]
    try:
        found = find(raw)
    except Exception:  # cannot tell (an aborted transaction...): the database answers
        return True
    facts[name] = (raw, found)
    return found


def _sqlite_in_wal_mode(raw: Any) -> bool:
    # In WAL mode a transaction reads the database as of its first read, while other
    # connections commit; in the other modes its shared lock holds their commits back.
    mode = raw.execute("PRAGMA journal_mode").fetchone()[0]
    return str(mode).lower() == "wal"


def _postgresql_default_is_a_snapshot(raw: Any) -> bool:
    cursor = raw.cursor()
    try:
        cursor.execute("SHOW default_transaction_isolation")
        level = cursor.fetchone()[0]
    finally:
        cursor.close()
    return str(level).lower() in ("repeatable read", "serializable")


class disabled:
    """Turn the cache off for reads (``with ormcache.disabled():`` or ``@ormcache.disabled()``).

    Reads inside go to the database and store nothing; writes still invalidate.
    Exception-safe, nestable, and scoped by contextvars (per thread and per task).
    """

    def __init__(self) -> None:
        self._tokens: list[contextvars.Token[int]] = []

    def __enter__(self) -> disabled:
        self._tokens.append(_disabled_depth.set(_disabled_depth.get() + 1))
        return self

    def __exit__(self, *exc_info: Any) -> None:
        _disabled_depth.reset(self._tokens.pop())

    def __call__(self, function: Callable[..., Any]) -> Callable[..., Any]:
        import functools
        import inspect

        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with disabled():
                    return await function(*args, **kwargs)

            return async_wrapper

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with disabled():
                return function(*args, **kwargs)

        return wrapper
