"""CachedQuerySet, CachedManager and the compiler hook they reach.

The hook sits where Django turns a query into rows: ``SQLCompiler.execute_sql``
for reads that return rows (iteration, ``get``, ``first``, ``exists``,
``values``, ``in_bulk``, prefetches, ``union``...) and
``Query.get_aggregation`` for ``count()`` and ``aggregate()``, whose subquery
form (over sliced, distinct or grouped querysets) builds an ``AggregateQuery``
that never passes through our compiler. Both are reached only through
``CachedQuery``, the Query class a CachedQuerySet uses: no Django class is
patched.

Entries hold the raw rows the database returned, before Django's converters,
so every hit builds fresh model instances and nothing mutable is shared.
"""

from __future__ import annotations

import contextvars
import functools
import re
from collections.abc import Callable
from typing import Any, TypeVar, cast

from django.core.exceptions import EmptyResultSet
from django.db import connections, models
from django.db.models.sql.compiler import SQLCompiler, cursor_iter
from django.db.models.sql.constants import GET_ITERATOR_CHUNK_SIZE, MULTI, SINGLE
from django.db.models.sql.query import Query

from . import compiled, dependencies, reads, rows, stale

_QS = TypeVar("_QS", bound="CachedQuerySetMixin")

try:  # Django >= 4.2 signals "no WHERE needed" with FullResultSet.
    from django.core.exceptions import FullResultSet
except ImportError:  # pragma: no cover
    FullResultSet = EmptyResultSet  # type: ignore[misc,assignment]


class _SubqueryAggregation(Exception):
    """Django chose the subquery form of an aggregation (see CachedQuery.get_aggregation)."""


class _AggregationProbe:
    outer_compiled = False


_aggregation_probe: contextvars.ContextVar[_AggregationProbe | None] = contextvars.ContextVar(
    "ormcache_aggregation_probe", default=None
)


class CachingCompilerMixin:
    """Serves MULTI and SINGLE results of read queries through ``reads.fetch``."""

    query: CachedQuery
    connection: Any
    using: str | None
    col_count: int
    has_extra_select: bool

    #: The aliases the last as_sql() put in the FROM clause (None: no FROM clause
    #: compiled, as for a union). dependencies.tables_read reads only these tables.
    from_aliases: frozenset[str] | None = None

    def as_sql(self, *args: Any, **kwargs: Any) -> Any:
        probe = _aggregation_probe.get()
        if probe is not None and not probe.outer_compiled:
            # Django is compiling us as the inner query of its own AggregateQuery,
            # which runs without our compiler: stop before it reaches the database.
            raise _SubqueryAggregation
        self.from_aliases = None
        return super().as_sql(*args, **kwargs)  # type: ignore[misc]

    def get_from_clause(self) -> Any:
        # Django skips the aliases nobody references (joins it trimmed) and resets the
        # reference counts once compiled: this is the only moment they are known.
        refcount = self.query.alias_refcount
        self.from_aliases = frozenset(alias for alias in self.query.alias_map if refcount[alias])
        return super().get_from_clause()  # type: ignore[misc]

    def execute_sql(
        self,
        result_type: Any = MULTI,
        chunked_fetch: bool = False,
        chunk_size: int = GET_ITERATOR_CHUNK_SIZE,
    ) -> Any:
        probe = _aggregation_probe.get()
        if probe is not None:
            probe.outer_compiled = True
        parent = super().execute_sql  # type: ignore[misc]
        if (
            chunked_fetch  # iterator() streams: nothing to keep
            or result_type not in (MULTI, SINGLE)
            # Locks rows, so it must reach the database; checked here, not in the
            # per-SQL plan, because on SQLite it compiles to the plain query's SQL.
            or self.query.select_for_update
            or not _wants_cache(self.query)
        ):
            return parent(result_type, chunked_fetch, chunk_size)
        shape = compiled.shape_of(self)
        reused = compiled.reuse(self, shape) if shape is not None else None
        try:
            sql, params = reused or compiled.compile_and_remember(self, shape)
        except EmptyResultSet:
            return parent(result_type, chunked_fetch, chunk_size)
        if not sql:
            return parent(result_type, chunked_fetch, chunk_size)
        from_aliases = self.from_aliases
        analysed: Callable[[], tuple[Query, frozenset[str] | None]]
        if reused:
            # The query was not compiled: Django adds some joins only while compiling.
            analysed = functools.cache(functools.partial(compiled.compiled_clone, self))
        else:
            analysed = lambda: (self.query, from_aliases)  # noqa: E731
        return reads.fetch(
            model=self.query.model,
            db_alias=self.connection.alias,
            sql=sql,
            params=params,
            shape=f"{'multi' if result_type == MULTI else 'single'}:{self.col_count}",
            find_dependencies=lambda: _tables_read(*analysed()),
            run=functools.partial(self._run, sql, params, result_type, chunk_size),
            timeout=self.query.ormcache_timeout,
            find_pins=lambda: rows.read_pins(
                self.query,
                from_aliases=from_aliases,
                memo_key=(self.connection.alias, sql),
                analysed=analysed,
            ),
        )

    def _run(self, sql: str, params: Any, result_type: Any, chunk_size: int) -> Any:
        """Run SQL already compiled (as execute_sql would) and materialise the rows."""
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, params)
        except Exception:
            cursor.close()
            raise
        if result_type == SINGLE:
            try:
                row = cursor.fetchone()
                return row[0 : self.col_count] if row else row
            finally:
                cursor.close()
        return list(
            cursor_iter(
                cursor,
                self.connection.features.empty_fetchmany_value,
                self.col_count if self.has_extra_select else None,
                chunk_size,
            )
        )


