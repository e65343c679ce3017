"""``{% load ormcache %}``: ``{% cachedfragment %}``, a template fragment cache that is never stale.

::

    {% load ormcache %}
    {% cachedfragment "comments" post comments timeout=600 %}
      ... rendered once, then served while the post and its comments are unchanged ...
    {% endcachedfragment %}

The first argument is the fragment's name. The others are its dependencies
(models, querysets, model instances) and vary-on values (anything else), see
``ormcache/fragments.py``. ``timeout=`` is in seconds; without it the shortest
timeout of the models involved applies.
"""

from __future__ import annotations

import re
from typing import Any

from django import template
from django.db.models import Model
from django.template.base import FilterExpression, Variable
from django.utils.safestring import mark_safe

from ..fragments import check_timeout, render_fragment

register = template.Library()

_KWARG = re.compile(r"^(\w+)=(.+)$")
_MISSING = object()


class CachedFragmentNode(template.Node):
    def __init__(
        self,
        nodelist: Any,
        name: FilterExpression,
        arguments: list[FilterExpression],
        timeout: FilterExpression | None,
    ) -> None:
        self.nodelist = nodelist
        self.name = name
        self.arguments = arguments
        self.timeout = timeout

    def render(self, context: Any) -> str:
        name = self.name.resolve(context)
        if not name:
            raise template.TemplateSyntaxError("'cachedfragment' needs a non-empty name")
        timeout = None
        if self.timeout is not None:
            try:
                timeout = check_timeout(self.timeout.resolve(context))
            except ValueError as exc:
                raise template.TemplateSyntaxError(str(exc)) from None
        arguments = [_resolve(argument, context) for argument in self.arguments]
        return mark_safe(
            render_fragment(name, arguments, lambda: self.nodelist.render(context), timeout)
        )


def _resolve(argument: FilterExpression, context: Any) -> Any:
    """Resolve an argument; a model class in the context stays a class.

    Django's template engine calls callables it resolves, which would turn a
    model class into a new, unsaved instance.
    """
    var = argument.var
    if not argument.filters and isinstance(var, Variable) and len(var.lookups or ()) == 1:
        raw = context.get(var.lookups[0], _MISSING)  # type: ignore[index]
        if isinstance(raw, type) and issubclass(raw, Model):
            return raw
    return argument.resolve(context)


@register.tag("cachedfragment")
def do_cachedfragment(parser: Any, token: Any) -> CachedFragmentNode:
    """``{% cachedfragment "name" dep_or_vary ... [timeout=seconds] %}...{% endcachedfragment %}``."""
    nodelist = parser.parse(("endcachedfragment",))
    parser.delete_first_token()
    bits = token.split_contents()
    if len(bits) < 2:
        raise template.TemplateSyntaxError(
            f"'{bits[0]}' needs a fragment name: {{% {bits[0]} \"name\" dep1 dep2 %}}"
        )
    timeout = None
    arguments = []
    for bit in bits[2:]:
        match = _KWARG.match(bit)
        if match:
            if match.group(1) != "timeout":
                raise template.TemplateSyntaxError(
                    f"'{bits[0]}' got an unknown option {match.group(1)!r}; it takes timeout="
                )
            timeout = parser.compile_filter(match.group(2))
        else:
            arguments.append(parser.compile_filter(bit))
    return CachedFragmentNode(nodelist, parser.compile_filter(bits[1]), arguments, timeout)
