"""{% cachedfragment %} and its Jinja2 twin: served from the cache, fresh after every write."""

import pytest
from django.db import transaction
from django.template import Context, Template, TemplateSyntaxError

from ormcache import reads
from testproject.blog.models import Comment, Post
from tests.factories import CommentFactory, PostFactory

COMMENTS = (
    "{% load ormcache %}"
    "{% cachedfragment 'comments' post comments %}"
    "{{ post.title }}:{% for c in comments %}{{ c.author_name }};{% endfor %}"
    "{% endcachedfragment %}"
)


@pytest.fixture
def post(backend):
    post = PostFactory(title="first")
    CommentFactory(post=post, author_name="ann")
    CommentFactory(post=post, author_name="bob")
    return post


def render(source, **context):
    return Template(source).render(Context(context))


def comments_page(post):
    fresh = Post.objects.get(pk=post.pk)
    return render(COMMENTS, post=fresh, comments=fresh.comments.all())


def assert_cached(backend, read, expected):
    assert read() == expected
    with backend.queries() as captured:
        assert read() == expected
    assert captured.captured_queries == [], "expected a cache hit, got SQL"


def test_second_render_runs_no_sql(backend, post):
    expected = "first:ann;bob;"
    assert comments_page(post) == expected
    fresh = Post.objects.get(pk=post.pk)
    comments = fresh.comments.all()
    with backend.queries() as captured:
        assert render(COMMENTS, post=fresh, comments=comments) == expected
    assert captured.captured_queries == []  # the queryset was never evaluated


@pytest.mark.parametrize("write", ["create", "update", "delete", "raw_sql", "instance"])
def test_fresh_after_writes_to_each_dependency(backend, post, write):
    assert comments_page(post) == "first:ann;bob;"
    if write == "create":
        CommentFactory(post=post, author_name="cy")
        expected = "first:ann;bob;cy;"
    elif write == "update":
        Comment.objects.filter(author_name="ann").update(author_name="anne")
        expected = "first:anne;bob;"
    elif write == "delete":
        Comment.objects.filter(author_name="bob").delete()
        expected = "first:ann;"
    elif write == "raw_sql":
        with backend.connection.cursor() as cursor:
            cursor.execute("DELETE FROM blog_comment WHERE author_name = %s", ["ann"])
        expected = "first:bob;"
    else:
        Post.objects.filter(pk=post.pk).update(title="renamed")
        expected = "renamed:ann;bob;"
    assert comments_page(post) == expected
    assert_cached(backend, lambda: comments_page(post), expected)


def test_model_class_dependency_and_vary_on_values(backend, post):
    source = (
        "{% load ormcache %}{% cachedfragment 'count' Comment lang %}"
        "{{ lang }}={{ n }}{% endcachedfragment %}"
    )

    def page(lang):
        return render(source, Comment=Comment, lang=lang, n=Comment.objects.count())

    assert page("en") == "en=2"
    assert page("fr") == "fr=2"  # another vary-on value: another entry
    with backend.queries() as captured:
        assert render(source, Comment=Comment, lang="en", n=99) == "en=2"
    assert captured.captured_queries == []
    CommentFactory(post=post)
    assert page("en") == "en=3"  # the model class is a dependency, not instantiated


def test_reads_inside_that_are_not_declared_are_learned(backend, post):
    source = (
        "{% load ormcache %}{% cachedfragment 'n' post %}"
        "{{ post.comments.count }}{% endcachedfragment %}"
    )

    def page():
        return render(source, post=Post.objects.get(pk=post.pk))

    assert_cached(backend, page, "2")
    CommentFactory(post=post)
    assert page() == "3"


def test_autoescape_is_not_applied_twice(backend, post):
    Post.objects.filter(pk=post.pk).update(title="<b>&")
    source = (
        "{% load ormcache %}{% cachedfragment 'esc' post %}{{ post.title }}{% endcachedfragment %}"
    )
    for _ in range(2):
        assert render(source, post=Post.objects.get(pk=post.pk)) == "&lt;b&gt;&amp;"


