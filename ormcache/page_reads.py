"""What a page read while it was built: its dependencies, as one version snapshot.

Two sources report the reads of a view (and of its template, rendered inside
the same block):

- ormcache's read path (``reads.recording()``): every read of a cached
  queryset, hit, miss or bypass, with the tokens it was read under;
- an execute wrapper on every database connection, for the SQL ormcache does
  not run itself: plain managers, ``.nocache()``, ``connection.cursor()``,
  Django's own apps. A statement's tables are the identifiers in its text that
  are tables of installed models; their tokens are read *before* the statement
  runs (invariant 3: a write that commits meanwhile makes the page dead on
  arrival). A read that names no such table (``SELECT 1``, a database view or
  function ormcache does not know) has unknown dependencies, and so does one
  that calls a clock or random function: the page is not stored.

The page may be stored when every read's tables are known, no token is
pending, no version key was read under two different tokens (a write
committed while the view ran), no read was of a ``user_scoped`` or disabled
model, ``ormcache.disabled()`` was not in force, and the view wrote nothing
(a view with side effects must keep running).

The wrapper stays on a connection once added (it costs one contextvar lookup
per statement outside recordings): it is added when a connection is created
and, for connections created before this module was imported, by every
recording in the thread it runs in.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import connections
from django.db.backends.signals import connection_created

from . import conf, dependencies, reads, statements, tables, transaction, versions

#: Statements that read (anything else that does not write is transaction control).
_READ_HEAD = re.compile(r"^[\s(]*(?:SELECT|WITH|VALUES|TABLE|SHOW|EXPLAIN|PRAGMA)\b", re.I)
# String literals (skipped), quoted identifiers, then bare words (with a following "(").
_TOKENS = re.compile(
    r"""'(?:[^']|'')*'|"((?:[^"]|"")+)"|`([^`]+)`|\[([^\]]+)\]|([A-Za-z_][\w$]*)(\s*\()?"""
)
#: SQL keywords that read the clock without parentheses.
_CLOCK_KEYWORDS = frozenset(
    {"CURRENT_TIMESTAMP", "CURRENT_DATE", "CURRENT_TIME", "LOCALTIME", "LOCALTIMESTAMP"}
)
_MEMO_SIZE = 2048
_SNAPSHOT = "a transaction that reads a snapshot (REPEATABLE READ or SERIALIZABLE)"


@dataclass
class PageReads:
    """The reads of one page, filled while it is built."""

    events: list[reads.ReadEvent]
    #: (db_alias, tables, {version_key: token}) of SQL ormcache did not run itself.
    sql_reads: list[tuple[str, frozenset[str], dict[str, Any]]] = field(default_factory=list)
    #: Why the page cannot be stored, as found by the SQL watcher (first reason wins).
    problem: str = ""
    paused: int = 0
    #: Set by ``snapshot`` when the page read a user-scoped model: it is one visitor's.
    private: bool = False

    def refuse(self, reason: str) -> None:
        if not self.problem:
            self.problem = reason

    @contextlib.contextmanager
    def paused_block(self) -> Iterator[None]:
        """Reads inside are not the page's (the session and user lookups of the privacy rules)."""
        marks = len(self.events), len(self.sql_reads), self.problem
        self.paused += 1
        try:
            yield
        finally:
            self.paused -= 1
            del self.events[marks[0] :]
            del self.sql_reads[marks[1] :]
            self.problem = marks[2]

    def snapshot(self) -> tuple[dict[str, Any] | None, str, int | None, bool]:
        """``(snapshot, why_not, shortest_policy_timeout, read_anything)``.

        ``snapshot`` is None, with the reason, when the page must not be stored.
        """
        if self.problem:
            return None, self.problem, None, True
        merged: dict[str, Any] = {}
        read: set[tuple[str, str]] = set()
        for event in self.events:
            if event.tables is None:
                return None, f"a read with unknown dependencies ({event.reason})", None, True
            if event.outcome == "bypass" and event.reason == "disabled":
                return None, "ormcache.disabled() was in force", None, True
            if event.outcome == "bypass" and event.reason == "snapshot isolation":
                return None, _SNAPSHOT, None, True
            read.update((event.db_alias, table) for table in event.tables)
            if not _merge(merged, event.versions):
                return None, "the data changed while the page was built", None, True
        for db_alias, found, tokens in self.sql_reads:
            read.update((db_alias, table) for table in found)
            if not _merge(merged, tokens):
                return None, "the data changed while the page was built", None, True
        if not read:
            return {}, "", None, False
        timeouts = []
        for table in {table for _, table in read}:
            for model in tables.models_for_table(table):
                policy = conf.policy_for(model)
                if policy.user_scoped:
                    self.private = True
                    return (
                        None,
                        f"it read {model._meta.label_lower}, which is user-scoped",
                        None,
                        True,
                    )
                if not policy.enabled:
                    return None, f"caching is disabled for {model._meta.label_lower}", None, True
                if policy.timeout is not None:
                    timeouts.append(policy.timeout)
        if not versions.storable(list(merged.values())):
            return None, "a table it read has an uncommitted write", None, True
        # Fixed-lifetime reads: the page must not outlive the rows it was built from.
        expiries = [event.expires for event in self.events if event.expires is not None]
        if expiries:
            timeouts.append(max(0, int(min(expiries) - time.time())))
        return merged, "", (min(timeouts) if timeouts else None), True