def _tables_read(query: Query, from_aliases: frozenset[str] | None) -> frozenset[str]:
    return dependencies.tables_read(query, from_aliases=from_aliases)


@functools.cache
def caching_compiler(base: type) -> type:
    """The caching subclass of a backend's SQLCompiler class (made once per class)."""
    return type(f"Caching{base.__name__}", (CachingCompilerMixin, base), {})


def _wants_cache(query: Query) -> bool:
    return getattr(query, "ormcache_enabled", False) and not reads.is_disabled()


class CachedQuery(Query):
    """A Query whose compiler and aggregations go through the cache.

    ``ormcache_enabled`` and ``ormcache_timeout`` live in the instance dict, which
    ``Query.clone`` copies, so ``nocache()``/``cache()`` survive chaining.
    """

    ormcache_enabled = True
    ormcache_timeout: int | None = None

    def get_compiler(
        self, using: str | None = None, connection: Any = None, elide_empty: bool = True
    ) -> SQLCompiler:
        if using is None and connection is None:
            raise ValueError("Need either using or connection")
        if using:
            connection = connections[using]
        base = connection.ops.compiler(self.compiler)
        if base is not SQLCompiler and not issubclass(base, SQLCompiler):
            return base(self, connection, using, elide_empty)
        return caching_compiler(base)(self, connection, using, elide_empty)

    def get_aggregation(self, using: str, aggregate_exprs: dict[str, Any]) -> dict[str, Any]:
        """Cache ``count()``/``aggregate()``.

        The plain form (``SELECT COUNT(*) FROM ...``) runs through our compiler and
        is cached like any read. The subquery form (over sliced, distinct, grouped
        or combined querysets) runs through Django's AggregateQuery, which our
        compiler never executes: the probe notices it compiling our query as its
        inner query and stops it before the database, and we cache that form by a
        signature instead.
        """
        parent = super().get_aggregation
        if not aggregate_exprs or not _wants_cache(self):
            return parent(using, aggregate_exprs)
        pristine = cast("CachedQuery", self.clone())  # get_aggregation mutates its query
        token = _aggregation_probe.set(_AggregationProbe())
        try:
            return parent(using, aggregate_exprs)
        except _SubqueryAggregation:
            pass
        finally:
            _aggregation_probe.reset(token)
        return pristine._get_aggregation_by_signature(using, aggregate_exprs)

    def _get_aggregation_by_signature(
        self, using: str, aggregate_exprs: dict[str, Any]
    ) -> dict[str, Any]:
        parent = super().get_aggregation
        try:
            signature = _aggregation_signature(self, using, aggregate_exprs)
        except (EmptyResultSet, FullResultSet):
            return parent(using, aggregate_exprs)
        except Exception:
            # Let Django raise its own error for an invalid aggregate.
            return parent(using, aggregate_exprs)
        sql, params, probe, resolved, from_aliases = signature

        def run() -> dict[str, Any]:
            token = reads._filling_aggregate.set(True)
            try:
                return parent(using, aggregate_exprs)
            finally:
                reads._filling_aggregate.reset(token)

        return reads.fetch(
            model=self.model,
            db_alias=using,
            sql=sql,
            params=params,
            shape="aggregate",
            find_dependencies=lambda: dependencies.tables_read(
                probe, *resolved, from_aliases=from_aliases
            ),
            run=run,
            timeout=self.ormcache_timeout,
            find_pins=lambda: rows.read_pins(
                probe, resolved, from_aliases, memo_key=(using, "aggregate", sql)
            ),
        )


