"""Conditional requests: an ETag from the dependency versions, and 304 without the view."""

from django.test import Client

from tests.factories import PostFactory, UserFactory
from tests.test_pages_urls import calls, outcome, site_fixture  # noqa: F401


def test_a_stored_page_has_a_weak_etag_from_its_versions(site):
    PostFactory(title="First")
    miss = site.get("/t/posts/")
    hit = site.get("/t/posts/")
    assert miss.headers["ETag"].startswith('W/"')
    assert hit.headers["ETag"] == miss.headers["ETag"]
    PostFactory(title="Second")
    assert site.get("/t/posts/").headers["ETag"] != miss.headers["ETag"]


def test_a_matching_if_none_match_gets_304_without_the_view(site):
    PostFactory(title="First")
    etag = site.get("/t/posts/").headers["ETag"]
    response = site.get("/t/posts/", HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["ETag"] == etag
    assert outcome(response) == "hit"
    assert calls["posts"] == 1
    # Also among several ETags, and for HEAD.
    listed = site.get("/t/posts/", HTTP_IF_NONE_MATCH=f'"other", {etag}')
    assert listed.status_code == 304
    assert site.head("/t/posts/", HTTP_IF_NONE_MATCH=etag).status_code == 304
    assert calls["posts"] == 1


def test_after_a_write_the_old_etag_gets_the_new_page(site):
    post = PostFactory(title="First")
    etag = site.get("/t/posts/").headers["ETag"]
    post.title = "Renamed"
    post.save()
    response = site.get("/t/posts/", HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 200
    assert response.content == b"posts: Renamed"
    assert response.headers["ETag"] != etag
    assert outcome(response) == "miss"
    assert calls["posts"] == 2


def test_an_evicted_page_with_unchanged_data_still_answers_304(site, backend):
    PostFactory(title="First")
    etag = site.get("/t/posts/").headers["ETag"]
    for key in _page_keys(backend):
        backend.cache.delete(key)
    response = site.get("/t/posts/", HTTP_IF_NONE_MATCH=etag)
    assert calls["posts"] == 2  # the view had to run: nothing said what the page read
    assert response.status_code == 304
    assert outcome(response) == "miss"


def test_a_non_matching_etag_gets_the_page(site):
    PostFactory(title="First")
    site.get("/t/posts/")
    response = site.get("/t/posts/", HTTP_IF_NONE_MATCH='W/"nope"')
    assert response.status_code == 200
    assert outcome(response) == "hit"


def test_private_requests_never_get_304_from_the_page_cache(site):
    PostFactory(title="First")
    etag = site.get("/t/posts/").headers["ETag"]
    member = Client()
    member.force_login(UserFactory())
    response = member.get("/t/posts/", HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 200
    assert outcome(response) == "bypass (session of a logged-in user)"
    assert "ETag" not in response.headers


def test_the_view_etag_is_kept(site):
    etag = site.get("/t/tagged/").headers["ETag"]
    assert etag == '"v1"'
    response = site.get("/t/tagged/", HTTP_IF_NONE_MATCH='"v1"')
    assert response.status_code == 304
    assert calls["tagged"] == 1


def _page_keys(backend):
    """The keys of the pages this process stored."""
    from ormcache import pages

    return list(pages._version_keys_memo)
