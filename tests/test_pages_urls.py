"""Views, URLs and fixtures shared by the page cache tests (tests/test_pages*.py).

The URLconf serves the demo blog (testproject) plus small views that each break
one rule of the page cache, and a custom AdminSite under a custom prefix. Every
view counts its calls, so a test can tell a page served from the cache (the view
did not run) from one built again.
"""

from collections import Counter
from contextlib import contextmanager

import pytest
from asgiref.sync import sync_to_async
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.cache.backends.locmem import LocMemCache
from django.db import connections
from django.http import HttpResponse
from django.middleware.csrf import get_token
from django.template import engines
from django.test import Client
from django.test.utils import override_settings
from django.urls import include, path
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.utils.translation import get_language
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.vary import vary_on_headers

import ormcache
from testproject.blog.models import AuditEntry, Bookmark, Post
from tests.routing import current_alias

calls: Counter = Counter()

PAGE_MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "ormcache.middleware.CacheMiddleware",
]


def counted(view):
    def wrapper(request, *args, **kwargs):
        calls[view.__name__] += 1
        return view(request, *args, **kwargs)

    wrapper.__name__ = view.__name__
    return wrapper


def _titles():
    return ", ".join(Post.objects.order_by("id").values_list("title", flat=True))


@counted
def posts(request):
    return HttpResponse(f"posts: {_titles()}")


@counted
def hello(request):
    user = request.user
    name = user.get_username() if user.is_authenticated else "anonymous"
    return HttpResponse(f"hello {name}; posts: {Post.objects.count()}")


@counted
def static_text(request):
    return HttpResponse("no database here")


@counted
def audit_count(request):
    """AuditEntry's policy disables caching (tests/settings.py)."""
    return HttpResponse(f"audit: {AuditEntry.objects.count()}")


@counted
def bookmarks_count(request):
    return HttpResponse(f"bookmarks: {Bookmark.objects.count()}")


@csrf_exempt
@counted
def any_method(request):
    return HttpResponse(f"{request.method}: {Post.objects.count()}")


@counted
def sets_cookie(request):
    response = HttpResponse(f"cookie: {Post.objects.count()}")
    response.set_cookie("flavour", "oat")
    return response


@counted
def cache_control(request, directive):
    response = HttpResponse(f"{directive}: {Post.objects.count()}")
    patch_cache_control(response, **{directive.replace("-", "_"): True})
    return response


@counted
def max_age_zero(request):
    response = HttpResponse(f"max-age=0: {Post.objects.count()}")
    patch_cache_control(response, max_age=0)
    return response


@counted
def tagged(request):
    response = HttpResponse(f"tagged: {Post.objects.count()}")
    response.headers["ETag"] = '"v1"'
    return response


@counted
def vary_star(request):
    response = HttpResponse(f"vary: {Post.objects.count()}")
    patch_vary_headers(response, ["*"])
    return response


@counted
def vary_on_flavour(request):
    response = HttpResponse(f"flavour {request.headers.get('X-Flavour')}: {_titles()}")
    patch_vary_headers(response, ["X-Flavour"])
    return response


@counted
def uses_csrf(request):
    return HttpResponse(f"token {get_token(request)}; posts: {Post.objects.count()}")


@counted
def form_page(request):
    template = engines["django"].from_string(
        "<form method=post>{% csrf_token %}</form> {{ count }}"
    )
    return HttpResponse(template.render({"count": Post.objects.count()}, request))


@never_cache
@counted
def never(request):
    return HttpResponse(f"never: {Post.objects.count()}")


@ormcache.no_page_cache
@counted
def opted_out(request):
    return HttpResponse(f"opted out: {Post.objects.count()}")


@counted
def adds_message(request):
    messages.info(request, "saved")
    return HttpResponse(f"message: {Post.objects.count()}")


@counted
def shows_messages(request):
    shown = " | ".join(str(message) for message in messages.get_messages(request))
    return HttpResponse(f"messages [{shown}]; posts: {Post.objects.count()}")


@counted
def uses_session(request):
    return HttpResponse(f"cart {request.session.get('cart', 0)}; posts: {Post.objects.count()}")


@counted
def session_key_cart(request, read):
    """An anonymous cart keyed by the session key: no session data is read."""
    session = request.session
    key = {
        "session_key": lambda: session.session_key,
        "_session_key": lambda: session._session_key,
        "is_empty": lambda: "" if session.is_empty() else session.session_key,
    }[read]() or ""
    return HttpResponse(f"cart of {key}: {Post.objects.filter(slug=key or '-').count()}")


@vary_on_headers("Accept-Language")
@counted
def vary_on_language(request):
    return HttpResponse(f"{get_language()}: {_titles()}")


@counted
def writes(request):
    post = Post.objects.order_by("id").first()
    Post.objects.filter(pk=post.pk).update(views=post.views + 1)
    return HttpResponse(f"views: {post.views}")


@counted
def random_order(request):
    return HttpResponse(f"random: {list(Post.objects.order_by('?').values_list('id'))}")


@counted
def disabled_reads(request):
    with ormcache.disabled():
        return HttpResponse(f"disabled: {Post.objects.count()}")


@counted
def users(request):
    """Reads a model with a plain manager: its SQL is not ormcache's."""
    names = get_user_model().objects.order_by("username").values_list("username", flat=True)
    return HttpResponse(f"users: {', '.join(names)}")


@counted
def raw_sql(request):
    with connections[current_alias.get()].cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM blog_post WHERE title <> %s", ["blog_comment"])
        (count,) = cursor.fetchone()
    return HttpResponse(f"raw: {count}")


