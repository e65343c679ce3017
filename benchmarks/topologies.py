"""ormcache per Redis topology, in one run: hit latency, throughput and server cost.

    python benchmarks/topologies.py                    # prints the table (Markdown)
    python benchmarks/topologies.py --hits 5000 --seconds 5 --processes 2 --json out.json
    scripts/bench-scaling                              # this and notify_window.py, with servers

Topologies, each started from Debian's ``redis-server``/``redis-sentinel`` on free
loopback ports (``tests/redis_topologies.py``), measured one after the other:

- **single**: one Redis, django-redis ``DefaultClient``;
- **sentinel**: master + replica + 3 sentinels, ``ormcache.backends.redis_sentinel``;
- **cluster**: 3 masters, ``RedisClusterCache`` with version keys hash-tagged into one
  slot (the default), and **cluster-spread** with them spread over the slots.

**locmem** is the baseline: the same hit with Django's in-process cache (the ORM's
own cost: building the query and the instances).

For each: ``get`` is ``Post.objects.get(pk=...)`` (3 keys per hit: entry, global and
one table version); ``join`` is 20 comments with ``select_related("post__author")``
(5 keys: entry, global and three tables). Every measured read is checked to be a hit.

Columns: hit latency (median and p99 over ``--hits`` sequential hits, one process);
hits/s of ``--processes`` processes for ``--seconds`` (client-bound: on a small
machine this measures Python, not Redis); the Redis side per ``get`` hit: CPU
microseconds summed over the data nodes (``INFO cpu``: networking included), commands
and the microseconds spent inside them (``INFO commandstats``), which is what
docs/scaling.md sizes from; a bump of one table
(latency, and Redis CPU per bump, replication included).

The database is SQLite in a temp dir (hits never reach it).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ORMCACHE = {"CACHE": "bench", "TIMEOUT": 3600, "MODELS": {"blog.*": {"enabled": True}}}


def setup_django(databases: dict, caches: dict, ormcache: dict) -> None:
    """Django with the blog and ormcache on the given servers (shared with notify_window.py)."""
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench",
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "ormcache",
            "testproject.blog",
        ],
        DATABASES=databases,
        CACHES=caches,
        ORMCACHE=ormcache,
        SILENCED_SYSTEM_CHECKS=["ormcache.W001"],
    )
    django.setup()


def configure(db_path: str, cache: dict | None) -> None:
    locmem = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    setup_django(
        {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": db_path}},
        {"default": locmem, "bench": cache or locmem},
        ORMCACHE,
    )


def reads():
    from testproject.blog.models import Comment, Post

    first = Post.objects.order_by("pk").values_list("pk", flat=True)[:1]
    pk = first[0] if first else None
    return {
        "get": lambda: Post.objects.get(pk=pk),
        "join": lambda: list(Comment.objects.select_related("post__author").order_by("pk")[:20]),
    }


def seed() -> None:
    from testproject.blog.models import Author, Comment, Post

    author = Author.objects.create(name="Ann", email="ann@example.com")
    for n in range(20):
        post = Post.objects.create(
            author=author, title=f"Post {n}", slug=f"post-{n}", body="x" * 500
        )
        Comment.objects.create(post=post, author_name="Bob", body="nice " * 20)


# --- the topologies ---------------------------------------------------------------------


def start_topology(name: str):
    """(topology object with .close(), CACHES entry, data node ports)."""
    from tests import redis_topologies as rt

    timeouts = {"SOCKET_CONNECT_TIMEOUT": 0.25, "SOCKET_TIMEOUT": 0.25}
    if name == "locmem":  # the baseline: the same hit with no network (one process only)

        class Nothing:
            def close(self):
                pass

        return Nothing(), {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}, []
    if name == "single":
        port = rt.free_port()
        directory = tempfile.mkdtemp(prefix="ormcache-bench-redis-")
        server = rt.Server(rt._redis_argv(port, directory), port, directory, "redis")
        server.start()

        class Single:
            def close(self):
                server.kill()

        cache = {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": timeouts,
        }
        return Single(), cache, [port]
    if name == "sentinel":
        topology = rt.RedisSentinelTopology()
        cache = {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://{rt.SERVICE}/0",
            "OPTIONS": {
                "CLIENT_CLASS": "ormcache.backends.redis_sentinel.SentinelClient",
                "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
                "SENTINELS": topology.sentinel_addresses,
                **timeouts,
            },
        }
        return topology, cache, [server.port for server in topology.redis]
    topology = rt.RedisClusterTopology()
    cache = {
        "BACKEND": "ormcache.backends.redis_cluster.RedisClusterCache",
        "LOCATION": topology.location,
        "OPTIONS": {
            "socket_timeout": 0.25,
            "socket_connect_timeout": 0.25,
            "HASH_TAG_VERSIONS": name == "cluster",
        },
    }
    return topology, cache, [node.port for node in topology.nodes]


def server_counters(ports: list[int]) -> tuple[float, int, float]:
    """(CPU seconds, commands other than INFO, seconds inside those commands), summed
    over the data nodes."""
    from tests.redis_topologies import command

    cpu, calls, inside = 0.0, 0, 0.0
    for port in ports:
        for line in command(port, "INFO", "cpu").splitlines():
            if line.startswith(("used_cpu_sys:", "used_cpu_user:")):
                cpu += float(line.split(":")[1])
        for line in command(port, "INFO", "commandstats").splitlines():
            if line.startswith("cmdstat_") and not line.startswith("cmdstat_info:"):
                calls += int(line.split("calls=")[1].split(",")[0])
                inside += int(line.split("usec=")[1].split(",")[0]) / 1e6
    return cpu, calls, inside


# --- measuring ----------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def count_misses():
    from ormcache import signals

    misses = [0]

    def note(sender, **kwargs):
        misses[0] += 1

    signals.cache_miss.connect(note, weak=False)
    return misses


def hit_latencies(read, hits: int) -> list[float]:
    read()
    read()
    samples = []
    for _ in range(hits):
        started = time.perf_counter()
        read()
        samples.append(time.perf_counter() - started)
    return samples


def bump_latencies(count: int) -> list[float]:
    from ormcache import invalidation

    samples = []
    for _ in range(count):
        started = time.perf_counter()
        invalidation.bump_tables("default", frozenset({"blog_post"}))
        samples.append(time.perf_counter() - started)
    return samples


def worker(db_path: str, cache: dict, seconds: float, start_at: float, results) -> None:
    configure(db_path, cache)
    read = reads()["get"]
    misses = count_misses()
    read()
    read()
    misses[0] = 0
    time.sleep(max(0.0, start_at - time.time()))
    done, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        read()
        done += 1
    results.put((done, misses[0]))


def throughput(db_path: str, cache: dict, processes: int, seconds: float) -> float:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    start_at = time.time() + 3.0  # after every worker has set Django up
    workers = [
        context.Process(target=worker, args=(db_path, cache, seconds, start_at, results))
        for _ in range(processes)
    ]
    for each in workers:
        each.start()
    collected = [results.get(timeout=120) for _ in workers]
    for each in workers:
        each.join()
    if any(misses for _, misses in collected):
        raise RuntimeError(f"throughput run missed: {collected}")
    return sum(done for done, _ in collected) / seconds


def measure(name: str, db_path: str, args) -> dict:
    from django.test.utils import override_settings

    from ormcache import health

    topology, cache, ports = start_topology(name)
    try:
        with override_settings(CACHES={"bench": cache, "default": cache}):
            health.reset()
            found = reads()
            misses = count_misses()
            row: dict = {"topology": name}
            for kind, read in found.items():
                read()
                misses[0] = 0
                if kind == "get":
                    before = server_counters(ports)
                samples = hit_latencies(read, args.hits)
                if kind == "get" and ports:
                    after = server_counters(ports)
                    row["redis_cpu_us_per_hit"] = (after[0] - before[0]) / (args.hits + 2) * 1e6
                    row["commands_per_hit"] = (after[1] - before[1]) / (args.hits + 2)
                    row["command_us_per_hit"] = (after[2] - before[2]) / (args.hits + 2) * 1e6
                if misses[0]:
                    raise RuntimeError(f"{name}/{kind}: {misses[0]} misses in the hit loop")
                row[f"{kind}_p50_us"] = statistics.median(samples) * 1e6
                row[f"{kind}_p99_us"] = percentile(samples, 0.99) * 1e6
            before = server_counters(ports)
            bumps = bump_latencies(args.bumps)
            after = server_counters(ports)
            row["bump_p50_us"] = statistics.median(bumps) * 1e6
            if ports:
                row["redis_cpu_us_per_bump"] = (after[0] - before[0]) / args.bumps * 1e6
            found["get"]()  # the entry again, for the workers
            if ports:
                row["hits_per_s"] = throughput(db_path, cache, args.processes, args.seconds)
            else:  # locmem does not cross processes: one process, sequential hits
                row["hits_per_s"] = 1 / statistics.mean(hit_latencies(found["get"], args.hits))
            return row
    finally:
        topology.close()


COLUMNS = [
    ("topology", "topology", "{}"),
    ("get_p50_us", "get hit p50 µs", "{:.0f}"),
    ("get_p99_us", "get hit p99 µs", "{:.0f}"),
    ("join_p50_us", "join hit p50 µs", "{:.0f}"),
    ("join_p99_us", "join hit p99 µs", "{:.0f}"),
    ("hits_per_s", "get hits/s", "{:,.0f}"),
    ("redis_cpu_us_per_hit", "Redis CPU µs/hit", "{:.1f}"),
    ("commands_per_hit", "commands/hit", "{:.2f}"),
    ("command_us_per_hit", "µs in commands/hit", "{:.1f}"),
    ("bump_p50_us", "bump p50 µs", "{:.0f}"),
    ("redis_cpu_us_per_bump", "Redis CPU µs/bump", "{:.1f}"),
]


def table(rows: list[dict]) -> str:
    header = "| " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    rule = "|" + "|".join(" --- " for _ in COLUMNS) + "|"
    lines = [header, rule]
    for row in rows:
        cells = [fmt.format(row[key]) if key in row else "-" for key, _, fmt in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hits", type=int, default=3000, help="sequential hits per read kind")
    parser.add_argument("--bumps", type=int, default=1000, help="bumps of one table")
    parser.add_argument("--seconds", type=float, default=4.0, help="throughput run length")
    parser.add_argument("--processes", type=int, default=2, help="throughput processes")
    parser.add_argument(
        "--topologies",
        default="locmem,single,sentinel,cluster,cluster-spread",
        help="comma-separated",
    )
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="ormcache-bench-topologies-")
    db_path = os.path.join(workdir, "db.sqlite3")
    configure(db_path, None)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    seed()
    rows = []
    for name in args.topologies.split(","):
        print(f"measuring {name}...", file=sys.stderr, flush=True)
        rows.append(measure(name, db_path, args))
    print(table(rows))
    print(
        f"\n{args.hits} sequential hits per read kind; hits/s: {args.processes} processes "
        f"x {args.seconds:g} s; {os.cpu_count()} CPUs; Redis {redis_version()}."
    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


def redis_version() -> str:
    import subprocess

    from tests.redis_topologies import binary

    out = subprocess.run([binary("redis-server"), "--version"], capture_output=True, text=True)
    return out.stdout.split()[2].removeprefix("v=")


if __name__ == "__main__":
    main()
