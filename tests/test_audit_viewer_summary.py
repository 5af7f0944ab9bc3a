"""The audit list says what happened to whom, on both engines: a Summary column from the detail
(escaped, bounded, never the params), free text over the detail as well as the params (LIKE's
``%`` and ``_`` literal), the event filter as a select with readable labels, a match count,
date-time pickers and quick ranges (the ISO query-string forms still work), and export file
names that carry the date and the filter.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from gateway import audit
from gateway.audit import exports, queries
from gateway.audit.summary import EVENT_LABELS, MAX_SUMMARY, summary
from gateway.db.units import write_transaction
from tests.test_admin_audit import shown_seqs

pytestmark = pytest.mark.both_engines  # the text search over the detail is SQL that differs per engine

BASE = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
# (event, command, outcome, detail, params)
EVENTS = [
    ("admin.group_member_added", None, "ok", {"group": "oncall", "user": "alice"}, None),
    ("admin.grant_added", "uptime", "ok", {"group": "oncall"}, None),
    ("admin.user_updated", None, "ok", {"before": {"username": "bob", "active": True, "is_admin": False},
                                        "after": {"username": "bob", "active": False, "is_admin": False}}, None),
    ("run.finished", "uptime", "succeeded", {"exit_code": 0, "error": "disk 100%_full"}, {"host": "web-1"}),
    ("admin.group_created", None, "ok", {"group": "<script>alert(1)</script>"}, None),
    ("run.started", "grep-logs", "started", {"command_sha256": "ab" * 32}, {"pattern": "needle-in-params"}),
]  # fmt: skip


def add(app, events=EVENTS) -> list[int]:
    with app.app_context(), write_transaction() as tx:
        return [
            audit.append(
                event, session=tx, actor={"id": None, "name": "carol"}, command=command, outcome=outcome,
                detail=detail, params=params, at=BASE + timedelta(minutes=index),
            ).seq
            for index, (event, command, outcome, detail, params) in enumerate(events)
        ]  # fmt: skip


@pytest.fixture
def admin(login):
    return login("admin")


@pytest.fixture
def seqs(app, users) -> list[int]:
    return add(app)


def row_of(html: str, seq: int) -> str:
    match = re.search(rf'<tr>\s*<td class="num"><a href="/admin/audit/{seq}">.*?</tr>', html, re.S)
    assert match, f"no row for seq {seq}"
    return match.group(0)


def summary_cell(html: str, seq: int) -> str:
    return re.search(r'<td class="summary">(.*?)</td>', row_of(html, seq), re.S).group(1)


def test_the_summary_column_says_what_happened_to_whom(app, admin, seqs):
    html = admin.get("/admin/audit?until=2024-06-01T00:00").get_data(as_text=True)
    assert '<th scope="col">Summary</th>' in html
    assert summary_cell(html, seqs[0]) == "alice → oncall"
    assert summary_cell(html, seqs[1]) == "granted uptime to oncall"
    assert summary_cell(html, seqs[2]) == "disabled bob"
    assert summary_cell(html, seqs[3]) == "ran uptime: succeeded"
    # A name with markup is text, escaped: never markup on the page.
    assert summary_cell(html, seqs[4]) == "created group &lt;script&gt;alert(1)&lt;/script&gt;"
    assert "<script>alert(1)" not in html
    # The detail page says it too, with the event's readable name.
    detail = admin.get(f"/admin/audit/{seqs[1]}").get_data(as_text=True)
    assert "Permission granted: granted uptime to oncall" in detail


def test_a_summary_is_bounded_and_never_shows_the_params():
    long_name = "g" * 500
    text = summary("admin.group_member_added", {"group": long_name, "user": long_name})
    assert len(text) <= MAX_SUMMARY
    # Only named detail keys are read: whatever else a detail or the params hold stays out.
    assert "hunter2" not in summary("run.finished", {"token": "hunter2"}, command="x", outcome="failed")
    assert summary("run.finished", {"token": "hunter2"}, command="x", outcome="failed") == "ran x: failed"
    # Every documented event has a readable name; an unknown event or an odd detail still reads.
    assert set(queries.known_events()) <= set(EVENT_LABELS)
    assert summary("something.new", None, command="x") == "something.new: x"
    assert summary("admin.user_updated", {"before": "odd", "after": ["odd"]}) == "changed ?"


@pytest.mark.parametrize(
    "needle,index",
    [("alice", 0), ("ONCALL", None), ("100%_", 3), ("needle-in-params", 5), ("web-1", 3)],
)
def test_free_text_searches_the_detail_as_well_as_the_params(app, admin, seqs, needle, index):
    html = admin.get("/admin/audit", query_string={"text": needle, "until": "2024-06-01T00:00"}).get_data(as_text=True)
    if index is None:  # "oncall" is in two details (the member and the grant): both, newest first, any case
        assert shown_seqs(html) == [seqs[1], seqs[0]]
    else:
        assert shown_seqs(html) == [seqs[index]]


def test_like_wildcards_in_the_search_are_literal(app, admin, seqs):
    # "%" and "_" match only themselves: "0%_f" is in one detail; "0__f" (two any-characters) in none.
    assert shown_seqs(admin.get("/admin/audit?text=0%25_f").get_data(as_text=True)) == [seqs[3]]
    assert shown_seqs(admin.get("/admin/audit?text=0__f").get_data(as_text=True)) == []


def test_the_event_filter_is_a_select_with_readable_labels(app, admin, seqs):
    html = admin.get("/admin/audit?event=run.finished").get_data(as_text=True)
    select = re.search(r'<select id="f-event" name="event">(.*?)</select>', html, re.S).group(1)
    assert '<option value="run.finished" selected>Run finished (run.finished)</option>' in select
    assert '<option value="admin.*">Any admin change</option>' in select
    assert shown_seqs(html) == [seqs[3]]
    # A value typed into the query string that the list does not have is still offered, selected.
    html = admin.get("/admin/audit?event=custom.thing").get_data(as_text=True)
    assert '<option value="custom.thing" selected>custom.thing</option>' in html


def test_the_page_says_how_many_events_match(app, admin, seqs):
    html = admin.get("/admin/audit?actor=carol&command=uptime").get_data(as_text=True)
    assert "2 events match this filter." in html
    html = admin.get("/admin/audit?actor=carol&event=run.started").get_data(as_text=True)
    assert "1 event matches this filter." in html
    with app.test_request_context():
        flt = queries.AuditFilter.from_args({"actor": "carol"})
        assert queries.count(flt) == (len(EVENTS), False)
        assert queries.count(flt, cap=2) == (2, True)  # bounded: stops counting past the cap


def test_the_time_filters_are_pickers_in_utc_without_script_and_iso_still_works(app, admin, seqs):
    html = admin.get("/admin/audit?since=2024-05-01T14:02:00%2B02:00&until=2024-05-01T12:04Z").get_data(as_text=True)
    # 14:02+02:00 is 12:02 UTC: the pickers show UTC (the script turns it into the reader's time).
    assert re.search(r'<input type="datetime-local" id="f-since" name="since" step="1" value="2024-05-01T12:02"', html)
    assert 'value="2024-05-01T12:04"' in html
    assert shown_seqs(html) == [seqs[3], seqs[2]]
    assert '<span class="no-js">(UTC)</span>' in html
    # Quick ranges are links that keep the other filters and set "since" (UTC without the script).
    html = admin.get("/admin/audit?actor=carol").get_data(as_text=True)
    links = dict(re.findall(r'<a href="([^"]+)" data-range="(\w+)"', html))
    assert set(links.values()) == {"hour", "today", "week"}
    for href in links:
        assert "actor=carol" in href and "since=" in href
    hour = next(href for href, key in links.items() if key == "hour")
    since = re.search(r"since=([0-9T:%A-Z-]+)", hour).group(1).replace("%3A", ":")
    assert abs(datetime.fromisoformat(since.replace("Z", "+00:00")) - (datetime.now(UTC) - timedelta(hours=1))) < (
        timedelta(minutes=5)
    )


def test_export_file_names_carry_the_date_and_the_filter(app, admin, seqs):
    today = datetime.now(UTC).date().isoformat()
    for url, name in [
        ("/admin/audit/export.csv?event=run.finished", f"audit-{today}-event-run.finished.csv"),
        ("/admin/audit/export.jsonl", f"audit-{today}.jsonl"),
    ]:
        with admin.get(url) as response:
            response.get_data()
            assert response.headers["Content-Disposition"] == f'attachment; filename="{name}"'
    flt = queries.AuditFilter.from_args(
        {"actor": 'ev"il/../x;\r\nrm', "since": "2024-05-01T12:00Z", "event": "admin.*"}
    )
    name = exports.filename("csv", flt, today=BASE.date())
    assert re.fullmatch(r"[A-Za-z0-9._-]+", name), name
    assert name.startswith("audit-2024-05-01-since-2024-05-01T12-00-00-") and name.endswith(".csv")
