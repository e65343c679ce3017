"""Row-level versions: reads pinned to known rows depend on those rows, not the table.

Every table has its *table key* (``ormcache:v:<alias>:<table>``), which every write
bumps, as always. Next to it (keys.py):

- ``…:r:<pk>``: one row, bumped by writes whose statement names that row's primary key
  (``save()``, ``delete()`` of instances, ``update()``/``delete()`` filtered by pk);
- ``…:i``: bumped by every insert into the table;
- ``…:rw``: bumped by writes that change rows whose primary keys are unknown;
- ``…:p:<column>:<value>``: the rows whose partition column (a model's
  ``"partition_by"`` policy) holds ``value``, bumped by inserts of such rows and by
  writes filtered by that column;
- ``…:pw``: bumped by writes that change rows whose partitions are unknown.

A write the statement parser (row_statements.py) does not recognise exactly bumps the
table key, ``…:rw`` and ``…:pw`` (keys.catch_all_keys): every read of the table
depends on one of them, so what cannot be read from the SQL is a table-wide write.

A read is *pinned* to a table when the top-level conjunction of its WHERE clause holds
``pk = v`` or ``pk IN (...)`` (or the same on the partition column) for an alias of a
table that the query reads nowhere else. Its rows of that table can then only be rows
with those keys: it depends on the global key, ``…:rw`` and the rows' keys (or ``…:pw``
and the partitions' keys) instead of the table key, plus ``…:i`` for a row pin, unless
the rows it returned prove every pinned row exists (an insert cannot then add one:
primary keys are unique). docs/how-it-works.md has the whole argument.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import ForeignObject
from django.db.models.expressions import Col
from django.db.models.lookups import Exact, In
from django.db.models.sql.where import AND, WhereNode

from . import conf, dependencies, keys, tables

#: A read pinned to more keys than this depends on the table instead (one version key
#: per pinned row is fetched with every hit).
MAX_PINNED_READ = 50
#: A write naming more rows than this bumps the table-wide keys instead.
MAX_PINNED_WRITE = 500

_INT_TYPES = frozenset(
    {
        "AutoField",
        "BigAutoField",
        "SmallAutoField",
        "IntegerField",
        "BigIntegerField",
        "SmallIntegerField",
        "PositiveIntegerField",
        "PositiveBigIntegerField",
        "PositiveSmallIntegerField",
    }
)
_EXACT_LOOKUPS: frozenset[type] = frozenset()


@dataclass(frozen=True)
class TableRows:
    """What ormcache knows of one table's rows (None: not at row level)."""

    pk_column: str | None = None
    pk_kind: str | None = None
    #: The reads of the table pin rows (its models' granularity is "row").
    row_reads: bool = False
    partition_column: str | None = None
    partition_kind: str | None = None

    @property
    def pinnable(self) -> bool:
        """Reads of the table may depend on some of its rows or partitions only."""
        return self.row_reads or self.partition_column is not None


_NO_ROWS = TableRows()
_facts: dict[str, TableRows] = {}
conf.forget_hooks.append(_facts.clear)


def value_kind(field: Any) -> str | None:
    """``"int"`` or ``"uuid"`` for fields whose values have one canonical form, else None."""
    seen = 0
    while getattr(field, "target_field", None) is not None and seen < 10:  # FK, O2O
        field = field.target_field
        seen += 1
    internal = field.get_internal_type() if hasattr(field, "get_internal_type") else ""
    if internal in _INT_TYPES:
        return "int"
    if internal == "UUIDField":
        return "uuid"
    return None


def canonical(kind: str | None, value: Any) -> str | None:
    """The text a key names a value by; None when it has no faithful one.

    Integers must be ints (a string or a float could match a row under the database's
    coercions and would name another key); UUIDs may be UUID objects or their text.
    """
    if kind == "int":
        return str(value) if type(value) is int else None
    if kind == "uuid":
        if isinstance(value, uuid.UUID):
            return value.hex
        if isinstance(value, str):
            try:
                return uuid.UUID(value).hex
            except ValueError:
                return None
    return None


