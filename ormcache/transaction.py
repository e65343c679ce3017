"""Per-transaction state: which tables the open transaction has written.

invariant 2: a transaction sees its own writes and nobody else sees them before
commit. While a transaction has written table T, reads that depend on T bypass
the cache (neither read nor fill): the cache holds committed data only, and the
transaction must see its own uncommitted rows.

The state is kept per connection object. Django gives every thread and every
async context its own connection object, so this is naturally scoped the way
contextvars would scope it, and it ends with the connection.

Atomic blocks opened by Django's ``TestCase`` around each test are not user
transactions: inside them ormcache behaves as in autocommit, so a test suite
sees the same caching as production.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

from django.db import transaction

_dirty: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
# The commit-time bumps already registered, per savepoint stack: a rolled-back
# savepoint drops its on_commit callbacks, so a later write registers again.
_registered: weakref.WeakKeyDictionary[Any, dict[tuple, set[str]]] = weakref.WeakKeyDictionary()


def in_user_transaction(connection: Any) -> bool:
    """True inside an atomic block (not TestCase's) or with autocommit turned off."""
    if connection.connection is None:
        return False
    if connection.in_atomic_block:
        return any(
            not getattr(block, "_from_testcase", False) for block in connection.atomic_blocks
        )
    return not connection.autocommit


def dirty_tables(connection: Any) -> set[str]:
    """Tables written by the open transaction (empty, and forgotten, outside one)."""
    if not in_user_transaction(connection):
        _dirty.pop(connection, None)
        _registered.pop(connection, None)
        return set()
    return _dirty.get(connection, set())


def record_write(connection: Any, tables: Iterable[str], bump: Any) -> None:
    """Remember the tables and make sure ``bump(tables)`` runs again at commit."""
    tables = set(tables)
    dirty_tables(connection)  # forget state left by an earlier transaction
    _dirty.setdefault(connection, set()).update(tables)
    if not connection.in_atomic_block:
        # autocommit off: Django runs on_commit callbacks only from atomic blocks;
        # invalidation.py bumps on commit() through its execute wrapper instead.
        return
    stack = tuple(connection.savepoint_ids)
    done = _registered.setdefault(connection, {}).setdefault(stack, set())
    new = tables - done
    if new:
        done.update(new)
        transaction.on_commit(lambda: bump(new), using=connection.alias)
