"""In a real browser: the admin stats page and the debug toolbar panel, with screenshots.

testproject runs under ``runserver`` with DEBUG on (so django-debug-toolbar shows, with
ormcache's panel) and one-second stats samples, on a throwaway seeded database. A
logged-in staff user browses the blog for a while and posts comments (each write makes
the next reads of comments misses), then:

- the admin stats page shows counts per model and a hit-ratio chart drawn from that
  traffic; an anonymous visitor is sent to the login page instead;
- the toolbar's ormcache panel on a post page lists each read with hit/miss/bypass,
  its tables and their versions.

Screenshots: ``ORMCACHE_UPDATE_SCREENSHOTS=1 pytest tests/e2e/test_admin_stats.py`` writes
them to docs/img/ (shown in docs/observability.md); other runs take them into a temporary
directory.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

import pytest

from tests.e2e.browser import (
    ROOT,
    TIMEOUT_MS,
    demo_server,
    launch_chromium,
    require,
    require_browser,
)

#: Where the screenshots go: docs/img/ with ORMCACHE_UPDATE_SCREENSHOTS=1 (how the docs'
#: images are made), else a temporary directory (taken all the same, but a test run does
#: not rewrite tracked files).
SCREENSHOTS = (
    ROOT / "docs" / "img"
    if os.environ.get("ORMCACHE_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.mkdtemp(prefix="ormcache-screenshots-"))
)
# The screenshots for the docs want a chart with a history; the assertions need a few
# one-second samples.
TRAFFIC_SECONDS = 25 if os.environ.get("ORMCACHE_UPDATE_SCREENSHOTS") == "1" else 6


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_browser()
    try:
        import debug_toolbar  # noqa: F401
    except ImportError:
        require(False, "django-debug-toolbar is not installed (pip install -e '.[test]')")
    env = {
        "ORMCACHE_DEMO_DEBUG": "1",
        "ORMCACHE_DEMO_TOOLBAR": "1",
        "ORMCACHE_DEMO_STATS_INTERVAL": "1",
    }
    with demo_server(tmp_path_factory.mktemp("e2e-admin"), env=env) as base:
        yield base


@pytest.fixture(scope="module")
def browser(server):
    with launch_chromium() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def staff(browser, server):
    """A logged-in admin (staff) browser page, after some traffic."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(f"{server}/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "admin")
    page.click("input[type=submit]")
    page.wait_for_url(f"{server}/admin/")
    browse(context.request, server)
    yield page
    context.close()


def browse(request, base):
    """Read the blog for TRAFFIC_SECONDS, posting a comment every few rounds."""
    home = request.get(f"{base}/").text()
    post_ids = sorted({int(pk) for pk in re.findall(r"/post/(\d+)/", home)})[:5]
    assert post_ids, "no post on the home page"
    deadline = time.monotonic() + TRAFFIC_SECONDS
    rounds = 0
    while time.monotonic() < deadline and rounds < 500:
        rounds += 1
        for pk in post_ids:
            assert request.get(f"{base}/post/{pk}/").ok
        assert request.get(f"{base}/").ok
        assert request.get(f"{base}/stats/").ok
        if rounds % 4 == 0:
            comment(request, base, post_ids[rounds % len(post_ids)])
        time.sleep(0.1)


def comment(request, base, pk):
    """Post a comment through the blog's form (a write: comments' versions move)."""
    form = request.get(f"{base}/post/{pk}/comment/").text()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
    posted = request.post(
        f"{base}/post/{pk}/comment/",
        form={"csrfmiddlewaretoken": token, "author_name": "e2e", "body": "Nice."},
        headers={"Referer": f"{base}/post/{pk}/comment/"},
        max_redirects=0,  # the redirect's GET would read the new comments already
    )
    assert posted.status == 302, posted.status


def test_admin_stats_page(staff, server):
    staff.goto(f"{server}/admin/ormcache/?samples=60")
    staff.locator("#djHideToolBarButton").click()  # the toolbar would cover the page
    assert staff.locator("#content h1").inner_text() == "ormcache stats"
    row = staff.locator("#ormcache-models tr", has=staff.locator("td", has_text="blog.post"))
    cells = row.first.locator("td").all_inner_texts()
    assert cells[0] == "blog.post"
    hits, misses = int(cells[1]), int(cells[2])
    assert hits > misses > 0
    assert re.fullmatch(r"\d+\.\d%", cells[5])
    comments = staff.locator(
        "#ormcache-models tr", has=staff.locator("td", has_text="blog.comment")
    )
    assert int(comments.first.locator("td").all_inner_texts()[4]) > 0  # invalidations
    # The chart: a line through one point per second of traffic.
    points = staff.locator("#ormcache-chart polyline.ratio").first.get_attribute("points")
    assert len(points.split()) >= TRAFFIC_SECONDS // 2
    assert staff.locator("#ormcache-chart circle.dot").count() >= TRAFFIC_SECONDS // 2
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    staff.screenshot(path=str(SCREENSHOTS / "admin-stats.png"), full_page=True)


def test_admin_stats_page_is_for_staff_only(browser, server):
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{server}/admin/ormcache/")
    assert page.url.startswith(f"{server}/admin/login/")
    assert "ormcache stats" not in page.content()
    context.close()


def test_debug_toolbar_panel(staff, server):
    home = staff.context.request.get(f"{server}/").text()
    pk = re.findall(r"/post/(\d+)/", home)[0]
    staff.goto(f"{server}/post/{pk}/")
    if staff.locator("#djShowToolBarButton").is_visible():
        staff.locator("#djShowToolBarButton").click()
    comment(staff.context.request, server, pk)  # so the comment reads are misses
    staff.goto(f"{server}/post/{pk}/")  # browsed before: its other reads are hits
    button = staff.locator("#djDebugPanelList li#djdt-OrmcachePanel a")
    subtitle = button.inner_text()
    assert "hit" in subtitle and "miss" in subtitle and "bypass" in subtitle
    button.click()
    panel = staff.locator("#OrmcachePanel")
    panel.locator(".ormcache-panel").wait_for()
    summary = panel.locator(".oc-summary").inner_text()
    assert re.search(r"\d+ reads? through ormcache", summary)
    assert re.search(r"Page cache:\s+bypass", summary)  # a logged-in page is never shared
    rows = panel.locator("tbody tr[class^=oc-row-]")
    assert rows.count() >= 3
    outcomes = set(panel.locator("tbody tr .oc-outcome").all_inner_texts())
    assert {"hit", "miss"} <= outcomes
    text = panel.inner_text()
    assert "blog_post" in text and "blog_comment" in text
    assert re.search(r"ormcache:v:default:blog_comment = [0-9a-f]{16} \(\d\d:\d\d:\d\d\)", text)
    staff.screenshot(path=str(SCREENSHOTS / "debug-toolbar-panel.png"))
