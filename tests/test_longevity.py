"""Longevity per model: "invalidate" (writes end cached reads) and "fixed" (the timeout does).

Every test runs on each backend pair. A join follows the stricter rule: fixed only when
every model it reads is, and no longer than the shortest timeout.
"""

import logging
import time
from io import StringIO

import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.core.management import call_command
from django.db import transaction
from django.test.utils import override_settings

import ormcache
from ormcache import StaleObjectError, signals
from testproject.blog.models import Author, Post, Tag
from tests.factories import PostFactory, TagFactory
from tests.test_pages_urls import PAGE_MIDDLEWARE, outcome
from tests.test_policy import stored_ttl


def policies(**entries):
    """The test settings' MODELS plus ``entries`` ("blog_tag" for "blog.tag")."""
    extra = {label.replace("_", ".", 1): entry for label, entry in entries.items()}
    return {**settings.ORMCACHE["MODELS"], **extra}


def fixed(backend, *labels, timeout=60, stale_save="warn", **more):
    """Settings where ``labels`` are fixed-lifetime models (``more``: other policies)."""
    entry = {"longevity": "fixed", "timeout": timeout, "stale_save": stale_save}
    entries = {label: entry for label in labels}
    models = {**settings.ORMCACHE["MODELS"], **entries, **more}
    return backend.settings(MODELS=models)


def served_from_cache(backend, read):
    with backend.queries() as captured:
        result = read()
    assert captured.captured_queries == [], "expected a cache hit, got SQL"
    return result


def went_to_database(backend, read):
    with backend.queries() as captured:
        result = read()
    assert captured.captured_queries, "expected SQL, the read was served from the cache"
    return result


def tag_names():
    return list(Tag.objects.order_by("id").values_list("name", flat=True))


def stored_key(read):
    found = []

    def remember(sender, **kwargs):
        found.append(kwargs["key"])

    signals.cache_stored.connect(remember)
    try:
        read()
    finally:
        signals.cache_stored.disconnect(remember)
    assert found, "nothing was stored"
    return found[-1]


@pytest.fixture
def tag(backend):
    return TagFactory(name="before")


# --- the read path: both modes ----------------------------------------------------------


def test_invalidate_mode_a_write_ends_the_cached_read(backend, tag):
    with backend.settings(MODELS=policies(blog_tag={"longevity": "invalidate"})):
        assert tag_names() == ["before"]
        Tag.objects.filter(pk=tag.pk).update(name="after")
        assert went_to_database(backend, tag_names) == ["after"]


def test_fixed_mode_a_write_does_not_end_the_cached_read(backend, tag):
    with fixed(backend, "blog.tag"):
        assert tag_names() == ["before"]
        Tag.objects.filter(pk=tag.pk).update(name="after")
        TagFactory(name="new")
        assert served_from_cache(backend, tag_names) == ["before"]
        assert Tag.objects.nocache().count() == 2


def test_fixed_mode_every_write_path_is_ignored(backend, tag):
    with fixed(backend, "blog.tag"):
        assert Tag.objects.count() == 1
        tag.name = "saved"
        tag.save()
        Tag.objects.bulk_create([Tag(name="bulk")])
        with backend.connection.cursor() as cursor:
            cursor.execute("UPDATE blog_tag SET name = 'raw' WHERE id = %s", [tag.pk])
        assert served_from_cache(backend, Tag.objects.count) == 1


def test_fixed_mode_entry_lives_its_timeout(backend, tag):
    with fixed(backend, "blog.tag", timeout=60):
        key = stored_key(tag_names)
        assert 55 <= stored_ttl(backend, key) <= 60


def test_fixed_mode_a_requested_timeout_shortens_never_lengthens(backend, tag):
    with fixed(backend, "blog.tag", timeout=60):
        longer = stored_key(lambda: list(Tag.objects.cache(timeout=600).filter(name="x")))
        shorter = stored_key(lambda: list(Tag.objects.cache(timeout=20).filter(name="y")))
        assert 55 <= stored_ttl(backend, longer) <= 60
        assert 15 <= stored_ttl(backend, shorter) <= 20


