"""Outbound sends: the one place the gateway talks to receivers it does not own.

Notifications (webhook and Slack: ``post`` and ``slack``; email: ``mail``) and
audit forwarding (HTTPS, syslog) all leave through here, so TLS verification
(the system store plus ``OUTBOUND_CA_FILE``), the no-redirect rule, timeouts
and the webhook signature are decided once.  Failures come back as a reason from a fixed vocabulary
(``FAILURE_REASONS``), never as a library's message: such messages quote URLs,
and a Slack or webhook URL is itself a secret.
"""

from __future__ import annotations

from gateway.outbound import slack
from gateway.outbound.http import FAILURE_REASONS, SendResult, post
from gateway.outbound.mail import MAIL_FAILURE_REASONS, send_mail
from gateway.outbound.signing import signature, signed_headers, verify_signature
from gateway.outbound.tls import client_context

__all__ = [
    "FAILURE_REASONS",
    "MAIL_FAILURE_REASONS",
    "SendResult",
    "client_context",
    "post",
    "send_mail",
    "signature",
    "signed_headers",
    "slack",
    "verify_signature",
]
