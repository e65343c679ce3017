"""The page cache middleware, through Django's test client: what is cached, and every
rule that keeps a page out of the cache (never stored and never served)."""

import pytest
from django.conf import settings
from django.contrib import messages
from django.contrib.messages.storage.base import Message
from django.contrib.messages.storage.cookie import CookieStorage
from django.db import connections
from django.http import HttpRequest
from django.test import Client
from django.test.utils import override_settings

from ormcache import page_rules
from testproject.blog import admin as blog_admin
from testproject.blog.models import Bookmark
from tests.factories import PostFactory, UserFactory
from tests.routing import current_alias
from tests.test_pages_urls import (
    PAGE_MIDDLEWARE,
    assert_bypassed_each_time,
    backoffice,
    calls,
    outcome,
    page_settings,
    site_fixture,  # noqa: F401  (the "site" fixture)
)

# --- what is cached (point 1) -----------------------------------------------------------


def test_an_anonymous_get_is_stored_then_served_without_the_view(site):
    PostFactory(title="First")
    first = site.get("/t/posts/")
    second = site.get("/t/posts/")
    assert outcome(first) == "miss"
    assert outcome(second) == "hit"
    assert second.content == first.content == b"posts: First"
    assert calls["posts"] == 1


def test_head_is_served_from_the_get_page(site):
    PostFactory(title="First")
    site.get("/t/posts/")
    head = site.head("/t/posts/")
    assert outcome(head) == "hit"
    assert calls["posts"] == 1


def test_head_alone_is_stored_under_its_own_key(site):
    PostFactory(title="First")
    assert outcome(site.head("/t/posts/")) == "miss"
    assert outcome(site.head("/t/posts/")) == "hit"
    assert outcome(site.get("/t/posts/")) == "miss"  # a HEAD response never answers a GET
    assert calls["posts"] == 2


def test_the_key_has_the_query_string_scheme_and_host(site):
    PostFactory(title="First")
    site.get("/t/posts/?page=1")
    assert outcome(site.get("/t/posts/?page=2")) == "miss"
    assert outcome(site.get("/t/posts/?page=1", secure=True)) == "miss"
    assert outcome(site.get("/t/posts/?page=1", HTTP_HOST="testserver:8000")) == "miss"
    assert outcome(site.get("/t/posts/?page=1")) == "hit"
    assert calls["posts"] == 4


def test_the_key_has_the_headers_the_view_varies_on(site):
    PostFactory(title="First")
    oat = site.get("/t/vary-on-flavour/", HTTP_X_FLAVOUR="oat")
    assert outcome(oat) == "miss"
    assert outcome(site.get("/t/vary-on-flavour/", HTTP_X_FLAVOUR="soy")) == "miss"
    again = site.get("/t/vary-on-flavour/", HTTP_X_FLAVOUR="oat")
    assert outcome(again) == "hit"
    assert again.content == oat.content == b"flavour oat: First"
    assert outcome(site.get("/t/vary-on-flavour/")) == "miss"  # absent is not empty
    assert calls["vary_on_flavour"] == 3


def test_a_view_that_varies_on_accept_language_alone_is_keyed_by_the_language(backend):
    """With USE_I18N the key has the active language, so Vary: Accept-Language adds nothing
    (as in Django): the page is stored under the URL's own key, one per language."""
    calls.clear()
    PostFactory(title="First")
    middleware = [*PAGE_MIDDLEWARE]
    middleware.insert(1, "django.middleware.locale.LocaleMiddleware")
    languages = [("en", "English"), ("fr", "French")]
    with (
        page_settings(backend, middleware=middleware),
        override_settings(USE_I18N=True, LANGUAGE_CODE="en", LANGUAGES=languages),
    ):
        client = Client()
        french = client.get("/t/vary-on-language/", HTTP_ACCEPT_LANGUAGE="fr")
        english = client.get("/t/vary-on-language/", HTTP_ACCEPT_LANGUAGE="en")
        assert (outcome(french), outcome(english)) == ("miss", "miss")
        again = client.get("/t/vary-on-language/", HTTP_ACCEPT_LANGUAGE="fr")
        assert outcome(again) == "hit"
        assert again.content == french.content == b"fr: First"
        assert english.content == b"en: First"
        assert calls["vary_on_language"] == 2