def partition_field(model: Any, name: str | None) -> Any:
    """The concrete local field a ``partition_by`` policy names (name or attname), or None."""
    if not name:
        return None
    for field in model._meta.concrete_fields:
        if name in (field.name, field.attname) and field.model is model._meta.concrete_model:
            return field
    return None


def table_rows(table: str) -> TableRows:
    """The row-level facts of ``table``, from its models and their policies."""
    found = _facts.get(table)
    if found is None:
        found = _facts[table] = _table_rows(table)
    return found


def _table_rows(table: str) -> TableRows:
    models = tables.models_for_table(table)
    if not models:
        return _NO_ROWS
    pks = {(m._meta.pk.column, value_kind(m._meta.pk)) for m in models}
    pk_column, pk_kind = pks.pop() if len(pks) == 1 else (None, None)
    if pk_kind is None:
        pk_column = None
    # An auto-created m2m table follows the granularity of the model declaring the field;
    # its partitions are its own ("blog.post_tags": {"partition_by": "post"}).
    policies = [conf.policy_for(m._meta.auto_created or m) for m in models]
    partitions = set()
    for model in models:
        name = own_partition_by(model)
        field = partition_field(model, name)
        if field is not None and value_kind(field) is not None and not field.primary_key:
            partitions.add((field.column, value_kind(field)))
        elif name:
            partitions.add((None, None))  # a bad policy: checks report it
    partition_column, partition_kind = partitions.pop() if len(partitions) == 1 else (None, None)
    return TableRows(
        pk_column=pk_column,
        pk_kind=pk_kind,
        row_reads=pk_column is not None and all(p.granularity == "row" for p in policies),
        partition_column=partition_column,
        partition_kind=partition_kind,
    )


def own_partition_by(model: Any) -> str | None:
    """The model's ``partition_by``; for an auto-created m2m table only its own label's
    entry counts (the declaring model's field names are not its fields)."""
    if model._meta.auto_created:
        entry = conf.model_entries().get(model._meta.label_lower) or {}
        found = entry.get("partition_by")
        return found if isinstance(found, str) else None
    return conf.policy_for(model).partition_by


# --- marks: what a write changed, named independently of the database alias -------------
#
# ("t", table)                  the table key
# ("w", table)                  the rest of the catch-all: "…:rw" and "…:pw"
# ("rw", table) / ("pw", table) one of them
# ("i", table)                  "…:i"
# ("r", table, pk)              one row
# ("p", table, column, value)   one partition


def table_marks(written: Iterable[str]) -> frozenset[tuple]:
    """The marks of a write whose rows are unknown: every key of each table."""
    return frozenset(mark for table in written for mark in (("t", table), ("w", table)))


def mark_keys(db_alias: str, marks: Iterable[tuple]) -> list[str]:
    """The version keys ``marks`` name on ``db_alias`` (a versions alias)."""
    found: list[str] = []
    for mark in marks:
        kind, table = mark[0], mark[1]
        if kind == "t":
            found.append(keys.version_key(db_alias, table))
        elif kind == "w":
            found.extend(keys.catch_all_keys(db_alias, table)[1:])
        elif kind == "rw":
            found.append(keys.version_key(db_alias, table) + keys.ROWS_SUFFIX)
        elif kind == "pw":
            found.append(keys.version_key(db_alias, table) + keys.PARTITIONS_SUFFIX)
        elif kind == "i":
            found.append(keys.version_key(db_alias, table) + keys.INSERTS_SUFFIX)
        elif kind == "r":
            found.append(keys.row_key(db_alias, table, mark[2]))
        else:  # "p"
            found.append(keys.partition_key(db_alias, table, mark[2], mark[3]))
    return sorted(set(found))


def tables_of(marks: Iterable[tuple]) -> frozenset[str]:
    return frozenset(mark[1] for mark in marks)


# --- reads ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pin:
    """One table of a read, pinned to rows (``kind`` "r") or partitions ("p")."""

    table: str
    kind: str
    column: str
    values: frozenset[str]
    #: The pinned table is the query's base table and each result row is one of its rows:
    #: as many result rows as pinned keys prove that every pinned row exists.
    countable: bool = False


