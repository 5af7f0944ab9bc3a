"""One HTTP(S) POST to a receiver: verified TLS, no redirects, a hard timeout, a bounded reply.

urllib3 underneath (requests' own transport), with one connection pool per CA
file so a forwarder sending batch after batch keeps its connection.  Nothing
here retries: the outbox and the forwarder own retries, with their own backoff
and records.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError, ProtocolError, SSLError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from gateway.outbound.tls import client_context

# Why a send failed, as a closed set: safe as a metric label and in a ledger row,
# unlike a library's message, which quotes the URL (a secret for Slack and webhooks).
FAILURE_REASONS = ("timeout", "tls", "connect", "protocol", "redirect", "status", "url")
# A receiver's reply body is read up to this many bytes (enough for an error message), then dropped.
REPLY_LIMIT_BYTES = 4096

_pools: dict[str | None, urllib3.PoolManager] = {}
_pools_lock = threading.Lock()


@dataclass(frozen=True)
class SendResult:
    """The outcome of one POST: ``ok`` for a 2xx reply; otherwise ``reason`` (from ``FAILURE_REASONS``)."""

    ok: bool
    status: int | None = None
    reason: str | None = None
    reply: bytes = b""


def _pool(ca_file: str | None) -> urllib3.PoolManager:
    with _pools_lock:
        pool = _pools.get(ca_file)
        if pool is None:
            pool = urllib3.PoolManager(num_pools=16, maxsize=4, ssl_context=client_context(ca_file))
            _pools[ca_file] = pool
        return pool


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float, ca_file: str | None = None) -> SendResult:
    """POST ``body`` to ``url`` once and report what happened; never raises for a receiver's fault.

    A 3xx reply is a failure (``redirect``): following it would send a signed
    body, and for Slack a secret URL's payload, somewhere nobody configured.
    """
    if not url.lower().startswith(("https://", "http://")):
        return SendResult(ok=False, reason="url")
    try:
        response = _pool(ca_file).request(
            "POST",
            url,
            body=body,
            headers=headers,
            redirect=False,
            retries=False,
            timeout=urllib3.Timeout(total=timeout),
            preload_content=False,
        )
    # NewConnectionError (refused, unresolvable) subclasses urllib3's connect timeout: test it first.
    except NewConnectionError:
        return SendResult(ok=False, reason="connect")
    except SSLError:
        return SendResult(ok=False, reason="tls")
    except (Urllib3Timeout, TimeoutError):
        return SendResult(ok=False, reason="timeout")
    except (ProtocolError, HTTPError, OSError, ValueError):
        return SendResult(ok=False, reason="protocol")
    try:
        reply = response.read(REPLY_LIMIT_BYTES)
    except (HTTPError, OSError):
        reply = b""
    finally:
        response.release_conn()
    status = response.status
    if 200 <= status < 300:
        return SendResult(ok=True, status=status, reply=reply)
    return SendResult(ok=False, status=status, reason="redirect" if 300 <= status < 400 else "status", reply=reply)
