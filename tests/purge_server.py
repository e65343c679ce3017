"""A real HTTP server on loopback that records the purges it receives (and can refuse them)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)


class PurgeServer:
    """``with PurgeServer() as server``: ``server.url``, ``server.received``, ``server.status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[Received] = []
        self._arrived = threading.Condition()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                with owner._arrived:
                    headers = {name.lower(): value for name, value in self.headers.items()}
                    owner.received.append(Received(self.command, self.path, headers))
                    owner._arrived.notify_all()
                self.send_response(owner.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_PURGE = do_BAN = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"

    def __enter__(self) -> PurgeServer:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def purged_keys(self, header: str = "xkey-purge") -> list[set[str]]:
        """The keys of each purge received, in order."""
        return [set(item.headers.get(header, "").split()) for item in self.received]

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._arrived.wait(left)
        return True
