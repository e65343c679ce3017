"""Which models live in which tables, and which tables the database writes by itself.

Built from the app registry on first use and rebuilt when settings that change
the registry change (tests swap INSTALLED_APPS). Used to name models in signals,
to apply per-model policies to the tables a query reads, and to follow
database-level cascades (``on_delete=DB_CASCADE``/``DB_SET_NULL``), where a
delete on one table silently writes another.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.apps import apps
from django.core.signals import setting_changed
from django.db import models


@lru_cache(maxsize=1)
def _registry() -> tuple[dict[str, tuple[Any, ...]], dict[str, frozenset[str]]]:
    by_table: dict[str, list[Any]] = {}
    db_children: dict[str, set[str]] = {}
    db_actions = tuple(
        getattr(models, name)
        for name in ("DB_CASCADE", "DB_SET_NULL", "DB_SET_DEFAULT")
        if hasattr(models, name)
    )
    for model in apps.get_models(include_auto_created=True):
        opts = model._meta
        if opts.proxy:
            continue
        by_table.setdefault(opts.db_table, []).append(model)
        for field in opts.local_fields:
            remote = getattr(field, "remote_field", None)
            if remote is not None and getattr(remote, "on_delete", None) in db_actions:
                parent = remote.model._meta.db_table
                # By lower-cased name, like version keys: SQLite and unquoted
                # PostgreSQL names ignore case, so raw SQL may spell it otherwise.
                db_children.setdefault(parent.lower(), set()).add(opts.db_table)
    return (
        {table: tuple(found) for table, found in by_table.items()},
        _closure(db_children),
    )


def _closure(children: dict[str, set[str]]) -> dict[str, frozenset[str]]:
    closed: dict[str, frozenset[str]] = {}
    for table in children:
        seen: set[str] = set()
        stack = [table]
        while stack:
            for child in children.get(stack.pop().lower(), ()):
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
        closed[table] = frozenset(seen)
    return closed


def _forget(*, setting: str, **kwargs: Any) -> None:
    if setting == "INSTALLED_APPS":
        _registry.cache_clear()


setting_changed.connect(_forget)


def models_for_table(table: str) -> tuple[Any, ...]:
    return _registry()[0].get(table, ())


def labels_for_tables(tables: Any) -> tuple[str, ...]:
    return tuple(
        sorted({model._meta.label_lower for table in tables for model in models_for_table(table)})
    )


def database_cascades(table: str) -> frozenset[str]:
    """Tables the database itself writes when rows of ``table`` are deleted."""
    return _registry()[1].get(table.lower(), frozenset())


def tables_of_model(model: Any) -> set[str]:
    """The tables holding a model's rows: its own and its concrete parents'."""
    opts = model._meta.concrete_model._meta
    tables = {opts.db_table}
    tables.update(parent._meta.db_table for parent in opts.get_parent_list())
    return tables


_known: list[Any] = [None, frozenset()]


def known_tables() -> frozenset[str]:
    """The table of every installed model (the page cache looks for them in raw SQL)."""
    by_table = _registry()[0]
    if _known[0] is not by_table:
        _known[:] = [by_table, frozenset(by_table)]
    return _known[1]
