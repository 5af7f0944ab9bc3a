"""The audit viewer over HTTP on both engines: filters return exactly the matching rows, pages by seq,
the event detail, the "verify chain" action against an edited and a deleted row, and escaping.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from gateway import audit
from gateway.db.units import write_transaction
from gateway.platform.extensions import db
from tests.conftest import csrf_token_from

pytestmark = (
    pytest.mark.both_engines
)  # the audit viewer's filters and paging are SQL; the text search differs per engine

BASE = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
# (event, actor, command, outcome, source_ip, params) — one row each, an hour apart from BASE.
SPEC = [
    ("run.started", "alice", "disk-usage", "started", "10.0.0.1", {"mount": "/"}),
    ("run.finished", "alice", "disk-usage", "succeeded", "10.0.0.1", {"mount": "/"}),
    ("run.started", "bob", "task-status", "started", "10.0.0.2", {"status": "Failed"}),
    ("run.rejected", "bob", "task-status", "validation_error", "10.0.0.2", {"status": "nope"}),
    ("auth.login", "carol", None, "ok", "10.0.0.3", None),
    ("auth.login_failed", "mallory", None, "bad_password", "192.168.1.9", None),
    ("admin.grant_added", "carol", "disk-usage", "ok", "10.0.0.3", None),
    ("admin.user_updated", "carol", None, "ok", "10.0.0.3", {"note": "café au lait"}),
    ("run.started", "alice", "grep-logs", "started", "10.0.0.1", {"pattern": "db_1%x"}),
    ("run.started", "alice", "grep-logs", "started", "10.0.0.1", {"pattern": "dbA1zx"}),
    ("run.started", "bob", "grep-logs", "started", "10.0.0.2", {"pattern": 'say "hi"'}),
]


def add_events(app, spec=SPEC, base: datetime = BASE) -> list[int]:
    with app.app_context(), write_transaction() as tx:
        seqs = []
        for index, (event, actor, command, outcome, source_ip, params) in enumerate(spec):
            row = audit.append(
                event, session=tx, actor={"id": None, "name": actor}, command=command, outcome=outcome,
                source_ip=source_ip, params=params, at=base + timedelta(hours=index),
            )  # fmt: skip
            seqs.append(row.seq)
        return seqs


@pytest.fixture
def admin(login):
    return login("admin")


@pytest.fixture
def seqs(app, users) -> list[int]:
    return add_events(app)


def shown_seqs(html: str) -> list[int]:
    body = html[html.index("<tbody>") :]
    return [int(n) for n in re.findall(r'<td class="num"><a href="/admin/audit/(\d+)">', body)]


def matching(seqs: list[int], predicate) -> list[int]:
    """What the viewer must show for a filter: the SPEC rows it matches, newest first."""
    return sorted((seq for seq, row in zip(seqs, SPEC, strict=True) if predicate(*row)), reverse=True)


FILTERS = [
    ({"actor": "alice"}, lambda e, a, c, o, s, p: a == "alice"),
    ({"event": "run.started"}, lambda e, a, c, o, s, p: e == "run.started"),
    ({"event": "admin.*"}, lambda e, a, c, o, s, p: e.startswith("admin.")),
    ({"command": "task-status"}, lambda e, a, c, o, s, p: c == "task-status"),
    ({"outcome": "ok"}, lambda e, a, c, o, s, p: o == "ok"),
    ({"source_ip": "192.168.1.9"}, lambda e, a, c, o, s, p: s == "192.168.1.9"),
    ({"actor": "bob", "command": "grep-logs"}, lambda e, a, c, o, s, p: a == "bob" and c == "grep-logs"),
    ({"text": "db_1%"}, lambda e, a, c, o, s, p: p == {"pattern": "db_1%x"}),  # % and _ are literal
    ({"text": "DB_1"}, lambda e, a, c, o, s, p: p == {"pattern": "db_1%x"}),  # case-insensitive
    ({"text": "café"}, lambda e, a, c, o, s, p: p == {"note": "café au lait"}),  # stored JSON-escaped
    ({"text": 'say "hi"'}, lambda e, a, c, o, s, p: p == {"pattern": 'say "hi"'}),
    ({"text": "mount"}, lambda e, a, c, o, s, p: p is not None and "mount" in p),  # keys count too
    ({"text": "no such text"}, lambda e, a, c, o, s, p: False),
]


@pytest.mark.parametrize("args,predicate", FILTERS, ids=[str(f[0]) for f in FILTERS])
def test_filters_return_exactly_the_matching_rows(app, admin, seqs, args, predicate):
    # The fixture's own events (user creation, sign-in) happen now; SPEC lives in May 2024.
    response = admin.get("/admin/audit", query_string={**args, "until": "2024-06-01T00:00"})
    assert response.status_code == 200
    assert shown_seqs(response.get_data(as_text=True)) == matching(seqs, predicate)


def test_time_range_is_half_open(app, admin, seqs):
    since = (BASE + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    until = (BASE + timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    shown = shown_seqs(admin.get("/admin/audit", query_string={"since": since, "until": until}).get_data(as_text=True))
    assert shown == sorted(seqs[2:5], reverse=True)
    combined = admin.get("/admin/audit", query_string={"since": since, "actor": "bob"}).get_data(as_text=True)
    assert shown_seqs(combined) == matching(seqs, lambda e, a, *rest: a == "bob")


def test_a_bad_time_is_a_400_naming_the_field(app, admin, seqs):
    response = admin.get("/admin/audit?since=yesterday")
    assert response.status_code == 400 and "since" in response.get_data(as_text=True)
    assert admin.get("/admin/audit?before=abc").status_code == 400


def test_keyset_pages_cover_every_row_once_and_keep_the_filter(app, admin, users):
    many = [("test.page", "pager", None, "ok", "10.9.9.9", {"i": i}) for i in range(120)]
    seqs = add_events(app, many)
    add_events(app, [("test.other", "pager", None, "ok", "10.9.9.9", None)])
    seen, url, pages = [], "/admin/audit?event=test.page", 0
    while url:
        html = admin.get(url).get_data(as_text=True)
        seen += shown_seqs(html)
        pages += 1
        match = re.search(r'<a href="([^"]+)" rel="next">', html)
        url = match.group(1).replace("&amp;", "&") if match else None
        if url:
            assert "event=test.page" in url and "before=" in url
    assert pages == 3 and seen == sorted(seqs, reverse=True)


def test_event_detail_shows_params_excerpt_digest_chain_and_run_link(app, admin, users):
    with app.app_context(), write_transaction() as tx:
        row = audit.append(
            "run.finished", session=tx, actor={"id": 1, "name": "admin"}, command="disk-usage",
            run_id="0b7f3c9e-1111-4222-8333-444455556666", params={"mount": "/var"}, outcome="succeeded",
            detail={"exit_code": 0, "output_sha256": "ab" * 32, "output_excerpt": "Filesystem  Size\n/dev/sda1 20G"},
        )  # fmt: skip
        seq, digest, prev = row.seq, row.hash, row.prev_hash
    page = admin.get(f"/admin/audit/{seq}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "&#34;mount&#34;" in html or '"mount"' in html
    assert "/dev/sda1 20G" in html and "ab" * 32 in html and digest in html and prev in html
    assert 'href="/runs/0b7f3c9e-1111-4222-8333-444455556666"' in html
    assert admin.get("/admin/audit/999999").status_code == 404


def test_output_is_escaped_everywhere(app, admin, users):
    evil = "<script>alert(1)</script>"
    add_events(app, [("auth.login_failed", evil, evil, evil, "10.0.0.9", {"q": evil})])
    listing = admin.get("/admin/audit").get_data(as_text=True)
    seq = shown_seqs(listing)[0]
    detail = admin.get(f"/admin/audit/{seq}").get_data(as_text=True)
    searched = admin.get("/admin/audit", query_string={"text": evil, "actor": evil}).get_data(as_text=True)
    for html in (listing, detail, searched):
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert shown_seqs(searched) == [seq]


def verify_from_ui(admin) -> str:
    token = csrf_token_from(admin.get("/admin/audit").get_data(as_text=True))
    response = admin.post("/admin/audit/verify", data={"csrf_token": token})
    assert response.status_code == 200
    return response.get_data(as_text=True)


def tamper(app, sql: str, **params) -> None:
    with app.app_context(), db.engine.begin() as connection:
        connection.execute(text(sql), params)


def drop_update_trigger(app) -> None:
    """The attacker with database access drops the append-only trigger first (as in test_audit_tamper)."""
    suffix = " ON audit_events" if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql") else ""
    tamper(app, "DROP TRIGGER audit_events_no_update" + suffix)


def test_verify_reports_ok_then_an_edited_row(app, admin, seqs):
    assert "Chain OK" in verify_from_ui(admin)
    target = seqs[4]
    drop_update_trigger(app)
    tamper(app, "UPDATE audit_events SET outcome = 'fail' WHERE seq = :seq", seq=target)
    html = verify_from_ui(admin)
    assert f"Chain broken at seq {target}" in html and "Chain OK" not in html


def test_verify_reports_a_deleted_row(app, admin, seqs):
    target = seqs[6]
    tamper(app, "DELETE FROM audit_events WHERE seq = :seq", seq=target)
    assert f"Chain broken at seq {target}" in verify_from_ui(admin)


def test_verify_needs_post_and_csrf(app, admin, seqs):
    assert admin.get("/admin/audit/verify").status_code == 405
    assert admin.post("/admin/audit/verify").status_code == 400