def test_vary_on_headers_setting_keys_every_page(backend):
    PostFactory(title="First")
    with page_settings(backend, vary_on_headers=["X-Tenant"]):
        client = Client()
        one = client.get("/t/posts/", HTTP_X_TENANT="one")
        assert outcome(one) == "miss"
        assert "X-Tenant" in one.headers["Vary"]
        assert outcome(client.get("/t/posts/", HTTP_X_TENANT="two")) == "miss"
        assert outcome(client.get("/t/posts/", HTTP_X_TENANT="one")) == "hit"


def test_a_page_that_read_nothing_lives_for_the_timeout(backend):
    import time

    with page_settings(backend, timeout=1):
        client = Client()
        assert outcome(client.get("/t/static/")) == "miss"
        assert outcome(client.get("/t/static/")) == "hit"
        time.sleep(2.2)  # memcached counts expiry in whole seconds
        assert outcome(client.get("/t/static/")) == "miss"


def test_the_header_name_is_configurable_and_can_be_turned_off(backend):
    PostFactory()
    with page_settings(backend, header="X-Page"):
        response = Client().get("/t/posts/")
        assert response.headers["X-Page"] == "miss"
        assert "X-Ormcache" not in response.headers
    with page_settings(backend, header=None):
        response = Client().get("/t/posts/")
        assert "X-Ormcache" not in response.headers and "X-Page" not in response.headers


def test_disabled_page_cache_bypasses(backend):
    PostFactory()
    with page_settings(backend, enabled=False):
        client = Client()
        assert outcome(client.get("/t/posts/")) == "bypass (page cache disabled)"
        assert outcome(client.get("/t/posts/")) == "bypass (page cache disabled)"


def test_key_prefix_separates_pages(backend):
    PostFactory()
    with page_settings(backend, key_prefix="a"):
        Client().get("/t/posts/")
        assert outcome(Client().get("/t/posts/")) == "hit"
    with page_settings(backend, key_prefix="b"):
        assert outcome(Client().get("/t/posts/")) == "miss"


def test_include_paths_limits_the_cache_to_matching_paths(backend):
    PostFactory()
    with page_settings(backend, include_paths=[r"^/t/posts/"]):
        client = Client()
        client.get("/t/posts/")
        assert outcome(client.get("/t/posts/")) == "hit"
        assert outcome(client.get("/t/hello/")) == "bypass (path not included)"


def test_the_blog_pages_are_cached(site):
    post = PostFactory(title="Cached post")
    tag = post.tags.create(name="caching")
    for url in ("/", post.get_absolute_url(), f"/tag/{tag.pk}/", "/stats/"):
        assert outcome(site.get(url)) == "miss", url
        hit = site.get(url)
        assert outcome(hit) == "hit", url
        assert b"Cached post" in hit.content


# --- never stored and never served (point 3) ----------------------------------------------


def test_a_logged_in_session_cookie(backend):
    """Without AuthenticationMiddleware, the session itself shows the visitor logged in."""
    PostFactory()
    middleware = [m for m in PAGE_MIDDLEWARE if "AuthenticationMiddleware" not in m]
    middleware = [m for m in middleware if "MessageMiddleware" not in m]
    with page_settings(backend, middleware=middleware):
        Client().get("/t/posts/")  # an anonymous page is stored...
        client = Client()
        client.force_login(UserFactory())
        # ...and never served to the logged-in session, whose pages are never stored.
        assert_bypassed_each_time(
            lambda: client.get("/t/posts/"), "posts", "session of a logged-in user"
        )


