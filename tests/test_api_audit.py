"""/api/v1/audit and /api/v1/audit/verify: admins only (staff 403), filters, keyset paging, verification."""

from __future__ import annotations

import pytest
from sqlalchemy import text, update

from tests.test_api_runs import api_app, assert_error, bearer, catalogue_path, people, start, wait_done  # noqa: F401

pytestmark = pytest.mark.both_engines  # the audit API's filters, keyset paging and verification are SQL per engine


def test_staff_get_403_on_the_audit(api_app, bearer):  # noqa: F811
    client = api_app.test_client()
    assert_error(client.get("/api/v1/audit", headers=bearer("staff")), 403, "forbidden")
    assert_error(client.get("/api/v1/audit/verify", headers=bearer("staff")), 403, "forbidden")


def test_audit_filters_and_pages_newest_first(api_app, bearer):  # noqa: F811
    client, admin, staff = api_app.test_client(), bearer("admin"), bearer("staff")
    run_ids = [start(client, staff, "echo", {"args": [str(i)]}, wait=20).get_json()["id"] for i in range(3)]
    everything = client.get("/api/v1/audit?limit=500", headers=admin).get_json()
    seqs = [item["seq"] for item in everything["items"]]
    assert seqs == sorted(seqs, reverse=True) and everything["next_cursor"] is None
    started = client.get("/api/v1/audit?event=run.started&actor=staff&command=echo", headers=admin).get_json()["items"]
    assert sorted(item["run_id"] for item in started) == sorted(run_ids)
    assert all(item["actor"]["name"] == "staff" and item["source_ip"] == "127.0.0.1" for item in started)
    finished = client.get("/api/v1/audit?event=run.finished&outcome=succeeded", headers=admin).get_json()["items"]
    assert len(finished) == 3
    assert client.get("/api/v1/audit?source_ip=10.9.9.9", headers=admin).get_json()["items"] == []
    paged, cursor = [], None
    while True:
        page = client.get("/api/v1/audit?limit=2" + (f"&cursor={cursor}" if cursor else ""), headers=admin).get_json()
        paged += [item["seq"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paged == seqs
    newest = everything["items"][0]["at"]
    assert [i["seq"] for i in client.get(f"/api/v1/audit?since={newest}", headers=admin).get_json()["items"]] == [
        seqs[0]
    ]
    assert seqs[0] not in [
        i["seq"] for i in client.get(f"/api/v1/audit?until={newest}", headers=admin).get_json()["items"]
    ]
    for query, field in [
        ("since=yesterday", "since"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("cursor=x", "cursor"),
        ("actor=%00", "actor"),
    ]:
        assert_error(client.get(f"/api/v1/audit?{query}", headers=admin), 400, "validation_error", field)


def test_verify_reports_the_chain_and_a_tampered_row(api_app, bearer):  # noqa: F811
    from gateway.db.models import AuditEvent
    from gateway.db.units import write_transaction

    client, admin = api_app.test_client(), bearer("admin")
    start(client, bearer("staff"), "echo", {"args": ["x"]}, wait=20)
    intact = client.get("/api/v1/audit/verify", headers=admin).get_json()
    assert intact["ok"] is True and intact["first_bad_seq"] is None and intact["checked"] >= 3
    assert set(intact["head"]) == {"seq", "hash"}
    partial = client.get("/api/v1/audit/verify?from_seq=2", headers=admin).get_json()
    assert partial["ok"] is True and partial["checked"] == intact["checked"] - 1
    with api_app.app_context(), write_transaction() as tx:  # an attacker with SQL access: trigger off, edit
        postgres = tx.get_bind().dialect.name == "postgresql"
        tx.execute(text("DROP TRIGGER audit_events_no_update" + (" ON audit_events" if postgres else "")))
        tx.execute(update(AuditEvent).where(AuditEvent.seq == 2).values(outcome="forged"))
    broken = client.get("/api/v1/audit/verify", headers=admin).get_json()
    assert broken["ok"] is False and broken["first_bad_seq"] == 2
    assert_error(client.get("/api/v1/audit/verify?from_seq=0", headers=admin), 400, "validation_error", "from_seq")


@pytest.mark.parametrize("path", ["/api/v1/audit", "/api/v1/audit/verify"])
def test_audit_needs_authentication(api_app, people, path):  # noqa: F811
    assert_error(api_app.test_client().get(path), 401, "unauthorized")
