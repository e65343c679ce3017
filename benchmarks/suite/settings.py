"""Django settings for one benchmark run, chosen by environment variables.

``benchmarks/run.py`` sets them for every subprocess; set them by hand to run one
configuration (see ``benchmarks/README.md``):

  BENCH_LIBRARY     plain | ormcache | cachalot | cacheops
  BENCH_BACKEND     sqlite-locmem | sqlite-redis | postgres-redis
  BENCH_SQLITE      path of the SQLite database file (sqlite-* backends)
  BENCH_PG_HOST, BENCH_PG_PORT, BENCH_PG_USER, BENCH_PG_NAME   (postgres-* backends)
  BENCH_REDIS_URL   e.g. redis://127.0.0.1:6379/0          (*-redis backends, cacheops)
  BENCH_ORMCACHE_SETTINGS   JSON merged into ORMCACHE, e.g. to turn on an optional tier

Each library is configured to cache every blog model, as its documentation says:
ormcache with ``"blog.*"`` in ``ORMCACHE["MODELS"]``, cachalot with its defaults
(every table, ``CACHALOT_ENABLED``), cacheops with ``{"blog.*": {"ops": "all"}}``.
"""

import json
import os

BENCH_LIBRARY = os.environ.get("BENCH_LIBRARY", "plain")
BENCH_BACKEND = os.environ.get("BENCH_BACKEND", "sqlite-locmem")

LIBRARIES = ("plain", "ormcache", "cachalot", "cacheops")
BACKENDS = ("sqlite-locmem", "sqlite-redis", "postgres-redis")
if BENCH_LIBRARY not in LIBRARIES:
    raise RuntimeError(f"BENCH_LIBRARY must be one of {LIBRARIES}, not {BENCH_LIBRARY!r}")
if BENCH_BACKEND not in BACKENDS:
    raise RuntimeError(f"BENCH_BACKEND must be one of {BACKENDS}, not {BENCH_BACKEND!r}")

DATABASE_KIND, CACHE_KIND = BENCH_BACKEND.split("-")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "")
if (CACHE_KIND == "redis" or BENCH_LIBRARY == "cacheops") and not REDIS_URL:
    raise RuntimeError(f"{BENCH_LIBRARY} on {BENCH_BACKEND} needs BENCH_REDIS_URL")
if BENCH_LIBRARY == "cacheops" and CACHE_KIND != "redis":
    raise RuntimeError("cacheops requires Redis: it has no locmem backend")

SECRET_KEY = "benchmarks-only"
DEBUG = False  # DEBUG would record every query
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = ["suite.blog"]
if BENCH_LIBRARY != "plain":
    INSTALLED_APPS.append(BENCH_LIBRARY)

if DATABASE_KIND == "sqlite":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("BENCH_SQLITE", "bench.sqlite3"),
            # Like the throwaway PostgreSQL (fsync off): measure the work, not the disk.
            # The data set is written in WAL mode (see seed.py).
            "OPTIONS": {"init_command": "PRAGMA synchronous=OFF"},
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ.get("BENCH_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("BENCH_PG_PORT", "5432"),
            "USER": os.environ.get("BENCH_PG_USER", "postgres"),
            "NAME": os.environ.get("BENCH_PG_NAME", "bench"),
        }
    }

if CACHE_KIND == "redis":
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "bench",
            # Large enough that nothing the workload stores is ever culled.
            "OPTIONS": {"MAX_ENTRIES": 1_000_000},
        }
    }

TIMEOUT = 600

# ormcache
ORMCACHE = {"CACHE": "default", "TIMEOUT": TIMEOUT, "MODELS": {"blog.*": {"enabled": True}}}
ORMCACHE.update(json.loads(os.environ.get("BENCH_ORMCACHE_SETTINGS") or "{}"))

# django-cachalot: caches every table by default.
CACHALOT_ENABLED = True
CACHALOT_CACHE = "default"
CACHALOT_TIMEOUT = TIMEOUT

# django-cacheops: its own Redis connection (it cannot use Django's cache).
CACHEOPS_REDIS = REDIS_URL
CACHEOPS = {"blog.*": {"ops": "all", "timeout": TIMEOUT}}

SILENCED_SYSTEM_CHECKS = ["ormcache.W001"]  # locmem is per process: known and intended here
