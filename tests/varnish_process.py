"""A real Varnish (Debian's ``varnishd`` with the xkey vmod) on a free loopback port, running
the recipe from the docs (docs/recipes/varnish.vcl) in front of a given backend port, and
``site_behind_varnish``: testproject served by a real server process behind it.

Used by tests/e2e/test_varnish.py and benchmarks/purge_latency.py. Without ``varnishd``
the caller decides (the test skips, or fails under CI=true); ``ORMCACHE_VARNISHD``
overrides the binary.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

RECIPE = Path(__file__).resolve().parents[1] / "docs" / "recipes" / "varnish.vcl"


def varnishd_binary() -> str | None:
    configured = os.environ.get("ORMCACHE_VARNISHD")
    if configured:
        return configured
    return shutil.which("varnishd") or next(
        (p for p in ("/usr/sbin/varnishd", "/usr/local/sbin/varnishd") if Path(p).exists()), None
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class VarnishProcess:
    """``varnishd -F`` in the foreground, its own work dir, no management port."""

    def __init__(self, backend_port: int, vcl: Path = RECIPE) -> None:
        binary = varnishd_binary()
        if binary is None:
            raise FileNotFoundError("varnishd not found (apt-get install varnish varnish-modules)")
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="ormcache-varnish-"))
        text = re.sub(r'\.port = "\d+";', f'.port = "{backend_port}";', vcl.read_text(), count=1)
        vcl_path = self.dir / "default.vcl"
        vcl_path.write_text(text)
        self.log_path = self.dir / "varnishd.log"
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [binary, "-F", "-j", "none", "-n", str(self.dir / "work"),
                 "-a", f"127.0.0.1:{self.port}", "-T", "none", "-f", str(vcl_path),
                 "-s", "malloc,32m", "-p", "default_ttl=120"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self._wait_ready()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"varnishd exited:\n{self.log_path.read_text()[-3000:]}")
            request = urllib.request.Request(self.url + "/", method="PURGE")
            try:
                with urllib.request.urlopen(request, timeout=2):
                    pass
            except urllib.error.HTTPError:
                return  # 400 "No xkey-purge header": the VCL is loaded
            except OSError:
                time.sleep(0.1)
                continue
            return
        self.close()
        raise RuntimeError("varnishd did not answer within 30 s")

    def close(self) -> None:
        from tests.e2e.browser import stop

        stop(self.process)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def site_behind_varnish(tmp: Path, redis_url: str) -> Iterator[tuple[VarnishProcess, dict]]:
    """testproject under ``runserver`` on a fresh database in ``tmp``, Varnish in front,
    both sharing the Redis at ``redis_url`` (flushed first: no pages or versions of another
    run). Yields the Varnish and the environment for more testproject processes."""
    import redis

    from tests.e2e.browser import demo_env, demo_server, free_port

    redis.Redis.from_url(redis_url).flushdb()
    server_port = free_port()
    varnish = VarnishProcess(server_port)
    env = {
        "ORMCACHE_DEMO_DEBUG": "0",
        "ORMCACHE_DEMO_TOOLBAR": "0",
        "ORMCACHE_DEMO_REDIS_URL": redis_url,
        "ORMCACHE_DEMO_PURGE_URL": varnish.url + "/",
    }
    try:
        with demo_server(tmp, env=env, port=server_port):
            yield varnish, demo_env(tmp, env)
    finally:
        varnish.close()
