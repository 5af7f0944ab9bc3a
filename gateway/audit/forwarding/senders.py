"""How a batch leaves for each kind of destination, by name: ``http`` (JSON lines) and ``syslog`` (RFC 5424).

Both go through ``gateway.outbound`` (verified TLS with ``OUTBOUND_CA_FILE``,
timeouts, failure reasons from a closed set) and both carry, for every event,
``seq``, ``prev_hash``, ``hash`` and ``key_id``: what a receiver needs to see a
gap or an edit.

- ``http``: one POST per batch, one JSON object per line (``ForwardedEvent.line``),
  ``Content-Type: application/x-ndjson``, the webhook headers with delivery id
  ``audit-<first seq>-<last seq>`` (signed with ``AUDIT_FORWARD_<NAME>_SECRET`` when
  set) and ``Authorization: Bearer`` with ``AUDIT_FORWARD_<NAME>_TOKEN`` when set.
  Only a 2xx reply acknowledges the batch.
- ``syslog``: one RFC 5424 message per event, framed by octet counting, the batch
  written at once to a long-lived connection: facility ``log audit``, MSGID the event
  name, structured data ``[ledger@32473 seq prev_hash hash key_id]`` before the
  message (so a receiver that cuts a long message keeps them), and the message the
  canonical text the row's HMAC covers.  32473 is the enterprise number RFC 5612
  sets aside for documentation: the project has none of its own.

A third kind is one class with ``send`` and ``close`` and one line in ``SENDERS``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol
from urllib.parse import urlsplit

from config import ForwardDestination
from gateway import outbound
from gateway.audit.forwarding.batches import ForwardedEvent

SD_ID = "ledger@32473"
APP_NAME = "ops-gateway"
JSON_LINES = "application/x-ndjson"


class Sender(Protocol):
    def send(self, events: Sequence[ForwardedEvent]) -> outbound.SendResult: ...

    def close(self) -> None: ...


class HttpSender:
    """JSON lines over HTTP(S), one POST per batch."""

    def __init__(self, destination: ForwardDestination, *, timeout: float, ca_file: str | None, hostname: str | None):
        self.destination, self.timeout, self.ca_file = destination, timeout, ca_file
        self.secret = destination.secret.encode("utf-8") if destination.secret else None

    def body(self, events: Sequence[ForwardedEvent]) -> bytes:
        return "".join([event.line() + "\n" for event in events]).encode("utf-8")

    def send(self, events: Sequence[ForwardedEvent]) -> outbound.SendResult:
        body = self.body(events)
        delivery = f"audit-{events[0].seq}-{events[-1].seq}"
        headers = outbound.signed_headers(delivery, body, int(time.time()), self.secret)
        headers["Content-Type"] = JSON_LINES
        if self.destination.token:
            headers["Authorization"] = f"Bearer {self.destination.token}"
        return outbound.post(self.destination.url, body, headers, timeout=self.timeout, ca_file=self.ca_file)

    def close(self) -> None:
        """Nothing to close: the connection pool is shared per CA file."""


class SyslogSender:
    """RFC 5424 over TCP or TLS, octet-counted, one connection kept open between batches."""

    def __init__(self, destination: ForwardDestination, *, timeout: float, ca_file: str | None, hostname: str | None):
        self.format = outbound.Rfc5424(hostname=hostname, app_name=APP_NAME)
        if destination.port is None:  # config.py requires one for syslog
            raise ValueError(f"destination {destination.name!r} has no port")
        self.stream = outbound.Stream(
            destination.host, destination.port, tls=destination.tls, timeout=timeout, ca_file=ca_file
        )

    def message(self, event: ForwardedEvent) -> bytes:
        sd = outbound.structured_data(
            SD_ID,
            (("seq", str(event.seq)), ("prev_hash", event.prev_hash), ("hash", event.hash), ("key_id", event.key_id)),
        )
        return self.format.message(timestamp=event.at or "-", msgid=event.event, sd=sd, msg=event.document())

    def payload(self, events: Sequence[ForwardedEvent]) -> bytes:
        frame, message = outbound.frame, self.message
        return b"".join([frame(message(event)) for event in events])

    def send(self, events: Sequence[ForwardedEvent]) -> outbound.SendResult:
        return self.stream.send(self.payload(events))

    def close(self) -> None:
        self.stream.close()


SENDERS: dict[str, Callable[..., Sender]] = {"http": HttpSender, "syslog": SyslogSender}


def syslog_hostname(public_base_url: str) -> str | None:
    """The HOSTNAME every replica sends: the gateway's public host (one name for the service, not per pod)."""
    host = urlsplit(public_base_url).hostname
    return host if host and host.isascii() and host.isprintable() and " " not in host else None


def sender_for(destination: ForwardDestination, *, timeout: float, ca_file: str | None, public_base_url: str) -> Sender:
    return SENDERS[destination.kind](
        destination, timeout=timeout, ca_file=ca_file, hostname=syslog_hostname(public_base_url)
    )
