"""Values past the database's integer ranges are validation errors, never 500s, on both engines.

Found by the schemathesis run (tests/test_api_openapi.py): ``Last-Event-ID:
2580893040`` made PostgreSQL refuse to compare it with the 32-bit chunk id.
"""

from __future__ import annotations

from tests.test_api_runs import api_app, assert_error, bearer, catalogue_path, people, start  # noqa: F401


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