def test_fixed_mode_expiry_shows_the_write(backend, tag):
    with fixed(backend, "blog.tag", timeout=1):
        assert tag_names() == ["before"]
        Tag.objects.filter(pk=tag.pk).update(name="after")
        time.sleep(2.1)  # memcached counts whole seconds
        assert went_to_database(backend, tag_names) == ["after"]


def test_fixed_mode_explicit_invalidation_still_works(backend, tag):
    with fixed(backend, "blog.tag"):
        tag_names()
        Tag.objects.filter(pk=tag.pk).update(name="after")
        ormcache.invalidate(Tag)
        assert went_to_database(backend, tag_names) == ["after"]
        assert served_from_cache(backend, tag_names) == ["after"]


def test_fixed_mode_the_invalidate_command_still_works(backend, tag):
    with fixed(backend, "blog.tag"):
        tag_names()
        Tag.objects.filter(pk=tag.pk).update(name="after")
        call_command("ormcache", "invalidate", "blog.tag", stdout=StringIO())
        assert went_to_database(backend, tag_names) == ["after"]


def test_fixed_mode_invalidate_all_still_works(backend, tag):
    with fixed(backend, "blog.tag"):
        tag_names()
        Tag.objects.filter(pk=tag.pk).update(name="after")
        ormcache.invalidate_all()
        assert went_to_database(backend, tag_names) == ["after"]


def test_fixed_mode_a_transaction_sees_its_own_writes(backend, tag):
    with fixed(backend, "blog.tag"):
        tag_names()
        with transaction.atomic(using=backend.db_alias):
            Tag.objects.filter(pk=tag.pk).update(name="mine")
            assert went_to_database(backend, tag_names) == ["mine"]
        # Committed: the entry from before the transaction still lives its timeout.
        assert served_from_cache(backend, tag_names) == ["before"]


def test_shadow_verify_does_not_flag_a_fixed_hit(backend, tag):
    """A fixed hit may differ from the database by design: VERIFY="raise" lets it be."""
    models = {**settings.ORMCACHE["MODELS"], "blog.tag": {"longevity": "fixed", "timeout": 60}}
    with backend.settings(MODELS=models, VERIFY="raise"):
        assert tag_names() == ["before"]
        assert tag_count() == 1
        Tag.objects.filter(pk=tag.pk).update(name="after")
        TagFactory()
        assert tag_names() == ["before"]
        assert tag_count() == 1


def test_switching_a_model_to_fixed_does_not_serve_entries_from_before(backend, tag):
    tag_names()  # stored under the invalidated policy
    Tag.objects.filter(pk=tag.pk).update(name="after")
    with fixed(backend, "blog.tag"):
        assert went_to_database(backend, tag_names) == ["after"]


# --- joins across modes: the stricter rule ---------------------------------------------


@pytest.fixture
def tagged_post(backend, tag):
    return PostFactory(title="post", tags=[tag])


def posts_tagged_before():
    return list(Post.objects.filter(tags__name="before").values_list("title", flat=True))


def test_join_of_fixed_and_invalidated_ends_on_a_write_to_the_fixed_model(backend, tagged_post):
    with fixed(backend, "blog.tag"):
        assert posts_tagged_before() == ["post"]
        Tag.objects.update(name="after")
        assert went_to_database(backend, posts_tagged_before) == []


def test_join_of_fixed_and_invalidated_ends_on_a_write_to_the_invalidated_model(
    backend, tagged_post
):
    with fixed(backend, "blog.tag"):
        assert posts_tagged_before() == ["post"]
        Post.objects.update(title="renamed")
        assert went_to_database(backend, posts_tagged_before) == ["renamed"]


def test_join_of_fixed_and_invalidated_lives_the_shortest_timeout(backend, tagged_post):
    with fixed(backend, "blog.tag", timeout=60, **{"blog.post": {"timeout": 300}}):
        assert 55 <= stored_ttl(backend, stored_key(posts_tagged_before)) <= 60
    backend.clear()
    with fixed(backend, "blog.tag", timeout=60, **{"blog.post": {"timeout": 20}}):
        assert 15 <= stored_ttl(backend, stored_key(posts_tagged_before)) <= 20


