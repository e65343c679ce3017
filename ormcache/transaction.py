"""Per-transaction state: which tables the open transaction has written.

invariant 2: a transaction sees its own writes and nobody else sees them before
commit. While a transaction has written table T, reads that depend on T bypass
the cache (neither read nor fill): the cache holds committed data only, and the
transaction must see its own uncommitted rows.

The state is kept per connection object. Django gives every thread and every
async context its own connection object, so this is naturally scoped the way
contextvars would scope it, and it ends with the connection.

How the end of a transaction is seen:
- commit of an atomic block: the ``on_commit`` callback registered at the first
  write (per savepoint, since a rolled-back savepoint drops its callbacks);
- rollback, or ``commit()`` under ``set_autocommit(False)``, which have no hook:
  the next time ormcache sees the connection outside a transaction, it "settles"
  the state (bumps the tables again and forgets them).

Atomic blocks opened by Django's ``TestCase`` around each test are not user
transactions: inside them ormcache behaves as in autocommit, so a test suite
sees the same caching as production.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

#: ``bump(alias, tables, marks)``: the tables written and the marks of the keys to bump
#: (rows.py: a row-level write names its rows, a table-level one its tables).
Bump = Callable[[str, frozenset[str], frozenset[tuple]], None]


@dataclass
class _State:
    bump: Bump
    tables: set[str] = field(default_factory=set)
    marks: set[tuple] = field(default_factory=set)
    # Marks whose commit-time bump is registered, per savepoint stack.
    registered: dict[tuple, set[tuple]] = field(default_factory=dict)
    # The on_commit callbacks registered for this transaction.
    callbacks: list[Any] = field(default_factory=list)


_states: weakref.WeakKeyDictionary[Any, _State] = weakref.WeakKeyDictionary()


def in_user_transaction(connection: Any) -> bool:
    """True inside an atomic block (not TestCase's) or with autocommit turned off."""
    if connection.connection is None:
        return False
    if connection.in_atomic_block:
        return any(
            not getattr(block, "_from_testcase", False) for block in connection.atomic_blocks
        )
    return not connection.autocommit


def _ended(connection: Any, state: _State) -> bool:
    """The transaction that made ``state`` is over.

    Outside a transaction, plainly. Inside an atomic block it may be a *new* one:
    PostgreSQL begins a transaction without a statement we would see, so after a
    rollback the old state would carry over. Its commit callbacks were then dropped
    with the rollback: none of them is queued any more.
    """
    if not in_user_transaction(connection):
        return True
    if not connection.in_atomic_block or not state.registered:
        return False
    queued = {id(entry[1]) for entry in connection.run_on_commit}
    return not any(id(callback) in queued for callback in state.callbacks)


def settle(connection: Any) -> None:
    """If the transaction that wrote tables has ended, bump them once more and forget it."""
    state = _states.get(connection)
    if state is not None and _ended(connection, state):
        del _states[connection]
        state.bump(connection.alias, frozenset(state.tables), frozenset(state.marks))


def dirty_tables(connection: Any) -> set[str]:
    """Tables written by the open transaction (empty outside one)."""
    settle(connection)
    state = _states.get(connection)
    return state.tables if state is not None else set()


def record_write(
    connection: Any, tables: Iterable[str], bump: Bump, marks: Iterable[tuple]
) -> None:
    """Remember the tables and marks, and make sure ``bump`` runs again when the
    transaction ends."""
    settle(connection)
    marks = set(marks)
    state = _states.get(connection)
    if state is None:
        state = _states[connection] = _State(bump)
    state.tables.update(tables)
    state.marks |= marks
    if not connection.in_atomic_block:
        return  # set_autocommit(False): settled lazily, see the module docstring
    stack = tuple(connection.savepoint_ids)
    done = state.registered.setdefault(stack, set())
    new = frozenset(marks - done)
    if new:
        done.update(new)

        def callback() -> None:
            _committed(connection, state, new)

        state.callbacks.append(callback)
        transaction.on_commit(callback, using=connection.alias)


def _committed(connection: Any, state: _State, marks: frozenset[tuple]) -> None:
    """on_commit: bump again, and end the state (the next transaction starts afresh)."""
    if _states.get(connection) is state:
        del _states[connection]
    state.bump(connection.alias, frozenset(mark[1] for mark in marks), marks)