def test_a_logged_in_user_sees_their_own_page(site):
    PostFactory()
    site.get("/t/hello/")
    assert outcome(site.get("/t/hello/")) == "hit"
    member = Client()
    member.force_login(UserFactory(username="ada"))
    response = assert_bypassed_each_time(
        lambda: member.get("/t/hello/"), "hello", "session of a logged-in user"
    )
    assert response.content == b"hello ada; posts: 1"
    anonymous = site.get("/t/hello/")
    assert outcome(anonymous) == "hit"
    assert anonymous.content == b"hello anonymous; posts: 1"


def test_a_session_cookie_nobody_can_look_into(backend):
    PostFactory()
    without_sessions = ["ormcache.middleware.CacheMiddleware"]
    with page_settings(backend, middleware=without_sessions):
        client = Client()
        client.get("/t/posts/")
        client.cookies["sessionid"] = "whoever"
        assert_bypassed_each_time(
            lambda: client.get("/t/posts/"),
            "posts",
            "session cookie, and no SessionMiddleware before ormcache",
        )


def test_an_anonymous_session_gets_the_shared_page(site):
    PostFactory()
    site.get("/t/posts/")
    visitor = Client()
    session = visitor.session
    session["cart"] = 3
    session.save()
    visitor.cookies["sessionid"] = session.session_key
    assert outcome(visitor.get("/t/posts/")) == "hit"


def test_an_authorization_header(site):
    PostFactory()
    site.get("/t/posts/")
    assert_bypassed_each_time(
        lambda: site.get("/t/posts/", HTTP_AUTHORIZATION="Bearer secret"),
        "posts",
        "Authorization header",
    )


def test_an_authenticated_request_user(backend):
    """request.user set by something other than the session (token auth, say)."""
    PostFactory()
    UserFactory(username="grace")
    middleware = [*PAGE_MIDDLEWARE]
    middleware.insert(-1, "tests.test_pages_urls.TokenUserMiddleware")
    with page_settings(backend, middleware=middleware):
        client = Client()
        client.get("/t/hello/")
        response = assert_bypassed_each_time(
            lambda: client.get("/t/hello/", HTTP_X_TEST_USER="grace"),
            "hello",
            "authenticated user",
        )
        assert response.content == b"hello grace; posts: 1"
        assert client.get("/t/hello/").content == b"hello anonymous; posts: 1"


def test_a_user_scoped_model(site):
    Bookmark.objects.db_manager(current_alias.get()).create(user=UserFactory(), post=PostFactory())
    assert_bypassed_each_time(
        lambda: site.get("/t/bookmarks/"),
        "bookmarks_count",
        "it read blog.bookmark, which is user-scoped",
    )


def test_a_model_whose_policy_disables_caching(site):
    assert_bypassed_each_time(
        lambda: site.get("/t/audit/"), "audit_count", "caching is disabled for blog.auditentry"
    )


def test_admin_pages_of_the_default_site(site):
    first = site.get("/admin/login/")
    assert first.status_code == 200
    assert outcome(first) == "bypass (admin)"
    assert outcome(site.get("/admin/login/")) == "bypass (admin)"


def test_any_view_of_any_admin_site_whatever_its_url(site):
    PostFactory()
    # A cacheable admin view (no never_cache), on a custom site at a custom prefix.
    response = assert_bypassed_each_time(lambda: site.get("/backoffice/report/"), "report", "admin")
    assert response.content == b"report: 1"
    assert outcome(site.get("/backoffice/jsi18n/")) == "bypass (admin)"


def test_admin_views_are_recognised_by_their_site():
    """Without a resolver match: by the site or ModelAdmin behind the view function."""
    site_views = _callbacks(backoffice.get_urls())
    model_views = _callbacks(blog_admin.admin.site.get_urls())
    assert len(model_views) > 50
    assert all(page_rules.is_admin_view(view) for view in site_views + model_views)
    assert page_rules.is_admin_view(backoffice.login)
    assert not page_rules.is_admin_view(calls.__class__)


def _callbacks(patterns):
    found = []
    for pattern in patterns:
        if hasattr(pattern, "url_patterns"):
            found += _callbacks(pattern.url_patterns)
        else:
            found.append(pattern.callback)
    return found


