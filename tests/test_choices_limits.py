"""The choices route's own rate limit: ``CHOICES_RATE_LIMIT`` per user, across that user's tokens and sessions.

Each call may run the source query (a cache hit writes nothing), so one user's
calls are capped; past the cap that user gets 429 ``rate_limited`` with
``Retry-After`` in the API's error shape, while everyone else keeps getting
their lists.  Real app, real SQLite data source, real limiter storage.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.identity import accounts, groups, tokens
from tests.conftest import seed_session
from tests.test_choices import CATALOGUE, TASKS, sqlite_source

LIMIT = 3
URL = "/api/v1/commands/pick/choices/names?status=Failed"


@pytest.fixture
def limited(make_app, users, tmp_path: Path, monkeypatch):
    """An app whose choices route allows ``LIMIT`` calls a minute per user; staff and other may use ``pick``."""
    url = sqlite_source(tmp_path / "ops.db", "tasks (name TEXT PRIMARY KEY, status TEXT)", TASKS)
    monkeypatch.setenv("CHOICES_OPS_DB_URL", url)
    path = tmp_path / "commands.yaml"
    path.write_text(CATALOGUE)
    app = make_app(GATEWAY_COMMANDS_FILE=path, CHOICES_RATE_LIMIT=f"{LIMIT}/minute")
    with app.app_context():
        groups.create_group("ops")
        for name in ("staff", "other"):
            groups.add_member("ops", name)
        groups.add_grant("ops", "pick")
    return app


def bearer(app, name: str) -> dict[str, str]:
    with app.app_context():
        secret = tokens.create_token(accounts.get_user(name), name=f"choices-{name}").secret
    return {"Authorization": f"Bearer {secret}"}


def test_a_user_past_the_limit_gets_429_with_retry_after_and_another_user_is_unaffected(limited):
    client = limited.test_client()
    staff, other = bearer(limited, "staff"), bearer(limited, "other")
    for _ in range(LIMIT):
        answer = client.get(URL, headers=staff)
        assert answer.status_code == 200 and answer.get_json()["choices"] == ["beta", "gamma"]

    refused = client.get(URL, headers=staff)
    assert refused.status_code == 429
    assert refused.get_json() == {
        "error": {"code": "rate_limited", "message": "Too many requests. Try again later.", "details": {}}
    }
    assert 0 < int(refused.headers["Retry-After"]) <= 60

    # Another user's list still comes, as often as their own limit allows.
    for _ in range(LIMIT):
        assert client.get(URL, headers=other).get_json()["choices"] == ["beta", "gamma"]
    assert client.get(URL, headers=other).status_code == 429


def test_the_limit_is_the_users_across_their_tokens_and_browser_session(limited, users):
    client = limited.test_client()
    first, second = bearer(limited, "staff"), bearer(limited, "staff")
    for headers in (first, first, second):
        assert client.get(URL, headers=headers).status_code == 200
    assert client.get(URL, headers=second).status_code == 429  # a new token is not a new allowance
    browser = limited.test_client()
    seed_session(limited, browser, users["staff"].id)
    assert browser.get(URL).status_code == 429  # nor is the browser session


def test_calls_the_policy_refuses_count_too(limited, users):
    """The cap is checked before the policy: guessing at commands one may not use spends it as well."""
    client = limited.test_client()
    staff = bearer(limited, "staff")
    for _ in range(LIMIT):
        assert client.get("/api/v1/commands/statuses/choices/x", headers=staff).status_code == 404
    assert client.get(URL, headers=staff).status_code == 429