def test_timeout_option(backend, post):
    source = (
        "{% load ormcache %}{% cachedfragment 'short' post timeout=seconds %}"
        "{{ n }}{% endcachedfragment %}"
    )
    assert render(source, post=post, seconds=0, n=1) == "1"
    assert render(source, post=post, seconds=0, n=2) == "2"  # expired at once
    assert render(source, post=post, seconds=60, n=3) == "3"
    assert render(source, post=post, seconds=60, n=4) == "3"


@pytest.mark.parametrize(
    "source",
    [
        "{% load ormcache %}{% cachedfragment %}x{% endcachedfragment %}",
        "{% load ormcache %}{% cachedfragment 'a' using='x' %}x{% endcachedfragment %}",
    ],
)
def test_syntax_errors(source):
    with pytest.raises(TemplateSyntaxError):
        Template(source)


def test_bad_timeout(backend, post):
    source = "{% load ormcache %}{% cachedfragment 'a' timeout='soon' %}x{% endcachedfragment %}"
    with pytest.raises(TemplateSyntaxError, match="timeout"):
        render(source)


def test_nested_fragments(backend, post):
    source = (
        "{% load ormcache %}{% cachedfragment 'outer' post %}[{{ post.title }}"
        "{% cachedfragment 'inner' comments %}{{ comments|length }}{% endcachedfragment %}]"
        "{% endcachedfragment %}"
    )

    def page():
        fresh = Post.objects.get(pk=post.pk)
        return render(source, post=fresh, comments=fresh.comments.all())

    assert_cached(backend, page, "[first2]")
    CommentFactory(post=post)
    assert page() == "[first3]"


def test_disabled_globally_and_for_a_model(backend, post):
    source = "{% load ormcache %}{% cachedfragment 'n' Comment %}{{ n }}{% endcachedfragment %}"
    with backend.settings(ENABLED=False):
        assert render(source, Comment=Comment, n=1) == "1"
        assert render(source, Comment=Comment, n=2) == "2"
    with backend.settings(MODELS={"blog.comment": {"enabled": False}}):
        assert render(source, Comment=Comment, n=3) == "3"
        assert render(source, Comment=Comment, n=4) == "4"
    assert render(source, Comment=Comment, n=5) == "5"
    assert render(source, Comment=Comment, n=6) == "5"


def test_a_transaction_that_wrote_a_dependency_sees_its_own_writes(backend, post):
    assert comments_page(post) == "first:ann;bob;"
    with transaction.atomic(using=backend.db_alias):
        CommentFactory(post=post, author_name="cy")
        assert comments_page(post) == "first:ann;bob;cy;"
        Comment.objects.filter(author_name="cy").delete()
        assert comments_page(post) == "first:ann;bob;"
    with pytest.raises(RuntimeError), transaction.atomic(using=backend.db_alias):
        CommentFactory(post=post, author_name="dee")
        assert comments_page(post) == "first:ann;bob;dee;"
        raise RuntimeError
    assert comments_page(post) == "first:ann;bob;"


def test_a_page_around_a_cached_fragment_learns_its_dependencies(backend, post):
    comments_page(post)
    fresh = Post.objects.get(pk=post.pk)
    with reads.recording() as events:
        render(COMMENTS, post=fresh, comments=fresh.comments.all())
    assert [event.outcome for event in events] == ["hit"]
    assert {"blog_post", "blog_comment"} <= events[0].tables


# --- Jinja2 -----------------------------------------------------------------------------

try:
    import jinja2
except ImportError:  # the extension is optional; the test extra installs Jinja2
    jinja2 = None

needs_jinja2 = pytest.mark.skipif(jinja2 is None, reason="Jinja2 is not installed")


@pytest.fixture
def env():
    return jinja2.Environment(
        extensions=["ormcache.jinja2.CachedFragmentExtension"], autoescape=True
    )


JINJA_COMMENTS = (
    "{% cachedfragment 'comments', post, comments, timeout=60 %}"
    "{{ post.title }}:{% for c in comments %}{{ c.author_name }};{% endfor %}"
    "{% endcachedfragment %}"
)


