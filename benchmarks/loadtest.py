"""Load test: testproject under gunicorn on PostgreSQL + Redis; no response may fail or be stale.

    scripts/loadtest                        # throwaway PostgreSQL, then this (all scenarios)
    scripts/loadtest --duration 10          # shorter
    python benchmarks/loadtest.py --help    # against ORMCACHE_TEST_PG_* (a throwaway server!)

For each scenario this starts its own Redis (on a free loopback port, no persistence),
runs ``testproject`` under gunicorn (``--workers`` processes with ``--threads`` threads,
settings ``testproject.settings_loadtest``) and drives it over 127.0.0.1 for
``--duration`` seconds from ``--clients`` processes of ``--threads-per-client`` threads,
each on a keep-alive connection. The mix is read-heavy (``--write-ratio`` writes):

* reads: ``GET /lt/post/<id>/`` (views, Post.objects.get), ``GET /lt/count/<id>/``
  (comment count) and ``GET /lt/cprop/<id>/`` (the Post.comment_count cached_property);
  anonymous GETs, so the page cache may serve them too;
* writes: ``POST /lt/bump/<id>/`` (views + 1) and ``POST /lt/comment/<id>/`` (a comment).

Scenarios (``--scenarios``; the first three by default): ``on`` (ormcache on), ``off``
(``ORMCACHE["ENABLED"] = False``, the page cache follows), ``redis-kill`` (ormcache on;
Redis is SIGKILLed a third into the run and started again, empty, on the same port
``--redis-down`` seconds later), ``redis-pause`` (Redis is SIGSTOPped instead and then
continued: its entries survive the outage), and ``no-invalidation``, the negative
control: writes bump no version, and the scenario passes only if the checker reports
stale responses.

The checker: every request is logged with ``time.monotonic_ns()`` (one clock for every
process of the machine) taken before it was sent and after its response was read.
Views and comment counts only grow, so a read of (post, counter) is **stale** if it
returned less than the largest value of that counter that any response (a write's new
value, or another read) had returned before the read was sent. An **error** is any
transport failure, a status other than 200, or a body without the expected value.

Exit status: 0 if every scenario had 0 errors and 0 stale responses, 1 otherwise.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import pickle
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SETTINGS = "testproject.settings_loadtest"
HOST = "127.0.0.1"

# kind -> (method, path prefix, counter in the JSON body)
OPS = {
    "read_views": ("GET", "/lt/post/", "views"),
    "read_count": ("GET", "/lt/count/", "comments"),
    "read_cprop": ("GET", "/lt/cprop/", "comments"),
    "bump": ("POST", "/lt/bump/", "views"),
    "comment": ("POST", "/lt/comment/", "comments"),
}
READS = ["read_views", "read_count", "read_cprop"]
WRITES = ["bump", "comment"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        try:
            with socket.create_connection((HOST, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {HOST}:{port} after {timeout}s")


# --- servers ----------------------------------------------------------------------------


class Redis:
    """A throwaway redis-server we can SIGKILL and start again on the same port."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        log = open(self.workdir / "redis.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", HOST, "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", str(self.workdir)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_port(self.port, 10, self.proc)

    def commands(self) -> Counter:
        """Commands served since this server started (INFO commandstats)."""
        import redis

        stats = redis.Redis(host=HOST, port=self.port).info("commandstats")
        return Counter({name.removeprefix("cmdstat_"): v["calls"] for name, v in stats.items()})

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None


def django_env(redis_url: str, enabled: bool) -> dict[str, str]:
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = SETTINGS
    env["ORMCACHE_LOADTEST_REDIS_URL"] = redis_url
    env["ORMCACHE_LOADTEST_ENABLED"] = "1" if enabled else "0"
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _gunicorn_command() -> list[str]:
    command = [sys.executable, "-m", "gunicorn"]
    # gunicorn 25+ opens a control socket at a fixed path (~/.gunicorn/gunicorn.ctl),
    # which another gunicorn on the machine (the e2e tests) would fight over.
    help_text = subprocess.run([*command, "--help"], capture_output=True, text=True).stdout
    if "--no-control-socket" in help_text:
        command.append("--no-control-socket")
    return command