def test_join_of_fixed_models_ignores_writes_to_both(backend, tagged_post):
    with fixed(backend, "blog.tag", "blog.post"):
        assert posts_tagged_before() == ["post"]
        Post.objects.update(title="renamed")
        Tag.objects.create(name="other")
        assert served_from_cache(backend, posts_tagged_before) == ["post"]


def test_select_related_across_modes_follows_the_stricter_rule(backend, tagged_post):
    def titles_and_authors():
        return [(p.title, p.author.name) for p in Post.objects.select_related("author")]

    with fixed(backend, "blog.author"):
        before = titles_and_authors()
        Author.objects.update(name="renamed")
        assert went_to_database(backend, titles_and_authors) == [("post", "renamed")]
        assert before != [("post", "renamed")]
        # Alone, the fixed model ignores the write.
        assert Author.objects.get().name == "renamed"
        Author.objects.update(name="again")
        assert served_from_cache(backend, lambda: Author.objects.get().name) == "renamed"


# --- the stale-save guard ---------------------------------------------------------------


def stale_cached_tag(backend, pk):
    """A Tag served from the cache after its row changed (that is the fixed lifetime)."""
    Tag.objects.get(pk=pk)
    Tag.objects.filter(pk=pk).update(name="changed elsewhere")
    stale = served_from_cache(backend, lambda: Tag.objects.get(pk=pk))
    assert stale.name == "before"
    return stale


def test_stale_save_guard_catches_a_fixed_instance_older_than_the_row(backend, tag):
    with fixed(backend, "blog.tag", stale_save="raise"):
        stale = stale_cached_tag(backend, tag.pk)
        with pytest.raises(StaleObjectError) as raised:
            stale.save()
        assert raised.value.fields == ["name"]
    assert Tag.objects.nocache().get(pk=tag.pk).name == "changed elsewhere"


def test_stale_save_guard_warns_by_default_for_fixed_models(backend, tag, caplog):
    with fixed(backend, "blog.tag"):
        stale = stale_cached_tag(backend, tag.pk)
        with caplog.at_level(logging.WARNING, logger="ormcache"):
            stale.save()
    assert "changed in the database" in caplog.text


def test_stale_save_allow_skips_the_check_for_fixed_models(backend, tag, caplog):
    with fixed(backend, "blog.tag", stale_save="allow"):
        stale = stale_cached_tag(backend, tag.pk)
        with caplog.at_level(logging.WARNING, logger="ormcache"):
            stale.save()
    assert caplog.text == ""


def test_stale_save_guard_does_not_misfire_for_fixed_models(backend, tag, caplog):
    """Nothing changed: the save reads the row (tokens cannot vouch) and flags nothing."""
    with fixed(backend, "blog.tag", stale_save="raise"):
        Tag.objects.get(pk=tag.pk)
        instance = served_from_cache(backend, lambda: Tag.objects.get(pk=tag.pk))
        instance.name = "mine"
        with backend.queries() as captured, caplog.at_level(logging.WARNING, logger="ormcache"):
            instance.save()
        selects = [q for q in captured.captured_queries if q["sql"].lstrip().startswith("SELECT")]
        assert len(selects) == 1
        # A second save of the same instance is of what it wrote itself: no check.
        instance.name = "mine again"
        instance.save()
    assert caplog.text == ""
    assert Tag.objects.nocache().get(pk=tag.pk).name == "mine again"


# --- the page cache ----------------------------------------------------------------------


def page_settings(backend, **models):
    """The page cache in front of the test URLconf, with ``models`` policies."""
    return override_settings(
        ROOT_URLCONF="tests.test_pages_urls",
        MIDDLEWARE=PAGE_MIDDLEWARE,
        ORMCACHE={
            **settings.ORMCACHE,
            "CACHE": backend.cache_alias,
            "PAGES": {},
            "MODELS": {**settings.ORMCACHE["MODELS"], **models},
        },
    )


def test_page_of_a_fixed_model_survives_writes(backend, client):
    PostFactory(title="one")
    with page_settings(backend, **{"blog.post": {"longevity": "fixed", "timeout": 60}}):
        assert outcome(client.get("/t/posts/")) == "miss"
        Post.objects.update(title="two")
        response = client.get("/t/posts/")
        assert outcome(response) == "hit"
        assert b"one" in response.content
        ormcache.invalidate(Post)
        response = client.get("/t/posts/")
        assert outcome(response) == "miss"
        assert b"two" in response.content


