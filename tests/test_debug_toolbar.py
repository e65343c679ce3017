"""The django-debug-toolbar panel: each read of a request, hit, miss or bypass, with its
dependencies and versions. (The panel in a real browser: tests/e2e/test_admin_stats.py.)"""

import json
import re

import pytest
from django.db import transaction
from django.http import HttpResponse
from django.test import RequestFactory

from ormcache import conf
from testproject.blog.models import AuditEntry, Post
from tests.factories import PostFactory

pytest.importorskip("debug_toolbar")

from debug_toolbar.toolbar import DebugToolbar

from ormcache.contrib.debug_toolbar import OrmcachePanel


@pytest.fixture
def toolbar_for(monkeypatch):
    """Run a view under a DebugToolbar whose only panel is ours; return the panel."""
    monkeypatch.setattr(DebugToolbar, "_panel_classes", [OrmcachePanel])

    def run(view, *, headers=None):
        request = RequestFactory().get("/")
        toolbar = DebugToolbar(request, view)
        if hasattr(toolbar, "init_store"):
            toolbar.request_id = "ormcache-test"
            toolbar.store.set(toolbar.request_id)
        response = toolbar.process_request(request)
        for name, value in (headers or {}).items():
            response[name] = value
        panel = toolbar.get_panel_by_id("OrmcachePanel")
        panel.generate_stats(request, response)
        return panel

    return run


def test_each_read_with_outcome_dependencies_and_versions(backend, toolbar_for):
    post = PostFactory()

    def view(request):
        Post.objects.get(pk=post.pk)  # miss
        Post.objects.get(pk=post.pk)  # hit
        list(Post.objects.select_related("author").filter(pk=post.pk))  # miss: two tables
        list(Post.objects.filter(pk=post.pk).nocache())  # not through the cache at all
        list(AuditEntry.objects.all())  # plain manager: not an ormcache read
        with transaction.atomic(using=backend.db_alias):
            Post.objects.filter(pk=post.pk).update(rating=9)
            Post.objects.get(pk=post.pk)  # bypass: the transaction wrote the table
        return HttpResponse("ok")

    panel = toolbar_for(view)
    found = panel.get_stats()
    outcomes = [(row["model"], row["outcome"], row["reason"]) for row in found["reads"]]
    assert outcomes == [
        ("blog.post", "miss", ""),
        ("blog.post", "hit", ""),
        ("blog.post", "miss", ""),
        ("blog.post", "bypass", "written in this transaction"),
    ]
    assert found["counts"] == {"hit": 1, "miss": 2, "bypass": 1}
    assert panel.nav_subtitle == "1 hit, 2 misses, 1 bypass"
    join = found["reads"][2]
    assert join["tables"] == ["blog_author", "blog_post"]
    assert join["database"] == backend.db_alias
    version_keys = [key for key, _token in join["versions"]]
    post_key = f"ormcache:v:{backend.db_alias}:blog_post"
    if conf.policy_for(Post).granularity == "row":  # pinned to one row (rows.py)
        post_keys = [f"{post_key}:rw", f"{post_key}:r:{post.pk}", f"{post_key}:i"]
    else:
        post_keys = [post_key]
    assert sorted(version_keys) == sorted(
        ["ormcache:v:*", f"ormcache:v:{backend.db_alias}:blog_author", *post_keys]
    )
    assert all(re.fullmatch(r"[0-9a-f]{16} \(\d\d:\d\d:\d\d\)", t) for _k, t in join["versions"])
    # The hit was served under the same versions the miss before it stored.
    assert found["reads"][0]["versions"] == found["reads"][1]["versions"]
    json.dumps(found)  # the toolbar's stores keep panel stats as JSON


def test_uncacheable_read_shows_its_reason(backend, toolbar_for):
    PostFactory()

    def view(request):
        list(Post.objects.order_by("?"))
        return HttpResponse("ok")

    row = toolbar_for(view).get_stats()["reads"][0]
    assert row["outcome"] == "bypass"
    assert "random" in row["reason"]
    assert row["tables"] is None


def test_content_renders(backend, toolbar_for):
    post = PostFactory()

    def view(request):
        Post.objects.get(pk=post.pk)
        Post.objects.get(pk=post.pk)
        return HttpResponse("ok")

    panel = toolbar_for(view, headers={"X-Ormcache": "miss"})
    html = panel.content
    assert "2</strong> reads through ormcache" in html
    assert ">1 hit</span>" in html
    assert "blog_post" in html
    assert f"ormcache:v:{backend.db_alias}:blog_post" in html
    assert 'Page cache: <span style="font-family: monospace">miss</span>' in html


def test_a_request_without_reads(backend, toolbar_for):
    panel = toolbar_for(lambda request: HttpResponse("ok"), headers={"X-Ormcache": "hit"})
    assert panel.get_stats()["reads"] == []
    assert panel.nav_subtitle == "0 hits, 0 misses, 0 bypasses"
    assert "the page cache served it" in panel.content
