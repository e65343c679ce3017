"""The admin's stats page: staff only, counts per model, hit ratio over time.
(In a real browser, with a screenshot for the docs: tests/e2e/test_admin_stats.py.)"""

import re

import pytest
from django.test import Client

from ormcache import stats
from ormcache.contrib.admin import chart
from testproject.blog.models import Post
from tests.factories import PostFactory, UserFactory

URL = "/admin/ormcache/"


@pytest.fixture
def counting(backend):
    with backend.settings(STATS={"enabled": True, "flush_interval": 0}):
        stats.reset()
        yield backend
        stats.reset()


def client_for(**flags):
    user = UserFactory(**flags)
    client = Client()
    client.force_login(user)
    return client


def test_staff_see_counts_per_model_and_the_chart(counting):
    post = PostFactory()
    stats.reset()
    for _ in range(4):
        Post.objects.get(pk=post.pk)  # 1 miss, 3 hits
    response = client_for(is_staff=True).get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert "<h1>ormcache stats</h1>" in html
    row = re.search(r"<td>blog\.post</td>(.*?)</tr>", html, re.S).group(1)
    assert re.findall(r'<td class="num">(\d+)</td>', row) == ["3", "1", "1", "0"]
    assert "75.0%" in row
    assert '<polyline class="ratio" points="' in html
    assert re.search(r'<circle class="dot" cx="[\d.]+" cy="[\d.]+" r="2.5"><title>', html)
    assert "Stats are off" not in html


def test_the_page_says_when_stats_are_off(backend):
    response = client_for(is_staff=True).get(URL)
    assert response.status_code == 200
    assert "Stats are off" in response.content.decode()


@pytest.mark.parametrize("flags", [{}, {"is_staff": True, "is_active": False}])
def test_not_for_non_staff(backend, flags):
    response = client_for(**flags).get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_not_for_anonymous(backend):
    response = Client().get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_window_choice(counting):
    client = client_for(is_staff=True)
    html = client.get(URL, {"samples": 360}).content.decode()
    assert '<a href="?samples=360" class="selected">6 h</a>' in html
    html = client.get(URL, {"samples": "junk"}).content.decode()
    assert '<a href="?samples=60" class="selected">1 h</a>' in html


def test_chart_breaks_the_line_where_nothing_was_read():
    samples = [
        stats.Sample(0, 3, 1),
        stats.Sample(60, 1, 1),
        stats.Sample(120, 0, 0),
        stats.Sample(180, 4, 0),
    ]
    drawn = chart(samples)
    assert len(drawn["lines"]) == 2  # a gap at the empty bucket
    assert len(drawn["lines"][0].split()) == 2 and len(drawn["lines"][1].split()) == 1
    assert len(drawn["bars"]) == 3
    ys = [point["y"] for point in drawn["points"]]
    assert ys[2] == drawn["grid"][-1]["y"]  # 100% at the top
    assert ys[0] < ys[1]  # 75% above 50%
    assert not drawn["empty"]
    assert chart([stats.Sample(0, 0, 0)])["empty"]
