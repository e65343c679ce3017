"""The stale-save guard: a cached object never silently overwrites a newer row.

Model instances built from a cache hit remember the version tokens of their
tables and the values they were built with. On ``save()`` (``pre_save``):

- if the tokens did not move, nothing changed since the rows were cached: the
  check costs one cache read and no SQL;
- otherwise the row is read from the database, and a field is *stale* when the
  database changed it since the read and the save would write a different value
  (so an instance refreshed with ``refresh_from_db()`` is never flagged).

An instance from a *fixed-lifetime* read (``longevity: "fixed"``) may be up to its
timeout old when handed out, and no write moves the keys such a read depends on:
tokens cannot tell whether it is stale. Its save always reads the row (one
``SELECT`` per save of such an instance) and flags what the database changed.

What happens then is the model's ``stale_save`` policy: ``"warn"`` (default: log
a warning and save, which is exactly what Django does without a cache, so adding
ormcache never makes a working save fail), ``"raise"`` (``StaleObjectError``,
nothing written) or ``"allow"`` (no bookkeeping at all).
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any

from django.db.models import Model

from . import conf, tables, versions

logger = logging.getLogger("ormcache")

MARK = "_ormcache_read"

#: Set by the read path on a hit: (db alias, {version key: token}).
last_hit: contextvars.ContextVar[tuple[str, dict[str, Any]] | None] = contextvars.ContextVar(
    "ormcache_last_hit", default=None
)


class StaleObjectError(Exception):
    """Saving this instance would overwrite changes made after it was read from the cache."""

    def __init__(self, instance: Any, fields: list[str]) -> None:
        self.instance = instance
        self.fields = fields
        label = instance._meta.label
        super().__init__(
            f"{label} pk={instance.pk!r} was read from the cache and its "
            f"{', '.join(fields)} changed in the database since: saving would overwrite "
            "that change. Call refresh_from_db() (or select_for_update() for a "
            "read-modify-write) and save again."
        )


def version_keys_for(db_alias: str, model_tables: Any, *, fixed: bool = False) -> list[str]:
    from .reads import version_keys_for

    return version_keys_for(db_alias, model_tables, fixed=fixed)


def remember(
    results: list[Any],
    hit: tuple[str, dict[str, Any]],
    known_related: dict[Any, dict[Any, Any]] | None = None,
) -> None:
    """Mark the instances built from a cache hit (and their select_related objects).

    ``known_related`` (a queryset's ``_known_related_objects``: the instance a related
    manager was called on) holds objects this read did not build; they keep their own
    mark, or none: the hit's tokens say nothing about their values.
    """
    db_alias, tokens = hit
    per_class: dict[type, dict[str, Any] | None] = {}
    # Objects reached again are skipped: a reverse one-to-one select_related caches each
    # side on the other (post.featuredpost.post_ptr is post), a cycle.
    seen: set[int] = {
        id(instance) for by_pk in (known_related or {}).values() for instance in by_pk.values()
    }
    for instance in results:
        if isinstance(instance, Model):
            _mark(instance, db_alias, tokens, per_class, seen)


#: (model, db alias) -> its fixed keys, its own keys and their row-key prefixes, or None
#: when its policy skips the guard: worked out once, not on every hit.
_own_keys_memo: dict[
    tuple[Any, str], tuple[tuple[str, ...], frozenset[str], tuple[str, ...]] | None
] = {}
conf.forget_hooks.append(_own_keys_memo.clear)


def _own_keys(
    model: Any, db_alias: str
) -> tuple[tuple[str, ...], frozenset[str], tuple[str, ...]] | None:
    memo_key = (model, db_alias)
    if memo_key in _own_keys_memo:
        return _own_keys_memo[memo_key]
    found = None
    if conf.policy_for(model).stale_save != "allow":
        model_tables = tables.tables_of_model(model)
        fixed = tuple(version_keys_for(db_alias, model_tables, fixed=True)[1:])
        own = version_keys_for(db_alias, model_tables)
        # A pinned read depends on its rows' keys instead (rows.py): "<table key>:...".
        found = (fixed, frozenset(own), tuple(f"{key}:" for key in own[1:]))
    _own_keys_memo[memo_key] = found
    return found


def _own_tokens(model: Any, db_alias: str, tokens: dict[str, Any]) -> dict[str, Any] | None:
    """The tokens of the tables holding ``model``'s rows; None when its policy skips the guard.

    Empty for a fixed-lifetime read: no token says whether its rows are stale, so the
    save asks the database.
    """
    found = _own_keys(model, db_alias)
    if found is None:
        return None
    fixed, own, finer = found
    if any(key in tokens for key in fixed):
        return {}
    return {key: token for key, token in tokens.items() if key in own or key.startswith(finer)}


def _mark(
    instance: Model,
    db_alias: str,
    tokens: dict[str, Any],
    per_class: dict[type, Any],
    seen: set[int],
) -> None:
    if id(instance) in seen:
        return
    seen.add(id(instance))
    model = type(instance)
    if model not in per_class:  # worked out once per model and read, not per row
        per_class[model] = _own_tokens(model, db_alias, tokens)
    own = per_class[model]
    if own is None:
        return
    # A shallow copy of the loaded values; only field attnames are ever compared.
    instance.__dict__[MARK] = (db_alias, own, instance.__dict__.copy())
    fields_cache = instance._state.fields_cache
    if fields_cache:
        for related in fields_cache.values():
            if isinstance(related, Model):
                _mark(related, db_alias, tokens, per_class, seen)


def check_before_save(
    sender: Any, instance: Any, raw: bool = False, update_fields: Any = None, **kwargs: Any
) -> None:
    """``pre_save`` receiver: act on a stale overwrite per the model's policy."""
    mark = instance.__dict__.get(MARK)
    if mark is None or raw:
        return
    db_alias, tokens, originals = mark
    try:
        if tokens:  # none: a fixed-lifetime read, which tokens cannot vouch for
            current = versions.read_many(versions.get_cache(), list(tokens))
            if all(current.get(key) == token for key, token in tokens.items()):
                return  # nothing written to these tables since the read
    except versions.CacheUnavailable:
        pass  # cannot tell: ask the database
    stale = _stale_fields(sender, instance, db_alias, originals, update_fields)
    if not stale:
        return
    if conf.policy_for(sender).stale_save == "raise":
        raise StaleObjectError(instance, stale)
    logger.warning("ormcache: %s", StaleObjectError(instance, stale))


def forget_after_save(sender: Any, instance: Any, **kwargs: Any) -> None:
    """``post_save`` receiver: what was just written is not a stale read any more."""
    instance.__dict__.pop(MARK, None)


def _stale_fields(
    model: Any, instance: Any, db_alias: str, originals: dict[str, Any], update_fields: Any
) -> list[str]:
    from .reads import disabled

    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    if update_fields is not None:
        fields = [f for f in fields if f.name in update_fields or f.attname in update_fields]
    attnames = [f.attname for f in fields if f.attname in originals]
    with disabled():
        row = model._base_manager.using(db_alias).filter(pk=instance.pk).values(*attnames).first()
    if row is None:
        return ["(the row was deleted)"]
    return [
        name
        for name in attnames
        if row[name] != originals[name] and getattr(instance, name) != row[name]
    ]