def test_exclude_paths(backend):
    PostFactory()
    with page_settings(backend, exclude_paths=[r"^/private/"]):
        client = Client()
        assert_bypassed_each_time(lambda: client.get("/private/area/"), "posts", "excluded path")
        client.get("/t/posts/")
        assert outcome(client.get("/t/posts/")) == "hit"  # the same view elsewhere


@pytest.mark.parametrize("method", ["post", "put", "delete", "options"])
def test_other_methods(site, method):
    PostFactory()
    site.get("/t/any-method/")
    assert outcome(site.get("/t/any-method/")) == "hit"
    response = assert_bypassed_each_time(
        lambda: getattr(site, method)("/t/any-method/"), "any_method", f"method {method.upper()}"
    )
    assert response.content.startswith(method.upper().encode())


def test_a_response_that_sets_a_cookie(site):
    PostFactory()
    assert_bypassed_each_time(lambda: site.get("/t/sets-cookie/"), "sets_cookie", "Set-Cookie")


@pytest.mark.parametrize("directive", ["private", "no-store", "no-cache"])
def test_cache_control_that_forbids_caching(site, directive):
    PostFactory()
    assert_bypassed_each_time(
        lambda: site.get(f"/t/cache-control/{directive}/"),
        "cache_control",
        f"Cache-Control: {directive}",
    )


def test_cache_control_max_age_zero(site):
    PostFactory()
    assert_bypassed_each_time(
        lambda: site.get("/t/max-age-zero/"), "max_age_zero", "Cache-Control: max-age=0"
    )


def test_vary_star(site):
    PostFactory()
    assert_bypassed_each_time(lambda: site.get("/t/vary-star/"), "vary_star", "Vary: *")


def test_pages_that_used_the_csrf_token(site):
    PostFactory()
    assert_bypassed_each_time(
        lambda: site.get("/t/uses-csrf/"), "uses_csrf", "the page used the CSRF token"
    )
    assert_bypassed_each_time(
        lambda: site.get("/t/form/"), "form_page", "the page used the CSRF token"
    )


def test_django_never_cache(site):
    PostFactory()
    assert_bypassed_each_time(lambda: site.get("/t/never/"), "never", "never_cache")


def test_ormcache_opt_out_decorator(site):
    PostFactory()
    assert_bypassed_each_time(lambda: site.get("/t/opted-out/"), "opted_out", "view opted out")


def test_a_response_that_carries_new_messages(site):
    PostFactory()
    # A fresh client each time: the first response leaves the message in a cookie.
    assert_bypassed_each_time(lambda: Client().get("/t/adds-message/"), "adds_message", "messages")


def test_a_request_with_pending_messages_is_not_served_from_the_cache(site):
    PostFactory()
    site.get("/t/shows-messages/")
    assert outcome(site.get("/t/shows-messages/")) == "hit"
    site.cookies[CookieStorage.cookie_name] = _message_cookie("Welcome back")
    response = site.get("/t/shows-messages/")
    assert outcome(response) == "bypass (pending messages)"
    assert b"Welcome back" in response.content
    assert calls["shows_messages"] == 2
    # The message was shown and consumed: the cached page is fine again.
    assert outcome(site.get("/t/shows-messages/")) == "hit"


def test_a_page_that_used_the_session(site):
    PostFactory()
    assert_bypassed_each_time(
        lambda: site.get("/t/uses-session/"), "uses_session", "the page used the session"
    )


@pytest.mark.parametrize("read", ["session_key", "_session_key", "is_empty"])
def test_a_page_that_read_the_session_key(site, read):
    """An anonymous cart keyed by the session key: Django does not mark the session
    accessed for that read, the page cache does (the session's class is swapped for
    one that notices, for that one session object while the view runs)."""
    PostFactory()
    url = f"/t/session-key-cart/{read}/"
    visitors = []
    for _ in range(2):
        visitor = Client()
        visitor.session.save()  # an anonymous session, and its cookie
        visitors.append(visitor)
    for visitor in (*visitors, site):
        response = assert_bypassed_each_time(
            lambda visitor=visitor: visitor.get(url),
            "session_key_cart",
            "the page used the session",
        )
        key = visitor.cookies["sessionid"].value if visitor is not site else ""
        assert response.content.startswith(f"cart of {key}:".encode())
        assert type(response.wsgi_request.session).__module__ != "ormcache.pages"
    # The same visitors' pages that do not touch the session are still shared.
    assert outcome(visitors[0].get("/t/posts/")) == "miss"
    assert outcome(visitors[1].get("/t/posts/")) == "hit"


