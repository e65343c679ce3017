"""Downstream caches (ORMCACHE["DOWNSTREAM"]): the headers shared and private pages get,
and the purges sent to a real HTTP server after writes."""

import logging

import pytest
from django.conf import settings
from django.db import transaction
from django.test import Client
from django.test.utils import override_settings
from django.utils.cache import get_max_age

from ormcache import purge, signals
from ormcache.downstream_checks import check_downstream
from testproject.blog.models import Bookmark, Post
from tests.factories import PostFactory, UserFactory
from tests.purge_server import PurgeServer
from tests.test_pages_urls import PAGE_MIDDLEWARE, backoffice, outcome, page_settings

XKEY = "xkey"


def directives(response):
    value = response.headers.get("Cache-Control", "")
    return {part.strip().split("=")[0] for part in value.split(",") if part.strip()}


def table_key(backend, table):
    return f"ormcache-{backend.db_alias}-{table}"


@pytest.fixture
def downstream(backend):
    """The page cache with downstream headers (xkey) and no purgers."""

    def configure(**options):
        return backend.settings(
            PAGES={"timeout": 600},
            DOWNSTREAM={"enabled": True, "surrogate_key_header": XKEY, **options},
        )

    with page_settings(backend), configure():
        yield configure


@pytest.fixture
def proxy():
    """A real HTTP server that records PURGE requests."""
    with PurgeServer() as server:
        yield server
    purge.flush(timeout=2)


def purger_for(server, **options):
    return {"class": "ormcache.purge.HTTPPurger", "urls": [server.url], **options}


# --- headers of shared pages --------------------------------------------------------------


def test_a_shared_page_is_public_with_s_maxage_and_surrogate_keys(downstream, backend):
    PostFactory(title="First")
    miss = Client().get("/t/posts/")
    hit = Client().get("/t/posts/")
    assert (outcome(miss), outcome(hit)) == ("miss", "hit")
    for response in (miss, hit):
        assert directives(response) == {"public", "max-age", "s-maxage"}
        assert "s-maxage=300" in response["Cache-Control"]  # DOWNSTREAM s_maxage < page 600
        assert get_max_age(response) == 0  # browsers revalidate: the ETag makes that cheap
        assert response["ETag"] == miss["ETag"]
        assert set(response[XKEY].split()) == {table_key(backend, "blog_post"), "ormcache-all"}


def test_s_maxage_is_the_page_lifetime_when_shorter(downstream, backend):
    PostFactory()
    with downstream(s_maxage=None), backend.settings(PAGES={"timeout": 45}):
        response = Client().get("/t/posts/")
    assert outcome(response) == "miss"
    assert "s-maxage=45" in response["Cache-Control"]


def test_a_policy_timeout_shortens_s_maxage(downstream, backend):
    PostFactory()
    models = {**settings.ORMCACHE["MODELS"], "blog.post": {"timeout": 20}}
    with backend.settings(MODELS=models):
        response = Client().get("/t/posts/")
    assert "s-maxage=20" in response["Cache-Control"]


def test_the_surrogate_key_header_name_is_configurable(downstream, backend):
    PostFactory()
    with downstream(surrogate_key_header="Surrogate-Key", key_prefix="blog1"):
        response = Client().get("/t/posts/")
    assert XKEY not in response
    assert set(response["Surrogate-Key"].split()) == {
        f"blog1-{backend.db_alias}-blog_post",
        "blog1-all",
    }


def test_no_shared_headers_when_downstream_is_off(backend):
    PostFactory()
    with page_settings(backend):
        response = Client().get("/t/posts/")
    assert outcome(response) == "miss"
    assert "Cache-Control" not in response
    assert XKEY not in response


# --- pages that must never be shared ---------------------------------------------------------


def test_a_logged_in_users_page_is_private(downstream):
    user = UserFactory()
    client = Client()
    client.force_login(user)
    response = client.get("/t/hello/")
    assert outcome(response).startswith("bypass")
    assert {"private", "no-cache"} <= directives(response)
    assert "public" not in directives(response)
    assert XKEY not in response


