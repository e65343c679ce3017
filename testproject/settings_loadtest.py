"""Settings for the load test (scripts/loadtest, benchmarks/loadtest.py, docs/loadtest.md).

The demo's settings, on PostgreSQL + Redis (django-redis) instead of SQLite + locmem,
with the load test's JSON endpoints routed (testproject/blog/loadtest_views.py).

Environment variables:
  ORMCACHE_LOADTEST_ENABLED   "0" turns ormcache off (ORMCACHE["ENABLED"] = False;
                              the page cache follows it); default on
  ORMCACHE_LOADTEST_REDIS_URL the Redis URL (default: ORMCACHE_TEST_REDIS_URL)
  ORMCACHE_TEST_PG_HOST, ORMCACHE_TEST_PG_PORT, ORMCACHE_TEST_PG_USER
                              the PostgreSQL server (as scripts/lib/services.sh exports)
  ORMCACHE_LOADTEST_PG_NAME   the database (default: postgres)
"""

import os

from testproject.settings import *  # noqa: F403
from testproject.settings import ORMCACHE, _flag

DEBUG = False
ROOT_URLCONF = "testproject.blog.loadtest_views"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("ORMCACHE_TEST_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("ORMCACHE_TEST_PG_PORT", "5432"),
        "USER": os.environ.get("ORMCACHE_TEST_PG_USER", "postgres"),
        "NAME": os.environ.get("ORMCACHE_LOADTEST_PG_NAME", "postgres"),
        "CONN_MAX_AGE": 60,
    }
}

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": os.environ.get(
            "ORMCACHE_LOADTEST_REDIS_URL",
            os.environ.get("ORMCACHE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        ),
        "OPTIONS": {
            # docs/operations.md: a dead or stalled Redis costs at most this per call.
            "SOCKET_CONNECT_TIMEOUT": 0.25,
            "SOCKET_TIMEOUT": 0.25,
        },
    }
}

ORMCACHE = {
    **ORMCACHE,
    "ENABLED": _flag("ORMCACHE_LOADTEST_ENABLED"),
    # BREAKER: the defaults (threshold 3, cooldown 5 s), i.e. not set.
}
ORMCACHE.pop("BREAKER", None)

# Redis is shared by every gunicorn worker: the locmem warning does not apply.
SILENCED_SYSTEM_CHECKS = []

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"ormcache": {"handlers": ["console"], "level": "WARNING"}},
}
