"""Transactions: own writes visible, no fills of written tables, rollbacks leave no trace."""

import pytest
from django.db import transaction
from django.test.utils import override_settings

from ormcache import keys, versions
from testproject.blog.models import Author, Post
from tests.factories import PostFactory
from tests.helpers import assert_served_from_cache, title


@pytest.fixture
def post(backend):
    return PostFactory(title="committed", rating=1)


def post_version(backend):
    return backend.cache.get(keys.version_key(backend.db_alias, "blog_post"))


class TestInsideAtomic:
    def test_reads_own_writes(self, backend, post):
        assert_served_from_cache(backend, lambda: title(post.pk))
        with transaction.atomic(using=backend.db_alias):
            Post.objects.filter(pk=post.pk).update(title="uncommitted")
            assert title(post.pk) == "uncommitted"
        assert title(post.pk) == "uncommitted"

    def test_written_tables_bypass_the_cache_until_the_end(self, backend, post):
        with transaction.atomic(using=backend.db_alias):
            post.title = "changed"
            post.save()
            for _ in range(2):
                with backend.queries() as captured:
                    assert title(post.pk) == "changed"
                assert len(captured.captured_queries) == 1  # read, never filled
        assert_served_from_cache(backend, lambda: title(post.pk))

    def test_uncommitted_rows_are_never_stored_even_if_the_pending_mark_is_lost(
        self, backend, post
    ):
        from ormcache import signals

        stored = []

        def remember(sender, **kwargs):
            stored.append(kwargs["key"])

        signals.cache_stored.connect(remember)
        try:
            with transaction.atomic(using=backend.db_alias):
                Post.objects.filter(pk=post.pk).update(title="uncommitted")
                # Another process's autocommit write replaces our pending token.
                versions.bump_tables(backend.db_alias, ["blog_post"])
                assert title(post.pk) == "uncommitted"
                assert stored == []
        finally:
            signals.cache_stored.disconnect(remember)

    def test_unwritten_tables_are_still_cached(self, backend, post):
        with transaction.atomic(using=backend.db_alias):
            Post.objects.filter(pk=post.pk).update(rating=3)
            assert_served_from_cache(backend, lambda: list(Author.objects.all()))

    def test_version_is_pending_until_the_transaction_ends(self, backend, post):
        title(post.pk)
        with transaction.atomic(using=backend.db_alias):
            Post.objects.filter(pk=post.pk).update(title="x")
            assert str(post_version(backend)).startswith("pending:")
        title(post.pk)  # the next use of the connection settles the ended transaction
        assert type(post_version(backend)) is int

    def test_rollback_leaves_no_trace(self, backend, post):
        assert_served_from_cache(backend, lambda: title(post.pk))
        with pytest.raises(RuntimeError), transaction.atomic(using=backend.db_alias):
            Post.objects.filter(pk=post.pk).update(title="rolled back")
            assert title(post.pk) == "rolled back"
            raise RuntimeError("abort")
        assert title(post.pk) == "committed"
        assert_served_from_cache(backend, lambda: title(post.pk))

    def test_savepoint_rollback(self, backend, post):
        with transaction.atomic(using=backend.db_alias):
            Post.objects.filter(pk=post.pk).update(rating=2)
            with pytest.raises(ValueError), transaction.atomic(using=backend.db_alias):
                Post.objects.filter(pk=post.pk).update(title="inner")
                raise ValueError
            assert title(post.pk) == "committed"
            assert Post.objects.get(pk=post.pk).rating == 2
        assert (title(post.pk), Post.objects.get(pk=post.pk).rating) == ("committed", 2)

    def test_nested_atomic_commit(self, backend, post):
        with transaction.atomic(using=backend.db_alias):
            with transaction.atomic(using=backend.db_alias):
                Post.objects.filter(pk=post.pk).update(title="nested")
            assert title(post.pk) == "nested"
        assert title(post.pk) == "nested"
        assert_served_from_cache(backend, lambda: title(post.pk))


@pytest.mark.django_db(transaction=True)
class TestRealCommits:
    """Without TestCase's wrapping transaction: real commits and rollbacks."""

    def test_commit_bumps_again(self, backend, post):
        title(post.pk)
        with transaction.atomic(using=backend.db_alias):
            Post.objects.filter(pk=post.pk).update(title="v2")
            pending = post_version(backend)
        committed = post_version(backend)  # on_commit ran
        assert str(pending).startswith("pending:")
        assert type(committed) is int
        assert title(post.pk) == "v2"
        assert_served_from_cache(backend, lambda: title(post.pk))

    def test_rollback_then_cache_works_again(self, backend, post):
        with pytest.raises(RuntimeError), transaction.atomic(using=backend.db_alias):
            Post.objects.filter(pk=post.pk).update(title="never")
            raise RuntimeError
        assert title(post.pk) == "committed"
        assert_served_from_cache(backend, lambda: title(post.pk))

    def test_set_autocommit_false(self, backend, post):
        assert_served_from_cache(backend, lambda: title(post.pk))
        transaction.set_autocommit(False, using=backend.db_alias)
        try:
            Post.objects.filter(pk=post.pk).update(title="manual")
            assert title(post.pk) == "manual"
            with backend.queries() as captured:
                title(post.pk)
            assert len(captured.captured_queries) == 1
            transaction.commit(using=backend.db_alias)
        finally:
            transaction.set_autocommit(True, using=backend.db_alias)
        assert title(post.pk) == "manual"
        assert type(post_version(backend)) is int
        assert_served_from_cache(backend, lambda: title(post.pk))

    def test_set_autocommit_false_rollback(self, backend, post):
        transaction.set_autocommit(False, using=backend.db_alias)
        try:
            Post.objects.filter(pk=post.pk).update(title="manual")
            transaction.rollback(using=backend.db_alias)
        finally:
            transaction.set_autocommit(True, using=backend.db_alias)
        assert title(post.pk) == "committed"
        assert_served_from_cache(backend, lambda: title(post.pk))

    def test_atomic_requests(self, backend, post, client):
        client.raise_request_exception = False
        connection = backend.connection
        connection.settings_dict["ATOMIC_REQUESTS"] = True
        try:
            with override_settings(ROOT_URLCONF="tests.urls"):
                assert_served_from_cache(backend, lambda: title(post.pk))
                response = client.post(f"/rename/{post.pk}/", {"title": "via request"})
                assert response.content == b"via request"  # the view read its own write
                response = client.post(f"/rename-and-fail/{post.pk}/", {"title": "lost"})
                assert response.status_code == 500
        finally:
            connection.settings_dict["ATOMIC_REQUESTS"] = False
        assert title(post.pk) == "via request"