@pytest.mark.parametrize(
    "path",
    ["/t/uses-csrf/", "/t/sets-cookie/", "/t/uses-session/", "/t/bookmarks/"],
    ids=["csrf", "set-cookie", "session", "user-scoped"],
)
def test_pages_built_for_one_visitor_are_private(downstream, path):
    if path == "/t/bookmarks/":
        Bookmark.objects.create(user=UserFactory(), post=PostFactory())
    response = Client().get(path)
    assert outcome(response).startswith("bypass"), outcome(response)
    assert "private" in directives(response)
    assert "public" not in directives(response)
    assert XKEY not in response


def test_admin_pages_are_private(downstream):
    PostFactory()
    with override_settings(ROOT_URLCONF="tests.test_pages_urls"):
        response = Client().get(f"/{backoffice.name}/report/")
    assert outcome(response) == "bypass (admin)"
    assert "private" in directives(response)


def test_private_overrides_what_the_view_said(downstream):
    """A view that calls a logged-in page public still gets private: no leak downstream."""
    client = Client()
    client.force_login(UserFactory())
    response = client.get("/t/cache-control/public/")
    assert "private" in directives(response)
    assert "public" not in directives(response)


def test_private_marks_stay_on_when_downstream_is_off(backend):
    client = Client()
    client.force_login(UserFactory())
    with page_settings(backend):
        assert "private" in directives(client.get("/t/hello/"))
        with backend.settings(DOWNSTREAM={"mark_private": False}):
            assert "Cache-Control" not in client.get("/t/hello/")


def test_an_unstored_anonymous_page_is_private_unless_the_view_chose(downstream):
    """ormcache cannot purge what it did not store, so a proxy must not keep it."""
    PostFactory()
    response = Client().post("/t/any-method/")
    assert outcome(response) == "bypass (method POST)"
    assert directives(response) == {"private"}
    chosen = Client().get("/t/max-age-zero/")
    assert outcome(chosen) == "bypass (Cache-Control: max-age=0)"
    assert directives(chosen) == {"max-age"}


def test_a_page_too_large_to_store_is_not_shared(downstream, backend):
    """mark_shared runs before the store (the stored copy carries its marks): a page
    that then could not be stored has them taken off again, ETag included."""
    PostFactory()
    with backend.settings(
        PAGES={"timeout": 600},
        DOWNSTREAM={"enabled": True, "surrogate_key_header": XKEY},
        MAX_ENTRY_BYTES=100,
    ):
        response = Client().get("/t/posts/")
    assert outcome(response).startswith("bypass (too large: ")
    assert directives(response) == {"private"}
    assert XKEY not in response
    assert "ETag" not in response


@pytest.mark.parametrize(
    "visitor", ["saves its session every request", "expired session", "malformed CSRF cookie"]
)
def test_a_page_that_leaves_with_a_cookie_is_not_shared(downstream, visitor):
    """The middleware above the page cache sets a cookie on this response: served from
    the cache (or stored) all the same, the page used no session or token, but private."""

    def a_visitor():
        client = Client()
        if visitor == "saves its session every request":
            session = client.session
            session["cart"] = 3
            session.save()
        elif visitor == "expired session":
            client.cookies[settings.SESSION_COOKIE_NAME] = "expired0session0key"
        else:
            client.cookies[settings.CSRF_COOKIE_NAME] = "not-a-token"
        return client

    PostFactory()
    shared = Client().get("/t/posts/")
    assert outcome(shared) == "miss"
    assert "public" in directives(shared)
    every_request = visitor == "saves its session every request"
    with override_settings(SESSION_SAVE_EVERY_REQUEST=every_request):
        hit = a_visitor().get("/t/posts/")
        miss = a_visitor().get("/t/raw/")
    assert outcome(hit) == "hit"
    assert hit.content == shared.content
    for response in (hit, miss):
        assert response.cookies, "the visitor gets a cookie"
        assert "private" in directives(response)
        assert not {"public", "s-maxage"} & directives(response)
        assert XKEY not in response
    if visitor == "malformed CSRF cookie":
        # A token renewed while the page is built counts as the page's: not stored.
        assert outcome(miss) == "bypass (the page used the CSRF token)"
    else:
        assert outcome(miss) == "miss"
        again = Client().get("/t/raw/")  # the stored copy is shared
        assert outcome(again) == "hit"
        assert "public" in directives(again)


