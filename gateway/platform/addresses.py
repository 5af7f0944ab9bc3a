"""The caller's address as the gateway trusts it: request plumbing every room reads, owned by none.

``request.remote_addr`` is the address after ProxyFix, which ``gateway.access.netguard``
installs only when ``TRUSTED_PROXY_COUNT`` > 0 (then honouring exactly that many
X-Forwarded-For hops).  The allowlist, the rate limiter's key, the audit ledger and
the views all read it here, so none of them imports another for it.  ``peer_address``
is the one exception: the socket's own peer, for the single question where a value
from X-Forwarded-For must never count (is this the trusted identity proxy?).
"""

from __future__ import annotations

import ipaddress

from flask import request


def parse_address(value: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP address, with IPv4-mapped IPv6 (``::ffff:10.0.0.1``) folded to IPv4."""
    if not value:
        return None
    try:
        address = ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_address() -> str:
    """The caller's address as the gateway trusts it (empty when there is none)."""
    address = parse_address(request.remote_addr)
    return "" if address is None else str(address)


# Where ProxyFix keeps the environ values it rewrote (werkzeug documents the key).
PROXY_FIX_ORIGINAL = "werkzeug.proxy_fix.orig"


def peer_address() -> str:
    """The TCP peer as the socket gave it, before ProxyFix applied ``TRUSTED_PROXY_COUNT`` (empty when none).

    Header sign-in trusts the proxy that is connected to us, never an address a
    client wrote into X-Forwarded-For, so this reads ``REMOTE_ADDR`` as it was
    before any rewrite.
    """
    original = request.environ.get(PROXY_FIX_ORIGINAL)
    raw = original.get("REMOTE_ADDR") if isinstance(original, dict) else request.environ.get("REMOTE_ADDR")
    address = parse_address(raw if isinstance(raw, str) else None)
    return "" if address is None else str(address)
