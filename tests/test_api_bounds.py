"""Out-of-range and malformed values are validation errors (or 404s), never 500s, on both engines.

Each was a 500 found while making the schemathesis run (tests/test_api_openapi.py)
reach real objects: ``Last-Event-ID: 2580893040`` (PostgreSQL refused to compare
it with the 32-bit chunk id), ``NaN``/``Infinity``/``1e400`` in a JSON body (the
run.rejected audit event could not be written), a ``since`` whose UTC time is
past year 9999, and a NUL in a run id (PostgreSQL refuses NUL in a parameter).
"""

from __future__ import annotations

import pytest

from tests.test_api_runs import api_app, assert_error, bearer, catalogue_path, people, start  # noqa: F401

pytestmark = pytest.mark.both_engines  # hostile input that each engine refuses differently (integer ranges, NUL)


def test_a_last_event_id_past_any_chunk_id_is_400_not_500(api_app, bearer):  # noqa: F811
    client, headers = api_app.test_client(), bearer("staff")
    run_id = start(client, headers, "echo", {"args": ["once"]}, wait=20).get_json()["id"]
    url = f"/api/v1/runs/{run_id}/stream"
    for too_big in ("2147483648", "2580893040", "999999999999"):
        assert_error(
            client.get(url, headers={**headers, "Last-Event-ID": too_big}), 400, "validation_error", "Last-Event-ID"
        )
        assert_error(
            client.get(f"{url}?last_event_id={too_big}", headers=headers), 400, "validation_error", "Last-Event-ID"
        )
    largest = client.get(url, headers={**headers, "Last-Event-ID": "2147483647"})
    body = largest.get_data(as_text=True)
    assert largest.status_code == 200 and "event: end" in body and "event: output" not in body  # nothing after it
    replay = client.get(url, headers={**headers, "Last-Event-ID": "0"}).get_data(as_text=True)
    assert "event: output" in replay and "once" in replay


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_non_finite_numbers_in_a_json_body_are_400(api_app, bearer, number):  # noqa: F811
    client, headers = api_app.test_client(), bearer("staff")
    json_headers = {**headers, "Content-Type": "application/json"}
    for body, field in (
        (b'{"params": {"seconds": %s}}', "params.seconds"),
        (b'{"params": {"seconds": 1}, "wait": %s}', "wait"),
    ):
        response = client.post("/api/v1/commands/nap/runs", data=body % number, headers=json_headers)
        assert_error(response, 400, "validation_error", field)  # the error names where the number was
    compat = client.post(
        "/shell2http/echo", data=b'{"args": ["a"], "callback_context": {"x": %s}}' % number, headers=json_headers
    )
    assert compat.status_code == 400 and set(compat.get_json()) == {"error"}  # Flask-Shell2HTTP's own shape
    assert start(client, headers, "nap", {"seconds": 0.5}, wait=20).get_json()["status"] == "succeeded"  # finite: fine


@pytest.mark.parametrize(
    "since", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59.999999-00:01"]
)
def test_a_time_outside_the_utc_calendar_is_400(api_app, bearer, since):  # noqa: F811
    client, headers = api_app.test_client(), bearer("admin")
    assert_error(
        client.get("/api/v1/audit", query_string={"since": since}, headers=headers), 400, "validation_error", "since"
    )
    assert_error(
        client.get("/api/v1/audit", query_string={"until": since}, headers=headers), 400, "validation_error", "until"
    )
    assert (
        client.get("/api/v1/audit", query_string={"since": "9999-12-31T23:59:59+00:00"}, headers=headers).status_code
        == 200
    )


def test_a_run_id_with_a_control_character_is_404(api_app, bearer):  # noqa: F811
    client, headers = api_app.test_client(), bearer("admin")
    for path in ("/api/v1/runs/%00", "/api/v1/runs/a%00b", "/api/v1/runs/%01/stream"):
        assert_error(client.get(path, headers=headers), 404, "not_found")
    assert_error(client.post("/api/v1/runs/%00/cancel", headers=headers), 404, "not_found")


def _refusals(app) -> list:
    from sqlalchemy import select

    from gateway.db.models import AuditEvent, Run
    from gateway.platform.extensions import db

    with app.app_context():
        events = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "run.rejected")).all()
        runs = db.session.scalars(select(Run)).all()
        return [(event.command, event.outcome, event.detail) for event in events], len(runs)


def test_a_run_request_refused_before_it_is_read_is_on_record(api_app, bearer):  # noqa: F811
    """Malformed bodies (JSON API and Shell2HTTP) are refusals like any other: audited, nothing run."""
    client, headers = api_app.test_client(), bearer("staff")
    json_headers = {**headers, "Content-Type": "application/json"}
    cases = [
        ("/api/v1/commands/nap/runs", b"{not json", json_headers, 400, "body"),
        ("/api/v1/commands/nap/runs", b'{"params": {}, "params": {}}', json_headers, 400, "params"),
        ("/api/v1/commands/nap/runs", b'{"params": {}, "surprise": 1}', json_headers, 400, "surprise"),
        ("/api/v1/commands/nap/runs", b'{"params": []}', json_headers, 400, "params"),
        ("/api/v1/commands/nap/runs", b'{"params": {}, "wait": 61}', json_headers, 400, "wait"),
        ("/api/v1/commands/nap/runs", b"params=1", {**headers, "Content-Type": "text/plain"}, 415, None),
        ("/shell2http/echo", b"{not json", json_headers, 400, None),
        ("/shell2http/echo", b'{"args": ["a"], "timeout": -1}', json_headers, 400, None),
    ]
    for path, body, request_headers, status, field in cases:
        before, _ = _refusals(api_app)
        response = client.post(path, data=body, headers=request_headers)
        assert response.status_code == status, (path, body, response.get_json())
        after, run_count = _refusals(api_app)
        new = after[len(before) :]
        command = "nap" if path.startswith("/api/") else "echo"
        assert [(name, outcome) for name, outcome, _ in new] == [(command, "invalid_request")], (path, body, new)
        if field is not None:
            assert field in new[0][2]["fields"], (path, body, new[0][2])
            assert field in response.get_json()["error"]["details"]
        assert run_count == 0


def test_malformed_run_requests_spend_the_refusal_budget(make_app, catalogue_path, people):  # noqa: F811
    from tests.test_api_runs import issue_token

    app = make_app(GATEWAY_COMMANDS_FILE=catalogue_path, RUN_REFUSAL_RATE_LIMIT="2/minute")
    headers = {"Authorization": f"Bearer {issue_token(app, 'staff')[1]}", "Content-Type": "application/json"}
    client = app.test_client()
    statuses = [client.post("/api/v1/commands/nap/runs", data=b"{", headers=headers).status_code for _ in range(3)]
    assert statuses == [400, 400, 429]