# --- purges ------------------------------------------------------------------------------------


def test_a_write_purges_the_tables_it_wrote(downstream, backend, proxy):
    with downstream(purgers=[purger_for(proxy)], repurge_after=None):
        post = PostFactory()
        assert purge.flush()
        proxy.received.clear()
        post.title = "changed"
        post.save()
        assert purge.flush()
    assert [item.method for item in proxy.received] == ["PURGE"]
    assert proxy.purged_keys() == [{table_key(backend, "blog_post")}]


@pytest.mark.django_db(transaction=True)
def test_no_purge_before_the_commit(downstream, backend, proxy):
    with downstream(purgers=[purger_for(proxy)], repurge_after=None, purge_delay=0):
        post = PostFactory()
        assert purge.flush()
        proxy.received.clear()
        with transaction.atomic(using=backend.db_alias):
            Post.objects.filter(pk=post.pk).update(views=5)
            purge.flush()
            assert proxy.received == []  # a proxy refilled now would keep the old rows
        assert purge.flush()
        assert proxy.purged_keys() == [{table_key(backend, "blog_post")}]


def test_purges_are_batched(downstream, backend, proxy):
    with downstream(purgers=[purger_for(proxy)], repurge_after=None, purge_delay=0.5):
        for index in range(20):
            PostFactory(title=f"post {index}")
        assert purge.flush()
    assert len(proxy.received) == 1
    assert table_key(backend, "blog_post") in proxy.purged_keys()[0]


def test_a_batch_larger_than_batch_size_is_split(downstream, proxy):
    with downstream(purgers=[purger_for(proxy, batch_size=1)], repurge_after=None):
        queue = purge.queue()
        queue.add(["k1", "k2", "k3"])
        assert purge.flush()
    assert sorted(next(iter(keys)) for keys in proxy.purged_keys()) == ["k1", "k2", "k3"]


def test_an_overflowing_queue_purges_everything(downstream, proxy):
    with downstream(purgers=[purger_for(proxy)], repurge_after=None, max_pending=3):
        queue = purge.queue()
        queue.add(["k1", "k2", "k3", "k4"])
        assert purge.flush()
        assert queue.overflows == 1
    assert proxy.purged_keys() == [{"ormcache-all"}]


def test_the_same_keys_are_purged_again_after_repurge_after(downstream, backend, proxy):
    with downstream(purgers=[purger_for(proxy)], repurge_after=0.2):
        PostFactory()
        assert proxy.wait_for(2, timeout=5)
    key = table_key(backend, "blog_post")
    first, second = proxy.received[:2]
    assert key in proxy.purged_keys()[0] and key in proxy.purged_keys()[1]
    assert second.at - first.at >= 0.15


def test_invalidate_all_purges_every_shared_page(downstream, proxy):
    import ormcache

    with downstream(purgers=[purger_for(proxy)], repurge_after=None):
        ormcache.invalidate_all()
        assert purge.flush()
    assert proxy.purged_keys() == [{"ormcache-all"}]


def test_a_failing_proxy_never_fails_the_write(downstream, proxy, caplog):
    proxy.status = 503
    received = []
    signals.purged.connect(lambda sender, **kw: received.append(kw), weak=False)
    try:
        with downstream(purgers=[purger_for(proxy)], repurge_after=None, retries=1):
            with caplog.at_level(logging.WARNING, logger="ormcache"):
                post = PostFactory()
                assert purge.flush()
            assert Post.objects.get(pk=post.pk) == post
            assert purge.queue().failures == 1
    finally:
        signals.purged.receivers.clear()
    assert len(proxy.received) == 2  # the first try and one retry
    assert received and received[-1]["ok"] is False
    assert "HTTP 503" in str(received[-1]["error"])
    assert "purge of 2 keys" in caplog.text  # blog_author and blog_post


def test_an_unreachable_proxy_never_fails_the_write(downstream, caplog):
    dead = {"class": "ormcache.purge.HTTPPurger", "urls": ["http://127.0.0.1:9/"], "timeout": 0.5}
    with (
        downstream(purgers=[dead], repurge_after=None, retries=0),
        caplog.at_level(logging.WARNING, logger="ormcache"),
    ):
        PostFactory()
        assert purge.flush()
    assert "127.0.0.1:9" in caplog.text


