"""The listener: bumps table versions from the NOTIFYs of ormcache's triggers.

Run it beside the application (``manage.py ormcache listen``), or as a thread in a
process of your choice (``ORMCACHE["TRIGGERS"]["listen"] = True`` starts one per
process at start-up). For each database in ``ORMCACHE["TRIGGERS"]["databases"]`` it
holds one PostgreSQL connection that ``LISTEN``s on the channel, and for every batch
of notifications (the tables written by transactions that just committed) it bumps
those tables' versions in one ``set_many``.

The window: between a commit and the bump, a reader can still be served the entry
from before the write. It is the NOTIFY delivery plus one cache round trip
(``benchmarks/notify_window.py`` measures it; docs/scaling.md has the numbers).

invariant 6 (lose no invalidation): a notification sent while the listener was not
listening is lost, so each time it (re)connects and has issued ``LISTEN``, it bumps
the global version: whatever was written meanwhile is invalidated. A bump the cache
refused is remembered (health.py) and resynced before the next batch.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import connections

from . import conf, health, invalidation, triggers, versions

logger = logging.getLogger("ormcache")

#: Seconds between checks of the stop flag while no notification arrives.
POLL_INTERVAL = 0.5
#: Seconds to wait before reconnecting after the database connection failed.
RECONNECT_DELAY = 1.0


def _connect(db_alias: str) -> Any:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - psycopg2-only installs
        raise ImproperlyConfigured("The ormcache listener needs psycopg (3.2 or later).") from exc
    if not hasattr(psycopg.Connection, "notifies"):  # pragma: no cover
        raise ImproperlyConfigured("The ormcache listener needs psycopg 3.2 or later.")
    params = connections[db_alias].get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**params, autocommit=True)


class Listener:
    """LISTEN on one database's channel and bump what the notifications name."""

    def __init__(
        self, db_alias: str, *, channel: str | None = None, poll_interval: float = POLL_INTERVAL
    ) -> None:
        self.db_alias = db_alias
        self.poll_interval = poll_interval
        self.channel = channel or triggers.options().get("channel") or "ormcache"
        self.stop = threading.Event()
        self.listening = threading.Event()
        self.batches = 0

    def run(self) -> None:
        """Listen until ``stop`` is set, reconnecting after failures."""
        while not self.stop.is_set():
            try:
                self._listen()
            except Exception as exc:
                self.listening.clear()
                logger.warning(
                    "ormcache: the listener of %r lost its connection (%s); reconnecting",
                    self.db_alias,
                    exc,
                )
                self.stop.wait(RECONNECT_DELAY)

    def _listen(self) -> None:
        connection = _connect(self.db_alias)
        try:
            quoted = connections[self.db_alias].ops.quote_name(self.channel)
            connection.execute(f"LISTEN {quoted}")
            # invariant 6: writes while nobody listened are unknown: invalidate everything.
            invalidation.invalidate_everything()
            self.listening.set()
            logger.info("ormcache: listening on %r of %r", self.channel, self.db_alias)
            while not self.stop.is_set():
                tables = {
                    note.payload
                    for note in connection.notifies(timeout=self.poll_interval, stop_after=1)
                }
                if not tables:
                    continue
                # Whatever else has arrived already goes into the same bump.
                tables.update(note.payload for note in connection.notifies(timeout=0))
                self.bump(tables)
        finally:
            self.listening.clear()
            connection.close()

    def bump(self, tables: set[str]) -> None:
        _resync_lost_bumps()
        invalidation.bump_tables(self.db_alias, frozenset(tables))
        self.batches += 1


def _resync_lost_bumps() -> None:
    """A bump the cache refused earlier is redelivered (with the global one) first."""
    if health.lost_bumps(conf.cache_alias()):
        # read_many resyncs (invariant 6) before it reads; nothing else is read here.
        with contextlib.suppress(versions.CacheUnavailable):
            versions.read_many(versions.get_cache(), [])


def listeners() -> list[Listener]:
    """One listener per database named in ORMCACHE["TRIGGERS"]["databases"]."""
    return [Listener(alias) for alias in triggers.options().get("databases", [])]


_running: list[Listener] = []


def stop_all() -> None:
    """Stop every listener this process runs (``run_forever`` then returns)."""
    for each in (*_running, *_started):
        each.stop.set()


def run_forever(
    db_aliases: list[str], *, ready: Callable[[list[Listener]], None] | None = None
) -> list[Listener]:
    """Run a listener per database in threads until interrupted or ``stop_all()``
    (``manage.py ormcache listen``); returns them after they stopped."""
    running = [Listener(alias) for alias in db_aliases]
    _running.extend(running)
    threads = [threading.Thread(target=each.run, daemon=True) for each in running]
    for thread in threads:
        thread.start()
    if ready is not None:
        ready(running)
    try:
        while any(thread.is_alive() for thread in threads):
            time.sleep(POLL_INTERVAL)
    except KeyboardInterrupt:
        pass
    finally:
        for each in running:
            each.stop.set()
        for thread in threads:
            thread.join(5)
        for each in running:
            _running.remove(each)
    return running


_started: list[Listener] = []


def start_in_process() -> list[Listener]:
    """Start listener threads for this process when ORMCACHE["TRIGGERS"]["listen"] is on."""
    if _started or not triggers.options().get("listen"):
        return _started
    for each in listeners():
        threading.Thread(
            target=each.run, daemon=True, name=f"ormcache-listen-{each.db_alias}"
        ).start()
        _started.append(each)
    return _started
