"""Writes made outside Django (PostgreSQL): the NOTIFY triggers and the listener, against
the real PostgreSQL and Redis of scripts/test. A second connection that is not Django's
stands in for psql and other services."""

import threading
import time

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connections, models

from ormcache import keys, listener, signals, triggers
from testproject.blog.models import Comment, Post
from tests.factories import CommentFactory, PostFactory
from tests.helpers import assert_served_from_cache
from tests.redis_topologies import wait_for
from tests.routing import current_alias

HAVE_PG = "pg" in settings.DATABASES and "redis" in settings.CACHES
pytestmark = [
    pytest.mark.skipif(not HAVE_PG, reason="PostgreSQL/Redis not running (use scripts/test)"),
    pytest.mark.django_db(databases=["default", "pg"], transaction=True),
]
#: How long a write outside Django may stay unseen here (the window, generously).
WINDOW = 2.0


@pytest.fixture
def pg(settings):
    """ormcache on PostgreSQL + Redis with triggers installed and a listener running."""
    from tests.conftest import Backend

    settings.ORMCACHE = {
        **settings.ORMCACHE,
        "CACHE": "redis",
        "TRIGGERS": {"databases": ["pg"]},
    }
    token = current_alias.set("pg")
    connections["pg"].close()  # the next connection is marked as Django's
    backend = Backend("pg", "redis")
    backend.clear()
    triggers.install("pg")
    running = listener.Listener("pg", poll_interval=0.05)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    assert running.listening.wait(10)
    try:
        yield backend
    finally:
        running.stop.set()
        thread.join(5)
        triggers.uninstall("pg")
        current_alias.reset(token)


@pytest.fixture
def outsider():
    """A connection that is not Django's (psql, a cron job, another service)."""
    import psycopg

    params = connections["pg"].get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as connection:
        yield connection


def eventually(read, expected):
    """``read()`` returns ``expected`` within the window (and from then on)."""
    wait_for(lambda: read() == expected, f"{expected!r}", WINDOW)
    assert read() == expected


def test_install_status_uninstall(pg):
    found = triggers.status("pg")
    assert {"blog_post", "blog_comment", "blog_post_tags"} <= set(found.installed)
    assert "blog_auditentry" not in found.cached  # caching is off for it
    assert found.missing == []
    assert triggers.install("pg") == found.cached  # idempotent
    triggers.uninstall("pg")
    assert triggers.installed_tables("pg") == []
    assert triggers.status("pg").missing == found.cached
    triggers.install("pg")


def test_updates_from_another_service(pg, outsider):
    post = PostFactory(title="before")
    read = lambda: Post.objects.get(pk=post.pk).title  # noqa: E731
    assert_served_from_cache(pg, read)
    outsider.execute("UPDATE blog_post SET title = 'from psql' WHERE id = %s", [post.pk])
    eventually(read, "from psql")
    assert_served_from_cache(pg, read)


def test_inserts_deletes_and_truncate_from_another_service(pg, outsider):
    post = PostFactory()
    CommentFactory(post=post)
    count = lambda: Comment.objects.count()  # noqa: E731
    assert_served_from_cache(pg, count)
    outsider.execute(
        "INSERT INTO blog_comment (post_id, author_name, body, created, approved) "
        "VALUES (%s, 'psql', 'x', now(), true)",
        [post.pk],
    )
    eventually(count, 2)
    outsider.execute("DELETE FROM blog_comment WHERE body = 'x'")
    eventually(count, 1)
    outsider.execute("TRUNCATE blog_comment")
    eventually(count, 0)


def listener_bumps():
    """Collect the bumps made by threads other than the test's (the listener's)."""
    main = threading.current_thread()
    found = []

    def note(sender, tables=(), **kwargs):
        if threading.current_thread() is not main:
            found.append(tables)

    signals.invalidated.connect(note, weak=False)
    return found, lambda: signals.invalidated.disconnect(note)


