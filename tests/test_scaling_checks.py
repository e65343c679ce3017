"""System checks of the scale-out settings: replica reads (E070) and TRIGGERS (E071-E073)."""

import pytest
from django.test.utils import override_settings

from ormcache import scaling_checks

LOCMEM = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
PG = {"ENGINE": "django.db.backends.postgresql", "NAME": "x"}
SQLITE = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}


def ids(problems):
    return [problem.id for problem in problems]


@pytest.mark.parametrize(
    ("location", "options", "expected"),
    [
        ("redis://a/0", {}, []),
        ("redis://a/0,redis://b/0", {}, ["ormcache.E070"]),
        (["redis://a/0", "redis://b/0"], {}, ["ormcache.E070"]),
        (
            "redis://svc/0",
            {"CLIENT_CLASS": "django_redis.client.SentinelClient"},
            ["ormcache.E070"],
        ),
        (
            "redis://svc/0",
            {"CLIENT_CLASS": "ormcache.backends.redis_sentinel.SentinelClient"},
            [],
        ),
    ],
)
def test_replica_reads(location, options, expected):
    cache = {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": location, "OPTIONS": options}
    with override_settings(CACHES={"default": LOCMEM, "x": cache}, ORMCACHE={"CACHE": "x"}):
        assert ids(scaling_checks.check_replica_reads()) == expected


@pytest.mark.parametrize(
    ("triggers", "expected"),
    [
        (None, []),
        ({}, ["ormcache.E072"]),  # "default" is SQLite here
        ({"databases": ["pg"]}, []),
        ({"databases": ["pg"], "listen": True, "channel": "c"}, []),
        ("yes", ["ormcache.E071"]),
        ({"databases": ["pg"], "bogus": 1}, ["ormcache.E071"]),
        ({"databases": ["sqlite"]}, ["ormcache.E072"]),
        ({"databases": ["nope"]}, ["ormcache.E072"]),
        ({"databases": ["pg"], "listen": "yes"}, ["ormcache.E073"]),
        ({"databases": ["pg"], "channel": ""}, ["ormcache.E073"]),
    ],
)
# The check only reads DATABASES; no connection is made to these.
@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_triggers_settings(triggers, expected):
    ormcache = {} if triggers is None else {"TRIGGERS": triggers}
    databases = {"default": SQLITE, "sqlite": SQLITE, "pg": PG}
    with override_settings(ORMCACHE=ormcache, DATABASES=databases):
        assert ids(scaling_checks.check_triggers()) == expected
