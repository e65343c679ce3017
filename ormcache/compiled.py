"""Compile a read's SQL once per query shape, not on every evaluation.

Django compiles a query to SQL each time it is evaluated. On a cache hit that is
most of the work left (choosing and quoting the columns, the FROM clause, the
ordering): ``Post.objects.get(pk=...)`` spends more time compiling than ormcache
spends finding the rows. Two queries that differ only in their WHERE clause's
values compile to the same text with other parameters, so ormcache remembers, per
*shape*, the SQL and the state Django's iterables read from the compiler (the
columns, ``klass_info``). A read of a known shape compiles only its WHERE clause,
with Django's own code, which gives its parameters, and reuses the rest when that
clause's text is the one the shape was remembered with.

The shape is every attribute of the query but its WHERE tree, frozen into a
hashable value. Only values that compare exactly are frozen (strings, ints,
bools, None, classes, a model's fields and relations, and the few structures Django
builds for tables, joins and columns); a query holding anything else,
such as an expression in its SELECT list, is compiled in full, as before. So is a
query Django still has to set up (no table yet) or whose WHERE needs grouping
(aggregates, windows).

Django also reads things outside the query while it compiles: the models'
``Meta.ordering`` (which may hold expressions), each join's extra condition (a
``GenericRelation`` looks its content type up) and the active time zone (``__hour``
in an ordering). The shape holds the model's ordering and the time zone; and a shape
is kept only when its SQL can owe nothing to the rest: every parameter sits in the
WHERE clause (none in the SELECT list, the joins or the ordering), no join has an
extra condition, and every model the query joins orders by field names, checked again
before each reuse.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import models
from django.db.models import ForeignObject
from django.db.models.expressions import Col
from django.db.models.fields.reverse_related import ForeignObjectRel
from django.db.models.sql.datastructures import BaseTable, Join
from django.utils import timezone

try:  # Django >= 4.2 signals "no WHERE needed" with FullResultSet.
    from django.core.exceptions import FullResultSet
except ImportError:  # pragma: no cover
    FullResultSet = EmptyResultSet  # type: ignore[misc,assignment]

_MEMO_SIZE = 1024
#: The compiler attributes that stay with the query, not with its shape.
_OWN_ATTRIBUTES = frozenset(
    {"query", "connection", "using", "elide_empty", "quote_cache", "where", "having", "qualify"}
)
#: Objects frozen by their attributes: what Django builds for tables, joins and columns.
#: Anything of another class makes the query compile in full.
_BY_ATTRIBUTES = frozenset({BaseTable, Join, Col})


@dataclass(frozen=True)
class Compiled:
    """The SQL of a shape, and the compiler state its iterables read."""

    sql: str
    where_sql: str
    state: dict[str, Any]
    #: The Meta.ordering of each model joined, as compiled (read from the models).
    orderings: tuple[tuple[Any, tuple[str, ...]], ...] = ()


_memo: OrderedDict[tuple, Compiled | None] = OrderedDict()
_memo_lock = threading.Lock()


class _NotFrozen(Exception):
    """A value whose equality ormcache cannot vouch for: compile in full."""


_TRUE, _FALSE = object(), object()  # bools apart from the ints that equal them


_SCALARS = frozenset({str, int, type(None)})
#: Attributes left out of an object's frozen form: ``identity`` is a cache of what
#: ``_constructor_args`` holds (Django's expressions), and costs as much again to freeze.
_DERIVED = "identity"


def _freeze(value: Any, seen: dict[int, Any]) -> Any:
    """``value`` as a hashable that equals another's only if they are the same value.

    ``seen``: objects already frozen during this shape (the query holds its
    annotations twice), by id while they are alive.
    """
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is bool:
        return _TRUE if value else _FALSE
    if kind is tuple or kind is list:
        return (kind, *[_freeze(item, seen) for item in value])
    if kind is dict:
        return (dict, *[(key, _freeze(item, seen)) for key, item in value.items()])
    if kind is set or kind is frozenset:
        return (frozenset, frozenset([_freeze(item, seen) for item in value]))
    if kind in _BY_ATTRIBUTES:
        found = seen.get(id(value))
        if found is None:
            found = seen[id(value)] = (
                kind,
                *[
                    (name, _freeze(item, seen))
                    for name, item in vars(value).items()
                    if name != _DERIVED
                ],
            )
        return found
    if isinstance(value, models.Field) and hasattr(value, "model"):
        return value  # a model's field: equal to another only with its model and position
    if isinstance(value, (ForeignObjectRel, type)):
        return value  # a relation or a class (a model, an expression's): equal only to itself
    raise _NotFrozen(kind.__name__)


def shape_of(compiler: Any) -> tuple | None:
    """The query's shape (everything but its WHERE values), or None if it has none."""
    query = compiler.query
    where = query.where
    if where.contains_aggregate or where.contains_over_clause:
        return None  # Django splits such a WHERE into HAVING/QUALIFY while compiling
    if not any(query.alias_refcount.values()):
        return None  # Django adds the base table while compiling
    if any(type(annotation) is not Col for annotation in query.annotations.values()):
        # An aggregate, a function or a constant (count(), aggregate(), exists()): a
        # constant is a parameter outside the WHERE clause, and freezing an aggregate
        # costs about what compiling it does.
        return None
    seen: dict[int, Any] = {}
    try:
        frozen = tuple(
            [(name, _freeze(value, seen)) for name, value in vars(query).items() if name != "where"]
        )
        # Read while compiling, from the model: a change of it (a test's) is another shape.
        ordering = _freeze(tuple(query.get_meta().ordering or ()), seen)
    except _NotFrozen:
        return None
    connection = compiler.connection
    return (
        # Lookups such as ``__date`` or ``__hour`` in an ordering convert to the active
        # time zone while compiling; some backends write its name into the SQL text.
        timezone.get_current_timezone_name() if settings.USE_TZ else None,
        type(compiler),
        connection.alias,
        connection.vendor,
        compiler.elide_empty,
        type(query),
        type(where),
        frozen,
        ordering,
    )