def _message_cookie(text):
    request = HttpRequest()
    storage = CookieStorage(request)
    return storage._encode([Message(messages.INFO, text)])


# --- what the view read (point 2) ---------------------------------------------------------


def test_a_view_that_writes_keeps_running(site):
    PostFactory()
    assert_bypassed_each_time(
        lambda: site.get("/t/writes/"), "writes", "the view wrote to the database"
    )


def test_a_read_with_unknown_dependencies(site):
    PostFactory()
    response = site.get("/t/random/")
    assert outcome(response).startswith("bypass (a read with unknown dependencies")


def test_reads_inside_ormcache_disabled(site):
    PostFactory()
    assert_bypassed_each_time(
        lambda: site.get("/t/disabled/"), "disabled_reads", "ormcache.disabled() was in force"
    )


def test_a_write_while_the_page_was_built(site):
    PostFactory()
    assert_bypassed_each_time(
        lambda: site.get("/t/changes-midway/"),
        "changes_midway",
        "the data changed while the page was built",
    )


def test_an_uncommitted_write_to_a_table_read(site, backend):
    from ormcache import versions

    PostFactory()
    versions.bump_tables(backend.db_alias, ["blog_post"], pending=True)
    try:
        assert_bypassed_each_time(
            lambda: site.get("/t/posts/"), "posts", "a table it read has an uncommitted write"
        )
    finally:
        # As a commit would: memcached's flush before the next test may miss a key set
        # within its second, and a pending token would outlive this test.
        versions.bump_tables(backend.db_alias, ["blog_post"])


def test_raw_sql_naming_no_known_table(site):
    assert_bypassed_each_time(
        lambda: site.get("/t/raw-one/"),
        "raw_select_one",
        "SQL that names no table of an installed model",
    )


def test_raw_sql_that_also_reads_a_table_no_model_has(site):
    """Its writes would never reach the page: a legacy table beside a model's."""
    with connections[current_alias.get()].cursor() as cursor:
        cursor.execute("CREATE TABLE legacy_kv (v varchar(10))")
        cursor.execute("INSERT INTO legacy_kv VALUES ('one')")
    PostFactory()
    assert_bypassed_each_time(
        lambda: site.get("/t/raw-legacy/"),
        "raw_legacy_join",
        "SQL that reads legacy_kv, which is no installed model's table",
    )


def test_raw_sql_reading_the_clock(site):
    assert_bypassed_each_time(
        lambda: site.get("/t/raw-clock/"),
        "raw_clock",
        "SQL that calls CURRENT_TIMESTAMP, whose result changes by itself",
    )


def test_plain_models_and_raw_sql_are_dependencies(site):
    UserFactory(username="ada")
    PostFactory()
    for url in ("/t/users/", "/t/raw/"):
        assert outcome(site.get(url)) == "miss"
        assert outcome(site.get(url)) == "hit"


def test_a_dead_cache_fails_open(backend):
    """invariant 6: the page is built from the database, and nothing fails."""
    PostFactory(title="First")
    caches = {**settings.CACHES, "dead": {"BACKEND": "tests.test_pages_urls.DeadCache"}}
    with (
        page_settings(backend),  # entered first: the ORMCACHE below is the page settings'
        override_settings(CACHES=caches, ORMCACHE={**settings.ORMCACHE, "CACHE": "dead"}),
    ):
        client = Client()
        for _ in range(2):
            response = client.get("/t/posts/")
            assert response.status_code == 200
            assert response.content == b"posts: First"
            assert outcome(response) == "bypass (cache unavailable)"
