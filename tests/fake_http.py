"""A local HTTP server that records requests: the CI providers' APIs in tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeApi:
    url: str
    requests: list[Recorded] = field(default_factory=list)


@contextmanager
def fake_api(status: int = 201) -> Iterator[FakeApi]:
    api = FakeApi(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            api.requests.append(Recorded("POST", self.path,
                                         {k.lower(): v for k, v in self.headers.items()},
                                         json.loads(raw or b"null")))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    with serving(api, Handler):
        yield api


@contextmanager
def serving(api: FakeApi, handler: type[BaseHTTPRequestHandler]) -> Iterator[None]:
    """Serve ``handler`` on a free local port (``api.url``) while the block runs."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