def _aggregation_signature(query: Query, using: str, aggregate_exprs: dict[str, Any]) -> Any:
    """SQL text and params that identify ``aggregate(**aggregate_exprs)`` over ``query``.

    Django builds the real aggregation query inside ``get_aggregation`` (possibly
    around a subquery) and runs it at once, so we identify the request by what
    determines its result: the query with the joins the aggregates need, and the
    SQL of each aggregate resolved against it, with the field it converts to. The same
    text means the same result; a different request can only make a different text.
    """
    probe = query.clone()
    resolved = {
        alias: expression.resolve_expression(probe, allow_joins=True, reuse=None, summarize=True)
        for alias, expression in aggregate_exprs.items()
    }
    compiler = probe.get_compiler(using)
    sql, params = compiler.as_sql()
    parts, all_params = [sql], list(params)
    for alias, expression in resolved.items():
        expression_sql, expression_params = compiler.compile(expression)
        # The output field decides how Django converts the value (Sum(..., output_field=
        # FloatField()) has Sum(...)'s SQL), and the cache holds converted values.
        parts.append(f"{alias}={expression_sql} AS {_field_signature(expression.output_field)}")
        all_params.extend(expression_params)
    from_aliases = getattr(compiler, "from_aliases", None)
    return "\n".join(parts), tuple(all_params), probe, list(resolved.values()), from_aliases


_ADDRESS = re.compile(r" (?:object )?at 0x[0-9a-fA-F]+")


def _field_signature(field: Any) -> str:
    """A field's class and arguments: two fields that convert alike share it. Without
    memory addresses (``default=timezone.now``, ``on_delete=CASCADE``, lazy names), so
    every process makes the same key."""
    _name, path, args, kwargs = field.deconstruct()
    return _ADDRESS.sub("", f"{path}{args!r}{sorted(kwargs.items())!r}")


class CachedQuerySetMixin:
    """Add to your own QuerySet class to cache it: ``class MyQS(CachedQuerySetMixin, QuerySet)``."""

    query: Any
    _result_cache: list[Any] | None

    def __init__(
        self,
        model: Any = None,
        query: Any = None,
        using: str | None = None,
        hints: dict | None = None,
    ) -> None:
        if query is None and model is not None:
            query = CachedQuery(model)
        super().__init__(model=model, query=query, using=using, hints=hints)  # type: ignore[call-arg]

    def _fetch_all(self) -> None:
        # Django's _fetch_all, plus marking instances built from a cache hit for
        # the stale-save guard (before prefetches run their own reads).
        if self._result_cache is None:
            token = stale.last_hit.set(None)
            try:
                rows = list(self._iterable_class(self))  # type: ignore[attr-defined]
                self._result_cache = rows
                hit = stale.last_hit.get()
            finally:
                stale.last_hit.reset(token)
            if hit is not None:
                stale.remember(rows, hit, self._known_related_objects)  # type: ignore[attr-defined]
        if self._prefetch_related_lookups and not self._prefetch_done:  # type: ignore[attr-defined]
            self._prefetch_related_objects()  # type: ignore[attr-defined]

    def nocache(self: _QS) -> _QS:
        """This queryset (and what is chained from it) always goes to the database."""
        clone = self._chain()  # type: ignore[attr-defined]
        clone.query.ormcache_enabled = False
        return clone

    def cache(self: _QS, timeout: int | None = None) -> _QS:
        """Cache this queryset (undoing ``nocache()``), optionally with its own timeout.

        A model whose policy disables caching is still never cached.
        """
        if timeout is not None and (not isinstance(timeout, int) or timeout < 0):
            raise ValueError("timeout must be a non-negative int or None")
        clone = self._chain()  # type: ignore[attr-defined]
        clone.query.ormcache_enabled = True
        clone.query.ormcache_timeout = timeout
        return clone


class CachedQuerySet(CachedQuerySetMixin, models.QuerySet):
    """A QuerySet whose reads are served from the cache while they are current."""


class CachedManager(models.Manager.from_queryset(CachedQuerySet)):  # type: ignore[misc]
    """``objects = CachedManager()``: the model's reads go through ormcache."""

    @classmethod
    def from_queryset(cls, queryset_class: type, class_name: str | None = None) -> type:
        """Like Manager.from_queryset, mixing caching into a plain QuerySet class."""
        if not issubclass(queryset_class, CachedQuerySetMixin):
            queryset_class = type(
                queryset_class.__name__,
                (CachedQuerySetMixin, queryset_class),
                {
                    "__module__": queryset_class.__module__,
                    "__qualname__": queryset_class.__qualname__,
                },
            )
        return super().from_queryset(queryset_class, class_name)
