"""One attempt at a claimed delivery: its notification's target, the message for its kind, the outbound send.

A registry by kind (``SENDERS``): a fourth kind is one function and one line.
Nothing here touches the database; the worker calls this with no transaction
and no pooled connection held.  A notification that is gone from the
catalogue, or whose variables are unset here, fails as ``unconfigured`` (and
is retried: a reload or a fixed environment may bring it back).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from gateway.catalogue import Catalogue, Notification, Target
from gateway.deliveries import render
from gateway.deliveries.store import Claimed
from gateway.outbound import FAILURE_REASONS, MAIL_FAILURE_REASONS, SendResult, post, send_mail, signed_headers, slack

UNCONFIGURED = "unconfigured"
INTERNAL = "internal"  # the attempt itself failed in the gateway (a bug): logged with its traceback
# Every result an attempt can have: the metric's label values and the ledger's reasons, a closed set.
RESULTS = ("delivered", *FAILURE_REASONS, *MAIL_FAILURE_REASONS, UNCONFIGURED, INTERNAL)

Sender = Callable[[Claimed, Notification, Target, Mapping[str, Any], float], SendResult]


def _webhook(
    claimed: Claimed, _: Notification, target: Target, settings: Mapping[str, Any], timeout: float
) -> SendResult:
    body = render.webhook_body(claimed.id, claimed.event, claimed.payload)
    headers = signed_headers(claimed.id, body, int(time.time()), target.secret)
    return post(target.url or "", body, headers, timeout=timeout, ca_file=settings["OUTBOUND_CA_FILE"])


def _slack(
    claimed: Claimed, _: Notification, target: Target, settings: Mapping[str, Any], timeout: float
) -> SendResult:
    text = render.slack_text(render.summary(claimed.payload))
    return slack.send(target.url or "", text, timeout=timeout, ca_file=settings["OUTBOUND_CA_FILE"])


def _email(
    claimed: Claimed, notification: Notification, _: Target, settings: Mapping[str, Any], timeout: float
) -> SendResult:
    server = settings["SMTP_SERVER"]
    if server is None:
        return SendResult(ok=False, reason=UNCONFIGURED)
    message = render.email_message(
        claimed.id, render.summary(claimed.payload), settings["SMTP_FROM"], list(notification.to or [])
    )
    return send_mail(server, message, timeout=timeout, ca_file=settings["OUTBOUND_CA_FILE"])


SENDERS: dict[str, Sender] = {"webhook": _webhook, "slack": _slack, "email": _email}


def attempt(claimed: Claimed, catalogue: Catalogue, settings: Mapping[str, Any]) -> SendResult:
    """Send ``claimed`` once as its notification says now; the result's reason is one of ``RESULTS``.

    The attempt ends before the lease does (its timeout is cut to fit), so a
    slow receiver cannot make another replica take over a send still in flight.
    """
    notification = catalogue.notifications.get(claimed.destination)
    if notification is None or catalogue.unconfigured_reason(claimed.destination) is not None:
        return SendResult(ok=False, reason=UNCONFIGURED)
    lease = float(settings["DELIVERY_LEASE_SECONDS"])
    timeout = max(0.5, min(notification.timeout, lease / 2))
    target = catalogue.notification_targets[claimed.destination]
    return SENDERS[notification.kind](claimed, notification, target, settings, timeout)
