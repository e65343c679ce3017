"""Which rows a write statement changes, when its SQL says so exactly.

The execute wrapper (invalidation.py) asks this module about every write to one table.
It recognises only the exact shapes Django's compilers send, on the parameters sent
with them, and answers with *marks* (rows.py) naming the keys to bump:

- ``INSERT [OR IGNORE] INTO "t" (cols) VALUES (%s, ...), ...`` (optionally
  ``ON CONFLICT DO NOTHING`` and ``RETURNING ...``), and PostgreSQL's
  ``INSERT INTO "t" (cols) SELECT * FROM UNNEST(...)``: the table key, ``…:i`` and
  the partitions of the inserted rows (or ``…:pw`` when their values are not in it);
- ``UPDATE "t" SET "c" = ..., ... WHERE <w>`` and ``DELETE FROM "t" WHERE <w>``, where
  ``<w>`` is a conjunction of ``"t"."c" = %s`` and ``"t"."c" IN (%s, ...)`` terms:
  with a term on the primary key, the table key and those rows' keys; with one on the
  partition column, the table key, those partitions' keys and ``…:rw``. A changed row
  whose partition the statement does not name (a pk-filtered write to a partitioned
  table, or a SET of the partition column) bumps ``…:pw``.

Anything else — another shape, a SET of the primary key, parameters of a type without
a canonical text, too many rows — is None: the caller bumps the table as a whole. So a
statement is treated as row-level only when the rows it can change are exactly those.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from . import rows

_IDENT = r'"(?:[^"]|"")+"'
_INSERT = re.compile(
    rf"^INSERT(?: OR IGNORE)? INTO ({_IDENT}) \(((?:{_IDENT})(?:, {_IDENT})*)\) "
    r"(VALUES .+?|SELECT \* FROM UNNEST\(.+\))"
    r"( ON CONFLICT DO NOTHING)?( RETURNING [^;]+)?$",
    re.S,
)
_UPDATE = re.compile(rf"^UPDATE ({_IDENT}) SET (.+)$", re.S)
_DELETE = re.compile(rf"^DELETE FROM ({_IDENT}) WHERE (.+)$", re.S)
_ASSIGNMENT = re.compile(rf"^({_IDENT}) = (.+)$", re.S)
_TERM = re.compile(rf"^({_IDENT})\.({_IDENT}) (?:= %s|IN \(%s(?:, %s)*\))$")
_VALUES_ROW = re.compile(r"\(%s(?:, %s)*\)")
_PLACEHOLDER = re.compile(r"%%|%s|%\(")


def _name(quoted: str) -> str:
    return quoted[1:-1].replace('""', '"')


def changes(sql: str, params: Any, many: bool, table: str) -> frozenset[tuple] | None:
    """The marks of ``sql`` (a write to ``table``), or None: rows unknown."""
    facts = rows.table_rows(table)
    if facts.pk_column is None and facts.partition_column is None:
        return None
    if many:
        if not isinstance(params, (list, tuple)):
            return None  # an iterator (executemany takes them): reading it here would empty it
        found: set[tuple] = set()
        for each in params or ():
            one = _changes(sql, each, table, facts)
            if one is None:
                return None
            found |= one
        return frozenset(found) or None
    return _changes(sql, params, table, facts)


def _changes(sql: str, params: Any, table: str, facts: rows.TableRows) -> frozenset[tuple] | None:
    if params is None:
        params = ()
    if not isinstance(params, (list, tuple)):
        return None  # named parameters: not a shape Django sends for writes
    shape = _shape(sql, table)
    if isinstance(shape, _Insert):
        return _insert(shape, params, table, facts)
    if shape is None or facts.pk_column in shape.assigned:
        return None
    return _filtered(shape, params, table, facts)


@dataclass(frozen=True)
class _Insert:
    """An INSERT of new rows only: its columns and its VALUES or UNNEST part."""

    columns: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class _Filtered:
    """An UPDATE (``assigned`` columns, ``before`` parameters in its SET) or a DELETE,
    filtered by a conjunction of terms: ``(column, parameters)`` each."""

    assigned: frozenset[str]
    before: int
    terms: tuple[tuple[str, int], ...]


_shapes: OrderedDict[tuple[str, str], _Insert | _Filtered | None] = OrderedDict()
_SHAPES_MEMO = 1024
_UNKNOWN = object()


def _shape(sql: str, table: str) -> _Insert | _Filtered | None:
    """What the text of a write says, worked out once per SQL text: a model's save()
    sends the same text every time, only its parameters change."""
    key = (sql, table)
    found = _shapes.get(key, _UNKNOWN)
    if found is _UNKNOWN:
        found = _read_shape(sql.strip(), table)
        _shapes[key] = found
        if len(_shapes) > _SHAPES_MEMO:
            _shapes.popitem(last=False)
    return found  # type: ignore[return-value]


def _read_shape(sql: str, table: str) -> _Insert | _Filtered | None:
    if sql.startswith("INSERT"):
        match = _INSERT.match(sql)
        if match is None or _name(match.group(1)) != table or not _only_new_rows(match.group(3)):
            return None
        columns = tuple(_name(c) for c in re.findall(_IDENT, match.group(2)))
        return _Insert(columns, match.group(3))
    if sql.startswith("UPDATE"):
        match = _UPDATE.match(sql)
        if match is None or _name(match.group(1)) != table:
            return None
        parts = _split_top_level(match.group(2), " WHERE ")
        if parts is None or len(parts) != 2:
            return None
        assigned = _assigned_columns(parts[0])
        if assigned is None:
            return None
        return _filtered_shape(parts[0], parts[1], table, assigned)
    if sql.startswith("DELETE"):
        match = _DELETE.match(sql)
        if match is None or _name(match.group(1)) != table:
            return None
        return _filtered_shape("", match.group(2), table, set())
    return None


def _filtered_shape(
    assignments: str, where: str, table: str, assigned: set[str]
) -> _Filtered | None:
    before = _placeholders(assignments)
    terms = _terms(where, table)
    if before is None or terms is None:
        return None
    return _Filtered(frozenset(assigned), before, tuple(terms))


def _insert(
    shape: _Insert, params: Any, table: str, facts: rows.TableRows
) -> frozenset[tuple] | None:
    marks: set[tuple] = {("t", table), ("i", table)}
    if facts.partition_column is None:
        return frozenset(marks)
    values = _inserted_values(shape.source, params, list(shape.columns), facts.partition_column)
    if values is None:
        marks.add(("pw", table))
        return frozenset(marks)
    for value in values:
        if value is None:
            continue  # a NULL partition is in no partition a read can pin
        text = rows.canonical(facts.partition_kind, value)
        if text is None:
            marks.add(("pw", table))
        else:
            marks.add(("p", table, facts.partition_column, text))
    return frozenset(marks)


def _only_new_rows(source: str) -> bool:
    """``VALUES (...), (...)`` or ``SELECT * FROM UNNEST(...)`` and nothing after it (an
    ``ON CONFLICT ... DO UPDATE`` changes rows that exist: not an insert of new rows)."""
    if source.startswith("VALUES "):
        groups = _split_top_level(source[len("VALUES ") :], ", ")
        return groups is not None and all(g.startswith("(") and _closes_at_end(g) for g in groups)
    body = source[len("SELECT * FROM UNNEST") :]
    return body.startswith("(") and _closes_at_end(body)


def _inserted_values(source: str, params: Any, columns: list[str], column: str) -> list | None:
    """The partition column's value in each inserted row, or None when unknown."""
    if column not in columns:
        return None  # a database default
    index, width = columns.index(column), len(columns)
    if source.startswith("VALUES"):
        groups = _split_top_level(source[len("VALUES ") :], ", ")
        if groups is None or not all(_VALUES_ROW.fullmatch(g) for g in groups):
            return None
        if any(g.count("%s") != width for g in groups) or len(params) != width * len(groups):
            return None
        return [params[row * width + index] for row in range(len(groups))]
    # UNNEST: one array parameter per column.
    if _placeholders(source) != width or len(params) != width:
        return None
    found = params[index]
    return list(found) if isinstance(found, (list, tuple)) else None


