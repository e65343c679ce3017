"""The smoke test scripts/check-package runs against an installed ormcache (wheel or sdist).

It runs in an empty directory, so only the installed package is importable: a one-file
Django project with a model using CachedManager, on SQLite and locmem.
"""

import importlib.resources
import io
import sys

import django
from django.conf import settings

settings.configure(
    DEBUG=True,
    SECRET_KEY="smoke",
    USE_TZ=True,
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "ormcache"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
    ORMCACHE={"MODELS": {"auth.*": {"enabled": True}}, "STATS": {"enabled": True}},
    SILENCED_SYSTEM_CHECKS=["ormcache.W001"],
    DEFAULT_AUTO_FIELD="django.db.models.AutoField",
)
django.setup()

from django.contrib.auth.models import Group  # noqa: E402
from django.core.management import call_command  # noqa: E402

import ormcache  # noqa: E402
from ormcache.testing import assert_hits_database, assert_served_from_cache  # noqa: E402

assert "site-packages" in ormcache.__file__, f"not the installed package: {ormcache.__file__}"
files = importlib.resources.files("ormcache")
assert (files / "py.typed").is_file(), "py.typed is missing"
assert (files / "templates" / "ormcache" / "admin_stats.html").is_file()

call_command("migrate", verbosity=0)
Group.objects.create(name="editors")
with assert_hits_database():
    assert [g.name for g in Group.objects.all()] == ["editors"]
with assert_served_from_cache(strict=True):
    assert [g.name for g in Group.objects.all()] == ["editors"]
Group.objects.update(name="writers")
with assert_hits_database():
    assert [g.name for g in Group.objects.all()] == ["writers"]

out = io.StringIO()
call_command("ormcache", "stats", stdout=out)
assert "auth.group" in out.getvalue(), out.getvalue()
call_command("check", stdout=io.StringIO())
print(
    f"smoke test: ok (ormcache {ormcache.__version__}, Django {django.get_version()}, "
    f"Python {sys.version.split()[0]})"
)
