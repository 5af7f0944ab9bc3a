"""Outbound sends: the one place the gateway talks to receivers it does not own.

Notifications (webhook and Slack: ``post`` and ``slack``; email: ``mail``) and
audit forwarding (HTTPS, syslog) all leave through here, so TLS verification
(the system store plus ``OUTBOUND_CA_FILE``), the no-redirect rule, timeouts
and the webhook signature are decided once.  Failures come back as a reason from a fixed vocabulary
(``FAILURE_REASONS``), never as a library's message: such messages quote URLs,
and a Slack or webhook URL is itself a secret.

- ``http``: one POST (urllib3, a pool per CA file); ``signing``: the webhook headers;
- ``mail``: one message over SMTP (STARTTLS required unless turned off for a relay, or
  implicit TLS); ``slack``: the escaping of output for a Slack message;
- ``rfc5424`` and ``stream``: syslog messages framed by octet counting, written to a
  long-lived TCP or TLS connection that counts bytes as delivered once the receiver's TCP
  stack acknowledged them;
- ``tls``: the verifying client context.

Imports nothing else of the gateway: the outbox and the audit forwarder call it.
"""

from __future__ import annotations

from gateway.outbound import slack
from gateway.outbound.http import FAILURE_REASONS, SendResult, post
from gateway.outbound.mail import MAIL_FAILURE_REASONS, send_mail
from gateway.outbound.rfc5424 import Rfc5424, frame, structured_data
from gateway.outbound.signing import signature, signed_headers, verify_signature
from gateway.outbound.stream import Stream
from gateway.outbound.tls import client_context

__all__ = [
    "FAILURE_REASONS",
    "MAIL_FAILURE_REASONS",
    "Rfc5424",
    "SendResult",
    "Stream",
    "client_context",
    "frame",
    "post",
    "send_mail",
    "signature",
    "signed_headers",
    "slack",
    "structured_data",
    "verify_signature",
]
