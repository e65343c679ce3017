"""Every table counted: inheritance, proxies, m2m, database cascades, TRUNCATE, loaddata,
flush and migrations all invalidate what they change."""

import json

import pytest
from django.core.management import call_command
from django.db import connections, models
from django.test.utils import isolate_apps

from testproject.blog.models import Author, Comment, FeaturedPost, Post, PublishedPost, Tag
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
