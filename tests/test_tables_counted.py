"""Every table counted: inheritance, proxies, m2m, database cascades, TRUNCATE, loaddata,
flush and migrations all invalidate what they change."""

import json

import pytest
from django.core.management import call_command
from django.db import connections, models
from django.test.utils import isolate_apps

from testproject.blog.models import Author, Comment, FeaturedPost, Post, PublishedPost, Tag
from tests.conftest import BACKEND_PAIRS
from tests.factories import CommentFactory, FeaturedPostFactory, PostFactory, TagFactory
from tests.helpers import assert_served_from_cache


def test_proxy_reads_see_writes_through_the_concrete_model(backend):
    post = PostFactory(title="a")
    assert_served_from_cache(backend, lambda: PublishedPost.objects.get(pk=post.pk).title)
    Post.objects.filter(pk=post.pk).update(title="b")
    assert PublishedPost.objects.get(pk=post.pk).title == "b"


def test_concrete_reads_see_writes_through_the_proxy(backend):
    post = PostFactory(title="a")
    assert_served_from_cache(backend, lambda: Post.objects.get(pk=post.pk).title)
    PublishedPost.objects.filter(pk=post.pk).update(title="b")
    assert Post.objects.get(pk=post.pk).title == "b"


def test_parent_reads_see_child_creation_and_deletion(backend):
    assert_served_from_cache(backend, lambda: Post.objects.count())
    featured = FeaturedPostFactory()
    assert Post.objects.count() == 1
    featured.delete()
    assert Post.objects.count() == 0


def test_child_reads_see_child_only_field_updates(backend):
    featured = FeaturedPostFactory(headline="old")
    assert_served_from_cache(backend, lambda: FeaturedPost.objects.get(pk=featured.pk).headline)
    FeaturedPost.objects.filter(pk=featured.pk).update(headline="new")
    assert FeaturedPost.objects.get(pk=featured.pk).headline == "new"


def test_m2m_through_rows_deleted_by_cascade(backend):
    tag = TagFactory()
    post = PostFactory(tags=[tag])
    assert_served_from_cache(backend, lambda: Tag.objects.filter(posts__isnull=False).count())
    post.delete()
    assert Tag.objects.filter(posts__isnull=False).count() == 0


def test_loaddata(backend, tmp_path):
    author = Author.objects.create(name="before")
    assert_served_from_cache(backend, lambda: Author.objects.get(pk=author.pk).name)
    fixture = tmp_path / "authors.json"
    fixture.write_text(
        json.dumps([{"model": "blog.author", "pk": author.pk, "fields": {"name": "loaded"}}])
    )
    call_command("loaddata", str(fixture), database=backend.db_alias, verbosity=0)
    assert Author.objects.get(pk=author.pk).name == "loaded"


@pytest.mark.django_db(transaction=True)
def test_flush(backend):
    PostFactory()
    assert_served_from_cache(backend, lambda: Post.objects.count())
    call_command("flush", database=backend.db_alias, interactive=False, verbosity=0)
    assert Post.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_truncate(backend):
    CommentFactory()
    assert_served_from_cache(backend, lambda: Comment.objects.count())
    with connections[backend.db_alias].cursor() as cursor:
        if backend.connection.vendor == "postgresql":
            cursor.execute('TRUNCATE "blog_comment"')
        else:  # SQLite has no TRUNCATE; this is what Django's flush sends it
            cursor.execute('DELETE FROM "blog_comment"')
    assert Comment.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_schema_changes_invalidate_everything(backend):
    """Migrations run DDL, which may change what any query returns."""
    PostFactory()
    assert_served_from_cache(backend, lambda: Post.objects.count())
    assert_served_from_cache(backend, lambda: Tag.objects.count())

    with isolate_apps("testproject.blog"):

        class Scratch(models.Model):
            class Meta:
                app_label = "blog"
                db_table = "ormcache_scratch"

    with backend.connection.schema_editor() as editor:
        editor.create_model(Scratch)
    try:
        with backend.queries() as captured:
            Post.objects.count()
            Tag.objects.count()
        assert len(captured.captured_queries) == 2
    finally:
        with backend.connection.schema_editor() as editor:
            editor.delete_model(Scratch)


def test_generic_relation_reads_see_new_reactions(backend):
    from django.contrib.contenttypes.models import ContentType

    from testproject.blog.models import Reaction

    post = PostFactory()
    assert_served_from_cache(backend, lambda: post.reactions.count())
    assert_served_from_cache(
        backend, lambda: Post.objects.filter(reactions__kind="like").distinct().count()
    )
    Reaction.objects.create(
        content_type=ContentType.objects.get_for_model(Post), object_id=post.pk, kind="like"
    )
    assert post.reactions.count() == 1
    assert Post.objects.filter(reactions__kind="like").distinct().count() == 1


def test_generic_relation_rows_deleted_with_their_object(backend):
    from django.contrib.contenttypes.models import ContentType

    from testproject.blog.models import Reaction

    post = PostFactory()
    Reaction.objects.create(content_type=ContentType.objects.get_for_model(Post), object_id=post.pk)
    assert_served_from_cache(backend, lambda: Reaction.objects.count())
    post.delete()  # GenericRelation cascades in Python
    assert Reaction.objects.count() == 0


needs_database_on_delete = pytest.mark.skipif(
    not hasattr(models, "DB_CASCADE"), reason="on_delete=DB_CASCADE needs Django 6.1+"
)


@needs_database_on_delete
def test_database_cascade_delete(backend):
    from testproject.blog.models import Newsletter, NewsletterIssue

    newsletter = Newsletter.objects.create(name="weekly")
    NewsletterIssue.objects.create(newsletter=newsletter, subject="#1")
    assert_served_from_cache(backend, lambda: NewsletterIssue.objects.count())
    with backend.queries() as captured:
        newsletter.delete()
    # Django deleted only the newsletter; the database deleted its issues.
    assert not any("blog_newsletterissue" in q["sql"] for q in captured.captured_queries)
    assert NewsletterIssue.objects.count() == 0


@needs_database_on_delete
def test_database_set_null(backend):
    from testproject.blog.models import Newsletter, Subscriber

    newsletter = Newsletter.objects.create(name="weekly")
    subscriber = Subscriber.objects.create(newsletter=newsletter, email="a@example.com")
    assert_served_from_cache(
        backend, lambda: Subscriber.objects.get(pk=subscriber.pk).newsletter_id
    )
    Newsletter.objects.filter(pk=newsletter.pk).delete()
    assert Subscriber.objects.get(pk=subscriber.pk).newsletter_id is None


@needs_database_on_delete
@pytest.mark.parametrize("backend", BACKEND_PAIRS[:1], indirect=True)  # SQLite ignores case
def test_database_cascade_of_a_raw_delete_that_spells_the_table_otherwise(backend):
    """SQLite names ignore case even quoted: the cascade is looked up like version keys."""
    from testproject.blog.models import Newsletter, NewsletterIssue

    newsletter = Newsletter.objects.create(name="weekly")
    NewsletterIssue.objects.create(newsletter=newsletter, subject="#1")
    assert_served_from_cache(backend, lambda: NewsletterIssue.objects.count())
    with connections[backend.db_alias].cursor() as cursor:
        cursor.execute('DELETE FROM "BLOG_NEWSLETTER" WHERE "id" = %s', [newsletter.pk])
    assert NewsletterIssue.objects.count() == 0
