"""Requests per second for one page of the demo blog: page cache hit vs uncached.

    python benchmarks/pages.py                      # "/" for 10 s per row, wrk if installed
    python benchmarks/pages.py --repeat 3           # median of 3 interleaved rounds
    python benchmarks/pages.py --path /post/1/ --duration 5 --connections 8
    python benchmarks/pages.py --redis redis://127.0.0.1:6379/3 --workers 2

A real server process (gunicorn; ``manage.py runserver --noreload`` if gunicorn is
missing) serves ``testproject`` on a loopback port, from a throwaway SQLite
database seeded by ``seed_blog``, with DEBUG off. A real HTTP client in another
process loads it for a fixed time: ``wrk`` (``apt-get install wrk``) when
installed, else a small keep-alive load generator in Python (``--client python``),
which is slower than wrk and so understates the fastest rows. Each row starts its
own server:

- plain Django: ormcache off (``ORMCACHE["ENABLED"] = False``), no page cache;
- query cache only: ormcache's query cache, no page cache middleware;
- page cache: the middleware; after the warm-up every request is a hit.

The default cache is Django's local-memory cache, shared by one gunicorn worker;
``--redis URL`` uses Redis instead (the database in the URL is flushed), which is
what several ``--workers`` need. Every request, warm-up aside, is checked to
carry the expected ``X-Ormcache`` header before the timed run.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

ROWS = [
    # name, ORM cache on, page cache on, expected X-Ormcache of a warmed request
    ("plain Django", False, False, None),
    ("query cache only", True, False, None),
    ("page cache (hit)", True, True, "hit"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", default="/", help="the page to load (default: /)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per row")
    parser.add_argument("--connections", type=int, default=4, help="concurrent connections")
    parser.add_argument("--workers", type=int, default=1, help="gunicorn workers")
    parser.add_argument("--redis", help="use this Redis URL as the cache (it is flushed)")
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of all rows; the table shows medians"
    )
    args = parser.parse_args()
    if args.workers > 1 and not args.redis:
        parser.error("--workers > 1 needs --redis: the local-memory cache is per process")
    if not 1 <= args.duration <= 120:
        parser.error("--duration must be between 1 and 120 seconds")
    if not 1 <= args.repeat <= 10:
        parser.error("--repeat must be between 1 and 10")
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"
    if client == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not installed (apt-get install wrk)")

    with tempfile.TemporaryDirectory(prefix="ormcache-bench-pages-") as tmp:
        env = _environment(Path(tmp), args.redis)
        _prepare_database(env)
        rounds: dict[str, list[dict]] = {name: [] for name, *_ in ROWS}
        for _ in range(args.repeat):  # rows interleaved, so load from elsewhere hits all alike
            for name, orm_cache, page_cache, expected in ROWS:
                row_env = {
                    **env,
                    "ORMCACHE_DEMO_ORM_CACHE": "1" if orm_cache else "0",
                    "ORMCACHE_DEMO_PAGE_CACHE": "1" if page_cache else "0",
                }
                if args.redis:
                    _flush_redis(args.redis)
                with _server(row_env, args.workers) as base:
                    _warm_up(base, args.path, expected)
                    measured = _load(client, base, args.path, args.duration, args.connections)
                rounds[name].append(measured)
                print(f"  {name:<18} {measured['rps']:>10,.0f} req/s", file=sys.stderr)
    results = [(name, _median(measured)) for name, measured in rounds.items()]
    _report(args, client, results)


def _median(measured: list[dict]) -> dict:
    return {
        "rps": statistics.median(m["rps"] for m in measured),
        "p50": statistics.median(m["p50"] for m in measured),
        "p99": statistics.median(m["p99"] for m in measured),
        "errors": sum(m["errors"] for m in measured),
        "note": "; ".join(m["note"] for m in measured if m["note"]),
    }


def _environment(tmp: Path, redis_url: str | None) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "testproject.settings",
        "ORMCACHE_DEMO_DB": str(tmp / "db.sqlite3"),
        "ORMCACHE_DEMO_DEBUG": "0",
        "PYTHONPATH": str(ROOT),
    }
    if redis_url:
        env["ORMCACHE_DEMO_REDIS_URL"] = redis_url
    return env


def _prepare_database(env: dict[str, str]) -> None:
    manage = [sys.executable, str(ROOT / "testproject" / "manage.py")]
    for command in (["migrate", "--noinput", "-v", "0"], ["seed_blog"]):
        subprocess.run(
            [*manage, *command], env=env, cwd=ROOT, check=True, timeout=300, stdout=sys.stderr
        )


def _flush_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


class _server:
    """gunicorn (or runserver) on a free loopback port, stopped by its pid on exit."""

    def __init__(self, env: dict[str, str], workers: int) -> None:
        self.env, self.workers = env, workers

    def __enter__(self) -> str:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        try:
            import gunicorn  # noqa: F401

            command = [
                sys.executable, "-m", "gunicorn", "testproject.wsgi:application",
                "--bind", f"127.0.0.1:{port}", "--workers", str(self.workers),
                "--timeout", "60", "--graceful-timeout", "5", "--log-level", "warning",
            ]  # fmt: skip
        except ImportError:
            command = [
                sys.executable, str(ROOT / "testproject" / "manage.py"),
                "runserver", "--noreload", f"127.0.0.1:{port}",
            ]  # fmt: skip
        self.log = tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen(
            command, env=self.env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                self.log.seek(0)
                sys.exit(f"the server exited:\n{self.log.read()[-2000:]}")
            try:
                _get(base, "/")
                return base
            except OSError:
                if time.monotonic() > deadline:
                    self.__exit__()
                    sys.exit("the server did not answer within 30 s")
                time.sleep(0.2)

    def __exit__(self, *exc_info: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.log.close()


def _get(base: str, path: str) -> tuple[int, str | None]:
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("X-Ormcache")
    finally:
        connection.close()


def _warm_up(base: str, path: str, expected: str | None) -> None:
    for _ in range(20):
        _get(base, path)
    for _ in range(5):
        status, outcome = _get(base, path)
        if status != 200 or outcome != expected:
            sys.exit(f"{path} answered {status} with X-Ormcache {outcome!r}, expected {expected!r}")


def _load(client: str, base: str, path: str, duration: int, connections: int) -> dict:
    if client == "wrk":
        return _wrk(base, path, duration, connections)
    return _python_load(base, path, duration, connections)


def _wrk(base: str, path: str, duration: int, connections: int) -> dict:
    threads = max(1, min(connections, 2))
    output = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", base + path],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 30,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    return {
        "rps": rps,
        "p50": _wrk_ms(re.search(r"50%\s+([\d.]+\w+)", output)[1]),
        "p99": _wrk_ms(re.search(r"99%\s+([\d.]+\w+)", output)[1]),
        "errors": int(errors[1]) if errors else 0,
        "note": socket_errors[1] if socket_errors else "",
    }


def _wrk_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(\w+)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


_PYTHON_CLIENT = r"""
import http.client, sys, threading, time