@dataclass(frozen=True)
class _Candidate:
    """A conjunct of a read's WHERE that pins its table if its value has a canonical
    text: what the query's shape alone decides, worked out once per SQL text."""

    index: int  # among the conjuncts _conjuncts yields
    alias: str
    table: str
    kind: str
    column: str
    value_type: str | None
    countable: bool


_candidates: OrderedDict[Any, tuple[int, tuple[_Candidate, ...]]] = OrderedDict()
conf.forget_hooks.append(_candidates.clear)
_CANDIDATES_MEMO = 4096


def read_pins(
    query: Any,
    extra_expressions: Iterable[Any] = (),
    from_aliases: frozenset[str] | None = None,
    memo_key: Any = None,
    analysed: Callable[[], tuple[Any, frozenset[str] | None]] | None = None,
) -> tuple[Pin, ...]:
    """The tables ``query`` (with ``extra_expressions`` compiled with it: aggregates)
    reads only through rows (or partitions) its WHERE pins (``from_aliases``: as in
    dependencies.tables_read).

    ``memo_key`` (the database alias and SQL text) names the query's shape: which of its
    lookups may pin is then found once; each read only reads their values.
    ``analysed`` gives the query and FROM aliases to find them in when ``query`` was not
    compiled (compiled.py); its WHERE is the same.
    """
    if query.combinator or query.combined_queries or not isinstance(query.where, WhereNode):
        return ()
    conjuncts = list(_conjuncts(query.where))
    found = _candidates.get(memo_key) if memo_key is not None else None
    if found is None or not _same_shape(found, conjuncts):
        shape_query, shape_aliases = analysed() if analysed else (query, from_aliases)
        found = (
            len(conjuncts),
            _find_candidates(shape_query, extra_expressions, shape_aliases, conjuncts),
        )
        if memo_key is not None:
            _candidates[memo_key] = found
            if len(_candidates) > _CANDIDATES_MEMO:
                _candidates.popitem(last=False)
    pins: dict[str, Pin] = {}
    for candidate in found[1]:
        table = candidate.table
        if table in pins and pins[table].kind == "r":
            continue
        values = _values(conjuncts[candidate.index], candidate.value_type)
        if values is None:
            continue
        pins[table] = Pin(table, candidate.kind, candidate.column, values, candidate.countable)
    return tuple(pins[table] for table in sorted(pins))


def _same_shape(found: tuple[int, tuple[_Candidate, ...]], conjuncts: list[Any]) -> bool:
    """The memoised candidates still name these lookups (a safety net: the same SQL text
    comes from the same shape)."""
    if found[0] != len(conjuncts):
        return False
    for candidate in found[1]:
        lhs = conjuncts[candidate.index].lhs
        if type(lhs) is not Col or lhs.alias != candidate.alias:
            return False
        if getattr(lhs.target, "column", None) != candidate.column:
            return False
    return True


def _find_candidates(
    query: Any,
    extra_expressions: Iterable[Any],
    from_aliases: frozenset[str] | None,
    conjuncts: list[Any],
) -> tuple[_Candidate, ...]:
    """The conjuncts on a row-level table's primary key or partition column, of a table
    the query reads through one alias and nowhere else (not in a subquery)."""
    counts: dict[Any, int] = {}
    for _alias, table in dependencies.joined_aliases(query, from_aliases):
        name = getattr(table, "table_name", None)
        counts[name] = counts.get(name, 0) + 1
    elsewhere: set[str] | None = None
    found: list[_Candidate] = []
    for index, lookup in enumerate(conjuncts):
        lhs = lookup.lhs
        if type(lhs) is not Col or lhs.alias not in query.alias_map:
            continue
        table = query.alias_map[lhs.alias].table_name
        if counts.get(table) != 1:
            continue
        facts = table_rows(table)
        column = getattr(lhs.target, "column", None)
        if column is None:
            continue
        if facts.row_reads and column == facts.pk_column:
            kind, value_type = "r", facts.pk_kind
        elif facts.partition_column is not None and column == facts.partition_column:
            kind, value_type = "p", facts.partition_kind
        else:
            continue
        if elsewhere is None:
            elsewhere = dependencies.tables_in_expressions(query, *extra_expressions)
        if table in elsewhere:
            continue
        countable = kind == "r" and _one_row_each(query, lhs.alias)
        found.append(_Candidate(index, lhs.alias, table, kind, column, value_type, countable))
    return tuple(found)


