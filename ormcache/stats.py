"""Hit, miss, store and invalidation counts per model, for almost nothing per read.

The counters are receivers of the blinker signals in ``signals.py``, connected
only while ``ORMCACHE["STATS"]`` turns them on (an unobserved signal costs the
read path nothing). A receiver adds one to an in-process dict under a lock; it
never talks to the cache. Every ``flush_interval`` seconds, or after
``flush_every`` events, whichever comes first, the process *flushes*: it adds
its counts to shared counters in ormcache's cache with ``incr`` (atomic on
Redis and Memcached, so every process adds to the same totals) and starts
again from zero. A hit therefore pays a dict update, and one hit in thousands
pays a flush of a few cache calls.

Shared counters, in the cache ormcache uses::

    ormcache:s:<label>:<kind>                 totals, kind in hits/misses/stores/
                                              invalidations/stored_bytes
    ormcache:s:t:<interval>:<bucket>:<kind>   hits and misses per time bucket (the history)
    ormcache:s:w:<interval>:<bucket>:<label>:<kind>
                                              every kind per model and time bucket (the
                                              window the policy advisor reads, advisor.py)

Hits, misses and stores (and the bytes of the stored entries) count for the model
the query was made on (the sender);
an invalidation counts for every model whose table was written, and ``"*"``
for ``invalidate_all()`` and statements that may write anything. The history
keys expire after ``history_length`` buckets, so the cache keeps a rolling
window for the hit-ratio chart of the admin page; the per-model buckets expire
after ``window_length`` buckets of ``window_interval`` seconds.

Stats are approximate by design: counts of a process that dies between two
flushes are lost, and a cache outage drops what could not be flushed after a
few tries. They never slow a read down or fail one (fail open, invariant 6).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.core.signals import request_finished, setting_changed

from . import conf, health, keys, signals, versions

logger = logging.getLogger("ormcache")

HITS, MISSES, STORES, INVALIDATIONS = "hits", "misses", "stores", "invalidations"
#: The size of the stored entries, in bytes (as encoded for the cache).
STORED_BYTES = "stored_bytes"
#: Results not stored: too large (MAX_ENTRY_BYTES/ROWS, memcached's 1 MB) or unencodable.
NOT_STORED = "not_stored"
KINDS = (HITS, MISSES, STORES, INVALIDATIONS, STORED_BYTES, NOT_STORED)
#: The label invalidations of everything are counted under.
EVERYTHING = "*"
#: Options of ``ORMCACHE["STATS"]`` and their defaults.
DEFAULTS: dict[str, Any] = {
    "enabled": False,
    "flush_interval": 10.0,
    "flush_every": 1000,
    "history_interval": 60,
    "history_length": 1440,
    "window_interval": 3600,
    "window_length": 168,
}
_PREFIX = f"{keys.PREFIX}:s"
#: The generation of the shared counters: ``reset()`` starts a new one (one ``set``)
#: instead of deleting tens of thousands of history and window keys.
_EPOCH_KEY = f"{_PREFIX}:epoch"
# Counts that could not be flushed are kept for this many flushes, then dropped,
# so a long cache outage cannot grow the dict without bound.
_MAX_RETRIES = 5


@dataclass(frozen=True)
class ModelStats:
    """The shared totals of one model label."""

    label: str
    hits: int = 0
    misses: int = 0
    stores: int = 0
    invalidations: int = 0
    stored_bytes: int = 0
    not_stored: int = 0

    @property
    def reads(self) -> int:
        return self.hits + self.misses

    @property
    def reuse(self) -> float | None:
        """Hits per stored entry, or None before the first store."""
        return self.hits / self.stores if self.stores else None

    @property
    def average_entry(self) -> int | None:
        """Bytes per stored entry, or None before the first store."""
        return self.stored_bytes // self.stores if self.stores else None

    def as_dict(self) -> dict[str, Any]:
        """The counts for JSON output (``manage.py ormcache stats --json`` and ``advise``)."""
        return {
            "model": self.label,
            "hits": self.hits,
            "misses": self.misses,
            "stores": self.stores,
            "invalidations": self.invalidations,
            "not_stored": self.not_stored,
            "hit_ratio": self.hit_ratio,
        }

    @property
    def hit_ratio(self) -> float | None:
        """Hits over cacheable reads, or None before the first one."""
        return self.hits / self.reads if self.reads else None


@dataclass(frozen=True)
class Sample:
    """Hits and misses of all models during one history bucket."""

    start: float  # seconds since the epoch
    hits: int
    misses: int

    @property
    def hit_ratio(self) -> float | None:
        total = self.hits + self.misses
        return self.hits / total if total else None


# --- options ---------------------------------------------------------------------------


def options() -> dict[str, Any]:
    """``ORMCACHE["STATS"]`` merged over the defaults (``True``/``False`` are shorthands)."""
    raw = conf.get_settings().get("STATS")
    if isinstance(raw, bool):
        raw = {"enabled": raw}
    if not isinstance(raw, dict):
        raw = {}  # an invalid value is left to the checks: stats stay off
    return {**DEFAULTS, **{k: v for k, v in raw.items() if k in DEFAULTS}}


def is_enabled() -> bool:
    return options()["enabled"] is True


def check(raw: Any) -> list[tuple[int, str, str]]:
    """Problems with ``ORMCACHE["STATS"]`` as (code, message, hint); checks.py reports them."""
    if raw is None or isinstance(raw, bool):
        return []
    hint = 'For example {"enabled": True, "flush_interval": 10, "history_interval": 60}.'
    if not isinstance(raw, dict):
        return [(40, "ORMCACHE['STATS'] must be a dict of options, or True/False.", hint)]
    problems = []
    unknown = sorted(set(raw) - set(DEFAULTS), key=str)
    if unknown:
        problems.append(
            (
                40,
                f"Unknown ORMCACHE['STATS'] options: {', '.join(map(repr, unknown))}.",
                f"Allowed options: {', '.join(DEFAULTS)}.",
            )
        )
    if "enabled" in raw and not isinstance(raw["enabled"], bool):
        problems.append(
            (41, f"STATS['enabled'] must be True or False, got {raw['enabled']!r}.", hint)
        )
    interval = raw.get("flush_interval", DEFAULTS["flush_interval"])
    if not _is_number(interval) or interval < 0:
        problems.append(
            (
                42,
                f"STATS['flush_interval'] must be a number of seconds >= 0, got {interval!r}.",
                "0 flushes on every event (for tests); the default, 10, is right for production.",
            )
        )
    for code, name in (
        (43, "flush_every"),
        (44, "history_interval"),
        (45, "history_length"),
        (46, "window_interval"),
        (47, "window_length"),
    ):
        value = raw.get(name, DEFAULTS[name])
        if not _is_int(value) or value < 1:
            problems.append((code, f"STATS[{name!r}] must be an int >= 1, got {value!r}.", hint))
    return problems


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- counting (the hot path) -----------------------------------------------------------

_lock = threading.Lock()
# (who, kind) -> count not yet flushed. ``who`` is the sender model class or a label
# for the totals, ``("t", history_interval, bucket)`` for the history and
# ``("w", window_interval, bucket, sender or label)`` for the per-model window: counts
# are put in the bucket of the moment they happen, not of the flush.
_counts: dict[tuple[Any, str], int] = {}
_retries: dict[tuple[Any, str], int] = {}
_state: dict[str, Any] = {
    "pending": 0,
    "deadline": 0.0,  # time.time() of the next flush
    "flush_every": 1000,
    "flush_interval": 10.0,
    "history_interval": 60,
    "window_interval": 3600,
    "epoch": "0",  # the last generation read from the cache (see _load_epoch)
}


def _add_in_window(who: Any, kind: str, now: float, amount: int = 1) -> None:
    """Add to ``who``'s bucket of the per-model window (call with the lock held)."""
    interval = _state["window_interval"]
    key = (("w", interval, int(now // interval), who), kind)
    _counts[key] = _counts.get(key, 0) + amount


def _count(who: Any, kind: str) -> None:
    now = time.time()
    with _lock:
        key = (who, kind)
        _counts[key] = _counts.get(key, 0) + 1
        interval = _state["history_interval"]
        key = (("t", interval, int(now // interval)), kind)
        _counts[key] = _counts.get(key, 0) + 1
        _add_in_window(who, kind, now)
        _state["pending"] += 1
        due = _state["pending"] >= _state["flush_every"] or now >= _state["deadline"]
    if due:
        flush()


def _on_hit(sender: Any, **kwargs: Any) -> None:
    _count(sender, HITS)


def _on_miss(sender: Any, **kwargs: Any) -> None:
    _count(sender, MISSES)


def _count_per_model(sender: Any, amounts: dict[str, int]) -> None:
    """Add to the model's totals and window only (the hit-ratio history has no use for them)."""
    now = time.time()
    with _lock:
        for kind, amount in amounts.items():
            key = (sender, kind)
            _counts[key] = _counts.get(key, 0) + amount
            _add_in_window(sender, kind, now, amount)
        _state["pending"] += 1
        due = _state["pending"] >= _state["flush_every"] or now >= _state["deadline"]
    if due:
        flush()


def _on_stored(sender: Any, size: int = 0, **kwargs: Any) -> None:
    _count_per_model(sender, {STORES: 1, STORED_BYTES: size} if size else {STORES: 1})


def _on_not_stored(sender: Any, **kwargs: Any) -> None:
    _count_per_model(sender, {NOT_STORED: 1})


def _on_invalidated(
    sender: Any, labels: Iterable[str] = (), pending: bool = False, **kwargs: Any
) -> None:
    if pending:
        return  # the provisional bump of a write; its final bump is the one counted
    now = time.time()
    with _lock:
        for label in labels:
            key = (label, INVALIDATIONS)
            _counts[key] = _counts.get(key, 0) + 1
            _add_in_window(label, INVALIDATIONS, now)
        _state["pending"] += 1
        due = _state["pending"] >= _state["flush_every"] or now >= _state["deadline"]
    if due:
        flush()


def _on_request_finished(sender: Any, **kwargs: Any) -> None:
    """A quiet process still flushes once its interval has passed."""
    if _counts and time.time() >= _state["deadline"]:
        flush()


_RECEIVERS = (
    (signals.cache_hit, _on_hit),
    (signals.cache_miss, _on_miss),
    (signals.cache_stored, _on_stored),
    (signals.not_stored, _on_not_stored),
    (signals.invalidated, _on_invalidated),
)


def sync() -> None:
    """Connect the counters when stats are on, disconnect them when off (idempotent)."""
    current = options()
    enabled = current["enabled"] is True
    with _lock:
        _state["flush_every"] = current["flush_every"] if _is_int(current["flush_every"]) else 1000
        interval = current["flush_interval"]
        _state["flush_interval"] = float(interval) if _is_number(interval) else 10.0
        _state["deadline"] = time.time() + _state["flush_interval"]
        history = current["history_interval"]
        _state["history_interval"] = history if _is_int(history) and history > 0 else 60
        window = current["window_interval"]
        _state["window_interval"] = window if _is_int(window) and window > 0 else 3600
    for signal, receiver in _RECEIVERS:
        if enabled:
            signal.connect(receiver, weak=False)
        else:
            signal.disconnect(receiver)
    if enabled:
        request_finished.connect(_on_request_finished, dispatch_uid="ormcache.stats")
    else:
        request_finished.disconnect(dispatch_uid="ormcache.stats")


def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("ORMCACHE", "CACHES"):
        sync()


setting_changed.connect(_settings_changed, dispatch_uid="ormcache.stats")


# --- flushing --------------------------------------------------------------------------


def _label(who: Any) -> str:
    if isinstance(who, str):
        return who
    meta = getattr(who, "_meta", None)
    return meta.label_lower if meta is not None else EVERYTHING


def _load_epoch() -> str:
    """Read the counters' generation (installing one when missing); on a cache error
    keep the last one read. Every flush and every read calls it once."""
    try:
        cache = versions.get_cache()
        epoch = cache.get(_EPOCH_KEY)
        if epoch is None:
            fresh = secrets.token_hex(4)
            # Another process may have installed one first: then theirs counts.
            added = cache.add(_EPOCH_KEY, fresh, timeout=None)
            epoch = fresh if added else (cache.get(_EPOCH_KEY) or fresh)
        _state["epoch"] = str(epoch)
    except Exception as exc:
        logger.warning("ormcache: could not read the stats generation: %s", exc)
    return _state["epoch"]


def total_key(label: str, kind: str) -> str:
    return f"{_PREFIX}:{_state['epoch']}:{label}:{kind}"


def _history_key(interval: int, bucket: int, kind: str) -> str:
    return f"{_PREFIX}:{_state['epoch']}:t:{interval}:{bucket}:{kind}"


def _window_key(interval: int, bucket: int, label: str, kind: str) -> str:
    return f"{_PREFIX}:{_state['epoch']}:w:{interval}:{bucket}:{label}:{kind}"


def _lengths() -> tuple[int, int]:
    """(history_length, window_length), valid or their defaults."""
    current = options()
    history, window = (
        current[name] if _is_int(current[name]) and current[name] > 0 else DEFAULTS[name]
        for name in ("history_length", "window_length")
    )
    return history, window


def flush() -> bool:
    """Add this process's counts to the shared counters; False if some had to wait."""
    with _lock:
        counts = dict(_counts)
        _counts.clear()
        _state["pending"] = 0
        _state["deadline"] = time.time() + _state["flush_interval"]
    if not counts:
        return True
    if health.available(conf.cache_alias()):
        _load_epoch()
    length, window_length = _lengths()
    deltas: dict[str, int] = {}
    timeouts: dict[str, int | None] = {}
    origins: dict[str, list[tuple[Any, str]]] = {}
    for (who, kind), count in counts.items():
        if type(who) is tuple and who[0] == "t":  # ("t", interval, bucket): the history
            key = _history_key(who[1], who[2], kind)
            timeouts[key] = who[1] * (length + 1)
        elif type(who) is tuple:  # ("w", interval, bucket, who): the per-model window
            key = _window_key(who[1], who[2], _label(who[3]), kind)
            timeouts[key] = who[1] * (window_length + 1)
        else:
            key = total_key(_label(who), kind)
            timeouts[key] = None
        deltas[key] = deltas.get(key, 0) + count
        origins.setdefault(key, []).append((who, kind))

    alias = conf.cache_alias()
    done: set[str] = set()
    try:
        if not health.available(alias):
            raise versions.CacheUnavailable("circuit breaker open")
        cache = versions.get_cache()
        for key, delta in deltas.items():
            _add(cache, key, delta, timeouts[key])
            done.add(key)
    except Exception as exc:
        logger.warning("ormcache: could not flush stats, keeping them for later: %s", exc)
        _keep(counts, [origin for key in deltas if key not in done for origin in origins[key]])
        return False
    with _lock:
        for origin in counts:
            _retries.pop(origin, None)
    return True


def _add(cache: Any, key: str, delta: int, timeout: int | None) -> None:
    """``incr`` that creates the counter when it does not exist yet (or was evicted)."""
    try:
        cache.incr(key, delta)
    except ValueError:  # missing key
        if not cache.add(key, delta, timeout=timeout):
            cache.incr(key, delta)  # another process created it first


def _keep(counts: dict[tuple[Any, str], int], origins: list[tuple[Any, str]]) -> None:
    """Put counts that were not flushed back, unless they already waited too long."""
    with _lock:
        for origin in origins:
            tries = _retries.get(origin, 0) + 1
            if tries > _MAX_RETRIES:
                _retries.pop(origin, None)
                continue
            _retries[origin] = tries
            _counts[origin] = _counts.get(origin, 0) + counts[origin]
            _state["pending"] += counts[origin]


def local_counts() -> dict[tuple[str, str], int]:
    """This process's counts that are not flushed yet, as ``{(label, kind): count}``."""
    with _lock:
        items = list(_counts.items())
    found: dict[tuple[str, str], int] = {}
    for (who, kind), count in items:
        if type(who) is tuple:
            continue  # history
        key = (_label(who), kind)
        found[key] = found.get(key, 0) + count
    return found


@atexit.register
def _flush_at_exit() -> None:
    if _counts:
        # The interpreter is going away: never fail its exit.
        with contextlib.suppress(Exception):
            flush()


# --- reading ---------------------------------------------------------------------------


def known_labels() -> list[str]:
    """Every installed model's label, and ``"*"``: the labels counters may exist for."""
    from django.apps import apps

    labels = {model._meta.label_lower for model in apps.get_models(include_auto_created=True)}
    labels.update(label for label, _kind in local_counts())
    return sorted(labels | {EVERYTHING})


def read(labels: Iterable[str] | None = None) -> dict[str, ModelStats]:
    """The shared totals per label (only labels with a count), flushing this process first.

    Other processes flush within ``flush_interval``, so their latest counts may be
    missing from what this returns.
    """
    flush()
    _load_epoch()
    wanted = list(labels) if labels is not None else known_labels()
    return _read_counts(
        {total_key(label, kind): (label, kind) for label in wanted for kind in KINDS}
    )


def _read_counts(cache_keys: dict[str, tuple[str, str]]) -> dict[str, ModelStats]:
    """Read counters (key -> (label, kind)) and add them up per label; {} if unavailable."""
    names = list(cache_keys)
    found: dict[str, Any] = {}
    try:
        for start in range(0, len(names), 1000):
            found.update(versions.read_many(versions.get_cache(), names[start : start + 1000]))
    except versions.CacheUnavailable:
        return {}
    values: dict[str, dict[str, int]] = {}
    for key, value in found.items():
        if key in cache_keys and isinstance(value, int):
            label, kind = cache_keys[key]
            per_label = values.setdefault(label, {})
            per_label[kind] = per_label.get(kind, 0) + value
    return {label: ModelStats(label, **values[label]) for label in sorted(values)}


def totals(per_model: dict[str, ModelStats]) -> ModelStats:
    """All models added up (invalidations of everything counted once)."""
    return ModelStats(
        "total",
        hits=sum(s.hits for s in per_model.values()),
        misses=sum(s.misses for s in per_model.values()),
        stores=sum(s.stores for s in per_model.values()),
        invalidations=sum(s.invalidations for s in per_model.values()),
        not_stored=sum(s.not_stored for s in per_model.values()),
    )


def history(samples: int | None = None) -> list[Sample]:
    """Hits and misses per history bucket, oldest first, the current bucket last."""
    flush()
    current = options()
    interval = current["history_interval"] if _is_int(current["history_interval"]) else 60
    length = current["history_length"] if _is_int(current["history_length"]) else 1440
    count = min(samples or length, length)
    _load_epoch()
    now = int(time.time() // interval)
    buckets = list(range(now - count + 1, now + 1))
    cache_keys = [_history_key(interval, b, kind) for b in buckets for kind in (HITS, MISSES)]
    try:
        found = versions.read_many(versions.get_cache(), cache_keys)
    except versions.CacheUnavailable:
        found = {}

    def value(bucket: int, kind: str) -> int:
        got = found.get(_history_key(interval, bucket, kind))
        return got if isinstance(got, int) else 0

    return [Sample(b * interval, value(b, HITS), value(b, MISSES)) for b in buckets]


def window(seconds: float, labels: Iterable[str] | None = None) -> dict[str, ModelStats]:
    """Each label's counts over the last ``seconds`` (whole buckets of ``window_interval``),
    flushing this process first; only labels with a count."""
    flush()
    _load_epoch()
    interval = _state["window_interval"]
    _history_length, window_length = _lengths()
    now = int(time.time() // interval)
    count = min(max(1, -(-int(seconds) // interval)), window_length)
    buckets = range(now - count + 1, now + 1)
    wanted = list(labels) if labels is not None else known_labels()
    return _read_counts(
        {
            _window_key(interval, bucket, label, kind): (label, kind)
            for label in wanted
            for kind in KINDS
            for bucket in buckets
        }
    )


def reset() -> None:
    """Forget every count: this process's and the shared ones (totals, history, window).

    The shared counters start a new generation; the old keys are never read again and
    expire (history and window) or stay as a few dozen orphans (totals).
    """
    with _lock:
        _counts.clear()
        _retries.clear()
        _state["pending"] = 0
    try:
        fresh = secrets.token_hex(4)
        versions.get_cache().set(_EPOCH_KEY, fresh, timeout=None)
        _state["epoch"] = fresh
    except Exception as exc:
        logger.warning("ormcache: could not reset stats: %s", exc)
