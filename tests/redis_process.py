"""A real redis-server of the test's own, which the test may kill, pause and restart."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisProcess:
    def __init__(self):
        binary = shutil.which("redis-server")
        if binary is None:
            if IN_CI:
                raise RuntimeError("redis-server is not installed, and CI=true")
            pytest.skip("redis-server is not installed")
        self.binary = binary
        self.port = _free_port()
        self.dir = tempfile.mkdtemp(prefix="ormcache-redis-")
        self.process = None
        self.start()

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self):
        self.process.kill()
        self.process.wait()

    def pause(self):
        self.process.send_signal(signal.SIGSTOP)

    def resume(self):
        self.process.send_signal(signal.SIGCONT)

    def restart(self):
        self.kill()
        self.start()

    def close(self):
        if self.process and self.process.poll() is None:
            self.resume()
            self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