def _merge(merged: dict[str, Any], tokens: dict[str, Any]) -> bool:
    for key, token in tokens.items():
        seen = merged.setdefault(key, token)
        if seen != token:
            return False
    return True


_current: contextvars.ContextVar[PageReads | None] = contextvars.ContextVar(
    "ormcache_page_reads", default=None
)


@contextlib.contextmanager
def recording() -> Iterator[PageReads]:
    """Collect the reads of everything run inside the block (threads of sync_to_async too)."""
    watch_connections()
    with reads.recording() as events:
        page_reads = PageReads(events)
        token = _current.set(page_reads)
        try:
            yield page_reads
        finally:
            _current.reset(token)


def watch_connections() -> None:
    """Add the SQL watcher to this thread's open connections that lack it.

    Connections opened later get it from ``connection_created``.
    """
    for connection in connections.all(initialized_only=True):
        _watch(connection)


def _watch(connection: Any) -> None:
    if watch_sql not in connection.execute_wrappers:
        connection.execute_wrappers.insert(0, watch_sql)  # first: see apps.watch_connection


def _on_connection_created(sender: Any = None, connection: Any = None, **kwargs: Any) -> None:
    if connection is not None:
        _watch(connection)


connection_created.connect(_on_connection_created, dispatch_uid="ormcache.page_reads")


def watch_sql(execute: Any, sql: Any, params: Any, many: bool, context: Any) -> Any:
    """The execute wrapper: note what SQL that ormcache does not run itself reads."""
    page_reads = _current.get()
    if page_reads is not None and not page_reads.paused and not reads.running_cached_read.get():
        _observe(page_reads, context["connection"], sql)
    return execute(sql, params, many, context)


def _observe(page_reads: PageReads, connection: Any, sql: Any) -> None:
    if not isinstance(sql, str):
        page_reads.refuse("SQL that is not text")
        return
    if statements.tables_written(sql):
        page_reads.refuse("the view wrote to the database")
        return
    if not _READ_HEAD.match(sql):
        return  # SAVEPOINT, RELEASE, SET...: reads nothing
    if reads.is_disabled():
        page_reads.refuse("ormcache.disabled() was in force")
        return
    if transaction.in_user_transaction(connection) and reads._sees_a_snapshot(connection):
        # REPEATABLE READ / SERIALIZABLE: the rows may predate the tokens read now.
        page_reads.refuse(_SNAPSHOT)
        return
    found = tables_named(sql)
    if isinstance(found, str):
        page_reads.refuse(found)
        return
    tokens = reads.current_versions(connection.alias, found)
    if tokens is None:
        page_reads.refuse("the cache is unavailable")
        return
    page_reads.sql_reads.append((connection.alias, found, tokens))


_memo: OrderedDict[str, frozenset[str] | str] = OrderedDict()
_memo_lock = threading.Lock()
_memo_tables: list[Any] = [None, {}]


def tables_named(sql: str) -> frozenset[str] | str:
    """The known tables ``sql`` names, or why its reads cannot be known (memoised per text)."""
    known = tables.known_tables()
    if _memo_tables[0] is not known:
        _memo.clear()
        by_lower: dict[str, list[str]] = {}
        for table in known:
            by_lower.setdefault(table.lower(), []).append(table)
        _memo_tables[:] = [known, by_lower]
    found = _memo.get(sql)
    if found is None:
        found = _find_tables(sql, _memo_tables[1])
        with _memo_lock:  # threaded servers share the memo
            _memo[sql] = found
            if len(_memo) > _MEMO_SIZE:
                _memo.popitem(last=False)
    return found


