"""The stale-save guard: an instance served from the cache never silently overwrites a newer row."""

import logging

import pytest

from ormcache import StaleObjectError
from testproject.blog.models import Post
from tests.factories import PostFactory


@pytest.fixture
def post(backend):
    post = PostFactory(title="original", rating=1)
    Post.objects.get(pk=post.pk)  # fill
    return post


def cached_copy(backend, pk):
    with backend.queries() as captured:
        instance = Post.objects.get(pk=pk)
    assert captured.captured_queries == [], "expected an instance served from the cache"
    return instance


def test_raise_policy_refuses_a_stale_overwrite(backend, post):
    with backend.settings(MODELS={"blog.post": {"stale_save": "raise"}}):
        stale = cached_copy(backend, post.pk)
        Post.objects.filter(pk=post.pk).update(title="changed elsewhere")
        stale.rating = 5
        with pytest.raises(StaleObjectError) as raised:
            stale.save()
    assert raised.value.fields == ["title"]
    assert Post.objects.get(pk=post.pk).title == "changed elsewhere"
    assert Post.objects.get(pk=post.pk).rating == 1  # nothing was written


def test_warn_is_the_default_and_saves(backend, post, caplog):
    stale = cached_copy(backend, post.pk)
    Post.objects.filter(pk=post.pk).update(title="changed elsewhere")
    stale.rating = 5
    with caplog.at_level(logging.WARNING, logger="ormcache"):
        stale.save()
    assert "changed in the database" in caplog.text
    assert Post.objects.get(pk=post.pk).rating == 5


def test_allow_policy_does_not_check(backend, post, caplog):
    with backend.settings(MODELS={"blog.post": {"stale_save": "allow"}}):
        stale = cached_copy(backend, post.pk)
        Post.objects.filter(pk=post.pk).update(title="changed elsewhere")
        with caplog.at_level(logging.WARNING, logger="ormcache"):
            stale.save()
    assert caplog.text == ""


def test_unmoved_version_costs_no_sql(backend, post):
    with backend.settings(MODELS={"blog.post": {"stale_save": "raise"}}):
        instance = cached_copy(backend, post.pk)
        instance.rating = 4
        with backend.queries() as captured:
            instance.save()
    statements = [q["sql"] for q in captured.captured_queries]
    assert len(statements) == 1 and statements[0].startswith("UPDATE"), statements


def test_write_to_another_row_is_not_stale(backend, post):
    other = PostFactory()
    Post.objects.get(pk=post.pk)  # fill again after the insert
    with backend.settings(MODELS={"blog.post": {"stale_save": "raise"}}):
        instance = cached_copy(backend, post.pk)
        Post.objects.filter(pk=other.pk).update(title="other row")
        instance.rating = 3
        instance.save()
    assert Post.objects.get(pk=post.pk).rating == 3


def test_refreshed_instance_is_not_stale(backend, post):
    with backend.settings(MODELS={"blog.post": {"stale_save": "raise"}}):
        instance = cached_copy(backend, post.pk)
        Post.objects.filter(pk=post.pk).update(title="changed elsewhere")
        instance.refresh_from_db()
        instance.rating = 2
        instance.save()
    assert Post.objects.get(pk=post.pk).title == "changed elsewhere"


def test_update_fields_that_were_not_changed_elsewhere(backend, post):
    with backend.settings(MODELS={"blog.post": {"stale_save": "raise"}}):
        instance = cached_copy(backend, post.pk)
        Post.objects.filter(pk=post.pk).update(title="changed elsewhere")
        instance.rating = 2
        instance.save(update_fields=["rating"])
    fresh = Post.objects.get(pk=post.pk)
    assert (fresh.title, fresh.rating) == ("changed elsewhere", 2)


def test_instances_read_from_the_database_are_not_guarded(backend, post):
    with backend.settings(MODELS={"blog.post": {"stale_save": "raise"}}):
        instance = Post.objects.nocache().get(pk=post.pk)
        Post.objects.filter(pk=post.pk).update(title="changed elsewhere")
        instance.save()  # plain Django behaviour: last write wins


def test_select_related_objects_are_guarded(backend, post):
    from testproject.blog.models import Author

    read = lambda: Post.objects.select_related("author").get(pk=post.pk)  # noqa: E731
    read()
    with backend.settings(MODELS={"blog.*": {"stale_save": "raise"}}):
        author = read().author
        Author.objects.filter(pk=author.pk).update(name="renamed elsewhere")
        with pytest.raises(StaleObjectError):
            author.save()


def test_second_save_after_a_successful_one_is_not_checked(backend, post):
    with backend.settings(MODELS={"blog.post": {"stale_save": "raise"}}):
        instance = cached_copy(backend, post.pk)
        instance.rating = 2
        instance.save()
        instance.rating = 3
        instance.save()
    assert Post.objects.get(pk=post.pk).rating == 3


def test_reverse_one_to_one_select_related_is_served_and_guarded(backend):
    """Each side of a reverse one-to-one select_related holds the other (a cycle): a hit
    must still build them, and the child it carries is guarded like any other."""
    from testproject.blog.models import FeaturedPost
    from tests.factories import FeaturedPostFactory

    featured = FeaturedPostFactory(title="featured")
    read = lambda: Post.objects.select_related("featuredpost").get(pk=featured.pk)  # noqa: E731
    read()
    with backend.settings(MODELS={"blog.*": {"stale_save": "raise"}}):
        with backend.queries() as captured:
            served = read()
        assert captured.captured_queries == [], "expected a hit"
        child = served.featuredpost
        assert child.post_ptr is served and child.title == "featured"
        FeaturedPost.objects.filter(pk=featured.pk).update(headline="changed elsewhere")
        child.rating = 5
        with pytest.raises(StaleObjectError):
            child.save()


def test_related_manager_hit_leaves_the_parents_mark_alone(backend, post):
    """``post.comments.all()`` hands each comment ``post`` itself: a hit on the comments
    must neither vouch for the post's values (its own mark stays) nor mark a post read
    from the database with values it never read."""
    from tests.factories import CommentFactory

    CommentFactory(post=post)

    def comments_hit(of):
        list(of.comments.all())
        with backend.queries() as captured:
            list(of.comments.all())
        assert captured.captured_queries == [], "expected a hit"

    with backend.settings(MODELS={"blog.*": {"stale_save": "raise"}}):
        stale = cached_copy(backend, post.pk)
        Post.objects.filter(pk=post.pk).update(title="changed elsewhere")
        comments_hit(stale)  # stale is the comments' known related object
        stale.rating = 5
        with pytest.raises(StaleObjectError):
            stale.save()
        fresh = Post.objects.nocache().get(pk=post.pk)
        fresh.title = "edited here"
        comments_hit(fresh)  # fresh stays unmarked: the hit did not read its values
        fresh.save()  # not stale: nobody changed the row since fresh was read
    assert Post.objects.get(pk=post.pk).title == "edited here"
