"""Settings for the demo blog.

The site runs on what a fresh machine already has: SQLite for the database and
Django's local-memory cache for ormcache. Both are fine for a single-process
demo, the tests and the benchmarks; a real deployment would use PostgreSQL and
Redis (see docs/).

Environment variables:
  ORMCACHE_DEMO_DB          path of the SQLite file (default: testproject/db.sqlite3)
  ORMCACHE_DEMO_DEBUG       "0" turns DEBUG off (default: on)
  ORMCACHE_DEMO_SECRET      secret key (default: a fixed, public, demo-only key)
  ORMCACHE_DEMO_PAGE_CACHE  "0" leaves the page cache middleware out (default: in)
  ORMCACHE_DEMO_ORM_CACHE   "0" turns ormcache's query cache off (ORMCACHE["ENABLED"])
  ORMCACHE_DEMO_REDIS_URL   a Redis URL: use it as the cache (needs django-redis), so
                            that several server processes share pages and versions
  ORMCACHE_DEMO_PURGE_URL   a Varnish (docs/recipes/varnish.vcl) in front of the site:
                            shared pages get xkey headers, and writes purge them there
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = os.environ.get(
    "ORMCACHE_DEMO_SECRET", "demo-only-insecure-key-do-not-use-in-production"
)


def _flag(name: str, default: str = "1") -> bool:
    return os.environ.get(name, default).lower() not in {"0", "false", "no", "off"}


DEBUG = _flag("ORMCACHE_DEMO_DEBUG")

ALLOWED_HOSTS = ["localhost", "127.0.0.1"]

# The debug context processor exposes `sql_queries` (shown in the footer) only
# to these addresses.
INTERNAL_IPS = ["127.0.0.1"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "ormcache",
    "testproject.blog",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# The page cache goes last: it needs request.user (and the session behind it)
# to keep private pages private, and every middleware above it then processes
# hits and misses alike, so a cached response gets the same headers as a fresh
# one. System checks ormcache.E024/W020 say so if it is misplaced.
if _flag("ORMCACHE_DEMO_PAGE_CACHE"):
    MIDDLEWARE.append("ormcache.middleware.CacheMiddleware")

ROOT_URLCONF = "testproject.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.debug",
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "testproject.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("ORMCACHE_DEMO_DB") or BASE_DIR / "db.sqlite3",
    }
}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "ormcache-demo",
    }
}
if os.environ.get("ORMCACHE_DEMO_REDIS_URL"):
    CACHES["default"] = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": os.environ["ORMCACHE_DEMO_REDIS_URL"],
    }

ORMCACHE = {
    "CACHE": "default",
    "TIMEOUT": 300,
    "ENABLED": _flag("ORMCACHE_DEMO_ORM_CACHE"),
    # Whole pages for anonymous visitors, while what they read is unchanged
    # (docs/pages.md). The response header X-Ormcache says hit, miss or bypass.
    "PAGES": {"timeout": 300},
    "MODELS": {
        "blog.*": {"enabled": True},
        # Write-heavy and read rarely: caching it would only churn versions.
        "blog.auditentry": {"enabled": False},
        # Per-user rows: pages that read them are private to that user.
        "blog.bookmark": {"user_scoped": True},
    },
}

# Downstream caches (docs/downstream.md): a Varnish in front of the site, kept fresh by
# purges (the Varnish test, tests/e2e/test_varnish.py, and benchmarks/purge_latency.py).
if os.environ.get("ORMCACHE_DEMO_PURGE_URL"):
    ORMCACHE["DOWNSTREAM"] = {
        "enabled": True,
        "surrogate_key_header": "xkey",
        "purgers": [
            {"class": "ormcache.purge.HTTPPurger", "urls": [os.environ["ORMCACHE_DEMO_PURGE_URL"]]}
        ],
    }

SILENCED_SYSTEM_CHECKS = [
    # ormcache.W001 warns that LocMemCache is per process: a write made in one
    # process leaves another serving old rows. The demo serves from a single
    # runserver process and its data changes through that process (the site
    # and the admin). Writes from another process, such as `manage.py shell`,
    # reach the running server's cache only after a restart.
    "ormcache.W001",
]

AUTH_PASSWORD_VALIDATORS = []  # the demo superuser is admin/admin

LOGIN_URL = "blog:login"
LOGIN_REDIRECT_URL = "blog:dashboard"
LOGOUT_REDIRECT_URL = "blog:post-list"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# ormcache's stats: counts per model and hit ratio over time, shown by
# `manage.py ormcache stats` and the admin page /admin/ormcache/.
ORMCACHE["STATS"] = {
    "enabled": True,
    # Seconds per sample of the hit-ratio chart (the browser test uses 1).
    "history_interval": int(os.environ.get("ORMCACHE_DEMO_STATS_INTERVAL", "60")),
}

# django-debug-toolbar with ormcache's panel (each read: hit, miss or bypass, with its
# dependencies and versions), when DEBUG is on and the toolbar is installed
# (`pip install django-debug-toolbar`; the test extra has it). ORMCACHE_DEMO_TOOLBAR=0
# leaves it out.
if DEBUG and _flag("ORMCACHE_DEMO_TOOLBAR"):
    import importlib.util

    if importlib.util.find_spec("debug_toolbar") is not None:
        from debug_toolbar.settings import PANELS_DEFAULTS

        INSTALLED_APPS.append("debug_toolbar")
        MIDDLEWARE.insert(0, "debug_toolbar.middleware.DebugToolbarMiddleware")
        DEBUG_TOOLBAR_PANELS = [*PANELS_DEFAULTS, "ormcache.contrib.debug_toolbar.OrmcachePanel"]