class Gunicorn:
    def __init__(self, args: argparse.Namespace, env: dict[str, str], logfile: Path) -> None:
        self.port = free_port()
        self.logfile = logfile
        self.proc = subprocess.Popen(
            [*_gunicorn_command(), "testproject.wsgi:application",
             "--bind", f"{HOST}:{self.port}", "--workers", str(args.workers),
             "--threads", str(args.threads), "--worker-class", "gthread",
             "--keep-alive", "30", "--timeout", "60", "--graceful-timeout", "5"],
            cwd=REPO_ROOT, env=env, stdout=open(logfile, "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def wait_ready(self) -> None:
        wait_port(self.port, 30, self.proc)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://{HOST}:{self.port}/lt/health/", timeout=5
                ) as r:
                    if r.status == 200:
                        return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --- the load ---------------------------------------------------------------------------

# One record per request: (kind, post id, send ns, receive ns, value or None, error or "",
# X-Ormcache header or "")
Record = tuple


def client_process(
    port: int, post_ids: list[int], threads: int, start_ns: int, end_ns: int,
    write_ratio: float, seed: int, out: str,
) -> None:  # fmt: skip
    import threading

    records: list[Record] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        conn = http.client.HTTPConnection(HOST, port, timeout=10)
        mine: list[Record] = []
        while time.monotonic_ns() < start_ns:
            time.sleep(0.001)
        while time.monotonic_ns() < end_ns:
            kind = rng.choice(WRITES) if rng.random() < write_ratio else rng.choice(READS)
            method, prefix, counter = OPS[kind]
            pk = rng.choice(post_ids)
            value = None
            error = ""
            page = ""
            sent = time.monotonic_ns()
            try:
                conn.request(method, f"{prefix}{pk}/", body=b"" if method == "POST" else None)
                response = conn.getresponse()
                body = response.read()
                received = time.monotonic_ns()
                page = response.getheader("X-Ormcache", "") or ""
                if response.status != 200:
                    error = f"HTTP {response.status}"
                else:
                    value = json.loads(body)[counter]
                    if not isinstance(value, int):
                        error, value = f"bad body {body[:80]!r}", None
            except Exception as exc:
                received = time.monotonic_ns()
                error = f"{type(exc).__name__}: {exc}"
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=10)
            mine.append((kind, pk, sent, received, value, error, page))
        conn.close()
        with lock:
            records.extend(mine)

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    with open(out, "wb") as f:
        pickle.dump(records, f)


# --- the checker ------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    requests: int = 0
    reads: int = 0
    writes: int = 0
    errors: int = 0
    stale: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    rps: float = 0.0
    page_hits: float = 0.0
    error_samples: list[str] = field(default_factory=list)
    stale_samples: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    expect_stale: bool = False
    redis_per_request: float | None = None

    @property
    def ok(self) -> bool:
        if self.expect_stale:  # the negative control: the checker must catch it
            return self.requests > 0 and self.errors == 0 and self.stale > 0
        return self.requests > 0 and self.errors == 0 and self.stale == 0


def check(name: str, records: list[Record], seconds: float, t0: int) -> Result:
    measured = [r for r in records if r[2] >= t0]
    result = Result(name, requests=len(measured))
    errors = [r for r in records if r[5]]
    result.errors = len(errors)
    result.error_samples = [
        f"{r[0]} post {r[1]} at +{(r[2] - t0) / 1e9:.3f}s: {r[5]}" for r in errors[:5]
    ]
    result.writes = sum(1 for r in measured if r[0] in WRITES)
    result.reads = result.requests - result.writes

    latencies = sorted(r[3] - r[2] for r in measured)
    if latencies:
        result.p50_ms = latencies[len(latencies) // 2] / 1e6
        result.p99_ms = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] / 1e6
    result.rps = len(measured) / seconds
    gets = [r for r in measured if r[0] in READS and r[6]]
    if gets:
        result.page_hits = sum(1 for r in gets if r[6].startswith("hit")) / len(gets)

    # Every successful response is a lower bound for what any request sent after it was
    # received may return, per (post, counter).
    ok = [r for r in records if not r[5]]
    counter_of = {kind: OPS[kind][2] for kind in OPS}
    # Receive events (order 0) before send events (order 1) at equal times: a response
    # read before the request was sent bounds it; one at the same nanosecond, too.
    timeline = []
    for i, r in enumerate(ok):
        key = (r[1], counter_of[r[0]])
        timeline.append((r[3], 0, i, key))
        if r[0] in READS:
            timeline.append((r[2], 1, i, key))
    timeline.sort(key=lambda e: (e[0], e[1]))
    best: dict[tuple, tuple[int, int]] = {}  # key -> (value, index of the response)
    stale = []
    for _when, order, i, key in timeline:
        r = ok[i]
        if order == 0:
            if r[4] > best.get(key, (-1, -1))[0]:
                best[key] = (r[4], i)
        else:
            bound, j = best.get(key, (-1, -1))
            if r[4] < bound:
                stale.append((r, bound, ok[j]))
    result.stale = len(stale)
    for r, bound, by in stale[:5]:
        result.stale_samples.append(
            f"{r[0]} post {r[1]} sent +{(r[2] - t0) / 1e9:.3f}s returned {r[4]} "
            f"(X-Ormcache: {r[6] or '-'}), but {by[0]} received +{(by[3] - t0) / 1e9:.3f}s "
            f"had returned {bound}"
        )
    return result


