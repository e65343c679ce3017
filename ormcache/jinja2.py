"""A Jinja2 extension with the semantics of ``{% cachedfragment %}``.

::

    # settings.TEMPLATES, for Django's Jinja2 backend
    {"BACKEND": "django.template.backends.jinja2.Jinja2",
     "OPTIONS": {"extensions": ["ormcache.jinja2.CachedFragmentExtension"]}}

    {% cachedfragment "comments", post, comments, timeout=600 %}
      ...
    {% endcachedfragment %}

Arguments are separated by commas (commas may be left out); the first is the
fragment's name, the others are dependencies (models, querysets, instances) and
vary-on values, and ``timeout=`` is in seconds. See ``ormcache/fragments.py``.
Sync environments only: with ``enable_async=True`` the body is rendered without
caching.
"""

from __future__ import annotations

from typing import Any

from jinja2 import nodes
from jinja2.exceptions import TemplateSyntaxError
from jinja2.ext import Extension
from markupsafe import Markup

from .fragments import check_timeout, render_fragment


class CachedFragmentExtension(Extension):
    tags = {"cachedfragment"}

    def parse(self, parser: Any) -> nodes.Node:
        lineno = next(parser.stream).lineno
        arguments: list[nodes.Expr] = []
        timeout: nodes.Expr = nodes.Const(None)
        while parser.stream.current.type != "block_end":
            if arguments and parser.stream.current.type == "comma":
                next(parser.stream)
                continue
            if parser.stream.current.type == "name" and parser.stream.look().type == "assign":
                option = next(parser.stream).value
                if option != "timeout":
                    raise TemplateSyntaxError(
                        f"'cachedfragment' got an unknown option {option!r}; it takes timeout=",
                        lineno,
                    )
                next(parser.stream)  # "="
                timeout = parser.parse_expression()
                continue
            arguments.append(parser.parse_expression())
        if not arguments:
            raise TemplateSyntaxError("'cachedfragment' needs a fragment name", lineno)
        body = parser.parse_statements(("name:endcachedfragment",), drop_needle=True)
        call = self.call_method("_render", [nodes.List(arguments), timeout])
        return nodes.CallBlock(call, [], [], body).set_lineno(lineno)

    def _render(self, arguments: list[Any], timeout: Any, caller: Any) -> Any:
        if self.environment.is_async:
            return caller()
        name, *rest = arguments
        try:
            seconds = check_timeout(timeout)
        except ValueError as exc:
            raise TemplateSyntaxError(str(exc), None) from None  # type: ignore[arg-type]
        return Markup(render_fragment(name, rest, lambda: str(caller()), seconds))


#: Short name: ``extensions=["ormcache.jinja2.cachedfragment"]``.
cachedfragment = CachedFragmentExtension
