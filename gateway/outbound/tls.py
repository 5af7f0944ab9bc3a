"""The TLS client context for every outbound connection: verify against the system store plus ``OUTBOUND_CA_FILE``.

Receivers inside an organisation often carry certificates from a private CA;
adding that CA to the system store's trust (rather than replacing it) keeps
public receivers such as Slack working in the same process.
"""

from __future__ import annotations

import ssl
from functools import lru_cache


@lru_cache(maxsize=4)
def client_context(ca_file: str | None) -> ssl.SSLContext:
    """A verifying client context (hostname checked, TLS 1.2 or newer), shared per CA file.

    :raise OSError / ssl.SSLError: the CA file cannot be read or holds no certificate.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context
