"""A cached page is never served after a write to what it read, whatever made the write.

Each test caches a page of the demo blog (served twice: a miss, then a hit), writes
through one path, and asks again: the page must be built again and show the write.
"""

import pytest
from django.db import connections, transaction
from django.test import Client

import ormcache
from testproject.blog.models import Categorisation, Comment, Post
from tests.factories import (
    AuthorFactory,
    CategoryFactory,
    CommentFactory,
    PostFactory,
    TagFactory,
    UserFactory,
)
from tests.routing import current_alias
from tests.test_pages_urls import outcome, site_fixture  # noqa: F401  (the "site" fixture)


def cached(client, url):
    """The page, after making sure it is in the cache."""
    client.get(url)
    response = client.get(url)
    assert outcome(response) == "hit", (url, outcome(response))
    return response.content.decode()


def fresh(client, url):
    response = client.get(url)
    assert outcome(response) == "miss", (url, outcome(response))
    return response.content.decode()


@pytest.fixture
def post(site):
    author = AuthorFactory(name="Ada Lovelace")
    post = PostFactory(author=author, title="On engines")
    CommentFactory(post=post, body="First!")
    return post


def detail(post):
    return post.get_absolute_url()


def test_save(site, post):
    assert "On engines" in cached(site, detail(post))
    post.title = "On analytical engines"
    post.save()
    assert "On analytical engines" in fresh(site, detail(post))


def test_create(site, post):
    assert "1 comment<" in cached(site, detail(post))
    Comment.objects.create(post=post, author_name="bob", body="Second")
    page = fresh(site, detail(post))
    assert "2 comments<" in page and "Second" in page


def test_delete_cascade(site, post):
    assert "On engines" in cached(site, "/")
    post.author.delete()  # cascades to the post and its comment
    assert "On engines" not in fresh(site, "/")
    assert Comment.objects.count() == 0


def test_queryset_delete(site, post):
    assert "1 comment<" in cached(site, detail(post))
    Comment.objects.filter(post=post).delete()
    assert "0 comments<" in fresh(site, detail(post))


def test_m2m_add_remove_clear_set(site, post):
    tag = TagFactory(name="engines")
    url = f"/tag/{tag.pk}/"
    assert "On engines" not in cached(site, url)
    post.tags.add(tag)
    assert "On engines" in fresh(site, url)
    cached(site, url)
    post.tags.remove(tag)
    assert "On engines" not in fresh(site, url)
    cached(site, url)
    tag.posts.set([post])  # the reverse side
    assert "On engines" in fresh(site, url)
    cached(site, url)
    tag.posts.clear()
    assert "On engines" not in fresh(site, url)


def test_m2m_through_model(site, post):
    category = CategoryFactory(name="Machines")
    assert "Machines" not in cached(site, detail(post))
    Categorisation.objects.create(category=category, post=post)
    assert "Machines" in fresh(site, detail(post))


def test_update(site, post):
    assert "On engines" in cached(site, "/")
    Post.objects.filter(pk=post.pk).update(title="Updated in bulk")
    assert "Updated in bulk" in fresh(site, "/")


def test_bulk_create_and_bulk_update(site, post):
    assert "Bulk one" not in cached(site, "/")
    created = Post.objects.bulk_create(
        [Post(author=post.author, title="Bulk one", slug="bulk-one")]
    )
    assert "Bulk one" in fresh(site, "/")
    cached(site, "/")
    created = list(Post.objects.filter(slug="bulk-one"))
    created[0].title = "Bulk two"
    Post.objects.bulk_update(created, ["title"])
    assert "Bulk two" in fresh(site, "/")


def test_update_or_create(site, post):
    assert "On engines" in cached(site, detail(post))
    Post.objects.update_or_create(pk=post.pk, defaults={"title": "Upserted"})
    assert "Upserted" in fresh(site, detail(post))


def test_raw_sql(site, post):
    assert "On engines" in cached(site, detail(post))
    with connections[current_alias.get()].cursor() as cursor:
        cursor.execute("UPDATE blog_post SET title = %s WHERE id = %s", ["Raw title", post.pk])
    assert "Raw title" in fresh(site, detail(post))


def test_a_page_of_raw_sql_after_an_orm_write(site, post):
    assert "raw: 1" in cached(site, "/t/raw/")
    PostFactory(author=post.author)
    assert "raw: 2" in fresh(site, "/t/raw/")


def test_a_page_of_a_plain_model_after_its_write(site):
    UserFactory(username="ada")
    assert "users: ada" in cached(site, "/t/users/")
    UserFactory(username="grace")
    assert "users: ada, grace" in fresh(site, "/t/users/")


def test_a_transaction_commits(site, post):
    assert "On engines" in cached(site, detail(post))
    with transaction.atomic(using=current_alias.get()):
        Post.objects.filter(pk=post.pk).update(title="Committed")
        # Inside the writing transaction the page is built from the database, not stored.
        inside = site.get(detail(post))
        assert outcome(inside).startswith("bypass (")
        assert "Committed" in inside.content.decode()
    assert "Committed" in fresh(site, detail(post))


def test_a_transaction_rolls_back(site, post):
    assert "On engines" in cached(site, detail(post))
    with pytest.raises(RuntimeError), transaction.atomic(using=current_alias.get()):
        Post.objects.filter(pk=post.pk).update(title="Rolled back")
        site.get(detail(post))
        raise RuntimeError
    assert "On engines" in fresh(site, detail(post))
    assert outcome(site.get(detail(post))) == "hit"


def test_invalidate_and_invalidate_all(site, post):
    cached(site, detail(post))
    ormcache.invalidate(Comment)
    fresh(site, detail(post))
    ormcache.invalidate_all()
    fresh(site, detail(post))
    assert outcome(site.get(detail(post))) == "hit"


@pytest.mark.django_db(transaction=True, databases=["pg"])
def test_a_view_in_a_snapshot_transaction_is_not_stored():
    """Under REPEATABLE READ a view's rows may predate the tokens read with them."""
    from django.conf import settings

    if "pg" not in settings.DATABASES or "redis" not in settings.CACHES:
        pytest.skip("PostgreSQL and Redis are not configured (scripts/test starts them)")
    from psycopg import IsolationLevel

    from tests.conftest import Backend
    from tests.test_pages_urls import page_settings

    connection = connections["pg"]
    options = connection.settings_dict.setdefault("OPTIONS", {})
    options["isolation_level"] = IsolationLevel.REPEATABLE_READ
    connection.settings_dict["ATOMIC_REQUESTS"] = True
    connection.close()
    token = current_alias.set("pg")
    try:
        backend = Backend("pg", "redis")
        backend.cache.clear()
        PostFactory()
        UserFactory()
        with page_settings(backend):
            client = Client()
            for url in ("/t/posts/", "/t/users/"):
                for _ in range(2):
                    assert outcome(client.get(url)) == (
                        "bypass (a transaction that reads a snapshot "
                        "(REPEATABLE READ or SERIALIZABLE))"
                    )
    finally:
        current_alias.reset(token)
        del options["isolation_level"]
        connection.settings_dict["ATOMIC_REQUESTS"] = False
        connection.close()
