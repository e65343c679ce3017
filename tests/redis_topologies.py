"""Real Redis topologies of the tests' own: a 3-master Cluster and a Sentinel set-up.

Both are built from Debian's ``redis-server``/``redis-sentinel`` binaries on free
loopback ports, with their files in a temp dir, and torn down by ``close()``. The
tests kill and restart their processes (a Sentinel failover, a Cluster node
restart), so each pytest run builds its own rather than sharing servers started by
``scripts/test`` across matrix entries. The benchmarks (``benchmarks/topologies.py``)
use them too.

Without the binaries the tests that need them are skipped, except under ``CI=true``
where that is an error: CI must never go green by skipping.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

IN_CI = os.environ.get("CI", "").lower() == "true"
HOST = "127.0.0.1"
SERVICE = "ormcache-test"


class Missing(RuntimeError):
    """A server binary is not installed."""


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise Missing(f"{name} is not installed (apt-get install redis-server redis-sentinel)")
    return found


def free_port(*, with_bus: bool = False) -> int:
    """A port nobody listens on (and, for Cluster nodes, port + 10000 too: the bus)."""
    while True:
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            port = sock.getsockname()[1]
        if not with_bus:
            return port
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind((HOST, port + 10000))
            except OSError:
                continue
        return port


def command(port: int, *args: str, timeout: float = 1.0) -> str:
    """One command over RESP, the reply as text (enough for PING, INFO, CLUSTER INFO)."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(b"".join(parts))
        sock.settimeout(timeout)
        reply = b""
        while True:
            chunk = sock.recv(65536)
            reply += chunk
            if not chunk or _complete(reply):
                break
    return reply.decode(errors="replace")


def _complete(reply: bytes) -> bool:
    if reply[:1] in (b"+", b"-", b":"):
        return reply.endswith(b"\r\n")
    if reply[:1] == b"$":
        head, _, rest = reply.partition(b"\r\n")
        size = int(head[1:])
        return size < 0 or len(rest) >= size + 2
    if reply[:1] == b"*":  # arrays: good enough for the short ones we read
        return reply.endswith(b"\r\n")
    return False