@needs_jinja2
def test_jinja2_same_semantics(backend, post, env):
    template = env.from_string(JINJA_COMMENTS)

    def page():
        fresh = Post.objects.get(pk=post.pk)
        return template.render(post=fresh, comments=fresh.comments.all())

    assert page() == "first:ann;bob;"
    fresh = Post.objects.get(pk=post.pk)
    with backend.queries() as captured:
        assert template.render(post=fresh, comments=fresh.comments.all()) == "first:ann;bob;"
    assert captured.captured_queries == []
    CommentFactory(post=post, author_name="cy")
    assert page() == "first:ann;bob;cy;"
    Post.objects.filter(pk=post.pk).update(title="<i>")
    assert page() == "&lt;i&gt;:ann;bob;cy;"
    assert page() == "&lt;i&gt;:ann;bob;cy;"  # a hit is not escaped twice


@needs_jinja2
def test_jinja2_vary_on_and_commas_optional(backend, post, env):
    template = env.from_string(
        "{% cachedfragment 'count' Comment lang %}{{ lang }}={{ n }}{% endcachedfragment %}"
    )
    assert template.render(Comment=Comment, lang="en", n=1) == "en=1"
    assert template.render(Comment=Comment, lang="fr", n=2) == "fr=2"
    assert template.render(Comment=Comment, lang="en", n=3) == "en=1"
    CommentFactory(post=post)
    assert template.render(Comment=Comment, lang="en", n=4) == "en=4"


@needs_jinja2
def test_jinja2_errors(env):
    with pytest.raises(jinja2.TemplateSyntaxError):
        env.from_string("{% cachedfragment %}x{% endcachedfragment %}")
    with pytest.raises(jinja2.TemplateSyntaxError):
        env.from_string("{% cachedfragment 'a', using='x' %}x{% endcachedfragment %}")


@needs_jinja2
def test_jinja2_through_djangos_backend(backend, post, tmp_path):
    from django.template.backends.jinja2 import Jinja2

    engine = Jinja2(
        {
            "NAME": "jinja2",
            "DIRS": [str(tmp_path)],
            "APP_DIRS": False,
            "OPTIONS": {"extensions": ["ormcache.jinja2.cachedfragment"]},
        }
    )
    (tmp_path / "page.html").write_text(JINJA_COMMENTS)
    template = engine.get_template("page.html")

    def page():
        fresh = Post.objects.get(pk=post.pk)
        return template.render({"post": fresh, "comments": fresh.comments.all()})

    assert_cached(backend, page, "first:ann;bob;")
    Comment.objects.filter(author_name="bob").delete()
    assert page() == "first:ann;"


@needs_jinja2
def test_jinja2_async_environment_renders_without_caching(backend, post):
    from asgiref.sync import async_to_sync

    env = jinja2.Environment(
        extensions=["ormcache.jinja2.CachedFragmentExtension"], enable_async=True
    )
    template = env.from_string("{% cachedfragment 'a', lang %}{{ n }}{% endcachedfragment %}")
    assert async_to_sync(template.render_async)(lang="en", n=1) == "1"
    assert async_to_sync(template.render_async)(lang="en", n=2) == "2"


# --- the demo site ----------------------------------------------------------------------


def test_demo_post_page_comments_fragment_is_fresh(backend, post, client):
    url = post.get_absolute_url()
    first = client.get(url).content.decode()
    assert "ann" in first and "bob" in first
    with backend.queries() as captured:
        assert client.get(url).content.decode() == first
    assert not any("blog_comment" in q["sql"] and "author_name" in q["sql"] for q in captured)
    CommentFactory(post=post, author_name="carmen")
    assert "carmen" in client.get(url).content.decode()


def test_demo_post_list_shows_fresh_comment_counts(backend, post, client):
    assert "2 comments" in client.get("/").content.decode()
    CommentFactory(post=post)
    assert "3 comments" in client.get("/").content.decode()
