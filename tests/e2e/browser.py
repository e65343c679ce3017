"""Shared by the browser tests: Debian's chromium under Playwright, and testproject served
on a free loopback port with a throwaway, seeded SQLite database.

Playwright's own browser download is never used (no ``playwright install``): the tests
launch ``/usr/bin/chromium`` (``apt-get install chromium``; ``ORMCACHE_CHROMIUM``
overrides the path). Without it, or without the ``playwright`` package, a browser test
is skipped, except under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
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


def require(ok: bool, why: str) -> None:
    """Skip (or, under CI=true, fail) when something the browser test needs is missing."""
    if not ok:
        if IN_CI:
            pytest.fail(f"{why} (CI=true: the browser test must run)")
        pytest.skip(why)


def require_browser() -> None:
    require(Path(CHROMIUM).exists(), f"{CHROMIUM} not found (apt-get install chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        require(False, "playwright is not installed (pip install -e '.[test]')")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def launch_chromium() -> Iterator[object]:
    """A headless Debian chromium driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=TIMEOUT_MS
        )
        try:
            yield browser
        finally:
            browser.close()


MANAGE = [sys.executable, str(ROOT / "testproject" / "manage.py")]


def demo_env(tmp: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of testproject on the database in ``tmp`` (server and commands)."""
    return {
        **{k: v for k, v in os.environ.items() if k != "PYTEST_VERSION"},
        "DJANGO_SETTINGS_MODULE": "testproject.settings",
        "ORMCACHE_DEMO_DB": str(tmp / "db.sqlite3"),
        "PYTHONPATH": str(ROOT),
        **(env or {}),
    }


@contextlib.contextmanager
def demo_server(
    tmp: Path, *, env: dict[str, str] | None = None, port: int | None = None
) -> Iterator[str]:
    """testproject under ``runserver`` (which also serves static files when DEBUG is on),
    on a fresh database seeded by ``seed_blog --with-admin`` (admin / admin), on ``port``
    (default: a free one). Yields the base URL; stops the server on exit."""
    full_env = demo_env(tmp, env)
    for command in (["migrate", "--noinput", "-v", "0"], ["seed_blog", "--with-admin"]):
        subprocess.run(
            [*MANAGE, *command], env=full_env, cwd=ROOT, check=True, timeout=120,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
    port = port or free_port()
    log_path = tmp / "server.log"
    with open(log_path, "w+") as log:
        process = subprocess.Popen(
            [*MANAGE, "runserver", f"127.0.0.1:{port}", "--noreload"],
            env=full_env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(base, process, log)
            yield base
        finally:
            stop(process)


def wait_for(
    base: str, process: subprocess.Popen, log, *, path: str = "/admin/login/", within: float = 60
) -> None:
    """Until ``base + path`` answers 200; fail with the log if the server exits first."""
    deadline = time.monotonic() + within
    while True:
        if process.poll() is not None:
            log.seek(0)
            pytest.fail(f"the server exited:\n{log.read()[-3000:]}")
        try:
            with urlopen(f"{base}{path}", timeout=5) as response:
                if response.status == 200:
                    return
        except (URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"the server did not answer within {within:g} s")
        time.sleep(0.2)


def stop(process: subprocess.Popen) -> None:
    """Terminate a server process, killing it if it does not exit within 10 s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
