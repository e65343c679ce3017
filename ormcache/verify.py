"""Shadow-verify mode: prove, on real traffic or a test suite, that the cache changes no result.

``ORMCACHE["VERIFY"]`` is ``"off"`` (default), ``"log"`` or ``"raise"``. With
``"log"`` or ``"raise"`` every cache hit also asks the database: a query hit runs
its SQL, a helper hit (``cached_as``, ``cached_property``, a template fragment)
computes its value again. If the two differ:

- the ``stale_detected`` signal is sent with the query (or helper), its
  dependencies, and both values;
- an error is logged on the ``ormcache`` logger;
- ``"raise"`` raises ``StaleCacheError`` (meant for test suites); ``"log"``
  serves what the database said.

Since a hit runs the same query a miss would, a test suite's
``assertNumQueries`` counts are the same as without ormcache, so a project can
run its own tests in ``"raise"`` mode to show that ormcache changes nothing.

A difference is only reported when it is not explained by a write that
committed while the hit was being checked: before reporting, the versions the
hit was served under are read again, and if they moved the database simply
moved on. Rows that differ only in order are not reported either (a query
without a total ORDER BY may return ties in any order).
"""

from __future__ import annotations

import contextvars
import logging
import pickle
import time
from collections.abc import Callable
from typing import Any

from django.db.models import Model

from . import conf, signals

logger = logging.getLogger("ormcache")


class StaleCacheError(AssertionError):
    """Shadow-verify mode ``"raise"``: a cache hit differs from what the database says."""


#: True while a hit is being checked against the database, so SQL watchers (and test
#: helpers counting "a hit runs no SQL") can tell the check apart from the read.
shadowing: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "ormcache_verify_shadowing", default=False
)


def _shadow(run: Callable[[], Any]) -> Any:
    token = shadowing.set(True)
    try:
        return run()
    finally:
        shadowing.reset(token)


def enabled() -> bool:
    return conf.verify_mode() != "off"


def check_hit(
    cached: Any,
    *,
    run: Callable[[], Any],
    still_current: Callable[[], bool],
    model: Any,
    db_alias: str,
    key: str,
    sql: str,
    params: Any,
    tables: Any,
    labels: tuple[str, ...] = (),
) -> Any:
    """The rows to serve for a query hit: ``cached``, checked against ``run()`` when verifying."""
    mode = conf.verify_mode()
    if mode == "off":
        return cached
    started = time.perf_counter()
    fresh = _shadow(run)
    if same_rows(cached, fresh) or not still_current():
        return fresh
    _report(
        mode,
        model,
        kind="query",
        name=None,
        labels=labels,
        db_alias=db_alias,
        key=key,
        sql=sql,
        params=params,
        tables={db_alias: tuple(sorted(tables))},
        cached=cached,
        fresh=fresh,
        elapsed=time.perf_counter() - started,
    )
    return fresh


def check_value(
    cached: Any,
    *,
    compute: Callable[[], Any],
    still_current: Callable[[], bool],
    kind: str,
    name: str,
    model: Any,
    key: str,
    tables: dict[str, Any],
    labels: tuple[str, ...] = (),
) -> Any:
    """The value to serve for a helper hit: ``cached``, checked against ``compute()``."""
    mode = conf.verify_mode()
    if mode == "off":
        return cached
    started = time.perf_counter()
    fresh = _shadow(compute)
    if same_value(cached, fresh) or not still_current():
        return fresh
    _report_value(mode, model, kind, name, labels, key, tables, cached, fresh, started)
    return fresh


async def acheck_value(
    cached: Any,
    *,
    compute: Callable[[], Any],
    still_current: Callable[[], Any],
    kind: str,
    name: str,
    model: Any,
    key: str,
    tables: dict[str, Any],
    labels: tuple[str, ...] = (),
) -> Any:
    """``check_value`` for async helpers: ``compute`` and ``still_current`` are awaited."""
    mode = conf.verify_mode()
    if mode == "off":
        return cached
    started = time.perf_counter()
    token = shadowing.set(True)
    try:
        fresh = await compute()
    finally:
        shadowing.reset(token)
    if same_value(cached, fresh) or not await still_current():
        return fresh
    _report_value(mode, model, kind, name, labels, key, tables, cached, fresh, started)
    return fresh


def _report_value(
    mode: str,
    model: Any,
    kind: str,
    name: str,
    labels: tuple[str, ...],
    key: str,
    tables: dict[str, Any],
    cached: Any,
    fresh: Any,
    started: float,
) -> None:
    """Report a helper value (not a query) whose cached copy differs from a fresh one."""
    _report(
        mode,
        model,
        kind=kind,
        name=name,
        labels=labels,
        db_alias=next(iter(tables), None),
        key=key,
        sql=None,
        params=None,
        tables={alias: tuple(sorted(found)) for alias, found in tables.items()},
        cached=cached,
        fresh=fresh,
        elapsed=time.perf_counter() - started,
    )


def _report(mode: str, sender: Any, **details: Any) -> None:
    signals.stale_detected.send(sender, **details)
    what = details["sql"] or f"{details['kind']} {details['name']}"
    message = (
        f"ormcache: stale cache entry {details['key']} for {what} "
        f"(depends on {details['tables']}): the cache held {_short(details['cached'])}, "
        f"the database says {_short(details['fresh'])}"
    )
    logger.error(message)
    if mode == "raise":
        raise StaleCacheError(message)


def _short(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


# --- comparing ----------------------------------------------------------------------


def same_rows(cached: Any, fresh: Any) -> bool:
    """Equal query results, or the same rows in another order."""
    if _equal(cached, fresh):
        return True
    cached_rows, fresh_rows = _flat_rows(cached), _flat_rows(fresh)
    if cached_rows is None or fresh_rows is None or len(cached_rows) != len(fresh_rows):
        return False
    return sorted(map(repr, cached_rows)) == sorted(map(repr, fresh_rows))


def _flat_rows(result: Any) -> list[Any] | None:
    """MULTI results are a list of chunks of rows; anything else is not reordered."""
    if not isinstance(result, list):
        return None
    rows: list[Any] = []
    for chunk in result:
        if isinstance(chunk, list):
            rows.extend(chunk)
        else:
            rows.append(chunk)
    return rows


def same_value(cached: Any, fresh: Any) -> bool:
    """Equal helper values; model instances compare by their field values, not just pk."""
    return _equal(comparable(cached), comparable(fresh))


def comparable(value: Any) -> Any:
    """``value`` with model instances replaced by (label, field values), recursively."""
    if isinstance(value, Model):
        fields = {
            field.attname: value.__dict__[field.attname]
            for field in value._meta.concrete_fields
            if field.attname in value.__dict__
        }
        return ("<model>", value._meta.label_lower, fields)
    if isinstance(value, (list, tuple)):
        return [comparable(item) for item in value]
    if isinstance(value, dict):
        return {key: comparable(item) for key, item in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(map(repr, (comparable(item) for item in value)))
    return value


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # values whose == is not a plain bool (arrays...)
        try:
            return pickle.dumps(a) == pickle.dumps(b)
        except Exception:
            return False
