"""A long-lived TCP or TLS connection to a syslog receiver, and when to count bytes as delivered.

Syslog over TCP has no acknowledgement of its own, so a send counts as
delivered only once the receiver's TCP stack has acknowledged every byte: after
``sendall`` the send queue (``SIOCOUTQ``) must drain to zero while the
connection is still established.  Bytes merely handed to our kernel would be
lost silently when the receiver is gone; drained bytes sit in the receiver's
socket buffer (a receiver that crashes before reading them can still lose them:
the receiver's continuity check shows that as a gap).  Where the platform
cannot tell (no ``SIOCOUTQ``), a completed write is taken as delivered.

TLS is verified against the system store plus ``OUTBOUND_CA_FILE``
(``gateway.outbound.tls``), hostname included.  Failures are reasons from
``FAILURE_REASONS``, never a library's message.
"""

from __future__ import annotations

import contextlib
import fcntl
import socket
import ssl
import struct
import termios
import time

from gateway.outbound.http import SendResult
from gateway.outbound.tls import client_context

# tcp_info's first byte (linux/tcp.h): the connection's state.
_TCP_ESTABLISHED, _TCP_CLOSE_WAIT = 1, 8
_DELIVERED_STATES = frozenset({_TCP_ESTABLISHED, _TCP_CLOSE_WAIT})  # CLOSE_WAIT: the peer closed after reading
_OUTQ = getattr(termios, "TIOCOUTQ", None)  # SIOCOUTQ on Linux: bytes not yet acknowledged by the peer
_TCP_INFO = getattr(socket, "TCP_INFO", None)


def tcp_state(sock: socket.socket) -> int | None:
    """The kernel's TCP state of ``sock`` (``TCP_INFO``), or None where the platform does not say."""
    if _TCP_INFO is None:
        return None
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 1)[0]
    except OSError:
        return None


def unacknowledged(sock: socket.socket) -> int | None:
    """Bytes written to ``sock`` that the peer has not acknowledged yet, or None where the platform does not say."""
    if _OUTQ is None:
        return None
    try:
        pending: int = struct.unpack("i", fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0"))[0]
        return pending
    except OSError:
        return None


class Stream:
    """One connection to ``host:port``, opened on first use and again after any failure."""

    def __init__(self, host: str, port: int, *, tls: bool, timeout: float, ca_file: str | None = None):
        self.host, self.port, self.tls, self.timeout, self.ca_file = host, port, tls, timeout, ca_file
        self._sock: socket.socket | None = None

    def send(self, payload: bytes) -> SendResult:
        """Write ``payload`` and wait until the receiver's TCP stack acknowledged all of it (at most ``timeout``)."""
        deadline = time.monotonic() + self.timeout
        try:
            sock = self._connection()
        except TimeoutError:
            return self._failed("timeout")
        except ssl.SSLError:
            return self._failed("tls")
        except (OSError, ValueError):
            return self._failed("connect")
        try:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            sock.sendall(payload)
        except TimeoutError:
            return self._failed("timeout")
        except ssl.SSLError:
            return self._failed("tls")
        except OSError:
            return self._failed("protocol")
        reason = self._await_acknowledgement(sock, deadline)
        return SendResult(ok=True) if reason is None else self._failed(reason)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        with contextlib.suppress(OSError, ValueError):
            if isinstance(sock, ssl.SSLSocket):
                sock.settimeout(0.5)
                sock.unwrap()  # close_notify: the receiver sees a clean end, not a truncated stream
        with contextlib.suppress(OSError):
            sock.close()

    def _connection(self) -> socket.socket:
        """The open connection, unless the receiver closed or reset it meanwhile: then a new one."""
        if self._sock is not None and tcp_state(self._sock) not in (_TCP_ESTABLISHED, None):
            self.close()
        if self._sock is None:
            raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
            try:
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._sock = (
                    client_context(self.ca_file).wrap_socket(raw, server_hostname=self.host) if self.tls else raw
                )
            except BaseException:
                raw.close()
                raise
        return self._sock

    def _await_acknowledgement(self, sock: socket.socket, deadline: float) -> str | None:
        pause = 0.0005
        while True:
            state = tcp_state(sock)
            if state is not None and state not in _DELIVERED_STATES:
                return "protocol"  # reset or closed before the receiver took everything
            pending = unacknowledged(sock)
            if not pending:  # 0, or the platform cannot tell
                return None
            if time.monotonic() >= deadline:
                return "timeout"
            time.sleep(pause)
            pause = min(pause * 2, 0.02)

    def _failed(self, reason: str) -> SendResult:
        self.close()
        return SendResult(ok=False, reason=reason)
