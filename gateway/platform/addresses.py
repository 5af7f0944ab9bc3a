"""The caller's address as the gateway trusts it: request plumbing every room reads, owned by none.

``request.remote_addr`` is the address after ProxyFix, which ``gateway.access.netguard``
installs only when ``TRUSTED_PROXY_COUNT`` > 0 (then honouring exactly that many
X-Forwarded-For hops).  The allowlist, the rate limiter's key, the audit ledger and
the views all read it here, so none of them imports another for it.
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
