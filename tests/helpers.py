"""Assertions shared by the test modules."""

from django.db import connection
from django.db.models import Model
from django.test.utils import CaptureQueriesContext


def plain(value):
    """Model instances (and containers of them) as comparable plain data."""
    if isinstance(value, Model):
        fields = {k: v for k, v in value.__dict__.items() if not k.startswith("_")}
        return (type(value).__name__, fields)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def assert_served_from_cache(backend, read):
    """The first ``read()`` may query; the second runs no SQL and returns the same."""
    first = read()
    with backend.queries() as captured:
        second = read()
    assert captured.captured_queries == [], "expected a cache hit, got SQL"
    assert plain(second) == plain(first)
    return second


def assert_hits_database(backend, read):
    """``read()`` runs SQL every time (it is not cacheable)."""
    read()
    with backend.queries() as captured:
        result = read()
    assert captured.captured_queries, "expected SQL, the read was served from the cache"
    return result


def title(pk):
    """The title of post ``pk``: the one-row read many tests repeat."""
    from testproject.blog.models import Post

    return Post.objects.get(pk=pk).title


def sql_count(function):
    """How many SQL statements ``function()`` sends on the default database."""
    with CaptureQueriesContext(connection) as captured:
        function()
    return len(captured.captured_queries)
