"""End to end, in a real browser: testproject served by gunicorn, driven by headless Chromium.

One anonymous visitor gets cached pages; a second browser context logs in, sees
its own name and edits a post in the admin; the anonymous context never sees the
logged-in pages and sees the edit at once; no admin page ever comes from the
cache. The server is a real process (gunicorn, one worker with threads, so the
local-memory cache of the demo settings is shared by every request), on a
throwaway SQLite database seeded by ``seed_blog``.

Needs Debian's ``chromium`` (Playwright's own browser download is not used) and
the ``playwright`` and ``gunicorn`` packages of the ``test`` extra. Without them
the test is skipped, except under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.e2e.browser import (
    MANAGE,
    ROOT,
    TIMEOUT_MS,
    demo_env,
    free_port,
    launch_chromium,
    require,
    require_browser,
    stop,
    wait_for,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """testproject under gunicorn on a free loopback port; yields its base URL."""
    require_browser()
    try:
        __import__("gunicorn")
    except ImportError:
        require(False, "gunicorn is not installed (pip install -e '.[test]')")
    tmp = tmp_path_factory.mktemp("e2e")
    env = demo_env(tmp, {"ORMCACHE_DEMO_DEBUG": "0"})
    for command in (["migrate", "--noinput", "-v", "0"], ["seed_blog", "--with-admin"]):
        subprocess.run([*MANAGE, *command], env=env, cwd=ROOT, check=True, timeout=120)
    port = free_port()
    with open(tmp / "gunicorn.log", "w+") as log:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "testproject.wsgi:application",
                "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "4",
                "--timeout", "60", "--graceful-timeout", "5", "--access-logfile", "-",
            ],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(base, process, log, path="/login/", within=30)
            yield base
        finally:
            stop(process)


@pytest.fixture(scope="module")
def browser(server):
    with launch_chromium() as chromium:
        yield chromium


class Visitor:
    """One browser context (its own cookies), remembering the X-Ormcache of every page."""

    def __init__(self, browser, base):
        self.base = base
        self.context = browser.new_context()
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.seen: list[tuple[str, str | None]] = []
        self.page.on("response", self._record)

    def _record(self, response):
        if response.request.resource_type == "document":
            self.seen.append((response.url, response.headers.get("x-ormcache")))

    def open(self, path: str):
        response = self.page.goto(self.base + path)
        assert response is not None and response.ok, (path, response and response.status)
        return response.headers.get("x-ormcache")

    def text(self) -> str:
        return self.page.content()


def test_anonymous_cached_logged_in_private_admin_never_cached(server, browser):
    anonymous = Visitor(browser, server)
    member = Visitor(browser, server)
    try:
        # An anonymous visitor gets cached pages.
        assert anonymous.open("/") in ("miss", "hit")
        assert anonymous.open("/") == "hit"
        assert "Latest posts" in anonymous.text()
        post_path = re.search(r'href="(/post/\d+/)"', anonymous.text().split("Latest posts")[1])[1]
        anonymous.open(post_path)
        assert anonymous.open(post_path) == "hit"
        assert re.search(r"<h2>\d+ comments?</h2>", anonymous.text())

        # A second context logs in and sees its own name, never from the cache.
        member.open("/login/")
        member.page.fill("input[name=username]", "admin")
        member.page.fill("input[name=password]", "admin")
        with member.page.expect_navigation():
            member.page.click("button[type=submit]")
        assert member.page.url.endswith("/dashboard/")
        assert "Welcome, admin" in member.text()
        assert member.open("/") == "bypass (session of a logged-in user)"
        assert "Signed in as admin" in member.text()
        assert member.open(post_path) == "bypass (session of a logged-in user)"

        # The anonymous context still gets the shared page, without the member's name.
        assert anonymous.open("/") == "hit"
        for path in ("/", post_path):
            anonymous.open(path)
            assert "Signed in as" not in anonymous.text()
            assert "Welcome, admin" not in anonymous.text()

        # The admin: never from the cache, for the member or anyone.
        post_id = re.search(r"\d+", post_path)[0]
        for path in ("/admin/", "/admin/blog/post/", f"/admin/blog/post/{post_id}/change/"):
            for _ in range(2):
                assert member.open(path) == "bypass (admin)"
        assert anonymous.open("/admin/login/") == "bypass (admin)"
        assert anonymous.open("/admin/login/") == "bypass (admin)"

        # An edit in the admin shows at once on the cached public page.
        member.page.fill("input[name=title]", "Edited in the admin")
        with member.page.expect_navigation():
            member.page.click("input[name=_save]")
        assert anonymous.open(post_path) == "miss"
        assert "Edited in the admin" in anonymous.text()
        assert anonymous.open(post_path) == "hit"

        for visitor in (anonymous, member):
            for url, outcome in visitor.seen:
                if "/admin/" in url:  # "bypass (admin)", or "(method POST)" for the save
                    assert outcome and outcome.startswith("bypass ("), (url, outcome)
        assert all(outcome != "hit" for _, outcome in member.seen)
    finally:
        anonymous.context.close()
        member.context.close()
