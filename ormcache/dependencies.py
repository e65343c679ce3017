"""The tables a query reads, or why its result cannot be cached.

invariant 5: every table a query reads is a dependency. We walk the Query
object Django is about to compile, not its SQL text: the FROM clause and
joins (``alias_map``: select_related, lookups across relations, m2m through
tables, multi-table inheritance parents), and every expression in SELECT,
WHERE/HAVING, GROUP BY and ORDER BY, descending into subqueries (``Subquery``,
``Exists``, ``__in=queryset``) and combined queries (``union`` and friends).

Anything whose reads we cannot know (raw SQL fragments, ``extra()`` tables or
WHERE clauses) or whose result is not a function of the data (``order_by('?')``,
``Now()``, random and clock functions) raises ``Uncacheable``.
"""

from __future__ import annotations

import re
from typing import Any

from django.db.models import Func, Q
from django.db.models.expressions import RawSQL
from django.db.models.lookups import Lookup
from django.db.models.sql.datastructures import BaseTable, Join
from django.db.models.sql.query import Query
from django.db.models.sql.where import ExtraWhere, WhereNode

from .keys import Uncacheable

#: SQL functions whose value depends on the clock, chance or a sequence.
NONDETERMINISTIC_FUNCTIONS = frozenset(
    {
        "RANDOM",
        "RAND",
        "NEWID",
        "UUID",
        "GEN_RANDOM_UUID",
        "UUID_GENERATE_V4",
        "UUIDV4",
        "UUIDV7",
        "NOW",
        "CURRENT_TIMESTAMP",
        "CURRENT_DATE",
        "CURRENT_TIME",
        "LOCALTIME",
        "LOCALTIMESTAMP",
        "CLOCK_TIMESTAMP",
        "STATEMENT_TIMESTAMP",
        "TRANSACTION_TIMESTAMP",
        "TIMEOFDAY",
        "SYSDATE",
        "SYSDATETIME",
        "GETDATE",
        "UTC_TIMESTAMP",
        "UNIX_TIMESTAMP",
        "NEXTVAL",
        "SETVAL",
        "CURRVAL",
        "LASTVAL",
        "TXID_CURRENT",
        "PG_BACKEND_PID",
        "STRFTIME",
        "JULIANDAY",
        "DATETIME",
        "DATE",
        "TIME",
        "UNIXEPOCH",
    }
)
# SQLite's date functions read the clock only without arguments ('now' aside), but
# telling those cases apart from the expression tree is not certain: they are
# treated as non-deterministic only when called with no source expressions.
_CLOCK_WHEN_ARGLESS = frozenset({"STRFTIME", "JULIANDAY", "DATETIME", "DATE", "TIME", "UNIXEPOCH"})
_NONDETERMINISTIC_CLASSES = frozenset({"Random", "Now", "UUID4", "UUID7"})
#: ``extra(select=...)`` entries Django itself writes for m2m prefetching: a column.
_QUALIFIED_COLUMN = re.compile(r'^\s*([`"\[]?)([\w$]+)[`"\]]?\.[`"\[]?[\w$]+[`"\]]?\s*$')


def tables_read(
    query: Query, *extra_expressions: Any, from_aliases: frozenset[str] | None = None
) -> frozenset[str]:
    """All tables ``query`` (plus extra expressions compiled with it) reads.

    ``from_aliases``: the aliases the compiled SQL names in its FROM clause, when the
    compiler recorded them (query.py); other joins in ``query.alias_map`` were trimmed
    away (the join to ``post`` that ``filter(post_id=...)`` never needed) and are not read.
    """
    tables: set[str] = set()
    _visit_query(query, tables, from_aliases)
    for expression in extra_expressions:
        _visit(expression, tables)
    return frozenset(tables)


