"""System checks: every bad setting is reported at start with an id and a hint."""

import pytest
from django.core import checks
from django.test.utils import override_settings

from ormcache.checks import check_settings

LOCMEM = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
REDISH = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "shared": {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": "/tmp/x",
    },
}


def ids(value, caches=REDISH):
    with override_settings(ORMCACHE=value, CACHES=caches):
        found = check_settings()
    for message in found:
        assert message.hint, f"{message.id} has no hint"
    return sorted(message.id for message in found)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("not a dict", ["ormcache.E001"]),
        ({"CACHE": "shared", "TIMEOUTS": 3}, ["ormcache.E002"]),
        ({"CACHE": "nope"}, ["ormcache.E003"]),
        ({"CACHE": "shared", "TIMEOUT": -1}, ["ormcache.E004"]),
        ({"CACHE": "shared", "TIMEOUT": "60"}, ["ormcache.E004"]),
        ({"CACHE": "shared", "TIMEOUT": 1.5}, ["ormcache.E004"]),
        ({"CACHE": "shared", "MODELS": ["blog.post"]}, ["ormcache.E005"]),
        ({"CACHE": "shared", "MODELS": {"shop.*": {}}}, ["ormcache.E006"]),
        ({"CACHE": "shared", "MODELS": {"blog.nothing": {}}}, ["ormcache.E007"]),
        ({"CACHE": "shared", "MODELS": {"post": {}}}, ["ormcache.E008"]),
        ({"CACHE": "shared", "MODELS": {"blog.post": True}}, ["ormcache.E009"]),
        ({"CACHE": "shared", "MODELS": {"blog.post": {"ttl": 3}}}, ["ormcache.E009"]),
        ({"CACHE": "shared", "MODELS": {"blog.post": {"timeout": -5}}}, ["ormcache.E010"]),
        ({"CACHE": "shared", "MODELS": {"blog.post": {"timeout": "5"}}}, ["ormcache.E010"]),
        ({"CACHE": "shared", "MODELS": {"blog.post": {"enabled": "yes"}}}, ["ormcache.E011"]),
        ({"CACHE": "shared", "MODELS": {"blog.post": {"user_scoped": 1}}}, ["ormcache.E011"]),
        ({"CACHE": "shared", "ENABLED": "no"}, ["ormcache.E012"]),
    ],
)
def test_bad_settings_are_errors(value, expected):
    assert ids(value) == expected


def test_good_settings_pass():
    value = {
        "CACHE": "shared",
        "TIMEOUT": None,
        "ENABLED": True,
        "MODELS": {
            "*": {"timeout": 60},
            "blog.*": {"enabled": True},
            "Blog.Post": {"timeout": 0, "user_scoped": False},
            "auth.group": {"enabled": True},
        },
    }
    assert ids(value) == []


def test_locmem_is_a_warning():
    assert ids({"CACHE": "default"}, caches=LOCMEM) == ["ormcache.W001"]


@pytest.mark.parametrize(
    "options, global_setting, expected",
    [
        ({"IGNORE_EXCEPTIONS": True}, False, ["ormcache.E025"]),
        ({}, True, ["ormcache.E025"]),
        ({"IGNORE_EXCEPTIONS": False}, True, []),  # the alias's own option wins
        ({}, False, []),
    ],
)
def test_django_redis_ignoring_exceptions_is_an_error(options, global_setting, expected):
    """A bump Redis refuses must raise: with IGNORE_EXCEPTIONS it would look delivered."""
    caches = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": options,
        }
    }
    with override_settings(DJANGO_REDIS_IGNORE_EXCEPTIONS=global_setting):
        assert ids({"CACHE": "default"}, caches=caches) == expected


def test_no_setting_at_all_uses_the_default_cache():
    from django.conf import settings

    with override_settings(CACHES=LOCMEM):
        del settings.ORMCACHE
        assert [m.id for m in check_settings()] == ["ormcache.W001"]


def test_checks_are_registered_with_django():
    with override_settings(ORMCACHE={"CACHE": "nope"}, SILENCED_SYSTEM_CHECKS=[]):
        found = checks.run_checks(tags=[checks.Tags.caches])
    assert "ormcache.E003" in [message.id for message in found]


def test_manage_py_check_fails_on_bad_settings():
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    bad = override_settings(ORMCACHE={"MODELS": {"blog.post": {"timeout": -1}}})
    with bad, pytest.raises(SystemCheckError, match=r"ormcache\.E010"):
        call_command("check")


@pytest.mark.parametrize(
    "value, expected",
    [
        ({"CACHE": "shared", "BREAKER": {"threshold": 0}}, ["ormcache.E015"]),
        ({"CACHE": "shared", "BREAKER": {"cooldown": -1}}, ["ormcache.E015"]),
        ({"CACHE": "shared", "BREAKER": {"retries": 1}}, ["ormcache.E015"]),
        ({"CACHE": "shared", "BREAKER": 3}, ["ormcache.E015"]),
        ({"CACHE": "shared", "SIGNING_KEY": "short"}, ["ormcache.E016"]),
        ({"CACHE": "shared", "SIGNING_KEY": 12345678901234567}, ["ormcache.E016"]),
        ({"CACHE": "shared", "MAX_ENTRY_BYTES": 0}, ["ormcache.E017"]),
        ({"CACHE": "shared", "MAX_ENTRY_ROWS": "many"}, ["ormcache.E017"]),
        ({"CACHE": "shared", "DATABASES": {"nope": {}}}, ["ormcache.E014"]),
        ({"CACHE": "shared", "DATABASES": {"default": {"versions_of": "x"}}}, ["ormcache.E014"]),
        ({"CACHE": "shared", "MODELS": {"blog.post": {"stale_save": "maybe"}}}, ["ormcache.E013"]),
    ],
)
def test_bad_fault_tolerance_and_database_settings(value, expected):
    assert ids(value) == expected


def test_good_fault_tolerance_settings_pass():
    value = {
        "CACHE": "shared",
        "BREAKER": {"threshold": 5, "cooldown": 0.5},
        "SIGNING_KEY": "a-long-enough-secret-key",
        "MAX_ENTRY_BYTES": None,
        "MAX_ENTRY_ROWS": 100,
        "DATABASES": {"replica": {"versions_of": "default", "replication_lag": 1.5}},
    }
    assert ids(value) == []
