"""Small JSON endpoints for the load test (benchmarks/loadtest.py, docs/loadtest.md).

Every value they return only grows, so the load test's checker can prove that no read
was stale: a read must return at least the newest value any response received before
the read was sent had shown.

    GET  /lt/post/<id>/       {"id", "views"}: Post.objects.get (the cached manager)
    GET  /lt/count/<id>/      {"id", "comments"}: Comment.objects.filter(post=...).count()
    GET  /lt/cprop/<id>/      {"id", "comments"}: the Post.comment_count cached_property
    POST /lt/bump/<id>/       views = F("views") + 1 in a transaction; {"id", "views"}
    POST /lt/comment/<id>/    a new comment in a transaction; {"id", "comments"}
    POST /lt/seed/<n>/        makes sure posts exist; {"ids": [...]}
    GET  /lt/health/          {"ok": true}

The anonymous GETs may also be served by the page cache (ormcache.middleware), which
must be just as fresh. Only testproject.settings_loadtest routes to these views: its
ROOT_URLCONF is this module, which also includes the demo's own URLs.
"""

from __future__ import annotations

import os

from django.db import transaction
from django.db.models import F
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from .models import Author, Comment, Post


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


@require_GET
def post_views(request: HttpRequest, pk: int) -> JsonResponse:
    post = Post.objects.get(pk=pk)
    return JsonResponse({"id": post.pk, "views": post.views})


@require_GET
def comment_count(request: HttpRequest, pk: int) -> JsonResponse:
    count = Comment.objects.filter(post_id=pk).count()
    return JsonResponse({"id": pk, "comments": count})


@require_GET
def comment_count_property(request: HttpRequest, pk: int) -> JsonResponse:
    post = Post.objects.get(pk=pk)
    return JsonResponse({"id": pk, "comments": post.comment_count})


@csrf_exempt
@require_POST
def bump(request: HttpRequest, pk: int) -> JsonResponse:
    with transaction.atomic():
        Post.objects.filter(pk=pk).update(views=F("views") + 1)
        # The row is locked by the UPDATE until the commit: this is our own new value.
        views = Post.objects.filter(pk=pk).values_list("views", flat=True).get()
    return JsonResponse({"id": pk, "views": views})


@csrf_exempt
@require_POST
def comment(request: HttpRequest, pk: int) -> JsonResponse:
    with transaction.atomic():
        Comment.objects.create(post_id=pk, author_name="loadtest", body="load", approved=True)
        # Our comment plus every comment committed before this statement: at most the
        # count once we commit (comments are never deleted here).
        count = Comment.objects.filter(post_id=pk).count()
    return JsonResponse({"id": pk, "comments": count})


@csrf_exempt
@require_POST
def seed(request: HttpRequest, n: int) -> JsonResponse:
    with transaction.atomic():
        author = Author.objects.nocache().filter(name="loadtest").first()
        if author is None:
            author = Author.objects.create(name="loadtest")
        have = list(Post.objects.nocache().filter(author=author).order_by("id"))
        for i in range(len(have), n):
            have.append(Post.objects.create(author=author, title=f"Load {i}", slug=f"load-{i}"))
    return JsonResponse({"ids": [post.pk for post in have[:n]]})


def _switch_off_invalidation() -> None:
    """ORMCACHE_LOADTEST_BREAK_INVALIDATION=1: the load test's negative control.

    Writes stop bumping versions (ormcache itself is unchanged; as torture.py does), so
    the checker must find stale reads. Runs when this URLconf is first imported, in each
    gunicorn worker, before any request reaches a view.
    """
    from django.db import connections
    from django.db.backends.signals import connection_created

    from ormcache.invalidation import watch_writes

    connection_created.disconnect(dispatch_uid="ormcache.watch_connection")
    for connection in connections.all(initialized_only=True):
        while watch_writes in connection.execute_wrappers:
            connection.execute_wrappers.remove(watch_writes)


if os.environ.get("ORMCACHE_LOADTEST_BREAK_INVALIDATION") == "1":
    _switch_off_invalidation()

lt_patterns = [
    path("health/", health),
    path("post/<int:pk>/", post_views),
    path("count/<int:pk>/", comment_count),
    path("cprop/<int:pk>/", comment_count_property),
    path("bump/<int:pk>/", bump),
    path("comment/<int:pk>/", comment),
    path("seed/<int:n>/", seed),
]

# ROOT_URLCONF of testproject.settings_loadtest: these views, then the demo site.
urlpatterns = [
    path("lt/", include(lt_patterns)),
    path("", include("testproject.urls")),
]