def _find_tables(sql: str, by_lower: dict[str, list[str]]) -> frozenset[str] | str:
    unknown = _unknown_relation(sql, by_lower)
    if unknown:
        return f"SQL that reads {unknown}, which is no installed model's table"
    named: set[str] = set()
    for match in _TOKENS.finditer(sql):
        quoted = match.group(1) or match.group(2) or match.group(3)
        word = match.group(4)
        if quoted is not None:
            named.update(by_lower.get(quoted.replace('""', '"').lower(), ()))
        elif word is not None:
            upper = word.upper()
            called = match.group(5) is not None
            if (called and upper in dependencies.NONDETERMINISTIC_FUNCTIONS) or (
                upper in _CLOCK_KEYWORDS
            ):
                return f"SQL that calls {upper}, whose result changes by itself"
            named.update(by_lower.get(word.lower(), ()))
    if not named:
        return "SQL that names no table of an installed model"
    return frozenset(named)


# --- the relations a statement reads from -------------------------------------------------
#
# A statement that names a model table may also read a table no model has (a legacy table,
# a table function): its changes would not reach the page, so such SQL is not stored.

_RELATION_TOKENS = re.compile(
    r"""'(?:[^']|'')*'|"(?:[^"]|"")+"|`[^`]+`|\[[^\]]+\]|[A-Za-z_][\w$]*|[(),.]|[^\s\w]"""
)
#: Functions whose arguments use FROM without naming a relation: EXTRACT(YEAR FROM x)...
_FROM_IN_ARGUMENTS = frozenset({"EXTRACT", "SUBSTRING", "TRIM", "OVERLAY", "POSITION"})
#: Words that may follow a relation and are not its alias.
_AFTER_RELATION = frozenset(
    {
        "WHERE", "GROUP", "ORDER", "HAVING", "LIMIT", "OFFSET", "INNER", "LEFT", "RIGHT",
        "FULL", "CROSS", "NATURAL", "JOIN", "ON", "USING", "UNION", "INTERSECT", "EXCEPT",
        "WINDOW", "FOR", "FETCH", "RETURNING", "AS", "LATERAL",
    }
)  # fmt: skip


def _unknown_relation(sql: str, by_lower: dict[str, list[str]]) -> str | None:
    """The first relation after FROM or JOIN (or in a FROM list) that is no model's table,
    nor a subquery or a CTE of the statement; None when every one is known."""
    tokens = _RELATION_TOKENS.findall(sql)
    words = [token.upper() if token[0].isalpha() or token[0] == "_" else token for token in tokens]
    ctes = {  # WITH name AS (...), name AS (...)
        _relation_name(tokens[i]).lower()
        for i in range(len(tokens) - 2)
        if words[i + 1] == "AS" and tokens[i + 2] == "(" and words[i] not in _AFTER_RELATION
    }
    openers: list[str] = []
    i = 0
    while i < len(tokens):
        word = words[i]
        if word == "(":
            openers.append(words[i - 1] if i else "")
        elif word == ")" and openers:
            openers.pop()
        elif word == "JOIN" or (
            word == "FROM"
            and not (openers and openers[-1] in _FROM_IN_ARGUMENTS)
            and not (i and words[i - 1] == "DISTINCT")  # IS [NOT] DISTINCT FROM
        ):
            i, unknown = _read_relations(tokens, words, i + 1, by_lower, ctes)
            if unknown:
                return unknown
            continue
        i += 1
    return None


def _read_relations(
    tokens: list[str], words: list[str], i: int, by_lower: dict[str, list[str]], ctes: set[str]
) -> tuple[int, str | None]:
    """Read ``relation [[AS] alias] [, relation ...]`` from ``i``: (where it ends, the first
    unknown relation or None)."""
    while i < len(tokens):
        if words[i] in ("ONLY", "LATERAL"):
            i += 1
            continue
        if tokens[i] == "(":
            return i, None  # a subquery: its own FROM is read in turn
        start = i
        i += 1
        while i + 1 < len(tokens) and tokens[i] == ".":  # schema.table
            i += 2
        name = _relation_name(tokens[i - 1])
        if i < len(tokens) and tokens[i] == "(":
            return i, f"{_relation_name(tokens[start])}()"  # a table function
        if name.lower() not in by_lower and name.lower() not in ctes:
            return i, name
        if i < len(tokens) and words[i] == "AS":
            i += 2
        elif i < len(tokens) and tokens[i][0].isalpha() and words[i] not in _AFTER_RELATION:
            i += 1
        elif i < len(tokens) and tokens[i][0] == '"':
            i += 1  # a quoted alias
        if i < len(tokens) and tokens[i] == ",":
            i += 1
            continue
        return i, None
    return i, None


def _relation_name(token: str) -> str:
    if token[0] in '"`[':
        return token[1:-1].replace('""', '"')
    return token
