"""Cache what your code computes from the database, never stale: ``cached_as``, ``cached_property``.

::

    @ormcache.cached_as(Comment, Post.objects.filter(published=True), timeout=600)
    def top_commenters(limit=10):
        ...

    top_commenters(5)              # computed once, then served while its dependencies are unchanged
    top_commenters.peek(5)         # the cached value, or ormcache.NOT_CACHED; never computes
    top_commenters.invalidate(5)   # after a change ormcache cannot see

    class Post(models.Model):
        @ormcache.cached_property(depends_on=["blog.comment"])
        def comment_count(self):
            return self.comments.filter(approved=True).count()

A value is keyed by what identifies it (the function and its arguments; the
property, its instance's primary key and field values) and stored with the
version tokens of its dependencies, taken before it is computed. It is served
only while those tokens are current, exactly like a query result: any write to
a dependency, by any path ormcache sees, makes it a miss. Model instances and
querysets among a function's arguments are dependencies too. See
``versioned.py`` for the mechanics and ``docs/helpers.md`` for the rules.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any

from django.db import router
from django.db.models import Model

from . import keys, versioned
from .versioned import NOT_CACHED, Dependencies, Value

__all__ = ["NOT_CACHED", "cached_as", "cached_property"]


def _check_timeout(timeout: Any) -> None:
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0
    ):
        raise ValueError(f"timeout must be a non-negative int or None, got {timeout!r}")


def cached_as(
    *deps: Any, timeout: int | None = None, key: str | Callable[..., Any] | None = None
) -> Callable[[Callable[..., Any]], Any]:
    """Cache a function's result under the versions of ``deps``.

    ``deps`` are model classes, ``"app.model"`` labels, querysets or model
    instances. The key is the function (or ``key`` when it is a string) and its
    arguments, bound to its signature so ``f(1)`` and ``f(x=1)`` share an entry;
    a callable ``key`` receives the arguments and returns what identifies the
    call instead (for arguments that have no faithful key, like a request).
    ``timeout`` defaults to the shortest timeout of the models involved.

    The decorated function gets ``peek(*args, **kwargs)`` (the cached value or
    ``NOT_CACHED``, never computing) and ``invalidate(*args, **kwargs)``, plus
    ``apeek``/``ainvalidate`` for async code. Works on ``async def`` functions.
    """
    _check_timeout(timeout)
    if key is not None and not (isinstance(key, str) or callable(key)):
        raise TypeError("key must be a string or a callable")
    for dep in deps:  # fail at import time for what can never be a dependency
        is_model = isinstance(dep, type) and issubclass(dep, Model)
        if not (is_model or isinstance(dep, (str, Model)) or hasattr(dep, "query")):
            raise TypeError(
                "cached_as dependencies are models, 'app.model' labels, querysets or "
                f"model instances, not {type(dep).__name__}"
            )

    def decorate(function: Callable[..., Any]) -> Any:
        name = key if isinstance(key, str) else f"{function.__module__}.{function.__qualname__}"
        signature = inspect.signature(function)
        owner = object()  # identifies this decorator's dependencies in the resolve memo

        def value_for(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Value:
            found = versioned.resolve_static(owner, deps)
            if callable(key):
                identity = versioned.freeze(key(*args, **kwargs), found)
            else:
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                identity = versioned.freeze(dict(bound.arguments), found)
            entry_key = f"{keys.PREFIX}:f:{versioned.digest(name, identity, found.identity)}"
            return Value(
                "cached_as",
                name,
                entry_key,
                found,
                timeout,
                call_key=versioned.call_version_key(entry_key),
            )

        def peek(*args: Any, **kwargs: Any) -> Any:
            return versioned.peek(value_for(args, kwargs))

        def invalidate(*args: Any, **kwargs: Any) -> bool:
            return versioned.invalidate(value_for(args, kwargs))

        async def apeek(*args: Any, **kwargs: Any) -> Any:
            from asgiref.sync import sync_to_async

            return await sync_to_async(peek)(*args, **kwargs)

        async def ainvalidate(*args: Any, **kwargs: Any) -> bool:
            from asgiref.sync import sync_to_async

            return await sync_to_async(invalidate)(*args, **kwargs)

        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await versioned.aget(
                    value_for(args, kwargs), lambda: function(*args, **kwargs)
                )

            wrapper: Any = async_wrapper
        else:

            @functools.wraps(function)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                return versioned.get(value_for(args, kwargs), lambda: function(*args, **kwargs))

            wrapper = sync_wrapper
        wrapper.peek = peek
        wrapper.invalidate = invalidate
        wrapper.apeek = apeek
        wrapper.ainvalidate = ainvalidate
        return wrapper

    return decorate


class cached_property:
    """A model property whose value is shared across requests and processes, never stale.

    ::

        @ormcache.cached_property(depends_on=["blog.comment"], timeout=600)
        def comment_count(self): ...

    The value is keyed by the instance's model, database, primary key and the
    field values it holds, and stored with the versions of its own model's tables
    and of ``depends_on`` (model classes, ``"app.model"`` labels or querysets; a
    label can name a model defined later in the file). Within one instance it
    behaves like Django's ``cached_property``: computed (or fetched) on first
    access, then kept in the instance's ``__dict__``; ``del instance.name``
    forgets it. An unsaved instance computes without caching.
    """

    name: str = ""

    def __init__(
        self,
        function: Callable[[Any], Any] | None = None,
        *,
        depends_on: Iterable[Any] = (),
        timeout: int | None = None,
    ) -> None:
        _check_timeout(timeout)
        if isinstance(depends_on, (str, type)) or hasattr(depends_on, "query"):
            depends_on = (depends_on,)
        self.depends_on = tuple(depends_on)
        self.timeout = timeout
        self.function = function
        self.owner_name = ""
        if function is not None:
            functools.update_wrapper(self, function)

    def __call__(self, function: Callable[[Any], Any]) -> cached_property:
        if self.function is not None:
            raise TypeError("cached_property is already bound to a function")
        self.function = function
        functools.update_wrapper(self, function)
        return self

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.owner_name = f"{owner.__module__}.{owner.__qualname__}.{name}"

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        function = self.function
        if function is None or not self.name:
            raise TypeError("cached_property must decorate a method of a model class")
        if not isinstance(instance, Model):
            raise TypeError(f"ormcache.cached_property works on models, not {type(instance)!r}")
        value = versioned.get(self.value_for(instance), lambda: function(instance))
        instance.__dict__[self.name] = value
        return value

    def value_for(self, instance: Any) -> Value:
        found = Dependencies()
        db_alias = instance._state.db or router.db_for_read(type(instance), instance=instance)
        found.add_instance(instance, db_alias)
        for dep in self.depends_on:
            found.add(dep, db_alias)
        entry_key = f"{keys.PREFIX}:p:{versioned.digest(self.owner_name, found.identity)}"
        return Value("cached_property", self.owner_name, entry_key, found, self.timeout)
