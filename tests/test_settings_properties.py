"""Property-based: every invalid ORMCACHE value is a system-check error with an id and a
hint, and every valid one passes (so nothing invalid reaches request time)."""

import pytest
from django.test.utils import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ormcache.checks import check_settings
from testproject.blog.models import Post

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "shared": {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": "/tmp/x",
    },
}
LABELS = ["*", "blog.*", "blog.post", "BLOG.Comment", "auth.group", "auth.*"]

valid_timeout = st.one_of(st.none(), st.integers(min_value=0, max_value=10**6))
invalid_timeout = st.one_of(
    st.integers(max_value=-1),
    st.floats(allow_nan=True),
    st.text(max_size=5),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)
valid_policy = st.fixed_dictionaries(
    {},
    optional={
        "enabled": st.booleans(),
        "timeout": valid_timeout,
        "user_scoped": st.booleans(),
        "stale_save": st.sampled_from(["warn", "raise", "allow"]),
    },
)
valid_settings = st.fixed_dictionaries(
    {"CACHE": st.just("shared")},
    optional={
        "TIMEOUT": valid_timeout,
        "ENABLED": st.booleans(),
        "MODELS": st.dictionaries(st.sampled_from(LABELS), valid_policy, max_size=4),
        "BREAKER": st.fixed_dictionaries(
            {},
            optional={
                "threshold": st.integers(min_value=1, max_value=100),
                "cooldown": st.floats(min_value=0, max_value=600),
            },
        ),
        "MAX_ENTRY_ROWS": st.one_of(st.none(), st.integers(min_value=1)),
        "MAX_ENTRY_BYTES": st.one_of(st.none(), st.integers(min_value=1)),
        "SIGNING_KEY": st.text(min_size=16, max_size=40),
    },
)

# One invalid change applied to a valid dict: (path, invalid value strategy).
invalid_changes = st.one_of(
    st.tuples(st.just(("CACHE",)), st.text(max_size=8).filter(lambda a: a not in CACHES)),
    st.tuples(st.just(("TIMEOUT",)), invalid_timeout),
    st.tuples(st.just(("ENABLED",)), st.one_of(st.integers(), st.text(max_size=3), st.none())),
    st.tuples(st.just(("MODELS",)), st.one_of(st.lists(st.text(max_size=3)), st.text(max_size=3))),
    st.tuples(
        st.just(("MODELS", "label")),
        st.sampled_from(["post", "blog.", "nope.*", "blog.nothing", "a.b.c", ""]),
    ),
    st.tuples(st.sampled_from([("MODELS", "blog.post", k) for k in ("timeout",)]), invalid_timeout),
    st.tuples(
        st.sampled_from([("MODELS", "blog.post", k) for k in ("enabled", "user_scoped")]),
        st.one_of(st.integers(), st.text(max_size=3), st.none()),
    ),
    st.tuples(
        st.just(("MODELS", "blog.post", "stale_save")),
        st.text(max_size=6).filter(lambda v: v not in ("warn", "raise", "allow")),
    ),
    st.tuples(st.just(("MODELS", "blog.post", "unknown_key")), st.integers()),
    st.tuples(
        st.just(("BREAKER", "threshold")), st.one_of(st.integers(max_value=0), st.text(max_size=2))
    ),
    st.tuples(
        st.just(("BREAKER", "cooldown")),
        st.one_of(st.floats(max_value=-0.001), st.text(max_size=2)),
    ),
    st.tuples(st.just(("SIGNING_KEY",)), st.one_of(st.text(max_size=15), st.integers())),
    st.tuples(
        st.sampled_from([("MAX_ENTRY_ROWS",), ("MAX_ENTRY_BYTES",)]), st.integers(max_value=0)
    ),
    st.tuples(st.just(("UNKNOWN_KEY",)), st.integers()),
    st.tuples(
        st.just(("DATABASES",)), st.one_of(st.integers(), st.lists(st.integers(), max_size=1))
    ),
    st.tuples(st.just(("DATABASES", "nowhere")), st.just({})),
)


def apply(base, path, value):
    result = {**base}
    if path == ("MODELS", "label"):
        result["MODELS"] = {**result.get("MODELS", {}), value: {}}
    elif len(path) == 1:
        result[path[0]] = value
    elif path[0] in ("BREAKER", "DATABASES"):
        result[path[0]] = {**result.get(path[0], {}), path[1]: value}
    else:
        models = {**result.get("MODELS", {})}
        models[path[1]] = {**models.get(path[1], {}), path[2]: value}
        result["MODELS"] = models
    return result


def errors_for(value):
    with override_settings(ORMCACHE=value, CACHES=CACHES):
        return check_settings()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=valid_settings, change=invalid_changes)
def test_every_invalid_value_is_an_error_with_id_and_hint(base, change):
    path, value = change
    problems = errors_for(apply(base, path, value))
    errors = [p for p in problems if p.id.startswith("ormcache.E")]
    assert errors, f"no error for {path}={value!r}"
    for problem in errors:
        assert problem.hint
        assert problem.id.startswith("ormcache.E0")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=valid_settings)
def test_valid_settings_pass(value):
    assert errors_for(value) == []


@pytest.mark.django_db
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(value=valid_settings)
def test_valid_settings_serve_reads(value):
    value = {**value, "CACHE": "default"}
    with override_settings(ORMCACHE=value):
        assert list(Post.objects.filter(pk=-1)) == []
        assert Post.objects.filter(pk=-1).count() == 0
