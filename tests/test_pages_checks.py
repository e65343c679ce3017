"""System checks for ORMCACHE["PAGES"] and for where the page cache middleware sits."""

import pytest
from django.test.utils import override_settings

from ormcache.checks import check_pages, check_settings

OURS = "ormcache.middleware.CacheMiddleware"
SESSION = "django.contrib.sessions.middleware.SessionMiddleware"
AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"
MESSAGES = "django.contrib.messages.middleware.MessageMiddleware"
CSRF = "django.middleware.csrf.CsrfViewMiddleware"
GOOD_MIDDLEWARE = [SESSION, CSRF, AUTH, MESSAGES, OURS]


def ids(pages=None, middleware=GOOD_MIDDLEWARE):
    value = {"CACHE": "default"}
    if pages is not None:
        value["PAGES"] = pages
    with override_settings(ORMCACHE=value, MIDDLEWARE=middleware):
        found = check_pages() + [m for m in check_settings() if m.id == "ormcache.E002"]
    for message in found:
        assert message.hint, f"{message.id} has no hint"
    return sorted(message.id for message in found)


@pytest.mark.parametrize(
    "pages, expected",
    [
        ("yes", ["ormcache.E020"]),
        ({"timeout": 60, "ttl": 5}, ["ormcache.E021"]),
        ({"enabled": "yes"}, ["ormcache.E022"]),
        ({"timeout": -1}, ["ormcache.E022"]),
        ({"timeout": "60"}, ["ormcache.E022"]),
        ({"key_prefix": "has space"}, ["ormcache.E022"]),
        ({"key_prefix": 3}, ["ormcache.E022"]),
        ({"header": "X Bad"}, ["ormcache.E022"]),
        ({"vary_on_headers": "Accept-Language"}, ["ormcache.E022"]),
        ({"vary_on_headers": [1]}, ["ormcache.E022"]),
        ({"exclude_paths": [r"^/admin(/"]}, ["ormcache.E023"]),
        ({"include_paths": ["[unclosed"]}, ["ormcache.E023"]),
        ({"exclude_paths": r"^/admin/"}, ["ormcache.E023"]),
        ({"exclude_paths": [None]}, ["ormcache.E023"]),
    ],
)
def test_bad_page_settings_are_errors(pages, expected):
    assert ids(pages) == expected


def test_good_page_settings_pass():
    pages = {
        "enabled": True,
        "timeout": None,
        "exclude_paths": [r"^/account/", r"\?preview="],
        "include_paths": [],
        "vary_on_headers": ["Accept-Language", "X-Tenant"],
        "key_prefix": "v2",
        "header": None,
    }
    assert ids(pages) == []
    assert ids({"header": ""}) == []
    assert ids() == []


@pytest.mark.parametrize("before", [SESSION, AUTH, MESSAGES, CSRF])
def test_the_middleware_after_what_it_needs(before):
    middleware = [m for m in GOOD_MIDDLEWARE if m != before]
    middleware.insert(middleware.index(OURS) + 1, before)
    # One error for the misplaced middleware, and "not last" since something follows.
    assert ids(middleware=middleware) == ["ormcache.E024", "ormcache.W020"]


def test_not_last_is_a_warning():
    middleware = [*GOOD_MIDDLEWARE, "django.middleware.gzip.GZipMiddleware"]
    assert ids(middleware=middleware) == ["ormcache.W020"]


def test_a_subclass_is_recognised():
    middleware = [*GOOD_MIDDLEWARE[:-1], "tests.test_pages_checks.MyCacheMiddleware", SESSION]
    assert "ormcache.E024" in ids(middleware=middleware)


def test_django_cache_middleware_as_well_is_a_warning():
    middleware = ["django.middleware.cache.UpdateCacheMiddleware", *GOOD_MIDDLEWARE]
    assert ids(middleware=middleware) == ["ormcache.W021"]


def test_no_page_middleware_no_position_checks():
    assert ids(middleware=[CSRF, SESSION]) == []


def test_the_demo_settings_pass():
    from testproject import settings as demo

    with override_settings(ORMCACHE=demo.ORMCACHE, MIDDLEWARE=demo.MIDDLEWARE):
        assert [m.id for m in check_pages()] == []


from ormcache.middleware import CacheMiddleware  # noqa: E402


class MyCacheMiddleware(CacheMiddleware):
    pass
