"""Longevity: whether writes end a cached read, or its timeout alone does.

Each model has one of two policies (``ORMCACHE["MODELS"][label]["longevity"]``):

- ``"invalidate"`` (the default): a cached read depends on the *version key* of
  every table it reads, which every write bumps. Never stale after commit.
- ``"fixed"``: a cached read depends on the table's *fixed key* instead
  (``ormcache:v:<alias>:<table>:fixed``), which only explicit invalidation bumps
  (``ormcache.invalidate(Model)``, ``manage.py ormcache invalidate``), plus the
  global key (``invalidate_all()``, DDL). Writes cost no miss; the entry lives
  out its timeout, so a read may return data up to ``timeout`` seconds old.

Writes bump version keys whatever the policy, so the write path does not change,
and a read that mixes the two follows the stricter rule: it is fixed only when
*every* model it involves is fixed. One invalidated model among them makes it
depend on the version keys of all its tables, and it lives no longer than the
shortest timeout of its models (``reads._policies``).

An auto-created many-to-many through table counts as the model that declares the
field. A fixed read's entry also remembers when its rows were read, so what is built
from it (a page, a helper value) expires when the rows would have: its data is
never older than the fixed timeout either (``ReadEvent.expires``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import conf, keys, tables


def models_of(found: Iterable[str], models: Iterable[Any] = ()) -> list[Any]:
    """The models a read of ``found`` tables involves (plus ``models``)."""
    involved = list(models)
    for table in found:
        involved.extend(tables.models_for_table(table))
    return involved


def is_fixed(models: Iterable[Any]) -> bool:
    """True when every model is fixed-lifetime (the stricter rule), and there is one.

    The auto-created through model of a many-to-many field follows the model that
    declares the field: its rows are that model's data (``post.tags.add()``).
    """
    policies = [conf.policy_for(model._meta.auto_created or model) for model in models]
    return bool(policies) and all(policy.fixed for policy in policies)


def read_keys(db_alias: str, found: Iterable[str], *, fixed: bool) -> list[str]:
    """The keys a read of ``found`` tables on ``db_alias`` depends on (global first)."""
    alias = conf.versions_alias(db_alias)
    table_keys = keys.fixed_keys(alias, found) if fixed else keys.version_keys(alias, found)
    return [keys.GLOBAL_VERSION_KEY, *table_keys]


def cap(requested: Any, policy_timeout: int | None, *, fixed: bool) -> Any:
    """The timeout of an entry: ``requested`` (``.cache(timeout=...)``) or the policy's.

    A fixed read's timeout is its staleness bound, so a request can shorten it, never
    lengthen it.
    """
    if requested is None:
        return policy_timeout
    if fixed and policy_timeout is not None and requested > policy_timeout:
        return policy_timeout
    return requested
