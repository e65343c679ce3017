"""Purges: when a table's version is bumped, tell the downstream caches.

Shared pages carry a surrogate key per table they read (``downstream.py``).
After every committed bump, the keys of the bumped tables go into this process's
purge queue; a background thread sends them, batched, to every purger in
``ORMCACHE["DOWNSTREAM"]["purgers"]`` and to receivers of the
``ormcache.signals.purge_requested`` signal (for CDN APIs). So a request never
waits for a proxy, and a proxy that is down costs a logged warning, not an error.

Bounded: at most ``max_pending`` keys wait; beyond that the queue collapses into
one purge of the key every shared page carries (everything), so an overflow
costs hit ratio downstream, never freshness.

Why a second purge (``repurge_after``): a proxy can fetch a page just before a
commit and receive it just after the purge; it would keep those old rows until
``s-maxage``. Purging the same keys again a little later removes such pages;
docs/downstream.md has the whole timeline.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from typing import Any

from django.core.signals import setting_changed

from . import conf, downstream, keys, signals

logger = logging.getLogger("ormcache")

_FLUSH_AT_EXIT_SECONDS = 5.0
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~\w-]+")


class PurgeError(Exception):
    """A purger could not deliver a purge (the queue logs it and retries)."""


class Purger:
    """What a purger does: remove every downstream object tagged with one of ``keys``.

    Subclass it, or give any class with this method in ``purgers``
    (``{"class": "dotted.path", **options}``: the options are its keyword arguments).
    ``purge`` runs in the purge thread; it raises to report a failure.
    """

    batch_size = 100

    def purge(self, surrogate_keys: Sequence[str]) -> None:
        raise NotImplementedError


class HTTPPurger(Purger):
    """Send ``PURGE`` (or ``BAN``...) requests naming the keys in a header, to each URL.

    The default fits the Varnish recipe (docs/downstream.md): ``PURGE /`` with the keys
    space-separated in ``xkey-purge``. Any 2xx answer is a success.
    """

    def __init__(
        self,
        urls: Sequence[str],
        method: str = "PURGE",
        key_header: str = "xkey-purge",
        headers: dict[str, str] | None = None,
        timeout: float = 2.0,
        batch_size: int = 100,
    ) -> None:
        if isinstance(urls, str) or not urls:
            raise ValueError(f"urls must be a non-empty list of http(s) URLs, got {urls!r}")
        for url in urls:
            if not (isinstance(url, str) and url.startswith(("http://", "https://"))):
                raise ValueError(f"{url!r} is not an http(s) URL")
        for name, value in (("method", method), ("key_header", key_header)):
            if not (isinstance(value, str) and _TOKEN.fullmatch(value)):
                raise ValueError(f"{name} must be an HTTP token, got {value!r}")
        self.urls = list(urls)
        self.method = method
        self.key_header = key_header
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.batch_size = batch_size

    def purge(self, surrogate_keys: Sequence[str]) -> None:
        failed = []
        for url in self.urls:
            request = urllib.request.Request(
                url,
                method=self.method,
                headers={**self.headers, self.key_header: " ".join(surrogate_keys)},
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    response.read()
            except urllib.error.HTTPError as exc:
                failed.append(f"{url}: HTTP {exc.code}")
            except (OSError, ValueError) as exc:
                failed.append(f"{url}: {exc}")
        if failed:
            raise PurgeError("; ".join(failed))

    def __repr__(self) -> str:
        return f"HTTPPurger({self.method} {', '.join(self.urls)})"


class PurgeQueue:
    """Keys waiting to be purged, and the daemon thread that sends them."""

    def __init__(
        self,
        purgers: Sequence[Any],
        *,
        delay: float,
        repurge_after: float | None,
        max_pending: int,
        retries: int,
        everything_key: str,
    ) -> None:
        self.purgers = list(purgers)
        self.delay = delay
        self.repurge_after = repurge_after
        self.max_pending = max_pending
        self.retries = retries
        self.everything_key = everything_key
        self._cond = threading.Condition()
        #: key -> monotonic time it is due; first purges and the repurges after them.
        self._due: dict[str, float] = {}
        self._repurge: dict[str, float] = {}
        self._sending = False
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._closed = False
        #: Counters since the queue started: keys sent, failed batches, overflows.
        self.sent = 0
        self.failures = 0
        self.overflows = 0

    def add(self, surrogate_keys: Iterable[str]) -> None:
        due = time.monotonic() + self.delay
        with self._cond:
            for key in surrogate_keys:
                self._repurge.pop(key, None)  # the new purge brings its own repurge
                self._due.setdefault(key, due)
            if len(self._due) + len(self._repurge) > self.max_pending:
                self.overflows += 1
                self._due = {self.everything_key: due}
                self._repurge.clear()
            self._ensure_thread()
            self._cond.notify()

    def flush(self, timeout: float = 5.0, *, repurges: bool = False) -> bool:
        """Send what is waiting now; True once nothing is left (or in flight)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            now = time.monotonic()
            for waiting in (self._due, self._repurge) if repurges else (self._due,):
                for key in waiting:
                    waiting[key] = now
            self._cond.notify()
            while self._due or self._sending or (repurges and self._repurge):
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _ensure_thread(self) -> None:
        # A forked worker (gunicorn --preload) inherits the queue but not the thread.
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="ormcache-purge", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                batch = self._take_due()
                while not batch:
                    if self._closed:
                        return
                    self._cond.wait(self._wait_time())
                    batch = self._take_due()
                self._sending = True
            try:
                self._send(batch)
            finally:
                with self._cond:
                    self._sending = False
                    if self.repurge_after is not None:
                        again = time.monotonic() + self.repurge_after
                        for key in batch["first"]:
                            if key not in self._due:
                                self._repurge[key] = again
                    self._cond.notify_all()

    def _take_due(self) -> dict[str, list[str]]:
        now = time.monotonic()
        batch: dict[str, list[str]] = {}
        # Once the oldest first purge is due, every first purge waiting goes with it:
        # sooner than its own time, never later, and in one request.
        first_due = any(due <= now for due in self._due.values())
        for name, waiting in (("first", self._due), ("again", self._repurge)):
            take_all = name == "first" and first_due
            ready = sorted(key for key, due in waiting.items() if take_all or due <= now)
            for key in ready:
                del waiting[key]
            if ready:
                batch[name] = ready
        if batch:
            batch.setdefault("first", [])
        return batch

    def _wait_time(self) -> float | None:
        pending = [*self._due.values(), *self._repurge.values()]
        if not pending:
            return None
        return max(0.0, min(pending) - time.monotonic())

    def _send(self, batch: dict[str, list[str]]) -> None:
        surrogate_keys = sorted({*batch["first"], *batch.get("again", ())})
        if signals.purge_requested.receivers:
            try:
                signals.purge_requested.send(None, keys=tuple(surrogate_keys))
            except Exception:
                logger.exception("ormcache: a purge_requested receiver failed")
        for purger in self.purgers:
            size = max(1, int(getattr(purger, "batch_size", 100) or 100))
            for start in range(0, len(surrogate_keys), size):
                self._deliver(purger, surrogate_keys[start : start + size])

    def _deliver(self, purger: Any, chunk: list[str]) -> None:
        started = time.perf_counter()
        error: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                purger.purge(chunk)
                error = None
                break
            except Exception as exc:  # a purger must never take the thread down
                error = exc
                if attempt < self.retries:
                    time.sleep(min(0.1 * 2**attempt, 1.0))
        if error is None:
            self.sent += len(chunk)
        else:
            self.failures += 1
            logger.warning("ormcache: purge of %d keys by %r failed: %s", len(chunk), purger, error)
        if signals.purged.receivers:
            signals.purged.send(
                purger,
                keys=tuple(chunk),
                ok=error is None,
                error=error,
                elapsed=time.perf_counter() - started,
            )


