"""Template fragments cached under the versions of what they show.

Shared by the Django template tag (``{% cachedfragment %}``, in
``templatetags/ormcache.py``) and the Jinja2 extension (``ormcache.jinja2``).
A fragment is keyed by its name and its arguments. Arguments that are models,
querysets or model instances are its dependencies (an instance is also keyed by
its primary key and field values, a queryset by its SQL); any other argument is
a vary-on value, keyed by its value (``str()`` for objects that have no
faithful key, like Django's ``{% cache %}``).

Like every helper value (``versioned.py``), a fragment is served only while the
versions of its dependencies, and of every read its rendering made through a
cached manager, are current.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from . import keys, versioned
from .versioned import Dependencies, Value


def fragment_value(name: str, arguments: Iterable[Any], timeout: int | None = None) -> Value:
    """The cacheable value of fragment ``name`` rendered with ``arguments``."""
    found = Dependencies()
    identity = []
    for argument in arguments:
        try:
            identity.append(versioned.freeze(argument, found))
        except TypeError:
            identity.append(("str", str(argument)))
    entry_key = f"{keys.PREFIX}:t:{versioned.digest(str(name), identity, found.identity)}"
    return Value("fragment", str(name), entry_key, found, timeout)


def render_fragment(
    name: str, arguments: Iterable[Any], render: Callable[[], str], timeout: int | None = None
) -> str:
    """``render()``, or the fragment cached from an earlier render while it is current."""
    return versioned.get(fragment_value(name, arguments, timeout), render)


def check_timeout(timeout: Any, tag: str = "cachedfragment") -> int | None:
    """A fragment timeout: seconds (int-like, >= 0) or None; ValueError otherwise."""
    if timeout is None:
        return None
    try:
        seconds = int(timeout)
    except (TypeError, ValueError):
        raise ValueError(f"{tag!r} got a non-integer timeout: {timeout!r}") from None
    if seconds < 0 or isinstance(timeout, bool):
        raise ValueError(f"{tag!r} got a negative or boolean timeout: {timeout!r}")
    return seconds