host, port, path, duration, connections = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
latencies, errors = [], [0]
stop_at = time.monotonic() + duration

def worker():
    connection = http.client.HTTPConnection(host, port, timeout=10)
    mine = []
    while time.monotonic() < stop_at:
        started = time.perf_counter()
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                errors[0] += 1
        except OSError:
            errors[0] += 1
            connection.close()
            connection = http.client.HTTPConnection(host, port, timeout=10)
            continue
        mine.append(time.perf_counter() - started)
    latencies.extend(mine)

threads = [threading.Thread(target=worker) for _ in range(connections)]
begun = time.monotonic()
for thread in threads: thread.start()
for thread in threads: thread.join()
elapsed = time.monotonic() - begun
print(len(latencies), elapsed, errors[0])
for value in latencies: print(value)
"""


def _python_load(base: str, path: str, duration: int, connections: int) -> dict:
    host, port = base.removeprefix("http://").split(":")
    output = subprocess.run(
        [sys.executable, "-c", _PYTHON_CLIENT, host, port, path, str(duration), str(connections)],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 60,
    ).stdout.split()
    count, elapsed, errors = int(output[0]), float(output[1]), int(output[2])
    latencies = sorted(float(value) * 1000 for value in output[3:])
    return {
        "rps": count / elapsed,
        "p50": statistics.median(latencies),
        "p99": latencies[int(len(latencies) * 0.99) - 1],
        "errors": errors,
        "note": "",
    }


def _report(args: argparse.Namespace, client: str, results: list[tuple[str, dict]]) -> None:
    cache = f"Redis ({args.redis})" if args.redis else "local memory"
    server = "gunicorn" if _has_gunicorn() else "runserver"
    print(
        f"\nGET {args.path} of the demo blog: {server}, {args.workers} worker(s), SQLite, "
        f"cache {cache}; {client}, {args.connections} connections, {args.duration} s per row"
        + (f", median of {args.repeat} rounds" if args.repeat > 1 else "")
        + f"; load average {os.getloadavg()[0]:.1f}\n"
    )
    baseline = results[0][1]["rps"]
    print(f"| {'setup':<18} | {'req/s':>9} | {'vs plain':>8} | {'p50 ms':>7} | {'p99 ms':>7} |")
    print(f"| {'-' * 18} | {'-' * 9}:| {'-' * 8}:| {'-' * 7}:| {'-' * 7}:|")
    for name, measured in results:
        print(
            f"| {name:<18} | {measured['rps']:>9,.0f} | {measured['rps'] / baseline:>7.1f}x "
            f"| {measured['p50']:>7.2f} | {measured['p99']:>7.2f} |"
        )
        if measured["errors"] or measured["note"]:
            print(f"    ({name}: {measured['errors']} errors {measured['note']})")


def _has_gunicorn() -> bool:
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
