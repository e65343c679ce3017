"""The write path: every statement that writes a table bumps that table's version.

One execute wrapper on every database connection sees every statement Django
sends, from the ORM or from ``connection.cursor()``. After a write statement it
bumps the versions of the tables the statement wrote (plus the tables the
database writes by itself through ``DB_CASCADE``-style foreign keys).

invariant 1 (never stale after commit): in autocommit a write statement
commits as it runs, before the wrapper regains control. So the tables are set to
a *pending* version before the statement runs (no entry can match it and nothing
is stored under it) and to a new normal version after it: a read that starts
after the commit can never hit an entry from before it, not even in the instant
between the commit and the bump.

Inside a transaction the bump after the statement is a pending one (readers stop
trusting entries made before the write, and store nothing of the table until the
end), and the tables get normal versions again at commit, in ``on_commit``
(invariant 3: a reader that filled the cache with pre-commit rows wrote them
under a version that the commit bump kills).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from django.db import connections

from . import (
    conf,
    keys,
    purge,
    reads,
    row_statements,
    rows,
    signals,
    statements,
    tables,
    transaction,
    versions,
)

logger = logging.getLogger("ormcache")


def watch_writes(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    """The execute wrapper installed on every connection (see apps.py)."""
    connection = context["connection"]
    transaction.settle(connection)
    written = statements.tables_written(sql) if isinstance(sql, str) else statements.EVERYTHING
    if not written:
        reads.note_statement(connection, sql)  # SET TRANSACTION ISOLATION LEVEL ...
        return execute(sql, params, many, context)
    marks = _marks(sql, params, many, written)
    if not transaction.in_user_transaction(connection):
        # Autocommit: the statement commits before we regain control.
        bump_tables(
            connection.alias,
            rows.tables_of(marks),
            marks,
            pending=versions.STATEMENT_PENDING_TIMEOUT,
        )
    try:
        return execute(sql, params, many, context)
    finally:
        # Bump even when the statement failed: a partial write is still a write,
        # and an extra bump only costs a miss.
        after_write(connection, marks)


def _marks(sql: Any, params: Any, many: bool, written: frozenset[str]) -> frozenset[tuple]:
    """The keys a write statement bumps (rows.py): its rows when the statement names them
    exactly (row_statements.py), else its tables; plus the tables the database writes
    itself (DB_CASCADE...), as tables."""
    if written is statements.EVERYTHING:
        return rows.table_marks(written)
    found = set(rows.table_marks(_with_cascades(written) - written))
    for table in written:
        exact = row_statements.changes(sql, params, many, table) if len(written) == 1 else None
        found |= exact if exact is not None else rows.table_marks({table})
    return frozenset(found)


def _with_cascades(written: frozenset[str]) -> frozenset[str]:
    """The tables written, plus those the database writes itself (DB_CASCADE...)."""
    if written is statements.EVERYTHING:
        return written
    tables_hit = set(written)
    for table in written:
        tables_hit |= tables.database_cascades(table)
    return frozenset(tables_hit)


def after_write(connection: Any, marks: frozenset[tuple]) -> None:
    tables_hit = rows.tables_of(marks)
    if transaction.in_user_transaction(connection):
        # invariants 1 and 3: pending now (no fills until the end), normal again at commit.
        transaction.record_write(connection, tables_hit, bump_tables, marks)
        bump_tables(connection.alias, tables_hit, marks, pending=True)
    else:
        bump_tables(connection.alias, tables_hit, marks)


def bump_tables(
    db_alias: str | None,
    written: frozenset[str],
    marks: frozenset[tuple] | None = None,
    *,
    pending: bool | float = False,
) -> None:
    """Bump ``written`` tables of ``db_alias`` (``{"*"}``: everything) and signal it.

    ``marks`` (rows.py) name the keys to bump when a write's rows are known; without
    them every key of each table is bumped.
    """
    started = time.perf_counter()
    if "*" in written:
        versions.bump_global(pending=pending)
    else:
        assert db_alias is not None  # only bumps of everything come without an alias
        if marks is None:
            marks = rows.table_marks(written)
        version_keys = rows.mark_keys(conf.versions_alias(db_alias), marks)
        versions.bump(versions.get_cache(), version_keys, pending=pending)
    if not pending:
        # Committed: downstream caches may drop the pages of these tables now.
        purge.tables_bumped(db_alias, written)
    if signals.invalidated.receivers:
        labels = ("*",) if "*" in written else tables.labels_for_tables(written)
        models = [m for t in sorted(written) for m in tables.models_for_table(t)]
        signals.invalidated.send(
            models[0] if models else None,
            labels=labels,
            db_alias=db_alias,
            tables=tuple(sorted(written)),
            key=None,
            elapsed=time.perf_counter() - started,
            pending=bool(pending),
        )


def invalidate_everything() -> None:
    """Bump the global version: every cached result of every database is dead."""
    bump_tables(None, statements.EVERYTHING)


def invalidate_models(models: Iterable[Any]) -> None:
    """Bump the tables of ``models`` on every database alias.

    Explicit invalidation also bumps the tables' fixed keys, which no write bumps:
    it is how a fixed-lifetime model's cached reads end before their timeout.
    """
    written: set[str] = set()
    for model in models:
        written |= tables.tables_of_model(model)
    for db_alias in connections:
        fixed = keys.fixed_keys(conf.versions_alias(db_alias), written)
        versions.bump(versions.get_cache(), fixed)
        purge.keys_bumped(fixed)  # downstream pages built from fixed reads only
        bump_tables(db_alias, frozenset(written))
