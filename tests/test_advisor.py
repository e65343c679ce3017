"""The policy advisor: per-model advice from the stats, its thresholds, command and checks."""

import json
import time
from io import StringIO

import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.core.management import call_command
from django.test.utils import override_settings

from ormcache import advisor, conf, stats
from testproject.blog import advisor_workload
from testproject.blog.models import Tag
from tests.factories import TagFactory
from tests.test_stats import FLUSH_ALWAYS as STATS_ON
from tests.test_stats import stats_on  # noqa: F401  (the fixture, used by name)


def by_label(advice):
    return {item.label: item for item in advice}


# --- the scripted workload on testproject ------------------------------------------------


@pytest.mark.usefixtures("stats_on")
def test_workload_gets_the_right_advice_for_each_model(backend):
    advice = by_label(advisor_workload.run(using=backend.db_alias))
    assert set(advice) == {"blog.tag", "blog.comment", "blog.author"}
    read_mostly, volatile, rarely_read = (
        advice["blog.tag"],
        advice["blog.comment"],
        advice["blog.author"],
    )
    assert (read_mostly.recommendation, read_mostly.cause) == ("keep", "good_hit_ratio")
    assert (volatile.recommendation, volatile.cause) == ("disable", "volatile")
    assert (rarely_read.recommendation, rarely_read.cause) == ("disable", "rarely_read")
    assert volatile.suggested == rarely_read.suggested == {"enabled": False}
    assert rarely_read.counts.stored_bytes > 0
    print("\n" + advisor.table(list(advice.values())))


@pytest.mark.usefixtures("stats_on")
def test_advise_command_table_and_json(backend):
    advisor_workload.run(using=backend.db_alias)
    out = StringIO()
    call_command("ormcache", "advise", stdout=out)
    table = out.getvalue()
    header = table.splitlines()[0].split()
    assert header[:3] == ["model", "policy", "reads"]
    assert "volatile:" in table and "rarely read:" in table
    out = StringIO()
    call_command("ormcache", "advise", "--format", "json", stdout=out)
    found = {item["model"]: item for item in json.loads(out.getvalue())}
    # The workload's clean-up deletes are counted too: the advice does not change.
    assert found["blog.tag"]["recommendation"] == "keep"
    assert found["blog.comment"]["cause"] == "volatile"
    assert found["blog.author"]["cause"] == "rarely_read"
    assert found["blog.author"]["suggested_policy"] == {"enabled": False}
    assert found["blog.comment"]["invalidations_per_read"] >= 1


@pytest.mark.usefixtures("stats_on")
def test_thresholds_come_from_settings(backend):
    with backend.settings(STATS=STATS_ON, ADVISOR={"min_reads": 10_000}):
        advice = advisor_workload.run(using=backend.db_alias)
    assert {item.cause for item in advice} == {"too_few_reads"}


def test_the_command_warns_when_stats_are_off(backend):
    err = StringIO()
    call_command("ormcache", "advise", stdout=StringIO(), stderr=err)
    assert "Stats are off" in err.getvalue()


# --- the window and entry sizes in the stats -------------------------------------------------


@pytest.mark.usefixtures("stats_on")
def test_window_counts_per_model_with_entry_sizes(backend):
    TagFactory()
    with backend.settings(STATS={**STATS_ON, "window_interval": 1}):
        stats.reset()
        list(Tag.objects.all())
        list(Tag.objects.all())
        Tag.objects.update(name="x")
        found = stats.window(10)["blog.tag"]
        assert (found.hits, found.misses, found.stores, found.invalidations) == (1, 1, 1, 1)
        assert found.stored_bytes > 0
        assert found.average_entry == found.stored_bytes
        assert found.reuse == 1.0
        time.sleep(2.1)  # two one-second buckets later
        assert "blog.tag" not in stats.window(1)
        assert stats.window(10)["blog.tag"].hits == 1
        stats.reset()
        assert stats.window(10) == {}