def _conjuncts(node: WhereNode) -> Iterable[Any]:
    """The lookups every row of the result satisfies: the top-level AND, flattened."""
    if node.negated or node.connector != AND:
        return
    for child in node.children:
        if isinstance(child, WhereNode):
            yield from _conjuncts(child)
        elif type(child) in _exact_lookups():
            yield child


def _exact_lookups() -> frozenset[type]:
    """``=`` and ``IN`` lookups, as Django builds them (not subclasses users may define)."""
    global _EXACT_LOOKUPS
    if not _EXACT_LOOKUPS:
        from django.db.models import lookups
        from django.db.models.fields.related_lookups import RelatedExact, RelatedIn

        found = {Exact, In, RelatedExact, RelatedIn}
        integer_exact = getattr(lookups, "IntegerFieldExact", None)  # Django 5.0+
        if integer_exact is not None:
            found.add(integer_exact)
        _EXACT_LOOKUPS = frozenset(found)
    return _EXACT_LOOKUPS


def _values(lookup: Any, kind: str | None) -> frozenset[str] | None:
    rhs = lookup.rhs
    if hasattr(rhs, "resolve_expression") or not lookup.rhs_is_direct_value():
        return None
    items = list(rhs) if isinstance(lookup, In) else [rhs]
    if not items or len(items) > MAX_PINNED_READ:
        return None
    found = set()
    for item in items:
        if item is None and isinstance(lookup, In):
            continue  # IN drops NULLs
        text = canonical(kind, item)
        if text is None:
            return None
        found.add(text)
    return frozenset(found) or None


def _one_row_each(query: Any, alias: str) -> bool:
    """Each result row comes from one row of ``alias`` (the base table), none twice."""
    if alias != query.base_table or query.group_by is not None or query.distinct_fields:
        return False
    if any(getattr(a, "contains_aggregate", False) for a in query.annotations.values()):
        return False
    for other, join in query.alias_map.items():
        if other == alias:
            continue
        field = getattr(join, "join_field", None)
        # A forward foreign key or one-to-one matches at most one row per row.
        if not isinstance(field, ForeignObject) or field.many_to_many:
            return False
    return True


def read_keys(db_alias: str, deps: Iterable[str], pins: tuple[Pin, ...]) -> tuple[list[str], int]:
    """The version keys of a pinned read (global first) and how many trailing keys a
    result proving its rows exist may leave out (0 or 1: the base table's ``…:i``)."""
    pinned = {pin.table: pin for pin in pins}
    found = [keys.GLOBAL_VERSION_KEY]
    inserts: list[str] = []
    droppable = ""
    for table in sorted(deps):
        pin = pinned.get(table)
        table_key = keys.version_key(db_alias, table)
        if pin is None:
            found.append(table_key)
        elif pin.kind == "r":
            found.append(table_key + keys.ROWS_SUFFIX)
            found.extend(keys.row_key(db_alias, table, pk) for pk in sorted(pin.values))
            if pin.countable:
                droppable = table_key + keys.INSERTS_SUFFIX
            else:
                inserts.append(table_key + keys.INSERTS_SUFFIX)
        else:
            found.append(table_key + keys.PARTITIONS_SUFFIX)
            found.extend(
                keys.partition_key(db_alias, table, pin.column, value)
                for value in sorted(pin.values)
            )
    found.extend(inserts)
    if droppable:
        found.append(droppable)
    return found, 1 if droppable else 0


def proves_rows(pins: tuple[Pin, ...], result: Any, shape: str) -> bool:
    """The rows a read returned show that every row its countable pin names exists."""
    countable = [pin for pin in pins if pin.countable]
    if len(countable) != 1 or shape.startswith("aggregate"):
        return False
    if shape.startswith("single"):
        returned = 0 if result is None else 1
    else:
        returned = sum(len(chunk) for chunk in result)
    return returned >= len(countable[0].values)