@counted
def raw_legacy_join(request):
    """Raw SQL that reads a model's table and a table no model has."""
    with connections[current_alias.get()].cursor() as cursor:
        cursor.execute("SELECT p.title, l.v FROM blog_post p, legacy_kv l ORDER BY p.id")
        rows = cursor.fetchall()
    return HttpResponse(f"legacy: {rows}")


@counted
def raw_select_one(request):
    with connections[current_alias.get()].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return HttpResponse("selected one")


@counted
def raw_clock(request):
    with connections[current_alias.get()].cursor() as cursor:
        cursor.execute("SELECT CURRENT_TIMESTAMP, COUNT(*) FROM blog_post")
        cursor.fetchone()
    return HttpResponse("clock")


@counted
def changes_midway(request):
    """Reads posts, then a write lands (from elsewhere), then reads posts again."""
    before = Post.objects.count()
    ormcache.invalidate(Post)
    return HttpResponse(f"{before} then {_titles()}")


@counted
def decorated(request):
    return HttpResponse(f"decorated: {_titles()}")


cached_view = ormcache.cache_page(60)(decorated)
short_lived_view = ormcache.cache_page(1)(posts)


cached_hello = ormcache.cache_page(hello)


async def async_posts(request):
    calls["async_posts"] += 1
    titles = [post.title async for post in Post.objects.order_by("id")]
    return HttpResponse(f"async posts: {', '.join(titles)}")


async def async_raw(request):
    calls["async_raw"] += 1
    return HttpResponse(f"async {(await sync_to_async(raw_sql)(request)).content.decode()}")


@ormcache.cache_page(30)
async def async_decorated(request):
    calls["async_decorated"] += 1
    return HttpResponse(f"async decorated: {await Post.objects.acount()}")


@ormcache.no_page_cache
async def async_opted_out(request):
    calls["async_opted_out"] += 1
    return HttpResponse(f"async opted out: {await Post.objects.acount()}")


class OpenAdminSite(admin.AdminSite):
    """An admin site anyone may use, mounted at a custom prefix."""

    def has_permission(self, request):
        return True

    def get_urls(self):
        report = self.admin_view(self.report, cacheable=True)
        return [path("report/", report, name="report"), *super().get_urls()]

    def report(self, request):
        calls["report"] += 1
        return HttpResponse(f"report: {Post.objects.count()}")


backoffice = OpenAdminSite(name="backoffice")

urlpatterns = [
    path("t/posts/", posts),
    path("t/hello/", hello),
    path("t/static/", static_text),
    path("t/bookmarks/", bookmarks_count),
    path("t/audit/", audit_count),
    path("t/any-method/", any_method),
    path("t/sets-cookie/", sets_cookie),
    path("t/cache-control/<str:directive>/", cache_control),
    path("t/max-age-zero/", max_age_zero),
    path("t/vary-star/", vary_star),
    path("t/tagged/", tagged),
    path("t/vary-on-flavour/", vary_on_flavour),
    path("t/uses-csrf/", uses_csrf),
    path("t/form/", form_page),
    path("t/never/", never),
    path("t/opted-out/", opted_out),
    path("t/adds-message/", adds_message),
    path("t/shows-messages/", shows_messages),
    path("t/uses-session/", uses_session),
    path("t/session-key-cart/<str:read>/", session_key_cart),
    path("t/vary-on-language/", vary_on_language),
    path("t/writes/", writes),
    path("t/random/", random_order),
    path("t/disabled/", disabled_reads),
    path("t/users/", users),
    path("t/raw/", raw_sql),
    path("t/raw-one/", raw_select_one),
    path("t/raw-legacy/", raw_legacy_join),
    path("t/raw-clock/", raw_clock),
    path("t/changes-midway/", changes_midway),
    path("t/decorated/", cached_view),
    path("t/decorated-hello/", cached_hello),
    path("t/short-lived/", short_lived_view),
    path("t/async-posts/", async_posts),
    path("t/async-raw/", async_raw),
    path("t/async-decorated/", async_decorated),
    path("t/async-opted-out/", async_opted_out),
    path("private/area/", posts),
    path("backoffice/", backoffice.urls),
    path("", include("testproject.urls")),
]


# --- fixtures and helpers ------------------------------------------------------------


class DeadCache(LocMemCache):
    """A cache server that is down: every call fails as a connection would."""

    def _fail(self, *args, **kwargs):
        raise ConnectionError("the cache server is down")

    get = get_many = set = set_many = add = delete = _fail


class TokenUserMiddleware:
    """Authenticates from an ``X-Test-User`` header, with no session (like token auth)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        username = request.headers.get("X-Test-User")
        if username:
            request.user = get_user_model().objects.get(username=username)
        return self.get_response(request)


@contextmanager
def page_settings(backend, middleware=None, **pages):
    with (
        override_settings(
            ROOT_URLCONF="tests.test_pages_urls", MIDDLEWARE=middleware or PAGE_MIDDLEWARE
        ),
        backend.settings(PAGES=pages),
    ):
        yield


@pytest.fixture(name="site")
def site_fixture(backend):
    """The page cache in front of the test URLconf, on the backend pair under test."""
    calls.clear()
    with page_settings(backend):
        yield Client()


def outcome(response, header="X-Ormcache"):
    return response.headers.get(header)


def assert_bypassed_each_time(get, view, reason):
    """Two identical requests: both run the view, both say why the page was not cached."""
    before = calls[view]
    for _ in range(2):
        response = get()
        assert outcome(response) == f"bypass ({reason})", response.content
    assert calls[view] == before + 2
    return response