# --- the rules ------------------------------------------------------------------------------


INVALIDATED = conf.Policy(timeout=300)
FIXED = conf.Policy(timeout=60, longevity="fixed")


def advise(policy=INVALIDATED, **counts):
    return advisor.recommend(stats.ModelStats("blog.x", **counts), policy, advisor.DEFAULTS)


def test_too_few_reads_keeps():
    assert advise(hits=10, misses=40, stores=40)[:2] == ("keep", "too_few_reads")


def test_a_good_hit_ratio_keeps():
    assert advise(hits=900, misses=100, stores=100, invalidations=90)[:2] == (
        "keep",
        "good_hit_ratio",
    )


def test_invalidated_about_as_often_as_read_is_volatile():
    recommendation, cause, _reason, suggested = advise(
        hits=100, misses=400, stores=400, invalidations=300
    )
    assert (recommendation, cause, suggested) == ("disable", "volatile", {"enabled": False})


def test_writes_that_cost_a_share_of_the_reads_suggest_a_fixed_lifetime():
    recommendation, cause, reason, suggested = advise(
        hits=600, misses=400, stores=400, invalidations=200
    )
    assert (recommendation, cause) == ("fixed", "invalidations")
    assert suggested == {"longevity": "fixed", "timeout": 300}
    assert "may lag" in reason


def test_stores_seldom_read_again_are_rarely_read():
    recommendation, cause, _reason, suggested = advise(hits=40, misses=200, stores=200)
    assert (recommendation, cause, suggested) == ("disable", "rarely_read", {"enabled": False})


def test_misses_no_write_explains_suggest_a_longer_timeout():
    recommendation, cause, _reason, suggested = advise(hits=500, misses=500, stores=500)
    assert (recommendation, cause, suggested) == ("raise_timeout", "expiry", {"timeout": 600})


def test_without_a_timeout_misses_are_first_reads():
    policy = conf.Policy(timeout=None)
    assert advise(policy, hits=500, misses=500, stores=500)[:2] == ("keep", "first_reads")


def test_a_fixed_model_is_never_volatile_its_writes_do_not_end_entries():
    recommendation, cause, _reason, suggested = advise(
        FIXED, hits=500, misses=500, stores=500, invalidations=2000
    )
    assert (recommendation, cause, suggested) == ("raise_timeout", "expiry", {"timeout": 120})


# --- system checks ----------------------------------------------------------------------------


def ids_for(**options):
    ormcache = {**settings.ORMCACHE, **options}
    with override_settings(ORMCACHE=ormcache):
        found = [message.id for message in run_checks() if message.id.startswith("ormcache.")]
    return [found_id for found_id in found if found_id not in settings.SILENCED_SYSTEM_CHECKS]


def test_checks_accept_the_defaults_and_good_values():
    assert ids_for(ADVISOR={}) == []
    assert ids_for(ADVISOR={**advisor.DEFAULTS, "window": 3600, "min_reuse": 0}) == []


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("loose", "ormcache.E050"),
        ({"windw": 3600}, "ormcache.E050"),
        ({"window": 0}, "ormcache.E051"),
        ({"min_reads": 2.5}, "ormcache.E051"),
        ({"good_hit_ratio": 1.5}, "ormcache.E052"),
        ({"good_hit_ratio": 0}, "ormcache.E052"),
        ({"fixed_ratio": True}, "ormcache.E052"),
        ({"min_reuse": -1}, "ormcache.E053"),
        ({"fixed_ratio": 0.5, "volatile_ratio": 0.5}, "ormcache.E054"),
    ],
)
def test_checks_reject_bad_thresholds(value, code):
    assert ids_for(ADVISOR=value) == [code]


@pytest.mark.parametrize(
    ("value", "code"),
    [({"window_interval": 0}, "ormcache.E046"), ({"window_length": "7d"}, "ormcache.E047")],
)
def test_checks_reject_a_bad_stats_window(value, code):
    assert ids_for(STATS=value) == [code]
