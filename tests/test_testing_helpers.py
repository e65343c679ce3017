"""ormcache.testing: assertions, the TestCase mixin, the pytest fixtures, and switching
caching off in a project's test settings."""

import os
import subprocess
import sys
import textwrap
import unittest
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from django.conf import settings
from django.test import TestCase
from django.test.utils import override_settings

from ormcache.testing import (
    OrmcacheTestMixin,
    assert_hits_database,
    assert_served_from_cache,
    reset_cache,
)
from testproject.blog.models import AuditEntry, Post
from tests.factories import PostFactory

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() == "true"


def test_served_from_cache_passes_on_hits(backend):
    post = PostFactory()
    Post.objects.get(pk=post.pk)
    with assert_served_from_cache(strict=True) as record:
        Post.objects.get(pk=post.pk)
    assert [event.outcome for event in record.reads] == ["hit"]
    assert record.queries == []


def test_served_from_cache_fails_on_a_miss(backend):
    post = PostFactory()
    with pytest.raises(AssertionError) as failure, assert_served_from_cache():
        Post.objects.get(pk=post.pk)
    message = str(failure.value)
    assert "1 read(s) went to the database" in message
    assert f"blog.post on {backend.db_alias!r}: miss" in message


def test_served_from_cache_fails_on_a_bypass(backend):
    PostFactory()
    with (
        pytest.raises(AssertionError, match=r"blog\.post on .*: bypass \(order_by"),
        assert_served_from_cache(),
    ):
        list(Post.objects.order_by("?"))


def test_served_from_cache_needs_a_read(backend):
    with (
        pytest.raises(AssertionError, match="no read went through ormcache"),
        assert_served_from_cache(),
    ):
        list(AuditEntry.objects.all())  # a plain manager


def test_strict_also_refuses_other_sql(backend):
    post = PostFactory()
    Post.objects.get(pk=post.pk)
    with assert_served_from_cache():  # not strict: other SQL is allowed
        Post.objects.get(pk=post.pk)
        list(AuditEntry.objects.all())
    with (
        pytest.raises(AssertionError, match=r"1 SQL statement\(s\) ran"),
        assert_served_from_cache(strict=True),
    ):
        Post.objects.get(pk=post.pk)
        list(AuditEntry.objects.all())


def test_hits_database(backend):
    post = PostFactory()
    with assert_hits_database() as record:
        Post.objects.get(pk=post.pk)
    assert [event.outcome for event in record.reads] == ["miss"]
    assert record.queries and record.queries[0][0] == backend.db_alias
    with assert_hits_database():
        Post.objects.nocache().get(pk=post.pk)  # no ormcache read, but SQL
    with pytest.raises(AssertionError, match="served from the cache"), assert_hits_database():
        Post.objects.get(pk=post.pk)


def test_assertions_do_not_swallow_errors(backend):
    with pytest.raises(ZeroDivisionError), assert_hits_database():
        1 / 0  # noqa: B018


def test_reset_cache_makes_everything_a_miss(backend):
    post = PostFactory()
    Post.objects.get(pk=post.pk)
    reset_cache()
    with assert_hits_database():
        Post.objects.get(pk=post.pk)


def test_one_line_disables_caching_in_test_settings(backend):
    post = PostFactory()
    with override_settings(ORMCACHE={**settings.ORMCACHE, "ENABLED": False}):
        for _ in range(3):
            with assert_hits_database():
                Post.objects.get(pk=post.pk)
    with assert_hits_database():  # nothing was stored meanwhile
        Post.objects.get(pk=post.pk)


# --- the TestCase mixin -------------------------------------------------------------------


def _run(case_class):
    result = unittest.TestResult()
    unittest.defaultTestLoader.loadTestsFromTestCase(case_class).run(result)
    return result


class _FillsThenReads:
    """test_1 stores a read of its own rows; TestCase rolls them back; test_2 reads again."""

    def test_1_fill(self):
        PostFactory(title="rolled back")
        self.assertEqual([p.title for p in Post.objects.all()], ["rolled back"])

    def test_2_read(self):
        self.titles = [p.title for p in Post.objects.all()]
        type(self).seen.append(self.titles)


def test_mixin_gives_every_test_a_clean_cache(django_db_setup, django_db_blocker):
    class WithMixin(OrmcacheTestMixin, _FillsThenReads, TestCase):
        seen = []

    class WithoutReset(WithMixin):
        ormcache_reset = False
        seen = []

    with django_db_blocker.unblock():
        reset_cache()
        result = _run(WithMixin)
        assert result.wasSuccessful(), result.errors + result.failures
        assert WithMixin.seen == [[]]
        # Why the mixin resets: without it the second test is served the first test's
        # rows, which the database rolled back.
        result = _run(WithoutReset)
        assert result.wasSuccessful(), result.errors + result.failures
        assert WithoutReset.seen == [["rolled back"]]
        reset_cache()


def test_mixin_assertions(django_db_setup, django_db_blocker):
    class Assertions(OrmcacheTestMixin, TestCase):
        def test_cached(self):
            post = PostFactory()
            with self.assertHitsDatabase():
                Post.objects.get(pk=post.pk)
            with self.assertServedFromCache(strict=True):
                Post.objects.get(pk=post.pk)

        def test_fails_on_a_miss(self):
            post = PostFactory()
            with self.assertServedFromCache():
                Post.objects.get(pk=post.pk)

    with django_db_blocker.unblock():
        result = _run(Assertions)
    assert result.testsRun == 2
    assert result.errors == []
    assert [case.id().rsplit(".", 1)[-1] for case, _ in result.failures] == ["test_fails_on_a_miss"]


# --- the pytest plugin ----------------------------------------------------------------------

PLUGIN_TEST = """
import pytest

from ormcache.testing import assert_hits_database
from testproject.blog.models import Author, Post


@pytest.fixture
def post(db):
    return Post.objects.create(author=Author.objects.create(name="a"), title="t", slug="t")


def test_fixture(ormcache, post):
    with ormcache.hits_database():
        Post.objects.get(pk=post.pk)
    with ormcache.served_from_cache():
        Post.objects.get(pk=post.pk)
    ormcache.reset()
    with ormcache.hits_database():
        Post.objects.get(pk=post.pk)


def test_disabled(ormcache_disabled, post):
    Post.objects.get(pk=post.pk)
    with assert_hits_database():
        Post.objects.get(pk=post.pk)
"""


def _plugin_installed():
    return any(ep.value == "ormcache.pytest_plugin" for ep in entry_points(group="pytest11"))


def test_pytest_plugin_fixtures(tmp_path):
    """The fixtures, in a project of their own (a pytest run in a subprocess)."""
    installed = _plugin_installed()
    if not installed and IN_CI:
        pytest.fail("ormcache's pytest11 entry point is not installed (pip install -e .)")
    (tmp_path / "test_project_side.py").write_text(textwrap.dedent(PLUGIN_TEST))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORMCACHE_TEST_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"  # SQLite + locmem only
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    if not installed:
        command += ["-p", "ormcache.pytest_plugin"]
    command.append(str(tmp_path / "test_project_side.py"))
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
