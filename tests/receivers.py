"""Real receivers for the outbound tests: HTTP(S) and SMTP servers in the test process, certificates from trustme.

``HttpReceiver`` records every request it answers (method, path, headers,
exact body bytes) and can be told to answer with another status, to stall, or
to go down (its socket closed: connections are refused) and come back on the
same port.  ``VerifyingWebhook`` is a responder that checks what a webhook
receiver must (signature, timestamp, ids seen once).  ``SmtpReceiver`` is
aiosmtpd with STARTTLS, implicit TLS or neither.  ``tls_authority`` is a
throwaway CA whose file plays ``OUTBOUND_CA_FILE``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
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
        threading.Thread(target=server.serve_forever, args=(0.05,), name="test-receiver", daemon=True).start()
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


# --- webhooks as the README's receiver checks them ------------------------------------------


@dataclass
class VerifyingWebhook:
    """A responder that does what the README's receiver does: signature, timestamp window, each id once.

    ``accepted`` keeps each accepted body (parsed); a repeated id is answered 200 (the sender may
    stop) but not accepted again, and counted in ``duplicates``; a bad signature or a stale
    timestamp gets 401. ``fail_first`` ids are accepted and then answered 503 once, as a receiver
    whose answer got lost would: the gateway sends them again.
    """

    secret: bytes
    accepted: list[dict] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    refused: int = 0
    fail_first: set[str] = field(default_factory=set)
    seen: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: Received) -> tuple[int, dict[str, str], bytes]:
        from gateway.outbound import verify_signature

        if not verify_signature(self.secret, request.headers, request.body, now=int(time.time())):
            with self._lock:
                self.refused += 1
            return 401, {}, b"bad signature"
        document = json.loads(request.body)
        delivery = request.headers.get("X-Gateway-Delivery")
        if delivery != document.get("id"):
            with self._lock:
                self.refused += 1
            return 400, {}, b"the header and the body name different deliveries"
        with self._lock:
            if delivery in self.seen:
                self.duplicates.append(delivery)
                return 200, {}, b"already seen"
            self.seen.add(delivery)
            self.accepted.append(document)
            if delivery in self.fail_first:
                self.fail_first.discard(delivery)
                return 503, {}, b"processed, but the answer is lost"
        return 200, {}, b"ok"

    def ids(self) -> list[str]:
        with self._lock:
            return [document["id"] for document in self.accepted]


# --- SMTP ------------------------------------------------------------------------------------


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    data: bytes
    over_tls: bool
    login: str | None

    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=email_policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SmtpReceiver:
    """A real SMTP server (aiosmtpd) on 127.0.0.1.

    ``mode``: ``starttls`` (offered and required before MAIL), ``implicit`` (TLS from the first byte)
    or ``plain`` (no TLS at all). With ``credentials`` it requires AUTH (over TLS only).
    ``mail_commands`` counts MAIL FROM commands, so a test can tell that nothing was even offered.
    """

    def __init__(self, mode: str, tls: ssl.SSLContext | None = None, credentials: tuple[str, str] | None = None):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.mails: list[Mail] = []
        self.mail_commands = 0
        self.port = free_port()
        receiver = self

        class Handler:
            async def handle_MAIL(self, server, session, envelope, address, mail_options):
                receiver.mail_commands += 1
                envelope.mail_from = address
                envelope.mail_options.extend(mail_options)
                return "250 OK"

            async def handle_DATA(self, server, session, envelope):
                login = session.auth_data.decode() if isinstance(session.auth_data, bytes) else session.auth_data
                tls = session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
                content = envelope.original_content or envelope.content
                receiver.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), content, tls, login))
                return "250 Message accepted"

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = credentials is not None and (auth_data.login.decode(), auth_data.password.decode()) == credentials
            return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)

        options: dict = {}
        if mode == "starttls":
            options.update(tls_context=tls, require_starttls=True)
        elif mode == "implicit":
            options.update(ssl_context=tls)
        if credentials is not None:
            options.update(authenticator=authenticator, auth_require_tls=True, auth_required=True)
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **options)

    def start(self) -> SmtpReceiver:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def url(self, scheme: str = "smtp", query: str = "") -> str:
        return f"{scheme}://localhost:{self.port}" + (f"?{query}" if query else "")