def where_of(compiler: Any) -> tuple[str, list[Any]]:
    """The WHERE clause's SQL and parameters, compiled as ``as_sql`` would.

    Raises EmptyResultSet when the clause can match nothing (Django skips the query).
    """
    try:
        sql, params = compiler.compile(compiler.query.where)
    except FullResultSet:
        return "", []
    return sql, list(params)


def reuse(compiler: Any, shape: tuple) -> tuple[str, tuple] | None:
    """(SQL, params) of a query of a remembered shape, with the compiler set up as
    ``as_sql`` leaves it; None when the shape is not remembered or its WHERE text
    differs (compile in full then)."""
    known = _memo.get(shape)
    if known is None:
        return None
    try:
        where_sql, where_params = where_of(compiler)
    except EmptyResultSet:
        return None
    if where_sql != known.where_sql:
        return None
    if any(tuple(model._meta.ordering or ()) != ordering for model, ordering in known.orderings):
        return None
    vars(compiler).update(known.state)
    compiler.where, compiler.having, compiler.qualify = compiler.query.where, None, None
    return known.sql, tuple(where_params)


def compiled_clone(compiler: Any) -> tuple[Any, frozenset[str] | None]:
    """A copy of the compiler's query compiled in full, and the aliases of its FROM clause.

    A reused shape leaves the query as the user built it: Django adds the joins of
    ``select_related`` and of the ordering while it compiles. What ormcache works out
    from a query's structure (the tables it reads, which rows pin it) is worked out
    from this copy instead; it is needed only when that analysis is not memoised yet.
    """
    query = compiler.query.clone()
    full = query.get_compiler(connection=compiler.connection, elide_empty=compiler.elide_empty)
    full.as_sql()
    return query, getattr(full, "from_aliases", None)


def compile_and_remember(compiler: Any, shape: tuple | None) -> tuple[str, tuple]:
    """``compiler.as_sql()``, remembering the result for the shape when it can be reused."""
    if shape is None or shape in _memo:
        return compiler.as_sql()
    try:
        where_sql, where_params = where_of(compiler)
    except EmptyResultSet:
        where_sql, where_params = "", None
    before = dict(vars(compiler))
    sql, params = compiler.as_sql()
    known = None
    joined = (
        _models_if_owing_nothing_else(compiler, sql, params, where_sql, where_params)
        if where_params is not None
        else None
    )
    if joined is not None:
        state = {
            name: value
            for name, value in vars(compiler).items()
            if name not in _OWN_ATTRIBUTES and before.get(name, _FALSE) is not value
        }
        orderings = tuple(
            (model, tuple(model._meta.ordering or ()))
            for model in joined
            if model is not compiler.query.model  # its ordering is in the shape
        )
        known = Compiled(sql, where_sql, state, orderings)
    with _memo_lock:
        _memo[shape] = known
        if len(_memo) > _MEMO_SIZE:
            _memo.popitem(last=False)
    return sql, params


def _models_if_owing_nothing_else(
    compiler: Any, sql: str, params: Any, where_sql: str, where_params: list[Any]
) -> set[Any] | None:
    """The models the query joins, if its SQL follows from the shape and the WHERE
    clause alone (see the module's doc); None if it may not."""
    if not sql:
        return None
    if where_sql and sql.count(f" WHERE {where_sql}") != 1:
        return None
    # Every parameter is the WHERE clause's: none of the SELECT list, a join or the ordering.
    if len(params) != len(where_params) or any(
        type(sent) is not type(own) or sent != own
        for sent, own in zip(params, where_params, strict=True)
    ):
        return None
    joined = {compiler.query.model}
    for table in compiler.query.alias_map.values():
        if isinstance(table, BaseTable):
            continue
        if not isinstance(table, Join) or table.filtered_relation is not None:
            return None
        if _has_a_condition_of_its_own(table.join_field):
            return None  # GenericRelation: a content type looked up while compiling
        field: Any = table.join_field
        if isinstance(field, ForeignObjectRel):
            field = field.field
        joined.update((field.model, field.related_model))
    plain = all(isinstance(entry, str) for model in joined for entry in model._meta.ordering or ())
    return joined if plain else None


def _has_a_condition_of_its_own(join_field: Any) -> bool:
    """The join adds a condition of its own to its ON clause (``get_extra_restriction``
    overridden by the field's class, the relation's class or on the field itself)."""
    field = join_field
    if isinstance(join_field, ForeignObjectRel):
        if type(join_field).get_extra_restriction is not ForeignObjectRel.get_extra_restriction:
            return True
        field = join_field.field
    extra = getattr(type(field), "get_extra_restriction", None)
    return extra is not ForeignObject.get_extra_restriction or (
        "get_extra_restriction" in vars(field)
    )


def forget() -> None:
    """Drop every remembered shape (tests that swap models or databases call it)."""
    with _memo_lock:
        _memo.clear()
