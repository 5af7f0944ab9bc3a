"""Real receivers for the outbound tests: an HTTP(S) server in the test process, certificates from trustme.

``HttpReceiver`` records every request it answers (method, path, headers,
exact body bytes) and can be told to answer with another status, to stall, or
to go down (its socket closed: connections are refused) and come back on the
same port.  ``tls_authority`` is a throwaway CA whose file plays
``OUTBOUND_CA_FILE``.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class TlsAuthority:
    """A CA (``ca_file`` for clients) and a server certificate for ``hostnames`` (``server_context``)."""

    ca: trustme.CA
    ca_file: str
    server_context: ssl.SSLContext


def tls_authority(directory: Path, hostnames: tuple[str, ...] = ("localhost", "127.0.0.1")) -> TlsAuthority:
    ca = trustme.CA()
    ca_file = directory / "outbound-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*hostnames).configure_cert(context)
    return TlsAuthority(ca=ca, ca_file=str(ca_file), server_context=context)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that gave up (refused certificate, timeout) is what these tests provoke: no traceback."""

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """End every open (kept-alive) connection: a receiver that is down answers nothing, old clients included."""
        with self.connections_lock:
            connections, self.connections = self.connections, set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


# What the receiver answers: (status, extra headers, body) for one request.
Responder = Callable[[Received], tuple[int, dict[str, str], bytes]]


def _ok(_request: Received) -> tuple[int, dict[str, str], bytes]:
    return 200, {}, b"ok"


@dataclass
class HttpReceiver:
    """A threaded HTTP(S) server on 127.0.0.1; ``stop()`` / ``start()`` take it down and back on the same port."""

    tls: ssl.SSLContext | None = None
    responder: Responder = _ok
    delay_seconds: float = 0.0
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _server: _QuietServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://localhost:{self.port}"

    def start(self) -> HttpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Received("POST", self.path, dict(self.headers.items()), self.rfile.read(length))
                if receiver.delay_seconds:
                    time.sleep(receiver.delay_seconds)
                status, headers, body = receiver.responder(request)
                with receiver._lock:
                    receiver.received.append(request)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        server = _QuietServer(("127.0.0.1", self.port), Handler)
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, name="test-receiver", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.drop_connections()
            self._server = None

    def bodies(self) -> list[bytes]:
        with self._lock:
            return [request.body for request in self.received]
