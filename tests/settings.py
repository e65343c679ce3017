"""Settings for the test suite.

Two backend pairs: SQLite + locmem (always) and PostgreSQL + Redis (when
``scripts/test`` started them and exported their addresses). ``conftest.py``
parametrises tests over the pairs; a router sends every query to the pair of
the running test.
"""

import importlib.util
import os

SECRET_KEY = "ormcache-tests"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "testproject.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "ormcache",
    "testproject.blog",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
    # A read replica of "default": in tests, the same database under another alias.
    "replica": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": ":memory:",
        "TEST": {"MIRROR": "default"},
    },
}
# Room for row-level version keys (one per row read or written) next to the entries and
# the stats counters: locmem's default of 300 keys would cull counters mid-test.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "OPTIONS": {"MAX_ENTRIES": 10_000},
    }
}

PG_HOST = os.environ.get("ORMCACHE_TEST_PG_HOST")
REDIS_URL = os.environ.get("ORMCACHE_TEST_REDIS_URL")
MEMCACHED = os.environ.get("ORMCACHE_TEST_MEMCACHED")

if PG_HOST:
    DATABASES["pg"] = {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": PG_HOST,
        "PORT": os.environ.get("ORMCACHE_TEST_PG_PORT", "5432"),
        "USER": os.environ.get("ORMCACHE_TEST_PG_USER", "postgres"),
        "NAME": "ormcache",
        # A nested run (tests/test_verify.py) needs a test database of its own.
        "TEST": {"NAME": os.environ.get("ORMCACHE_TEST_PG_DBNAME", "test_ormcache")},
    }
    DATABASES["pg_replica"] = {**DATABASES["pg"], "TEST": {"MIRROR": "pg"}}
if REDIS_URL:
    CACHES["redis"] = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 5, "SOCKET_TIMEOUT": 5},
    }

if MEMCACHED:
    CACHES["memcached"] = {
        "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
        "LOCATION": MEMCACHED,
        "OPTIONS": {"connect_timeout": 5, "timeout": 5},
    }

DATABASE_ROUTERS = ["tests.routing.BackendRouter"]

ORMCACHE = {
    "CACHE": "default",
    "TIMEOUT": 300,
    "MODELS": {
        "blog.*": {"enabled": True},
        "blog.auditentry": {"enabled": False},
        "blog.bookmark": {"user_scoped": True},
        # Partition versions (ormcache/rows.py) on the whole suite: comments by post.
        "blog.comment": {"partition_by": "post"},
        "auth.group": {"enabled": True},
    },
}

# Shadow-verify mode for a whole run: every cache hit also queries the database and
# must agree with it (tests/test_verify.py runs part of the suite with "raise").
if os.environ.get("ORMCACHE_TEST_VERIFY"):
    ORMCACHE["VERIFY"] = os.environ["ORMCACHE_TEST_VERIFY"]
# django-debug-toolbar, for tests/test_debug_toolbar.py: its store has a model, so the
# app is installed; the toolbar itself is never shown (no middleware, no URLs).
if importlib.util.find_spec("debug_toolbar") is not None:
    INSTALLED_APPS.append("debug_toolbar")
    # Only ormcache's panel: the default panels instrument Django at start-up.
    DEBUG_TOOLBAR_PANELS = ["ormcache.contrib.debug_toolbar.OrmcachePanel"]
SILENCED_SYSTEM_CHECKS = ["ormcache.W001"]
