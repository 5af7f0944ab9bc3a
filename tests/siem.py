"""What a SIEM does with forwarded audit events, for the forwarding tests and benchmark.

``parse_syslog`` reads one RFC 5424 message strictly (as our forwarder frames
them: structured data, then a BOM and the message); ``chain_of`` checks what a
receiver can check without the audit key: contiguous ``seq`` and each
``prev_hash`` equal to the previous ``hash``; ``ledger`` reads the database's
own ``seq -> hash`` so a test can compare both ends.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import Flask

from gateway.db.models import AuditEvent
from gateway.platform.extensions import db

_HEADER = re.compile(
    rb"<(?P<pri>\d{1,3})>1 (?P<timestamp>\S+) (?P<hostname>\S+) (?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+) "
)
_SD_ELEMENT = re.compile(rb'\[(?P<id>[^ \]="]+)(?P<params>(?: [^ \]="]+="(?:[^"\\\]]|\\["\\\]])*")*)\]')
_SD_PARAM = re.compile(rb' ([^ \]="]+)="((?:[^"\\\]]|\\["\\\]])*)"')
BOM = b"\xef\xbb\xbf"


@dataclass
class SyslogMessage:
    pri: int
    timestamp: str
    hostname: str
    app: str
    procid: str
    msgid: str
    sd: dict[str, dict[str, str]]
    msg: str


def parse_syslog(line: bytes) -> SyslogMessage:
    """One RFC 5424 message with structured data and a UTF-8 (BOM) message; AssertionError when it is not one."""
    header = _HEADER.match(line)
    assert header, f"not an RFC 5424 header: {line[:120]!r}"
    position = header.end()
    sd: dict[str, dict[str, str]] = {}
    while (element := _SD_ELEMENT.match(line, position)) is not None:
        params = {
            name.decode(): re.sub(rb'\\(["\\\]])', rb"\1", value).decode("utf-8")
            for name, value in _SD_PARAM.findall(element.group("params"))
        }
        sd[element.group("id").decode()] = params
        position = element.end()
    assert sd, f"no structured data: {line[:160]!r}"
    assert line[position : position + 1] == b" " and line[position + 1 : position + 4] == BOM, line[
        position : position + 8
    ]
    return SyslogMessage(
        pri=int(header["pri"]), timestamp=header["timestamp"].decode(), hostname=header["hostname"].decode(),
        app=header["app"].decode(), procid=header["procid"].decode(), msgid=header["msgid"].decode(),
        sd=sd, msg=line[position + 4 :].decode("utf-8"),
    )  # fmt: skip


def chain_of(events: Iterable[dict[str, Any]], after: tuple[int, str | None]) -> list[int]:
    """Check each event continues the one before (the first continues ``after`` = (seq, hash)); their seqs."""
    seqs = []
    previous_seq, previous_hash = after
    for event in events:
        seq = int(event["seq"])
        assert seq == previous_seq + 1, f"gap or repeat: {seq} after {previous_seq}"
        if previous_hash is not None:
            assert event["prev_hash"] == previous_hash, f"seq {seq} does not link to {previous_seq}"
        previous_seq, previous_hash = seq, event["hash"]
        seqs.append(seq)
    return seqs


def ledger(app: Flask) -> dict[int, str]:
    """The database's own ``seq -> hash``."""
    with app.app_context():
        rows = db.session.execute(sa.select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq)).all()
        db.session.remove()
    return {int(seq): str(hash_) for seq, hash_ in rows}