def _pg_backend_in_a_transaction(connection_options, body):
    """Run ``body(backend, post)`` on PostgreSQL with extra connection OPTIONS."""
    from django.conf import settings
    from django.db import connections

    if "pg" not in settings.DATABASES:
        pytest.skip("PostgreSQL is not configured (scripts/test starts it)")
    from tests.conftest import Backend
    from tests.routing import current_alias

    connection = connections["pg"]
    options = connection.settings_dict.setdefault("OPTIONS", {})
    saved = dict(options)
    options.update(connection_options)
    connection.close()
    token = current_alias.set("pg")
    try:
        backend = Backend("pg", "redis")
        with backend.settings():
            backend.cache.clear()
            body(backend, PostFactory())
    finally:
        current_alias.reset(token)
        options.clear()
        options.update(saved)
        connection.close()


def _reads_in_the_transaction_query(backend, post, begin_sql=None):
    from django.db import connections

    with transaction.atomic(using="pg"):
        if begin_sql:
            with connections["pg"].cursor() as cursor:
                cursor.execute(begin_sql)
        for _ in range(2):
            with backend.queries() as captured:
                title(post.pk)
            assert len(captured.captured_queries) == 1, "a snapshot's rows were cached"


@pytest.mark.django_db(transaction=True, databases=["pg"])
def test_snapshot_isolation_results_are_never_stored():
    from psycopg import IsolationLevel

    def body(backend, post):
        _reads_in_the_transaction_query(backend, post)
        assert_served_from_cache(backend, lambda: title(post.pk))  # autocommit: cached

    _pg_backend_in_a_transaction({"isolation_level": IsolationLevel.REPEATABLE_READ}, body)


@pytest.mark.django_db(transaction=True, databases=["pg"])
@pytest.mark.parametrize(
    "sql",
    [
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        "set transaction isolation level serializable",
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        "SET default_transaction_isolation = 'serializable'",
    ],
)
def test_snapshot_isolation_set_by_sql_is_seen(sql):
    def body(backend, post):
        _reads_in_the_transaction_query(backend, post, begin_sql=sql)

    _pg_backend_in_a_transaction({}, body)


@pytest.mark.django_db(transaction=True, databases=["pg"])
def test_snapshot_isolation_as_the_servers_default_is_seen():
    """ALTER DATABASE/ROLE ... SET default_transaction_isolation: Django's OPTIONS say
    nothing; the server does (here set for the session through libpq's options)."""

    def body(backend, post):
        _reads_in_the_transaction_query(backend, post)
        assert_served_from_cache(backend, lambda: title(post.pk))  # autocommit: cached

    _pg_backend_in_a_transaction(
        {"options": "-c default_transaction_isolation=repeatable\\ read"}, body
    )


@pytest.mark.django_db(transaction=True, databases=["pg"])
def test_read_committed_transactions_still_use_the_cache():
    def body(backend, post):
        title(post.pk)
        with transaction.atomic(using="pg"):
            assert_served_from_cache(backend, lambda: title(post.pk))

    _pg_backend_in_a_transaction({}, body)


@pytest.mark.django_db
def test_sqlite_in_wal_mode_is_a_snapshot(tmp_path):
    """A SQLite transaction in WAL mode reads the database as of its first read, while
    other connections commit: like REPEATABLE READ."""
    from django.db import connections
    from django.db.backends.sqlite3.base import DatabaseWrapper

    from ormcache import reads

    settings_dict = {**connections["default"].settings_dict, "NAME": str(tmp_path / "x.db")}
    wrapper = DatabaseWrapper(settings_dict, alias="wal-probe")
    try:
        wrapper.ensure_connection()
        assert not reads._sees_a_snapshot(wrapper)  # rollback journal: writers wait
        wrapper.connection.execute("PRAGMA journal_mode=WAL")  # kept in the file
        wrapper.close()
        wrapper.ensure_connection()
        assert reads._sees_a_snapshot(wrapper)
    finally:
        wrapper.close()


def test_versions_module_marks_pending_tokens():
    assert not versions.storable(("pending:abc", 1 << 70))
    assert versions.storable((1 << 70, 2 << 70))
