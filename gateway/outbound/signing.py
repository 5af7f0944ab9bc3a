"""The webhook signature (DESIGN.md, "Outbound delivery"): HMAC-SHA256 over ``timestamp + "." + body``.

Signing the exact bytes sent, with the timestamp inside the MAC and the
delivery id both in a header and in the body, lets a receiver reject a
replayed, re-timed or altered request and drop an id it has already seen, so
at-least-once delivery is safe for it.  Notifications and the audit forwarder's
HTTP batches use the same headers.
"""

from __future__ import annotations

import hashlib
import hmac

DELIVERY_HEADER = "X-Gateway-Delivery"
TIMESTAMP_HEADER = "X-Gateway-Timestamp"
SIGNATURE_HEADER = "X-Gateway-Signature"
# A receiver rejects timestamps further than this from its own clock (DESIGN.md).
TIMESTAMP_TOLERANCE_SECONDS = 300


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """``sha256=<lowercase hex HMAC-SHA256(secret, "<timestamp>." + body)>``."""
    mac = hmac.new(secret, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signed_headers(delivery_id: str, body: bytes, timestamp: int, secret: bytes | None) -> dict[str, str]:
    """The headers of a signed JSON POST; without a secret the signature header is left out, not faked."""
    headers = {
        "Content-Type": "application/json",
        DELIVERY_HEADER: delivery_id,
        TIMESTAMP_HEADER: str(timestamp),
    }
    if secret:
        headers[SIGNATURE_HEADER] = signature(secret, timestamp, body)
    return headers


def verify_signature(
    secret: bytes, headers: dict[str, str], body: bytes, now: int, tolerance: int = TIMESTAMP_TOLERANCE_SECONDS
) -> bool:
    """What a receiver checks: a well-formed timestamp within ``tolerance`` of ``now`` and a matching MAC.

    The gateway never receives its own webhooks; this is the reference the
    README's receiver follows and the tests' receivers use.
    """
    stamp = headers.get(TIMESTAMP_HEADER, "")
    if not stamp.isdigit() or abs(now - int(stamp)) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, int(stamp), body), headers.get(SIGNATURE_HEADER, ""))