def test_rolled_back_writes_bump_nothing(pg, outsider):
    post = PostFactory(title="kept")
    read = lambda: Post.objects.get(pk=post.pk).title  # noqa: E731
    assert_served_from_cache(pg, read)
    bumps, stop = listener_bumps()
    try:
        outsider.execute("BEGIN")
        outsider.execute("UPDATE blog_post SET title = 'never'")
        outsider.execute("ROLLBACK")
        time.sleep(0.3)  # a notification would have arrived by now
    finally:
        stop()
    assert bumps == []
    assert_served_from_cache(pg, read)


def test_writes_made_by_database_triggers(pg, outsider):
    """A trigger of the application's own writes another table: that write is caught,
    also when the statement that fired it came from Django."""
    outsider.execute(
        """
        CREATE FUNCTION bump_rating() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN UPDATE blog_post SET rating = rating + 1 WHERE id = NEW.post_id; RETURN NULL; END
        $$;
        CREATE TRIGGER bump_rating AFTER INSERT ON blog_comment
            FOR EACH ROW EXECUTE FUNCTION bump_rating();
        """
    )
    try:
        post = PostFactory(rating=0)
        read = lambda: Post.objects.get(pk=post.pk).rating  # noqa: E731
        assert_served_from_cache(pg, read)
        CommentFactory(post=post)  # Django's write; the database then writes blog_post
        eventually(read, 1)
    finally:
        outsider.execute("DROP TRIGGER bump_rating ON blog_comment; DROP FUNCTION bump_rating()")


@pytest.mark.skipif(not hasattr(models, "DB_CASCADE"), reason="DB_CASCADE is Django 6.1+")
def test_database_cascades_from_another_service(pg, outsider):
    from testproject.blog.models import Newsletter, NewsletterIssue

    newsletter = Newsletter.objects.create(name="weekly")
    NewsletterIssue.objects.create(newsletter=newsletter, subject="first")
    count = lambda: NewsletterIssue.objects.count()  # noqa: E731
    assert_served_from_cache(pg, count)
    outsider.execute("DELETE FROM blog_newsletter")  # the database deletes the issues
    eventually(count, 0)


def test_django_writes_do_not_notify(pg):
    """Django's own statements are bumped by the execute wrapper; the trigger is silent."""
    post = PostFactory(title="before")
    bumps, stop = listener_bumps()
    try:
        Post.objects.filter(pk=post.pk).update(title="after")
        time.sleep(0.3)  # a notification would have arrived by now
    finally:
        stop()
    assert bumps == []
    assert Post.objects.get(pk=post.pk).title == "after"


def test_listener_reconnects_and_invalidates_what_it_missed(pg, outsider):
    post = PostFactory(title="before")
    read = lambda: Post.objects.get(pk=post.pk).title  # noqa: E731
    assert_served_from_cache(pg, read)
    global_token = pg.cache.get(keys.GLOBAL_VERSION_KEY)
    # Cut the listener off; while it reconnects, a write goes unnotified.
    outsider.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE query LIKE 'LISTEN%%' AND pid <> pg_backend_pid()"
    )
    outsider.execute("UPDATE blog_post SET title = 'unheard' WHERE id = %s", [post.pk])
    wait_for(lambda: pg.cache.get(keys.GLOBAL_VERSION_KEY) != global_token, "a resync")
    eventually(read, "unheard")


def test_the_listen_command(settings, outsider):
    settings.ORMCACHE = {**settings.ORMCACHE, "CACHE": "redis", "TRIGGERS": {"databases": ["pg"]}}
    token = current_alias.set("pg")
    try:
        call_command("ormcache", "triggers", "install", "--database", "pg")
        post = PostFactory(title="before")
        read = lambda: Post.objects.get(pk=post.pk).title  # noqa: E731
        read()
        thread = threading.Thread(target=call_command, args=("ormcache", "listen"), daemon=True)
        thread.start()
        wait_for(lambda: listener._running and listener._running[0].listening.is_set(), "listen")
        outsider.execute("UPDATE blog_post SET title = 'from cron' WHERE id = %s", [post.pk])
        eventually(read, "from cron")
        listener.stop_all()
        thread.join(5)
        assert not thread.is_alive()
        call_command("ormcache", "triggers", "uninstall", "--database", "pg")
    finally:
        current_alias.reset(token)
