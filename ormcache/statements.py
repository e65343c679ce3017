"""Which tables an SQL statement writes, read from the head of the statement.

Every write reaches the database as SQL through a connection, whoever made it:
the ORM (save, delete and its cascades, update, bulk operations, m2m changes)
or ``connection.cursor()``. This module reads only the grammar of a statement's
head (``INSERT INTO t``, ``UPDATE t``, ``DELETE FROM t``, ``TRUNCATE a, b``);
when a statement is not one of those simple shapes and may write (DDL, MERGE,
COPY, data-modifying CTEs, several statements in one string...), the answer is
``EVERYTHING``: the caller invalidates all tables rather than guess.
"""

from __future__ import annotations

import re

#: Returned for statements that may write tables we cannot name.
EVERYTHING = frozenset({"*"})
NOTHING: frozenset[str] = frozenset()

_NAME = r'(?:"(?:[^"]|"")+"|`[^`]+`|\[[^\]]+\]|[\w$]+)'
_QUALIFIED = rf"{_NAME}(?:\s*\.\s*{_NAME})*"
_HEADS = [
    re.compile(rf"^\s*INSERT\s+(?:OR\s+\w+\s+)?INTO\s+({_QUALIFIED})", re.I),
    re.compile(rf"^\s*REPLACE\s+INTO\s+({_QUALIFIED})", re.I),
    re.compile(rf"^\s*UPDATE\s+(?:OR\s+\w+\s+)?(?:ONLY\s+)?({_QUALIFIED})", re.I),
    re.compile(rf"^\s*DELETE\s+FROM\s+(?:ONLY\s+)?({_QUALIFIED})", re.I),
]
_TRUNCATE = re.compile(
    rf"^\s*TRUNCATE\s+(?:TABLE\s+)?(?:ONLY\s+)?((?:{_QUALIFIED})(?:\s*,\s*(?:{_QUALIFIED}))*)"
    r"(?:\s+(?:RESTART|CONTINUE)\s+IDENTITY)?\s*(CASCADE)?\s*;?\s*$",
    re.I,
)
#: Statements that never write a table.
_READ_ONLY = re.compile(
    r"^\s*(?:SELECT|VALUES|SHOW|EXPLAIN|PRAGMA|"
    r"SAVEPOINT|RELEASE|ROLLBACK|BEGIN|START\s+TRANSACTION|COMMIT|END|SET|RESET|"
    r"DECLARE|FETCH|CLOSE|LISTEN|UNLISTEN|NOTIFY|DEALLOCATE|PREPARE)\b",
    re.I,
)
_WRITE_WORDS = re.compile(r"\b(?:INSERT|UPDATE|DELETE|MERGE|TRUNCATE|INTO)\b", re.I)


def _unquote(name: str) -> str:
    last = re.findall(_NAME, name)[-1]
    if last[0] == '"':
        return last[1:-1].replace('""', '"')
    if last[0] in "`[":
        return last[1:-1]
    return last.lower()


#: What may hold a ";" that does not end a statement: string literals, quoted names
#: and comments.
_NOT_CODE = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/", re.S)
#: EXPLAIN ANALYZE runs the statement it explains (PostgreSQL, MySQL).
_EXPLAIN_ANALYZE = re.compile(r"^\s*EXPLAIN\b[^;]*?\bANALY[SZ]E\b", re.I)


def _statements(sql: str) -> list[str]:
    """The statements of ``sql``, with literals, quoted names and comments blanked out."""
    return [part for part in _NOT_CODE.sub(" ", sql).split(";") if part.strip()]


def tables_written(sql: str) -> frozenset[str]:
    """The tables ``sql`` writes: NOTHING for reads, EVERYTHING when unsure."""
    if ";" in sql:
        parts = _statements(sql)
        if len(parts) > 1:
            # The head names only the first statement's tables: "SET ...; SET ..." (as
            # Django's MySQL backend sends on connecting) reads, "SELECT 1; UPDATE t ..."
            # may write anything.
            return NOTHING if not any(map(tables_written, parts)) else EVERYTHING
    # Compound queries start with a parenthesis: "(SELECT ...) UNION (SELECT ...)".
    head = sql.lstrip(" \t\r\n(")[:10].upper()
    if head.startswith(("SELECT", "WITH")):
        # A SELECT never writes a table; a CTE may (PostgreSQL's data-modifying WITH).
        if head.startswith("SELECT") or not _WRITE_WORDS.search(sql):
            return NOTHING
        return EVERYTHING
    if _READ_ONLY.match(sql):
        if head.startswith("EXPLAIN") and _EXPLAIN_ANALYZE.match(sql) and _WRITE_WORDS.search(sql):
            return EVERYTHING
        return NOTHING
    for pattern in _HEADS:
        match = pattern.match(sql)
        if match:
            return frozenset({_unquote(match.group(1))})
    match = _TRUNCATE.match(sql)
    if match and not match.group(2):
        names = re.findall(rf"{_QUALIFIED}", match.group(1))
        return frozenset(_unquote(name) for name in names)
    return EVERYTHING
