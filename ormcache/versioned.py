"""Values cached under the versions of what they were computed from.

The helpers (``cached_as``, ``cached_property``, template fragments) cache
values that are not query rows, with the read path's rule: a value is stored
with the version tokens of its dependencies, taken *before* computing it, and
served only while those tokens are current. For one value:

1. ``resolve`` turns its dependencies (models, querysets, instances,
   ``"app.model"`` labels) into the tables it reads on each database alias, and
   into a frozen identity that goes into its key with its arguments;
2. the lookup fetches the entry and every version key in one ``get_many``. It
   is a hit iff the entry's snapshot equals the current tokens. An entry also
   remembers the reads its computation made through ormcache *outside* the
   declared dependencies (``reads.recording``), with their tokens; for entries
   that have such reads, a second ``get_many`` checks those too. So a forgotten
   dependency costs a round trip, never a stale value, when the read it forgot
   went through a cached manager;
3. on a miss the value is computed under stampede protection and stored with
   the snapshot (invariant 3), unless a token is pending, or the computation read
   tables its transaction wrote.

Reads made inside a transaction that wrote a dependency bypass the cache
(invariant 2), as do reads inside a ``REPEATABLE READ``/``SERIALIZABLE``
transaction. Active recorders (the page cache) learn the dependencies of a
value served from the cache, so a page built around a cached value is
invalidated with it.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import math
import pickle
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.apps import apps
from django.core.exceptions import EmptyResultSet
from django.db import connections, router
from django.db.models import Model, QuerySet

from . import (
    conf,
    dependencies,
    health,
    keys,
    longevity,
    reads,
    signals,
    stampede,
    storage,
    tables,
    transaction,
    verify,
    versions,
)
from .keys import Uncacheable

logger = logging.getLogger("ormcache")

try:  # Django >= 4.2
    from django.core.exceptions import FullResultSet
except ImportError:  # pragma: no cover
    FullResultSet = EmptyResultSet  # type: ignore[misc,assignment]


class _NotCached:
    """What ``peek()`` returns when no current value is cached."""

    _instance: _NotCached | None = None

    def __new__(cls) -> _NotCached:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "ormcache.NOT_CACHED"

    def __reduce__(self) -> str:
        return "NOT_CACHED"


NOT_CACHED = _NotCached()

# Reads inside the computation that make its value unfit to store.
_UNSAFE_BYPASSES = frozenset({"written in this transaction", "snapshot isolation"})


# --- dependencies and keys ----------------------------------------------------------


@dataclass
class Dependencies:
    """The tables a value reads per database alias, and what identifies it in its key."""

    tables: dict[str, set[str]] = field(default_factory=dict)
    models: list[Any] = field(default_factory=list)
    identity: list[Any] = field(default_factory=list)
    uncacheable: str | None = None

    def copy(self) -> Dependencies:
        return Dependencies(
            {db_alias: set(found) for db_alias, found in self.tables.items()},
            list(self.models),
            list(self.identity),
            self.uncacheable,
        )

    def add_tables(self, db_alias: str, found: Iterable[str], model: Any) -> None:
        self.tables.setdefault(db_alias, set()).update(found)
        if model is not None and model not in self.models:
            self.models.append(model)

    def add_model(self, model: Any, using: str | None = None) -> None:
        db_alias = using or router.db_for_read(model)
        self.add_tables(db_alias, model_tables(model), model)
        self.identity.append(("model", model._meta.label_lower, db_alias))

    def add_instance(self, obj: Any, using: str | None = None) -> tuple[Any, ...]:
        db_alias = using or obj._state.db or router.db_for_read(type(obj), instance=obj)
        self.add_tables(db_alias, model_tables(type(obj)), type(obj))
        identity = instance_identity(obj, db_alias)
        if obj.pk is None:
            self.uncacheable = f"an unsaved {obj._meta.label} instance"
        self.identity.append(identity)
        return identity

    def add_queryset(self, queryset: Any) -> tuple[Any, ...]:
        db_alias = queryset.db
        query = queryset.query.clone()
        identity: tuple[Any, ...]
        try:
            compiler = query.get_compiler(db_alias)
            sql, params = compiler.as_sql()
            found = dependencies.tables_read(
                query, from_aliases=getattr(compiler, "from_aliases", None)
            )
            identity = ("queryset", db_alias, sql, keys.freeze_params(params))
        except (EmptyResultSet, FullResultSet):
            found = frozenset(model_tables(queryset.model))
            identity = ("queryset", db_alias, "empty", repr(queryset.query))
        except Uncacheable as exc:
            self.uncacheable = str(exc)
            found, identity = frozenset(), ("queryset", db_alias, "uncacheable")
        self.add_tables(db_alias, found, queryset.model)
        self.identity.append(identity)
        return identity

    def add(self, item: Any, using: str | None = None) -> None:
        """Add one dependency: a model class, "app.model" label, queryset or instance."""
        if isinstance(item, str):
            item = apps.get_model(item)
        if isinstance(item, type) and issubclass(item, Model):
            self.add_model(item, using)
        elif isinstance(item, QuerySet):
            self.add_queryset(item)
        elif isinstance(item, Model):
            self.add_instance(item, using)
        else:
            raise TypeError(
                "ormcache dependencies are models, 'app.model' labels, querysets or model "
                f"instances, not {type(item).__name__}"
            )

    def policy(self) -> tuple[int | None, tuple[str, ...], bool]:
        """(timeout, labels, fixed-lifetime) of the models involved (the stricter rule);
        marks the value uncacheable if one is off."""
        involved = list(self.models)
        for found in self.tables.values():
            involved.extend(longevity.models_of(found))
        timeouts, labels = [], set()
        for model in involved:
            policy = conf.policy_for(model)
            if not policy.enabled:
                self.uncacheable = f"caching is disabled for {model._meta.label_lower}"
            if policy.timeout is not None:
                timeouts.append(policy.timeout)
            labels.add(model._meta.label_lower)
        if not involved:
            default = conf.default_timeout()
            return default, (), False
        fixed = longevity.is_fixed(involved)
        return (min(timeouts) if timeouts else None), tuple(sorted(labels)), fixed


def resolve(items: Iterable[Any], using: str | None = None) -> Dependencies:
    deps = Dependencies()
    for item in items:
        deps.add(item, using)
    return deps


# Dependencies fixed at decoration time (models, labels, querysets) resolve the same way
# for the same databases: compiling a queryset costs about as much as a hit, so they are
# resolved once per (decorator, databases the router picks). Forgotten with the settings.
_MEMO_SIZE = 1024
_static_memo: OrderedDict[tuple[Any, ...], Dependencies] = OrderedDict()
conf.forget_hooks.append(_static_memo.clear)


def resolve_static(owner: object, items: tuple[Any, ...]) -> Dependencies:
    """``resolve(items)`` for dependencies declared once (``owner`` identifies them).

    Returns a copy the caller may extend. Instances are not memoised: they are keyed
    by the field values they hold.
    """
    if any(isinstance(item, Model) for item in items):
        return resolve(items)
    memo_key = (owner, *(_database_of(item) for item in items))
    found = _static_memo.get(memo_key)
    if found is None:
        found = _static_memo[memo_key] = resolve(items)
        if len(_static_memo) > _MEMO_SIZE:
            _static_memo.popitem(last=False)
    return found.copy()


def _database_of(item: Any) -> str:
    if isinstance(item, QuerySet):
        return item.db
    model = apps.get_model(item) if isinstance(item, str) else item
    return router.db_for_read(model)


def model_tables(model: Any) -> set[str]:
    """A model's tables: its own, its concrete parents', and its own m2m through tables."""
    found = tables.tables_of_model(model)
    for m2m in model._meta.concrete_model._meta.local_many_to_many:
        through = m2m.remote_field.through
        if isinstance(through, type) and issubclass(through, Model) and through._meta.auto_created:
            found.add(through._meta.db_table)
    return found


def instance_identity(obj: Any, db_alias: str) -> tuple[Any, ...]:
    """An instance in a key: its model, database, pk and the field values it holds.

    The field values are part of it so that an instance with unsaved changes (or
    loaded before a write) never shares a value computed from other field values.
    Deferred fields are left out: reading them would query.
    """
    values = []
    for model_field in obj._meta.concrete_fields:
        if model_field.attname in obj.__dict__:
            values.append((model_field.attname, _freeze_leaf(obj.__dict__[model_field.attname])))
    digest = hashlib.blake2b(repr(values).encode(), digest_size=12).hexdigest()
    return ("instance", obj._meta.label_lower, db_alias, _freeze_leaf(obj.pk), digest)


def _freeze_leaf(value: Any) -> str:
    try:
        return keys.freeze_params(value)
    except Uncacheable:
        try:
            return "pickle:" + hashlib.blake2b(pickle.dumps(value, 4)).hexdigest()
        except Exception as exc:
            raise TypeError(f"a value of type {type(value).__name__} has no key") from exc


def freeze(value: Any, deps: Dependencies) -> Any:
    """``value`` as a key part; instances, querysets and models in it become dependencies."""
    if isinstance(value, Model):
        return deps.add_instance(value)
    if isinstance(value, QuerySet):
        return deps.add_queryset(value)
    if isinstance(value, type) and issubclass(value, Model):
        deps.add_model(value)
        return ("model", value._meta.label_lower)
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(freeze(item, deps) for item in value))
    if isinstance(value, dict):
        return (
            "dict",
            tuple(sorted((_freeze_leaf(key), freeze(item, deps)) for key, item in value.items())),
        )
    if isinstance(value, (set, frozenset)):
        return ("set", tuple(sorted(repr(freeze(item, deps)) for item in value)))
    if isinstance(value, enum.Enum):
        return ("enum", type(value).__qualname__, freeze(value.value, deps))
    try:
        return keys.freeze_params(value)
    except Uncacheable:
        raise TypeError(
            f"ormcache cannot key an argument of type {type(value).__name__}: pass key=... "
            "to name what identifies the call"
        ) from None


def digest(*parts: Any) -> str:
    return hashlib.blake2b(repr(parts).encode("utf-8", "surrogatepass"), digest_size=20).hexdigest()


def call_version_key(entry_key: str) -> str:
    """A version key of one cached call, bumped by ``invalidate()`` (never a table's key)."""
    return f"{keys.PREFIX}:v:#call:{entry_key.rsplit(':', 1)[-1]}"


# --- one value ----------------------------------------------------------------------


@dataclass
class Value:
    """One cacheable value: its key, dependencies and how long it may live."""

    kind: str  # "cached_as", "cached_property", "fragment"
    name: str
    key: str
    deps: Dependencies
    timeout: Any = None  # None: the models' policies, else seconds
    call_key: str | None = None  # an extra version key of its own (cached_as)

    def labels_and_timeout(self) -> tuple[tuple[str, ...], int | None, bool]:
        """(labels, timeout, fixed-lifetime): a fixed value's timeout never exceeds its policy's."""
        policy_timeout, labels, fixed = self.deps.policy()
        return labels, longevity.cap(self.timeout, policy_timeout, fixed=fixed), fixed

    @property
    def sender(self) -> Any:
        return self.deps.models[0] if self.deps.models else None


@dataclass
class _Plan:
    value: Value
    cache: Any
    version_keys: list[str]
    by_alias: dict[str, list[str]]
    labels: tuple[str, ...]
    timeout: int | None
    started: float
    #: The reads outside the declared dependencies that the entry found remembers.
    learned: tuple[Any, ...] = ()
    #: Every model involved is fixed-lifetime: it depends on fixed keys (longevity.py).
    fixed: bool = False
    #: When the value's fixed-lifetime data reaches its timeout (``time.time()``), if any.
    expires: float | None = None


def _plan(value: Value) -> _Plan | str:
    """What to read for ``value``, or why it bypasses the cache."""
    if reads.is_disabled():
        return "disabled"
    labels, timeout, fixed = value.labels_and_timeout()
    if value.deps.uncacheable:
        return value.deps.uncacheable
    for db_alias, found in value.deps.tables.items():
        connection = connections[db_alias]
        dirty = transaction.dirty_tables(connection)
        if dirty and ("*" in dirty or not dirty.isdisjoint(found)):
            # invariant 2: the transaction wrote these tables; only the database has its rows.
            return "written in this transaction"
        if transaction.in_user_transaction(connection) and reads._sees_a_snapshot(connection):
            return "snapshot isolation"
    by_alias: dict[str, list[str]] = {}
    version_keys: list[str] = []
    for db_alias in sorted(value.deps.tables):
        alias_keys = reads.version_keys_for(db_alias, value.deps.tables[db_alias], fixed=fixed)
        by_alias[db_alias] = alias_keys
        version_keys.extend(k for k in alias_keys if k not in version_keys)
    if keys.GLOBAL_VERSION_KEY not in version_keys:
        version_keys.insert(0, keys.GLOBAL_VERSION_KEY)
    if value.call_key:
        version_keys.append(value.call_key)
    return _Plan(
        value,
        versions.get_cache(),
        version_keys,
        by_alias,
        labels,
        timeout,
        time.perf_counter(),
        fixed=fixed,
    )


def _lookup(plan: _Plan) -> stampede.PollResult:
    """(hit, value, current snapshot): one get_many, two when the entry learned extra reads."""
    key = plan.value.key
    try:
        found = versions.read_many(plan.cache, [key, *plan.version_keys])
    except versions.CacheUnavailable:
        return False, None, None
    current = tuple(found.get(k) for k in plan.version_keys)
    if None in current or key not in found:
        return False, None, None if None in current else current
    entry = storage.load(found[key], key)
    if entry is None or entry[0] != current:
        return False, None, current
    learned, value, *expires = entry[1]  # expires: see _store
    if learned and not _learned_current(plan.cache, learned):
        return False, None, current
    if plan.fixed and not expires:
        return False, None, current  # stored before the model became fixed-lifetime
    plan.learned = learned
    plan.expires = expires[0] if expires else None
    return True, value, current


def _learned_current(cache: Any, learned: tuple[Any, ...]) -> bool:
    expected = {k: token for _alias, _tables, pairs in learned for k, token in pairs}
    try:
        found = versions.read_many(cache, list(expected))
    except versions.CacheUnavailable:
        return False
    return all(found.get(k) == token for k, token in expected.items())


def _still_current(plan: _Plan, snapshot: tuple[Any, ...]) -> bool:
    """For shadow-verify: the versions a hit was served under have not moved since."""
    try:
        found = versions.read_many(plan.cache, plan.version_keys)
    except versions.CacheUnavailable:
        return False
    return tuple(found.get(k) for k in plan.version_keys) == snapshot and _learned_current(
        plan.cache, plan.learned
    )


def _ensure(plan: _Plan, current: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
    """The snapshot to compute under: install tokens for unknown version keys."""
    if current is not None:
        return current
    try:
        found = versions.read_many(plan.cache, plan.version_keys)
        missing = [k for k in plan.version_keys if k not in found]
        call_missing = [k for k in missing if k == plan.value.call_key]
        table_missing = [k for k in missing if k != plan.value.call_key]
        if table_missing:
            found.update(versions.ensure(plan.cache, table_missing))
        for k in call_missing:
            found[k] = _ensure_call_key(plan.cache, k, plan.timeout)
    except versions.CacheUnavailable:
        return None
    return tuple(found[k] for k in plan.version_keys)


def _ensure_call_key(cache: Any, key: str, timeout: int | None) -> Any:
    # Like versions.ensure, but the key expires with the entries it guards, so one
    # key per distinct call does not pile up (a missing key is "unknown": a miss).
    token = versions.new_token()
    try:
        if cache.add(key, token, timeout=_call_key_timeout(timeout)):
            return token
        found = cache.get(key)
    except Exception as exc:
        raise versions.CacheUnavailable from exc
    if found is None:
        raise versions.CacheUnavailable(f"version key {key} vanished")
    return found


def _call_key_timeout(timeout: int | None) -> int | None:
    return None if timeout is None else max(math.ceil(timeout), 1) + 60


def _report(plan: _Plan, snapshot: tuple[Any, ...], outcome: str, learned: Any = ()) -> None:
    """Tell active recorders (the page cache) what the value depends on."""
    if not reads._recorders.get():
        return
    tokens = dict(zip(plan.version_keys, snapshot, strict=True))
    model = plan.value.sender
    expires = plan.expires if outcome == "hit" else _fixed_expiry(plan, time.time())
    for db_alias, alias_keys in plan.by_alias.items():
        versions_read = {k: tokens[k] for k in alias_keys}
        if plan.value.call_key:
            versions_read[plan.value.call_key] = tokens[plan.value.call_key]
        found = frozenset(plan.value.deps.tables[db_alias])
        reads._report(
            reads.ReadEvent(model, db_alias, found, versions_read, outcome, expires=expires)
        )
    for db_alias, found, pairs in learned:
        reads._report(
            reads.ReadEvent(
                model, db_alias, frozenset(found), dict(pairs), outcome, expires=expires
            )
        )


def _report_bypass(value: Value, reason: str) -> None:
    if not reads._recorders.get():
        return
    for db_alias, found in value.deps.tables.items():
        tokens = reads.current_versions(db_alias, found) if not value.deps.uncacheable else None
        reads._report(
            reads.ReadEvent(
                value.sender,
                db_alias,
                frozenset(found) if tokens is not None else None,
                tokens or {},
                "bypass",
                reason,
            )
        )


def _learn(events: list[Any], declared: set[str]) -> tuple[Any, ...] | None:
    """The reads outside the declared dependencies, or None if the value must not be stored."""
    learned: dict[str, tuple[set[str], dict[str, Any]]] = {}
    seen: set[str] = set(declared)
    for event in events:
        if event.outcome == "bypass" and event.reason in _UNSAFE_BYPASSES:
            return None
        if event.tables is None:
            continue  # unknown reads: the declared dependencies are authoritative
        pairs = {
            k: token
            for k, token in event.versions.items()
            # A row-level key of a declared table adds nothing: its table key moves too.
            if k not in seen and keys.table_key_of(k) not in declared
        }
        if not pairs:
            continue
        if not versions.storable(list(pairs.values())):
            return None
        seen.update(pairs)  # the first token seen is the oldest: keep it (invariant 3)
        found, tokens = learned.setdefault(event.db_alias, (set(), {}))
        found.update(event.tables)
        tokens.update(pairs)
    return tuple(
        (db_alias, tuple(sorted(found)), tuple(sorted(tokens.items())))
        for db_alias, (found, tokens) in learned.items()
    )


def _fixed_expiry(plan: _Plan, computed_at: float) -> float | None:
    if not plan.fixed or plan.timeout is None:
        return None
    return computed_at + plan.timeout


def _store(
    plan: _Plan, snapshot: tuple[Any, ...], result: Any, events: list[Any], computed_at: float
) -> None:
    if not versions.storable(snapshot) or _replica_may_lag(plan, snapshot):
        return
    learned = _learn(events, set(plan.version_keys))
    if learned is None:
        return
    started = time.perf_counter()
    value = plan.value
    # A value from fixed-lifetime data (its own policy, or fixed reads it made) expires
    # with the oldest of that data, and says when, for the pages built around it.
    expiries = [event.expires for event in events if event.expires is not None]
    own = _fixed_expiry(plan, computed_at)
    if own is not None:
        expiries.append(own)
    timeout = plan.timeout
    expires = min(expiries) if expiries else None
    if expires is not None:
        remaining = int(expires - time.time())
        if remaining <= 0:
            return
        timeout = remaining if timeout is None else min(timeout, remaining)
    try:
        entry = (learned, result) if expires is None else (learned, result, expires)
        data = storage.dump(snapshot, entry)
        versions.store(plan.cache, value.key, data, timeout)
    except storage.TooLarge as exc:
        logger.info("ormcache: not storing %s %s: %s", value.kind, value.name, exc)
        return
    except versions.CacheUnavailable:
        return
    except Exception as exc:  # unpicklable values
        logger.warning("ormcache: could not store %s %s: %s", value.kind, value.name, exc)
        return
    if signals.cache_stored.receivers:
        signals.cache_stored.send(
            value.sender,
            labels=plan.labels,
            db_alias=next(iter(plan.by_alias), None),
            key=value.key,
            elapsed=time.perf_counter() - started,
            size=len(data),
        )


def _replica_may_lag(plan: _Plan, snapshot: tuple[Any, ...]) -> bool:
    tokens = dict(zip(plan.version_keys, snapshot, strict=True))
    for db_alias, alias_keys in plan.by_alias.items():
        lag = conf.replication_lag(db_alias)
        if lag and any(
            (versions.bumped_at(tokens[k]) or 0) > time.time() - lag for k in alias_keys
        ):
            return True
    return False


def _signal(signal: Any, plan: _Plan) -> None:
    if signal.receivers:
        signal.send(
            plan.value.sender,
            labels=plan.labels,
            db_alias=next(iter(plan.by_alias), None),
            key=plan.value.key,
            elapsed=time.perf_counter() - plan.started,
        )


def _may_lag(plan: _Plan) -> bool:
    """A value from fixed-lifetime data may differ from the database by design:
    shadow-verify mode does not check it."""
    return plan.fixed or plan.expires is not None


def _tables(value: Value) -> dict[str, Any]:
    return {alias: frozenset(found) for alias, found in value.deps.tables.items()}


def get(value: Value, compute: Callable[[], Any]) -> Any:
    """The cached value if it is current, else ``compute()`` (stored for the next reader)."""
    plan = _plan(value)
    if isinstance(plan, str):
        _report_bypass(value, plan)
        return compute()
    hit, cached, current = _lookup(plan)
    if hit:
        assert current is not None  # a hit was compared with the current tokens
        _report(plan, current, "hit", plan.learned)
        _signal(signals.cache_hit, plan)
        if _may_lag(plan):
            return cached
        return verify.check_value(
            cached,
            compute=compute,
            still_current=lambda: _still_current(plan, current),
            kind=value.kind,
            name=value.name,
            model=value.sender,
            key=value.key,
            tables=_tables(value),
            labels=plan.labels,
        )
    # Miss. invariant 3: the snapshot is taken before computing.
    snapshot = _ensure(plan, current)
    if snapshot is None:
        _report_bypass(value, "cache unavailable")
        return compute()
    _report(plan, snapshot, "miss")
    _signal(signals.cache_miss, plan)

    def fill(snapshot: tuple[Any, ...]) -> Any:
        computed_at = time.time()
        with reads.recording() as events:
            result = compute()
        _store(plan, snapshot, result, events, computed_at)
        return result

    return stampede.compute(plan.cache, value.key, snapshot, fill=fill, poll=lambda: _lookup(plan))


async def aget(value: Value, compute: Callable[[], Awaitable[Any]]) -> Any:
    """``get`` for async computations; cache calls run in a worker thread."""
    plan = await sync_to_async(_plan)(value)
    if isinstance(plan, str):
        await sync_to_async(_report_bypass)(value, plan)
        return await compute()
    hit, cached, current = await sync_to_async(_lookup)(plan)
    if hit:
        assert current is not None  # a hit was compared with the current tokens
        _report(plan, current, "hit", plan.learned)
        _signal(signals.cache_hit, plan)
        if _may_lag(plan):
            return cached
        return await verify.acheck_value(
            cached,
            compute=compute,
            still_current=sync_to_async(lambda: _still_current(plan, current)),
            kind=value.kind,
            name=value.name,
            model=value.sender,
            key=value.key,
            tables=_tables(value),
            labels=plan.labels,
        )
    snapshot = await sync_to_async(_ensure)(plan, current)
    if snapshot is None:
        return await compute()
    _report(plan, snapshot, "miss")
    _signal(signals.cache_miss, plan)

    async def fill(snapshot: tuple[Any, ...]) -> Any:
        computed_at = time.time()
        with reads.recording() as events:
            result = await compute()
        await sync_to_async(_store)(plan, snapshot, result, events, computed_at)
        return result

    return await stampede.acompute(
        plan.cache, value.key, snapshot, fill=fill, poll=lambda: _lookup(plan)
    )


def peek(value: Value) -> Any:
    """The cached value if it is current, else ``NOT_CACHED``; never computes."""
    plan = _plan(value)
    if isinstance(plan, str):
        return NOT_CACHED
    hit, cached, _current = _lookup(plan)
    return cached if hit else NOT_CACHED


def invalidate(value: Value) -> bool:
    """Make ``value``'s entry dead by bumping its own version key; False if undelivered."""
    if value.call_key is None:
        raise ValueError("this value has no version key of its own")
    _labels, timeout, _fixed = value.labels_and_timeout()
    cache = versions.get_cache()
    try:
        cache.set(value.call_key, versions.new_token(), timeout=_call_key_timeout(timeout))
    except Exception as exc:
        # invariant 6: a lost bump makes this process invalidate everything before
        # it trusts the cache again.
        logger.warning("ormcache: could not invalidate %s %s: %s", value.kind, value.name, exc)
        health.record_lost_bump(conf.cache_alias(), [value.call_key])
        return False
    return True
