"""Caching for models whose code we do not own (``auth.Group``, third-party apps).

A model named in ``ORMCACHE["MODELS"]`` (by ``"app.model"`` or ``"app.*"``)
whose managers do not produce CachedQuerySets gets caching at app ready. Only
that model's own manager instances change class (to a subclass that mixes
caching into their QuerySet class); no Django class and no other model is
touched, and the managers still deconstruct to their original class for
migrations.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable
from typing import Any

from . import conf
from .query import CachedQuerySetMixin


def install_listed_models(models: Iterable[Any]) -> list[Any]:
    """Install caching on every listed, enabled model that lacks it; return those models."""
    installed = []
    for model in models:
        policy = conf.policy_for(model)
        if policy.listed and policy.enabled and install(model):
            installed.append(model)
    return installed


def install(model: Any) -> bool:
    """Give ``model`` caching managers; True if anything changed.

    The model's own ``local_managers`` are changed (inherited ones are copied into
    them first), not the computed ``managers`` list: Django rebuilds that from
    ``local_managers`` whenever the app registry changes.
    """
    opts = model._meta
    changed = False
    for manager in opts.managers:
        queryset_class = getattr(manager, "_queryset_class", None)
        if queryset_class is None or issubclass(queryset_class, CachedQuerySetMixin):
            continue
        own = next((m for m in opts.local_managers if m.name == manager.name), None)
        if own is None:  # inherited from an abstract parent: shadow it with a copy
            own = copy.copy(manager)
            opts.local_managers.insert(0, own)
        own.__class__ = _caching_manager_class(type(own), queryset_class)  # type: ignore[arg-type]
        changed = True
    if changed:
        opts._expire_cache()
    return changed


@functools.cache
def _caching_manager_class(manager_class: type, queryset_class: type) -> type:
    cached_queryset = type(
        f"Cached{queryset_class.__name__}", (CachedQuerySetMixin, queryset_class), {}
    )

    def deconstruct(self: Any) -> Any:
        # Migrations must reference the original, importable manager class.
        original = copy.copy(self)
        original.__class__ = manager_class
        return original.deconstruct()

    return type(
        manager_class.__name__,
        (manager_class,),
        {
            "_queryset_class": cached_queryset,
            "deconstruct": deconstruct,
            "nocache": lambda self: self.get_queryset().nocache(),
            "cache": lambda self, timeout=None: self.get_queryset().cache(timeout),
            "__module__": manager_class.__module__,
            "_ormcache_installed": True,
        },
    )