def tables_in_expressions(query: Query, *extra_expressions: Any) -> set[str]:
    """The tables ``query`` (and ``extra_expressions``) read through subqueries in
    expressions, not through its FROM clause.

    rows.py pins a table only when the query reads it through one alias and nowhere else.
    """
    tables: set[str] = set()
    for table in query.alias_map.values():
        filtered = getattr(table, "filtered_relation", None)
        if filtered is not None:
            _visit(filtered.condition, tables)
    for part in (query.order_by, query.where, query.select):
        _visit(part, tables)
    for expression in query.annotations.values():
        _visit(expression, tables)
    if isinstance(query.group_by, tuple):
        _visit(query.group_by, tables)
    _visit(extra_expressions, tables)
    return tables


def joined_aliases(query: Query, from_aliases: frozenset[str] | None) -> list[tuple[str, Any]]:
    """``query.alias_map``'s items its SQL reads: those in ``from_aliases`` when known.

    Django keeps the joins it trimmed in the map and leaves them out of the FROM
    clause; which ones is known only while it compiles (the reference counts are reset
    afterwards), so without the compiler's record (subqueries, other compilers) every
    alias counts.
    """
    if from_aliases is None:
        return list(query.alias_map.items())
    return [
        (alias, table)
        for alias, table in query.alias_map.items()
        if alias in from_aliases or not isinstance(table, Join)
    ]


def _visit_query(
    query: Query, tables: set[str], from_aliases: frozenset[str] | None = None
) -> None:
    if query.select_for_update:
        raise Uncacheable("select_for_update takes locks")
    if query.extra_tables:
        raise Uncacheable("extra(tables=...) reads tables the ORM does not describe")
    if query.model is not None:
        # The base table joins alias_map only when the query is compiled.
        tables.add(query.get_meta().db_table)
    for alias, table in joined_aliases(query, from_aliases):
        if isinstance(table, (BaseTable, Join)) and isinstance(table.table_name, str):
            tables.add(table.table_name)
        else:
            raise Uncacheable(f"unknown FROM item {alias!r}")
        filtered = getattr(table, "filtered_relation", None)
        if filtered is not None:
            _visit(filtered.condition, tables)
    known_tables = {table.table_name for table in query.alias_map.values()}
    for sql, _params in query.extra.values():
        match = _QUALIFIED_COLUMN.match(sql)
        if not match or match.group(2) not in known_tables:
            raise Uncacheable("extra(select=...) with raw SQL")
    for ordering in query.order_by:
        if ordering == "?" or (isinstance(ordering, str) and ordering.lstrip("-") == "?"):
            raise Uncacheable("order_by('?') is random")
        _visit(ordering, tables)
    _visit(query.where, tables)
    for expression in query.annotations.values():
        _visit(expression, tables)
    for column in query.select:
        _visit(column, tables)
    if isinstance(query.group_by, tuple):
        for expression in query.group_by:
            _visit(expression, tables)
    for combined in query.combined_queries:
        _visit_query(combined, tables)


def _visit(node: Any, tables: set[str]) -> None:
    if node is None or isinstance(node, (str, int, float, bool, bytes)):
        return
    if isinstance(node, Query):
        _visit_query(node, tables)
        return
    if isinstance(node, (list, tuple, set, frozenset)):
        for item in node:
            _visit(item, tables)
        return
    if isinstance(node, (ExtraWhere, RawSQL)):
        raise Uncacheable("raw SQL fragment")
    if type(node).__name__ in _NONDETERMINISTIC_CLASSES:
        raise Uncacheable(f"{type(node).__name__}() is not deterministic")
    if isinstance(node, Func):
        function = (node.function or "").upper()
        if function in NONDETERMINISTIC_FUNCTIONS and (
            function not in _CLOCK_WHEN_ARGLESS or not node.get_source_expressions()
        ):
            raise Uncacheable(f"{function}() is not deterministic")
    if isinstance(node, (WhereNode, Q)):
        for child in node.children:
            _visit(child, tables)
        return
    if isinstance(node, Lookup):
        _visit(node.lhs, tables)
        _visit(node.rhs, tables)
        return
    inner = getattr(node, "query", None)
    if isinstance(inner, Query):
        _visit_query(inner, tables)
    get_sources = getattr(node, "get_source_expressions", None)
    if get_sources is not None:
        for source in get_sources():
            _visit(source, tables)