# --- scenarios --------------------------------------------------------------------------


def run_scenario(
    args: argparse.Namespace,
    name: str,
    enabled: bool,
    fault: str | None,
    broken: bool,
    workdir: Path,
) -> Result:
    redis = Redis(args.redis_server, workdir / f"redis-{name}")
    redis.start()
    gunicorn = None
    try:
        env = django_env(redis.url, enabled)
        if broken:
            env["ORMCACHE_LOADTEST_BREAK_INVALIDATION"] = "1"
        gunicorn = Gunicorn(args, env, workdir / f"gunicorn-{name}.log")
        gunicorn.wait_ready()
        req = urllib.request.Request(
            f"http://{HOST}:{gunicorn.port}/lt/seed/{args.posts}/", data=b"", method="POST"
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            post_ids = json.loads(r.read())["ids"]

        # The clients start --warmup seconds before start_ns; those requests are checked
        # like the others but left out of the latency and throughput figures.
        warm_ns = time.monotonic_ns() + 500_000_000
        start_ns = warm_ns + int(args.warmup * 1e9)
        commands_before = redis.commands()
        end_ns = start_ns + int(args.duration * 1e9)
        procs, outs = [], []
        for c in range(args.clients):
            out = str(workdir / f"records-{name}-{c}.pickle")
            outs.append(out)
            p = multiprocessing.Process(
                target=client_process,
                args=(gunicorn.port, post_ids, args.threads_per_client, warm_ns, end_ns,
                      args.write_ratio, args.seed + c, out),
            )  # fmt: skip
            p.start()
            procs.append(p)

        notes = []
        if fault:
            fault_at = start_ns + int(args.duration * 1e9 / 3)
            time.sleep(max(0, (fault_at - time.monotonic_ns()) / 1e9))
            if fault == "kill":
                redis.kill()
            else:
                redis.proc.send_signal(signal.SIGSTOP)
            down = time.monotonic_ns()
            time.sleep(args.redis_down)
            if fault == "kill":
                redis.start()
            else:
                redis.proc.send_signal(signal.SIGCONT)
            back = time.monotonic_ns()
            what = (
                ("SIGKILLed", "listening again", "same port, empty")
                if fault == "kill"
                else ("paused (SIGSTOP)", "resumed (SIGCONT)", "entries kept")
            )
            notes.append(
                f"Redis {what[0]} at +{(down - start_ns) / 1e9:.1f}s, "
                f"{what[1]} at +{(back - start_ns) / 1e9:.1f}s ({what[2]})"
            )

        for p in procs:
            p.join(args.duration + 60)
            if p.is_alive():
                p.kill()
                raise RuntimeError("a load client did not finish")
            if p.exitcode != 0:
                raise RuntimeError(f"a load client failed (exit {p.exitcode})")
        records: list[Record] = []
        for out in outs:
            with open(out, "rb") as f:
                records.extend(pickle.load(f))
        result = check(name, records, args.duration, start_ns)
        commands = redis.commands()
        if fault != "kill":  # a restarted server counts from zero
            commands -= commands_before
            total = sum(commands.values())
            result.redis_per_request = total / max(1, len(records))
            top = ", ".join(
                f"{c} {n / max(1, len(records)):.1f}" for c, n in commands.most_common(5)
            )
            result.notes.append(f"Redis commands per request: {top}")
        result.expect_stale = broken
        result.notes = notes + result.notes
        warnings = gunicorn_warnings(gunicorn.logfile)
        if warnings:
            result.notes.append(f"gunicorn log: {warnings}")
        return result
    finally:
        if gunicorn is not None:
            gunicorn.stop()
        redis.stop()


def gunicorn_warnings(logfile: Path) -> str:
    text = logfile.read_text(errors="replace")
    counts = Counter()
    for line in text.splitlines():
        if "Traceback" in line:
            counts["tracebacks"] += 1
        elif "ormcache:" in line:
            counts[line.split("ormcache:", 1)[1].strip()[:60]] += 1
        elif "WORKER TIMEOUT" in line:
            counts["worker timeouts"] += 1
    return "; ".join(f"{n}x {what}" for what, n in counts.most_common(4))


def migrate(args: argparse.Namespace, workdir: Path) -> None:
    redis = Redis(args.redis_server, workdir / "redis-migrate")
    redis.start()
    try:
        subprocess.run(
            [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
            cwd=REPO_ROOT, env=django_env(redis.url, True), check=True,
        )  # fmt: skip
    finally:
        redis.stop()


# name -> (ormcache enabled, what happens to Redis mid-run, invalidation switched off)
SCENARIOS = {
    "on": (True, None, False),
    "off": (False, None, False),
    "redis-kill": (True, "kill", False),
    # Not run by default: Redis is paused (SIGSTOP) instead, so its entries survive the
    # outage while bumps are lost (docs/operations.md, "When bumps are lost").
    "redis-pause": (True, "pause", False),
    # The negative control (not run by default): writes bump no versions, so the
    # checker must report stale responses; the scenario passes only if it does.
    "no-invalidation": (True, None, True),
}


def print_summary(results: list[Result], args: argparse.Namespace) -> None:
    print()
    print(
        f"ormcache load test: gunicorn {args.workers} workers x {args.threads} threads, "
        f"{args.clients} x {args.threads_per_client} client threads, {args.posts} posts, "
        f"{args.write_ratio:.0%} writes, {args.duration:g}s per scenario"
    )
    head = (
        f"{'scenario':<15} {'requests':>9} {'reads':>8} {'writes':>7} {'errors':>7} "
        f"{'stale':>6} {'p50 ms':>7} {'p99 ms':>7} {'req/s':>7} {'page hits':>9} "
        f"{'redis/req':>9}  result"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        print(
            f"{r.name:<15} {r.requests:>9} {r.reads:>8} {r.writes:>7} {r.errors:>7} "
            f"{r.stale:>6} {r.p50_ms:>7.2f} {r.p99_ms:>7.2f} {r.rps:>7.0f} "
            f"{r.page_hits:>9.0%} "
            f"{'-' if r.redis_per_request is None else f'{r.redis_per_request:.1f}':>9}  "
            f"{'ok' if r.ok else 'FAILED'}"
        )
    for r in results:
        for line in r.notes:
            print(f"  {r.name}: {line}")
        for line in r.error_samples:
            print(f"  {r.name}: error: {line}")
        for line in r.stale_samples:
            print(f"  {r.name}: STALE: {line}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=25, help="seconds of load per scenario")
    parser.add_argument(
        "--warmup", type=float, default=2, help="seconds of load before the measured run"
    )
    parser.add_argument("--scenarios", default="on,off,redis-kill", help="comma-separated")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--clients", type=int, default=2, help="load generator processes")
    parser.add_argument("--threads-per-client", type=int, default=8)
    parser.add_argument("--posts", type=int, default=20, help="posts the load touches")
    parser.add_argument("--write-ratio", type=float, default=0.1)
    parser.add_argument("--redis-down", type=float, default=4, help="seconds Redis stays dead")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--redis-server",
        default=os.environ.get("ORMCACHE_REDIS_SERVER") or shutil.which("redis-server"),
    )
    parser.add_argument("--keep", action="store_true", help="keep the logs' temp dir")
    args = parser.parse_args()
    if not args.redis_server:
        parser.error("redis-server not found (--redis-server)")
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    for n in names:
        if n not in SCENARIOS:
            parser.error(f"unknown scenario {n!r} (choose from {', '.join(SCENARIOS)})")

    # SIGTERM (the script's trap) must still stop our gunicorn and Redis: finally blocks.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="ormcache-loadtest."))
    results: list[Result] = []
    try:
        migrate(args, workdir)
        for n in names:
            enabled, fault, broken = SCENARIOS[n]
            print(f"==> scenario {n}: {args.duration:g}s", file=sys.stderr, flush=True)
            results.append(run_scenario(args, n, enabled, fault, broken, workdir))
        print_summary(results, args)
    finally:
        if args.keep:
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    ok = bool(results) and all(r.ok for r in results)
    if not ok:
        print("FAILED", flush=True)
    elif any(r.expect_stale for r in results):
        print("PASSED: no errors; the negative control's stale responses were caught")
    else:
        print("PASSED: no errors, no stale responses", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