def _filtered(
    shape: _Filtered, params: Any, table: str, facts: rows.TableRows
) -> frozenset[tuple] | None:
    """Marks of an UPDATE or DELETE of this shape, sent with ``params``."""
    if shape.before + sum(count for _, count in shape.terms) != len(params):
        return None
    position = shape.before
    by_column: dict[str, list[Any]] = {}
    for column, count in shape.terms:
        values = list(params[position : position + count])
        position += count
        if column not in by_column:  # a later term on the same column only narrows
            by_column[column] = values
    marks: set[tuple] = {("t", table)}
    partition = facts.partition_column
    pks = _canonical_all(facts.pk_kind, by_column.get(facts.pk_column)) if facts.pk_column else None
    parts = _canonical_all(facts.partition_kind, by_column.get(partition)) if partition else None
    if pks is not None:
        marks.update(("r", table, pk) for pk in pks)
    elif parts is not None:
        marks.add(("rw", table))
    else:
        return None
    if partition is not None:
        if parts is not None and partition not in shape.assigned:
            marks.update(("p", table, partition, value) for value in parts)
        else:
            marks.add(("pw", table))
    return frozenset(marks)


def _canonical_all(kind: str | None, values: list[Any] | None) -> list[str] | None:
    if not values or len(values) > rows.MAX_PINNED_WRITE:
        return None
    found = [rows.canonical(kind, value) for value in values]
    return None if None in found else found  # type: ignore[return-value]


def _terms(where: str, table: str) -> list[tuple[str, int]] | None:
    """``[(column, parameters)]`` of a conjunction of simple terms on ``table``."""
    where = where.strip()
    if where.startswith("(") and where.endswith(")") and _closes_at_end(where):
        where = where[1:-1]
    parts = _split_top_level(where, " AND ")
    if parts is None:
        return None
    found = []
    for part in parts:
        match = _TERM.match(part.strip())
        if match is None or _name(match.group(1)) != table:
            return None
        found.append((_name(match.group(2)), part.count("%s")))
    return found


def _assigned_columns(assignments: str) -> set[str] | None:
    parts = _split_top_level(assignments, ", ")
    if parts is None:
        return None
    found = set()
    for part in parts:
        match = _ASSIGNMENT.match(part)
        if match is None:
            return None
        found.add(_name(match.group(1)))
    return found


def _placeholders(text: str) -> int | None:
    """How many parameters ``text`` takes; None when it holds quotes or named ones."""
    if "'" in text:
        return None
    tokens = _PLACEHOLDER.findall(text)
    if "%(" in tokens:
        return None
    return tokens.count("%s")


def _closes_at_end(text: str) -> bool:
    """The parenthesis that opens ``text`` is the one that closes it."""
    depth = 0
    for position, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return position == len(text) - 1
    return False


def _split_top_level(text: str, separator: str) -> list[str] | None:
    """``text`` split at ``separator`` outside parentheses and quotes; None if unbalanced."""
    parts, depth, start, position, quote = [], 0, 0, 0, ""
    upper = text.upper()
    while position < len(text):
        char = text[position]
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                return None
        elif depth == 0 and upper.startswith(separator, position):
            parts.append(text[start:position])
            position += len(separator)
            start = position
            continue
        position += 1
    if depth or quote:
        return None
    parts.append(text[start:])
    return parts
