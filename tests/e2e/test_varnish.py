"""A real Varnish (Debian's varnishd, the xkey vmod, docs/recipes/varnish.vcl) in front of
testproject served by a real server process, sharing a real Redis with a second process
that writes: anonymous pages are served by Varnish, a write's purge makes the next request
fresh, and pages of a logged-in user, the admin and pages with a CSRF token never are.

Needs varnishd and a Redis (ORMCACHE_TEST_REDIS_URL, started by scripts/test); without
them the test is skipped, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.browser import MANAGE, ROOT, require
from tests.varnish_process import site_behind_varnish, varnishd_binary

REDIS_URL = os.environ.get("ORMCACHE_TEST_REDIS_URL")


@dataclass
class Stack:
    varnish: str  # what visitors talk to
    env: dict[str, str]  # the environment of testproject's processes
    post: str  # the path of a published post


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def fetch(url, *, opener=None, data=None):
    """(status, headers, body) of a request, following no redirect unless ``opener`` does."""
    opener = opener or urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, data=data), timeout=10) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require(varnishd_binary() is not None, "varnishd not found (apt-get install varnish)")
    require(bool(REDIS_URL), "no Redis (ORMCACHE_TEST_REDIS_URL; scripts/test starts one)")
    tmp: Path = tmp_path_factory.mktemp("varnish")
    with site_behind_varnish(tmp, REDIS_URL) as (varnish, env):
        _, _, home = fetch(varnish.url + "/")
        post = re.search(r'href="(/post/\d+/)"', home).group(1)
        yield Stack(varnish.url, env, post)


def cached_by_varnish(stack, path):
    """GET ``path`` until Varnish serves it from its cache (at most three times)."""
    for _ in range(3):
        status, headers, body = fetch(stack.varnish + path)
        assert status == 200, body[-500:]
        if headers["X-Varnish-Cache"] == "HIT":
            return body
    pytest.fail(f"Varnish never served {path} from its cache: {dict(headers)}")


def test_anonymous_pages_are_shared_by_varnish(stack):
    status, headers, _ = fetch(stack.varnish + stack.post)
    assert status == 200
    assert "public" in headers["Cache-Control"] and "s-maxage=" in headers["Cache-Control"]
    assert headers["ETag"]
    assert "xkey" not in headers  # the recipe keeps the keys for Varnish
    cached_by_varnish(stack, stack.post)


def test_a_write_in_another_process_purges_varnish(stack):
    cached_by_varnish(stack, stack.post)
    pk = int(stack.post.strip("/").split("/")[-1])
    subprocess.run(
        [*MANAGE, "shell", "-c",
         "from testproject.blog.models import Post\n"
         f"post = Post.objects.get(pk={pk})\n"
         "post.title = 'Renamed by another process'\n"
         "post.save()\n"],
        env=stack.env, cwd=ROOT, check=True, timeout=60, capture_output=True,
    )  # fmt: skip
    # The writer purged before it exited: the very next request is fresh.
    status, headers, body = fetch(stack.varnish + stack.post)
    assert status == 200
    assert headers["X-Varnish-Cache"] == "MISS"
    assert "Renamed by another process" in body
    assert "Renamed by another process" in cached_by_varnish(stack, stack.post)


def test_a_write_through_the_site_purges_varnish(stack):
    cached_by_varnish(stack, stack.post)
    visitor = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    status, headers, form = fetch(stack.varnish + stack.post + "comment/", opener=visitor)
    assert status == 200
    assert headers["X-Varnish-Cache"] == "MISS"
    assert "private" in headers["Cache-Control"]  # the form has a CSRF token
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
    text = f"Seen through Varnish {time.time_ns()}"
    data = urllib.parse.urlencode(
        {"csrfmiddlewaretoken": token, "author_name": "Ada", "body": text}
    ).encode()
    status, _, _ = fetch(stack.varnish + stack.post + "comment/", opener=visitor, data=data)
    assert status == 200  # the redirect to the post, followed
    # The site's purge is sent after the request, from its purge thread: allow it a moment.
    deadline = time.monotonic() + 5
    while True:
        status, headers, body = fetch(stack.varnish + stack.post)
        if text in body:
            break
        assert time.monotonic() < deadline, "Varnish kept the page without the new comment"
        time.sleep(0.02)
    assert headers["X-Varnish-Cache"] == "MISS"


def login_as_admin(stack):
    jar = http.cookiejar.CookieJar()
    admin = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    _, _, page = fetch(stack.varnish + "/admin/login/", opener=admin)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    data = urllib.parse.urlencode(
        {"csrfmiddlewaretoken": token, "username": "admin", "password": "admin", "next": "/admin/"}
    ).encode()
    status, _, body = fetch(stack.varnish + "/admin/login/", opener=admin, data=data)
    assert status == 200 and "Log out" in body, body[-500:]
    assert any(cookie.name == "sessionid" for cookie in jar)
    return admin


@pytest.mark.parametrize("path", ["/dashboard/", "/admin/", "/admin/blog/post/"])
def test_logged_in_and_admin_pages_are_never_stored(stack, path):
    admin = login_as_admin(stack)
    for _ in range(2):
        status, headers, body = fetch(stack.varnish + path, opener=admin)
        assert status == 200, body[-500:]
        assert headers["X-Varnish-Cache"] == "MISS"
        assert "private" in headers["Cache-Control"]
        assert "public" not in headers["Cache-Control"]
    # Without the session, the same URL is not the admin's page.
    status, _, body = fetch(stack.varnish + path)
    assert status == 302
    assert "admin" not in body.lower() or "log in" in body.lower()


def test_a_page_with_a_csrf_token_is_never_shared(stack):
    """No cookie makes Varnish pass this one: only the headers keep it out of the cache."""
    first = fetch(stack.varnish + "/login/")
    second = fetch(stack.varnish + "/login/")
    for status, headers, _ in (first, second):
        assert status == 200
        assert headers["X-Varnish-Cache"] == "MISS"
        assert "csrftoken=" in headers["Set-Cookie"]
        assert "private" in headers["Cache-Control"]