def test_the_purge_requested_signal_serves_custom_cdn_apis(downstream, backend):
    asked = []

    def cdn(sender, *, keys, **kwargs):
        asked.append(set(keys))

    signals.purge_requested.connect(cdn)
    try:
        with downstream(repurge_after=None):
            PostFactory()
            assert purge.flush()
    finally:
        signals.purge_requested.disconnect(cdn)
    assert asked == [{table_key(backend, "blog_author"), table_key(backend, "blog_post")}]


# --- system checks -------------------------------------------------------------------------------


def check_ids(downstream_settings, middleware=PAGE_MIDDLEWARE):
    with override_settings(
        ORMCACHE={"CACHE": "default", "DOWNSTREAM": downstream_settings}, MIDDLEWARE=middleware
    ):
        found = check_downstream()
    for message in found:
        assert message.hint, f"{message.id} has no hint"
    return sorted(message.id for message in found)


GOOD_PURGER = {"class": "ormcache.purge.HTTPPurger", "urls": ["http://127.0.0.1:6081/"]}


@pytest.mark.parametrize(
    "given, expected",
    [
        ({"enabled": True, "purgers": [GOOD_PURGER]}, []),
        ({"enabled": True, "s_maxage": 0}, []),
        ({"enabled": True}, ["ormcache.W060"]),
        ([], ["ormcache.E060"]),
        ({"enabeld": True}, ["ormcache.E061"]),
        ({"enabled": "yes"}, ["ormcache.E062"]),
        ({"s_maxage": -1}, ["ormcache.E062"]),
        ({"s_maxage": 1.5}, ["ormcache.E062"]),
        ({"surrogate_key_header": "bad header"}, ["ormcache.E062"]),
        ({"key_prefix": "a b"}, ["ormcache.E062"]),
        ({"repurge_after": 0}, ["ormcache.E062"]),
        ({"max_pending": 0}, ["ormcache.E062"]),
        ({"purgers": GOOD_PURGER}, ["ormcache.E063"]),
        ({"purgers": ["http://127.0.0.1/"]}, ["ormcache.E063"]),
        ({"purgers": [{"class": "no.such.Purger"}]}, ["ormcache.E064"]),
        ({"purgers": [{**GOOD_PURGER, "urls": ["ftp://x/"]}]}, ["ormcache.E064"]),
        ({"purgers": [{**GOOD_PURGER, "colour": "red"}]}, ["ormcache.E064"]),
        ({"purgers": [{"class": "collections.OrderedDict"}]}, ["ormcache.E064"]),
    ],
)
def test_downstream_settings_are_checked(given, expected):
    assert check_ids(given) == expected


def test_downstream_without_the_page_cache_is_a_warning():
    middleware = [m for m in PAGE_MIDDLEWARE if "ormcache" not in m]
    found = check_ids({"enabled": True, "purgers": [GOOD_PURGER]}, middleware=middleware)
    assert found == ["ormcache.W061"]


# --- fixed-lifetime models (longevity "fixed") ------------------------------------------------


def test_fixed_lifetime_pages_are_purged_by_explicit_invalidation_not_by_writes(
    downstream, backend, proxy
):
    import ormcache
    from ormcache import downstream as downstream_headers
    from ormcache import keys
    from testproject.blog.models import Tag

    fixed = keys.fixed_key(backend.db_alias, "blog_tag")
    assert downstream_headers.surrogate_key(fixed) == table_key(backend, "blog_tag") + "-fixed"
    models = {**settings.ORMCACHE["MODELS"], "blog.tag": {"longevity": "fixed", "timeout": 60}}
    with (
        backend.settings(MODELS=models),
        downstream(purgers=[purger_for(proxy)], repurge_after=None),
    ):
        Tag.objects.create(name="written")
        assert purge.flush()
        assert proxy.purged_keys() == [{table_key(backend, "blog_tag")}]
        proxy.received.clear()
        ormcache.invalidate(Tag)
        assert purge.flush()
    purged = set().union(*proxy.purged_keys())
    assert {table_key(backend, "blog_tag"), table_key(backend, "blog_tag") + "-fixed"} <= purged