def test_page_of_an_invalidated_model_ends_on_a_write(backend, client):
    PostFactory(title="one")
    with page_settings(backend, **{"blog.post": {"longevity": "invalidate"}}):
        assert outcome(client.get("/t/posts/")) == "miss"
        Post.objects.update(title="two")
        response = client.get("/t/posts/")
        assert outcome(response) == "miss"
        assert b"two" in response.content


def test_page_does_not_outlive_the_fixed_rows_it_shows(backend, client):
    """A page built from a cached fixed read expires when those rows reach their timeout."""
    PostFactory(title="one")
    with page_settings(backend, **{"blog.post": {"longevity": "fixed", "timeout": 3}}):
        list(Post.objects.order_by("id").values_list("title", flat=True))  # the read, at t0
        time.sleep(1.2)
        assert outcome(client.get("/t/posts/")) == "miss"  # built from the t0 read
        Post.objects.update(title="two")
        assert outcome(client.get("/t/posts/")) == "hit"
        time.sleep(2.1)  # t0 + 3.3: the rows' timeout has passed
        response = client.get("/t/posts/")
        assert outcome(response) == "miss"
        assert b"two" in response.content


# --- helpers ------------------------------------------------------------------------------


class Count:
    calls = 0


@ormcache.cached_as(Tag)
def tag_count():
    Count.calls += 1
    return Tag.objects.nocache().count()


@ormcache.cached_as(Tag, Post)
def tags_and_posts():
    Count.calls += 1
    return (Tag.objects.nocache().count(), Post.objects.nocache().count())


def test_helper_of_a_fixed_model_survives_writes(backend, tag):
    with fixed(backend, "blog.tag"):
        Count.calls = 0
        assert tag_count() == 1
        TagFactory()
        assert tag_count() == 1
        assert Count.calls == 1
        tag_count.invalidate()
        assert tag_count() == 2
        ormcache.invalidate(Tag)
        TagFactory()
        assert tag_count() == 3


def test_helper_across_modes_follows_the_stricter_rule(backend, tag):
    with fixed(backend, "blog.tag"):
        Count.calls = 0
        assert tags_and_posts() == (1, 0)
        TagFactory()
        assert tags_and_posts() == (2, 0)
        assert Count.calls == 2


# --- system checks -------------------------------------------------------------------------


def ids_for(models):
    with override_settings(ORMCACHE={**settings.ORMCACHE, "MODELS": models}):
        found = [message.id for message in run_checks() if message.id.startswith("ormcache.")]
    return [found_id for found_id in found if found_id not in settings.SILENCED_SYSTEM_CHECKS]


def test_checks_accept_a_fixed_model_with_a_timeout():
    assert ids_for({"blog.tag": {"longevity": "fixed", "timeout": 60}}) == []


def test_checks_reject_an_unknown_longevity():
    assert "ormcache.E018" in ids_for({"blog.tag": {"longevity": "forever"}})


@pytest.mark.parametrize("timeout", [None, 0])
def test_checks_reject_a_fixed_model_without_a_timeout(timeout):
    assert "ormcache.E019" in ids_for({"blog.tag": {"longevity": "fixed", "timeout": timeout}})


def test_checks_apply_to_each_model_an_app_entry_makes_fixed():
    found = ids_for(
        {"blog.*": {"longevity": "fixed", "timeout": 60}, "blog.bookmark": {"user_scoped": True}}
    )
    assert "ormcache.W018" in found


def test_checks_warn_about_a_fixed_user_scoped_model():
    found = ids_for({"blog.tag": {"longevity": "fixed", "timeout": 60, "user_scoped": True}})
    assert found == ["ormcache.W018"]


def test_checks_warn_about_a_fixed_model_whose_stale_saves_are_allowed():
    found = ids_for({"blog.tag": {"longevity": "fixed", "timeout": 60, "stale_save": "allow"}})
    assert found == ["ormcache.W019"]