def wait_for(check, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


class Server:
    """One redis-server (or redis-sentinel) process on a fixed port."""

    def __init__(self, argv: list[str], port: int, directory: str, name: str):
        self.argv, self.port, self.dir, self.name = argv, port, directory, name
        self.process: subprocess.Popen | None = None
        os.makedirs(directory, exist_ok=True)

    @property
    def address(self) -> tuple[str, int]:
        return (HOST, self.port)

    def start(self) -> None:
        log = open(os.path.join(self.dir, f"{self.name}.log"), "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            self.argv, cwd=self.dir, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        wait_for(lambda: "PONG" in command(self.port, "PING"), f"{self.name} on {self.port}")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait()

    def alive(self) -> bool:
        return bool(self.process and self.process.poll() is None)


def _redis_argv(port: int, directory: str, *extra: str) -> list[str]:
    # Nothing is written to disk: a restarted node comes back empty, as a cache should.
    return [
        binary("redis-server"),
        "--port",
        str(port),
        "--bind",
        HOST,
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        directory,
        *extra,
    ]


class RedisClusterTopology:
    """Three Cluster masters, no replicas: every slot has exactly one home."""

    def __init__(self, masters: int = 3):
        self.root = tempfile.mkdtemp(prefix="ormcache-cluster-")
        self.nodes: list[Server] = []
        try:
            for index in range(masters):
                port = free_port(with_bus=True)
                directory = os.path.join(self.root, f"node{index}")
                argv = _redis_argv(
                    port,
                    directory,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                )
                node = Server(argv, port, directory, f"node{index}")
                node.start()
                self.nodes.append(node)
            subprocess.run(
                [
                    binary("redis-cli"),
                    "--cluster",
                    "create",
                    *(f"{HOST}:{node.port}" for node in self.nodes),
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=30,
            )
            self.wait_healthy()
        except BaseException:
            self.close()
            raise

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [node.address for node in self.nodes]

    @property
    def location(self) -> list[str]:
        return [f"redis://{host}:{port}" for host, port in self.startup_nodes]

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Every node answers and sees the whole cluster as ok (all slots covered)."""

        def healthy() -> bool:
            return all(
                "cluster_state:ok" in command(node.port, "CLUSTER", "INFO") for node in self.nodes
            )

        wait_for(healthy, "the cluster to be ok", timeout)

    def owner_of(self, slot: int) -> int:
        """The index of the node that serves ``slot``."""
        for line in command(self.nodes[0].port, "CLUSTER", "NODES").split("\n"):
            fields = line.split()
            if len(fields) < 9 or "master" not in fields[2]:
                continue
            port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            for span in fields[8:]:
                low, _, high = span.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    return next(i for i, node in enumerate(self.nodes) if node.port == port)
        raise LookupError(f"no node serves slot {slot}")

    def restart(self, index: int) -> None:
        """Kill a master and start it again: it keeps its slots (nodes.conf), not its keys."""
        self.nodes[index].kill()
        self.nodes[index].start()
        self.wait_healthy()

    def close(self) -> None:
        for node in self.nodes:
            node.kill()
        shutil.rmtree(self.root, ignore_errors=True)


class RedisSentinelTopology:
    """One master, one replica and three sentinels watching service ``ormcache-test``."""

    def __init__(self, *, down_after_ms: int = 500):
        self.root = tempfile.mkdtemp(prefix="ormcache-sentinel-")
        self.redis: list[Server] = []
        self.sentinels: list[Server] = []
        try:
            master_port = free_port()
            master = Server(
                _redis_argv(master_port, os.path.join(self.root, "redis0")),
                master_port,
                os.path.join(self.root, "redis0"),
                "redis0",
            )
            master.start()
            replica_port = free_port()
            replica_dir = os.path.join(self.root, "redis1")
            replica = Server(
                _redis_argv(replica_port, replica_dir, "--replicaof", HOST, str(master_port)),
                replica_port,
                replica_dir,
                "redis1",
            )
            replica.start()
            self.redis = [master, replica]
            for index in range(3):
                port = free_port()
                directory = os.path.join(self.root, f"sentinel{index}")
                os.makedirs(directory)
                config = os.path.join(directory, "sentinel.conf")
                with open(config, "w") as handle:  # sentinel rewrites it: a file of its own
                    handle.write(
                        f"port {port}\nbind {HOST}\ndir {directory}\n"
                        f"sentinel monitor {SERVICE} {HOST} {master_port} 2\n"
                        f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}\n"
                        f"sentinel failover-timeout {SERVICE} 5000\n"
                        f"sentinel parallel-syncs {SERVICE} 1\n"
                    )
                sentinel = Server(
                    [binary("redis-sentinel"), config], port, directory, f"sentinel{index}"
                )
                sentinel.start()
                self.sentinels.append(sentinel)
            self.wait_ready()
        except BaseException:
            self.close()
            raise

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [sentinel.address for sentinel in self.sentinels]

    def master_address(self) -> tuple[str, int]:
        """The master as the first sentinel that answers sees it."""
        for sentinel in self.sentinels:
            try:
                reply = command(sentinel.port, "SENTINEL", "get-master-addr-by-name", SERVICE)
            except OSError:
                continue
            lines = reply.split("\r\n")
            return (lines[2], int(lines[4]))
        raise RuntimeError("no sentinel answers")

    def master(self) -> Server:
        port = self.master_address()[1]
        return next(server for server in self.redis if server.port == port)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Each sentinel knows the replica and the two other sentinels: a failover can run."""

        def ready() -> bool:
            for sentinel in self.sentinels:
                info = command(sentinel.port, "SENTINEL", "master", SERVICE)
                fields = info.split("\r\n")[2::2]
                values = dict(zip(fields[0::2], fields[1::2], strict=False))
                if values.get("num-slaves") != "1" or values.get("num-other-sentinels") != "2":
                    return False
            replica = next(s for s in self.redis if s.port != self.master_address()[1])
            info = command(replica.port, "INFO", "replication")
            return "master_link_status:up" in info

        wait_for(ready, "the sentinels to see the replica and each other", timeout)

    def kill_master(self) -> tuple[str, int]:
        """Kill the master (SIGKILL); return its old address."""
        old = self.master_address()
        self.master().kill()
        return old

    def wait_for_failover(self, old: tuple[str, int], timeout: float = 30.0) -> tuple[str, int]:
        """Wait until the sentinels name a new master, and it accepts writes."""

        def promoted() -> bool:
            new = self.master_address()
            return new != old and "role:master" in command(new[1], "INFO", "replication")

        wait_for(promoted, "the sentinels to promote the replica", timeout)
        return self.master_address()

    def restore(self) -> None:
        """Start every killed server again, as a replica of the current master."""
        master = self.master_address()
        for server in self.redis:
            if not server.alive():
                if "--replicaof" in server.argv:
                    server.argv = server.argv[: server.argv.index("--replicaof")]
                server.argv += ["--replicaof", master[0], str(master[1])]
                server.start()
        self.wait_ready()

    def close(self) -> None:
        for server in [*self.sentinels, *self.redis]:
            server.kill()
        shutil.rmtree(self.root, ignore_errors=True)


# --- pytest glue ----------------------------------------------------------------------


def start(topology_class, **kwargs):
    """Build a topology; without the binaries skip, or fail under CI=true."""
    import pytest

    try:
        return topology_class(**kwargs)
    except Missing as exc:
        if IN_CI:
            raise RuntimeError(f"{exc}, and CI=true") from exc
        pytest.skip(str(exc))


@contextlib.contextmanager
def ormcache_on(cache_alias: str, cache_settings: dict, **ormcache_overrides):
    """Django's CACHES plus ``cache_alias``, ormcache on it, with a quick breaker;
    yields a ``tests.conftest.Backend`` on PostgreSQL (when running) or SQLite."""
    from django.conf import settings
    from django.test.utils import override_settings

    from ormcache import health
    from tests.conftest import Backend
    from tests.routing import current_alias

    db_alias = "pg" if "pg" in settings.DATABASES else "default"
    caches_setting = {**settings.CACHES, cache_alias: cache_settings}
    ormcache_setting = {
        **settings.ORMCACHE,
        "CACHE": cache_alias,
        "BREAKER": {"threshold": 2, "cooldown": 0.3},
        **ormcache_overrides,
    }
    token = current_alias.set(db_alias)
    health.reset()
    try:
        with override_settings(CACHES=caches_setting, ORMCACHE=ormcache_setting):
            backend = Backend(db_alias, cache_alias)
            backend.cache.clear()
            yield backend
    finally:
        health.reset()
        current_alias.reset(token)


def wait_for_hits(backend, read, timeout: float = 10.0):
    """Hits come back after an outage (once the breaker lets calls through again)."""

    def hit() -> bool:
        read()
        with backend.queries() as captured:
            read()
        return not captured.captured_queries

    wait_for(hit, "cache hits to come back", timeout)


def databases():
    """The databases topology tests use: PostgreSQL when scripts/test started it."""
    from django.conf import settings

    return ["default", "pg"] if "pg" in settings.DATABASES else ["default"]


class Load:
    """Readers and a writer of one post, in real threads, while a test breaks the cache.

    Every request is timed and must succeed (the cache fails open). A read that
    starts after a write returned must see that write or a later one: never stale.
    """

    def __init__(self, pk: int, readers: int = 2, first: int = 1, writer: bool = True):
        import contextvars
        import threading

        self.pk = pk
        self.stop = threading.Event()
        self.first = first  # titles are "write <n>", n counting up from here
        self.committed = first - 1  # the number of the last write that returned
        self.latencies: list[float] = []
        self.errors: list[BaseException] = []
        self.stale: list[tuple[int, int]] = []
        self.reads = self.writes = 0
        self.readers = readers
        context = contextvars.copy_context()
        self.threads = [
            threading.Thread(target=context.copy().run, args=(self._read,)) for _ in range(readers)
        ]
        if writer:
            self.threads.append(threading.Thread(target=context.copy().run, args=(self._write,)))

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def _timed(self, function):
        started = time.perf_counter()
        try:
            return function()
        except BaseException as exc:
            self.errors.append(exc)
            return None
        finally:
            self.latencies.append(time.perf_counter() - started)

    def _read(self):
        from django.db import connections

        from testproject.blog.models import Post

        try:
            while not self.stop.is_set():
                floor = self.committed
                title = self._timed(lambda: Post.objects.get(pk=self.pk).title)
                self.reads += 1
                if title is not None and int(title.split()[-1]) < floor:
                    self.stale.append((int(title.split()[-1]), floor))
                time.sleep(0.002)
        finally:
            connections.close_all()

    def _write(self):
        from django.db import connections

        from testproject.blog.models import Post

        try:
            number = self.first - 1
            while not self.stop.is_set():
                number += 1
                done = self._timed(
                    lambda n=number: Post.objects.filter(pk=self.pk).update(title=f"write {n}")
                )
                if done is not None:
                    self.committed = number
                self.writes += 1
                time.sleep(0.02)
        finally:
            connections.close_all()

    def check(self, bound: float) -> None:
        assert not self.errors, f"requests failed: {self.errors[:3]}"
        assert not self.stale, f"stale reads (read, committed before it): {self.stale[:5]}"
        assert self.reads > 10
        assert self.writes > 5 or len(self.threads) == self.readers
        assert max(self.latencies) < bound, f"slowest request {max(self.latencies):.2f}s"
