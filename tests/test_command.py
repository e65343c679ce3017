"""``manage.py ormcache``: stats, invalidate and inspect."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from ormcache import stats
from testproject.blog.models import Author, Post, Tag
from tests.factories import PostFactory, UserFactory
from tests.helpers import assert_served_from_cache


def run(*args):
    out, err = StringIO(), StringIO()
    call_command("ormcache", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def counting(backend):
    with backend.settings(STATS={"enabled": True, "flush_interval": 0}):
        stats.reset()
        yield backend
        stats.reset()


def test_stats_table(counting):
    PostFactory()
    stats.reset()
    list(Post.objects.all())
    list(Post.objects.all())
    list(Post.objects.all())
    Post.objects.update(rating=1)
    out, err = run("stats")
    assert err == ""
    lines = out.splitlines()
    assert lines[0].split() == [
        "model",
        "hits",
        "misses",
        "stores",
        "invalidations",
        "not",
        "stored",
        "hit",
        "ratio",
    ]
    row = next(line for line in lines if line.startswith("blog.post "))
    assert row.split() == ["blog.post", "2", "1", "1", "1", "0", "66.7%"]
    assert lines[-2].split() == ["total", "2", "1", "1", "1", "0", "66.7%"]
    assert not any(line.startswith("blog.tag ") for line in lines)


def test_stats_all_and_json(counting):
    list(Tag.objects.all())
    out, _ = run("stats", "--json")
    rows = {row["model"]: row for row in json.loads(out)}
    assert rows["blog.tag"] == {
        "model": "blog.tag",
        "hits": 0,
        "misses": 1,
        "stores": 1,
        "invalidations": 0,
        "not_stored": 0,
        "hit_ratio": 0.0,
    }
    assert "blog.author" not in rows
    out, _ = run("stats", "--all")
    assert any(line.split()[:2] == ["blog.author", "0"] for line in out.splitlines())
    assert any(line.split()[-1] == "-" for line in out.splitlines())  # no reads: no ratio


def test_stats_reset(counting):
    list(Tag.objects.all())
    out, _ = run("stats", "--reset")
    assert out.strip() == "Stats reset."
    assert stats.read() == {}


def test_stats_warns_when_off(backend):
    _, err = run("stats")
    assert "Stats are off" in err


def test_invalidate_models(backend):
    post = PostFactory()
    assert_served_from_cache(backend, lambda: Post.objects.get(pk=post.pk))
    assert_served_from_cache(backend, lambda: list(Author.objects.all()))
    out, _ = run("invalidate", "blog.post")
    assert out.strip() == "Invalidated blog.post."
    with backend.queries() as captured:
        Post.objects.get(pk=post.pk)
        list(Author.objects.all())
    assert len(captured.captured_queries) == 1  # the post again, not the authors


def test_invalidate_an_app(backend):
    post = PostFactory()
    assert_served_from_cache(backend, lambda: Post.objects.get(pk=post.pk))
    out, _ = run("invalidate", "blog")
    assert "blog.post" in out and "blog.author" in out
    with backend.queries() as captured:
        Post.objects.get(pk=post.pk)
    assert len(captured.captured_queries) == 1


def test_invalidate_everything(backend):
    post = PostFactory()
    assert_served_from_cache(backend, lambda: Post.objects.get(pk=post.pk))
    out, _ = run("invalidate")
    assert "everything" in out
    with backend.queries() as captured:
        Post.objects.get(pk=post.pk)
    assert len(captured.captured_queries) == 1


def test_invalidate_unknown_label(backend):
    with pytest.raises(CommandError, match="not an installed model"):
        run("invalidate", "blog.nothing")


def test_inspect_model(backend):
    out, _ = run("inspect", "blog.featuredpost")
    assert out.startswith("Model blog.featuredpost")
    assert "tables (its reads depend on them): blog_featuredpost, blog_post" in out
    assert f"ormcache:v:{backend.db_alias}:blog_post" in out
    assert "ormcache:v:*" in out
    assert "bumped" in out


def test_inspect_model_json_versions_are_current(backend):
    from ormcache import reads

    out, _ = run("inspect", "blog.post", "--json")
    report = json.loads(out)
    assert report["tables"] == ["blog_post"]
    assert report["policy"]["enabled"] is True
    current = reads.current_versions(backend.db_alias, ["blog_post"])
    key = f"ormcache:v:{backend.db_alias}:blog_post"
    assert report["versions"][backend.db_alias][key].startswith(
        f"{current[key] & (2**64 - 1):016x}"
    )
    Post.objects.update(rating=4)  # a bump: inspect shows the new token
    report_after = json.loads(run("inspect", "blog.post", "--json")[0])
    assert (
        report_after["versions"][backend.db_alias][key] != report["versions"][backend.db_alias][key]
    )


def test_inspect_a_disabled_model(backend):
    out, _ = run("inspect", "blog.auditentry", "--json")
    report = json.loads(out)
    assert report["policy"]["enabled"] is False
    assert report["cached_manager"] is False


@pytest.mark.urls("testproject.urls")
def test_inspect_url(backend):
    post = PostFactory(published=True)
    out, _ = run("inspect", f"/post/{post.pk}/", "--json")
    report = json.loads(out)
    assert report["status"] == 200
    models = {read["model"] for read in report["reads"]}
    assert {"blog.post", "blog.comment"} <= models
    deps = set(report["dependencies"][backend.db_alias])
    assert {"blog_post", "blog_comment", "blog_tag"} <= deps
    versions = report["versions"][backend.db_alias]
    assert f"ormcache:v:{backend.db_alias}:blog_comment" in versions
    text, _ = run("inspect", f"/post/{post.pk}/")
    assert text.startswith(f"GET /post/{post.pk}/")
    assert "dependencies:" in text


@pytest.mark.urls("testproject.urls")
def test_inspect_url_as_a_user(backend):
    user = UserFactory()
    out, _ = run("inspect", "/bookmarks/", "--user", user.username, "--json")
    report = json.loads(out)
    assert report["user"] == user.username
    assert report["status"] == 200
    assert any(read["model"] == "blog.bookmark" for read in report["reads"])


def test_inspect_url_unknown_user(backend):
    with pytest.raises(CommandError, match="No user"):
        run("inspect", "/", "--user", "nobody-here")
