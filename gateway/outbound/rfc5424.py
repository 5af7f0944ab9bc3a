"""Syslog messages as RFC 5424 defines them, framed by octet counting (RFC 6587, section 3.4.1).

Our own, small and strict, rather than a library: the Python packages for RFC
5424 are ``logging`` formatters or handlers (rfc5424-logging-handler,
syslog-rfc5424-formatter), built around a ``LogRecord`` and their own socket,
with structured data as an afterthought, and none has had a release in years.
We need one pure function from fields to bytes: a header we validate once,
structured data under our own SD-ID, and a UTF-8 message, which the audit
forwarder frames and writes to its own connection (``gateway.outbound.stream``).

Strict means a field the grammar does not allow raises ``ValueError`` instead of
being sent mangled: header fields are printable US-ASCII within their lengths
(or ``-``, the NILVALUE), SD names are at most 32 such characters without
``=``, space, ``]`` or ``"``, and in parameter values ``"``, ``\\`` and ``]`` are
escaped with a backslash (section 6.3.3).  The message is ``BOM`` + UTF-8
(section 6.4), so a receiver knows it is UTF-8.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

NILVALUE = "-"
BOM = b"\xef\xbb\xbf"
VERSION = 1
# Facility 13 is "log audit" (section 6.2.1); severity 6 "informational".
LOG_AUDIT = 13
INFORMATIONAL = 6
_PRINTUSASCII = re.compile(r"[\x21-\x7e]+")
_SD_NAME = re.compile(r"[\x21-\x7e]{1,32}")
_SD_NAME_FORBIDDEN = re.compile(r'[= \]"]')
# TIMESTAMP (section 6.2.3): RFC 3339 with at most six fractional digits; we always send UTC.
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")
_ESCAPE = str.maketrans({'"': '\\"', "\\": "\\\\", "]": "\\]"})
HEADER_LIMITS = {"hostname": 255, "app_name": 48, "procid": 128, "msgid": 32}


def header_field(name: str, value: str | None) -> str:
    """A header field as sent: ``-`` for none; :raise ValueError: not printable US-ASCII or too long."""
    if value is None or value == "":
        return NILVALUE
    if not _PRINTUSASCII.fullmatch(value) or len(value) > HEADER_LIMITS[name]:
        raise ValueError(f"{name}: {value!r} is not 1-{HEADER_LIMITS[name]} printable US-ASCII characters")
    return value


def sd_name(value: str) -> str:
    """An SD-ID or PARAM-NAME; :raise ValueError: not 1-32 printable US-ASCII without ``=``, space, ``]``, ``"``."""
    if not _SD_NAME.fullmatch(value) or _SD_NAME_FORBIDDEN.search(value):
        raise ValueError(f"{value!r} is not an SD name (1-32 printable US-ASCII, no '=', ' ', ']' or '\"')")
    return value


def sd_value(value: str) -> str:
    """A PARAM-VALUE with ``"``, ``\\`` and ``]`` escaped (any other UTF-8 text is allowed as it is)."""
    return value.translate(_ESCAPE)


def structured_data(sd_id: str, params: Sequence[tuple[str, str]]) -> str:
    """One SD-ELEMENT: ``[sd_id name="value" ...]``."""
    inner = "".join(f' {sd_name(name)}="{sd_value(value)}"' for name, value in params)
    return f"[{sd_name(sd_id)}{inner}]"


class Rfc5424:
    """Messages from one sender: the constant header fields are checked once, here, not per message."""

    def __init__(
        self,
        *,
        hostname: str | None,
        app_name: str,
        procid: str | None = None,
        facility: int = LOG_AUDIT,
        severity: int = INFORMATIONAL,
    ):
        if not (0 <= facility <= 23 and 0 <= severity <= 7):
            raise ValueError("facility must be 0-23 and severity 0-7")
        self._pri = f"<{facility * 8 + severity}>{VERSION} "
        self._middle = " ".join(
            (header_field("hostname", hostname), header_field("app_name", app_name), header_field("procid", procid))
        )
        self._msgids: dict[str, str] = {}

    def msgid(self, value: str | None) -> str:
        """The MSGID as sent (checked once per distinct value: event names repeat)."""
        key = value or ""
        checked = self._msgids.get(key)
        if checked is None:
            checked = header_field("msgid", value)
            if len(self._msgids) < 1024:
                self._msgids[key] = checked
        return checked

    def message(self, *, timestamp: str, msgid: str | None, sd: str, msg: str) -> bytes:
        """One SYSLOG-MSG: header, ``sd`` (from ``structured_data``, or ``-``), ``BOM`` + ``msg`` as UTF-8.

        :raise ValueError: ``timestamp`` is neither ``-`` nor RFC 3339 UTC with at most six fractional digits.
        """
        if timestamp != NILVALUE and not _TIMESTAMP.fullmatch(timestamp):
            raise ValueError(f"timestamp: {timestamp!r} is not RFC 3339 UTC (at most 6 fractional digits)")
        head = f"{self._pri}{timestamp} {self._middle} {self.msgid(msgid)} {sd} "
        return head.encode("utf-8") + BOM + msg.encode("utf-8")


def frame(message: bytes) -> bytes:
    """Octet counting (RFC 6587, 3.4.1): ``MSG-LEN SP SYSLOG-MSG``, the length in bytes."""
    return b"%d %s" % (len(message), message)
