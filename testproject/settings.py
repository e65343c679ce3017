"""Settings for the demo blog.

The site runs on what a fresh machine already has: SQLite for the database and
Django's local-memory cache for ormcache. Both are fine for a single-process
demo, the tests and the benchmarks; a real deployment would use PostgreSQL and
Redis (see docs/).

Environment variables:
  ORMCACHE_DEMO_DB       path of the SQLite file (default: testproject/db.sqlite3)
  ORMCACHE_DEMO_DEBUG    "0" turns DEBUG off (default: on)
  ORMCACHE_DEMO_SECRET   secret key (default: a fixed, public, demo-only key)
"""

import importlib.util
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = os.environ.get(
    "ORMCACHE_DEMO_SECRET", "demo-only-insecure-key-do-not-use-in-production"
)

DEBUG = os.environ.get("ORMCACHE_DEMO_DEBUG", "1").lower() not in {"0", "false", "no", "off"}

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
# one. Guarded while the middleware module is still being written.
if importlib.util.find_spec("ormcache.middleware") is not None:
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

ORMCACHE = {
    "CACHE": "default",
    "TIMEOUT": 300,
    "MODELS": {
        "blog.*": {"enabled": True},
        # Write-heavy and read rarely: caching it would only churn versions.
        "blog.auditentry": {"enabled": False},
        # Per-user rows: pages that read them are private to that user.
        "blog.bookmark": {"user_scoped": True},
    },
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

LOGIN_URL = "admin:login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
