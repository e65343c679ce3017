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

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("ORMCACHE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IN_CI = os.environ.get("CI", "").lower() == "true"
TIMEOUT_MS = 20_000


def _require(ok: bool, why: str) -> None:
    if not ok:
        if IN_CI:
            pytest.fail(f"{why} (CI=true: the browser test must run)")
        pytest.skip(why)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """testproject under gunicorn on a free loopback port; yields its base URL."""
    _require(Path(CHROMIUM).exists(), f"{CHROMIUM} not found (apt-get install chromium)")
    for module in ("playwright", "gunicorn"):
        try:
            __import__(module)
        except ImportError:
            _require(False, f"{module} is not installed (pip install -e '.[test]')")
    tmp = tmp_path_factory.mktemp("e2e")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "testproject.settings",
        "ORMCACHE_DEMO_DB": str(tmp / "db.sqlite3"),
        "ORMCACHE_DEMO_DEBUG": "0",
        "PYTHONPATH": str(ROOT),
    }
    manage = [sys.executable, str(ROOT / "testproject" / "manage.py")]
    for command in (["migrate", "--noinput", "-v", "0"], ["seed_blog", "--with-admin"]):
        subprocess.run([*manage, *command], env=env, cwd=ROOT, check=True, timeout=120)
    port = _free_port()
    log = open(tmp / "gunicorn.log", "w+")  # noqa: SIM115  (closed below)
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
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                log.seek(0)
                pytest.fail(f"gunicorn exited:\n{log.read()[-3000:]}")
            try:
                with urlopen(f"{base}/login/", timeout=5) as response:
                    if response.status == 200:
                        break
            except (URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail("gunicorn did not answer within 30 s")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=TIMEOUT_MS
        )
        try:
            yield chromium
        finally:
            chromium.close()


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
