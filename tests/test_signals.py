"""blinker signals: hit, miss, stored and invalidated, with their arguments."""

import pytest

from ormcache import signals
from testproject.blog.models import Post
from tests.factories import PostFactory


@pytest.fixture
def received():
    events = []
    receivers = []
    for signal in (
        signals.cache_hit,
        signals.cache_miss,
        signals.cache_stored,
        signals.invalidated,
    ):

        def receiver(sender, _name=signal.name, **kwargs):
            events.append((_name.split(".")[-1], sender, kwargs))

        signal.connect(receiver)
        receivers.append((signal, receiver))
    yield events
    for signal, receiver in receivers:
        signal.disconnect(receiver)


def test_miss_store_hit_invalidate(backend, received):
    PostFactory()
    received.clear()
    list(Post.objects.filter(rating=0))
    list(Post.objects.filter(rating=0))
    names = [name for name, _sender, _kwargs in received]
    assert names == ["cache-miss", "cache-stored", "cache-hit"]
    for name, sender, kwargs in received:
        assert sender is Post, name
        assert kwargs["labels"] == ("blog.post",)
        assert kwargs["db_alias"] == backend.db_alias
        assert kwargs["key"].startswith("ormcache:r:")
        assert kwargs["elapsed"] >= 0
    assert len({kwargs["key"] for _n, _s, kwargs in received}) == 1

    received.clear()
    Post.objects.update(rating=2)
    name, sender, kwargs = received[-1]
    assert name == "invalidated"
    assert sender is Post
    assert kwargs["tables"] == ("blog_post",)
    assert kwargs["labels"] == ("blog.post",)
    assert kwargs["db_alias"] == backend.db_alias


def test_join_reports_every_model_label(backend, received):
    PostFactory()
    received.clear()
    list(Post.objects.select_related("author"))
    _name, _sender, kwargs = received[0]
    assert kwargs["labels"] == ("blog.author", "blog.post")


def test_invalidate_all_is_signalled(backend, received):
    import ormcache

    ormcache.invalidate_all()
    assert received[-1][0] == "invalidated"
    assert received[-1][2]["tables"] == ("*",)