# --- the process's queue, built from the settings ---------------------------------------

_queue_memo: list[Any] = [None, None]
_memo_lock = threading.Lock()


def queue() -> PurgeQueue | None:
    """This process's purge queue, or None when nothing downstream wants purges."""
    source = conf.get_settings()
    if _queue_memo[0] is not source:
        with _memo_lock:
            if _queue_memo[0] is not source:
                old = _queue_memo[1]
                _queue_memo[:] = [source, _build_queue(conf.downstream_options())]
                if old is not None:
                    old.close()
    return _queue_memo[1]


def _build_queue(raw: dict[str, Any]) -> PurgeQueue | None:
    if raw["enabled"] is not True:
        return None
    return PurgeQueue(
        [build_purger(entry) for entry in raw["purgers"] or ()],
        delay=float(raw["purge_delay"]),
        repurge_after=None if raw["repurge_after"] is None else float(raw["repurge_after"]),
        max_pending=int(raw["max_pending"]),
        retries=int(raw["retries"]),
        everything_key=downstream.options().everything_key,
    )


def build_purger(entry: dict[str, Any]) -> Any:
    """``{"class": "dotted.path.Class", **options}`` -> an instance (raises on bad input)."""
    options = dict(entry)
    path = options.pop("class", f"{__name__}.HTTPPurger")
    module_name, _, class_name = path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**options)


def _forget(*, setting: str, **kwargs: Any) -> None:
    if setting == "ORMCACHE":
        with _memo_lock:
            old = _queue_memo[1]
            _queue_memo[:] = [None, None]
        if old is not None:
            old.flush(timeout=1.0)
            old.close()


setting_changed.connect(_forget, dispatch_uid="ormcache.purge")


def _listening() -> PurgeQueue | None:
    """The queue, when some purger or ``purge_requested`` receiver wants purges."""
    found = queue()
    if found is None or not (found.purgers or signals.purge_requested.receivers):
        return None
    return found


def tables_bumped(db_alias: str | None, tables: Iterable[str]) -> None:
    """Called after every committed bump (``{"*"}``: everything)."""
    found = _listening()
    if found is None:
        return
    tables = list(tables)
    if db_alias is None or "*" in tables:
        found.add([found.everything_key])
        return
    _add_surrogates(found, keys.version_keys(conf.versions_alias(db_alias), tables))


def keys_bumped(version_keys: Iterable[str]) -> None:
    """Purge the pages tagged with these version keys (committed bumps only)."""
    found = _listening()
    if found is not None:
        _add_surrogates(found, version_keys)


def _add_surrogates(found: PurgeQueue, version_keys: Iterable[str]) -> None:
    found.add(key for key in map(downstream.surrogate_key, version_keys) if key)


def flush(timeout: float = 5.0, *, repurges: bool = False) -> bool:
    """Send every waiting purge now and wait for it (tests, scripts, shutdown)."""
    found = _queue_memo[1]
    return True if found is None else found.flush(timeout, repurges=repurges)


@atexit.register
def _flush_at_exit() -> None:
    # A management command or script that wrote must purge before the process ends.
    flush(_FLUSH_AT_EXIT_SECONDS)
