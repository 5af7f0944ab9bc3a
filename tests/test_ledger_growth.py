"""Attack suite, ledger growth: no caller can grow the audit ledger without bound (issue 13, item 2).

Black-box requests against the real app on both engines.  A refused request's row stays
under 16 KB whatever was sent (``gateway.audit.bounds``); refused requests spend the command's
``rate_limit`` or, without one, the user's ``RUN_REFUSAL_RATE_LIMIT``; past
``AUDIT_FLOOD_PER_MINUTE`` refusals and sign-in failures are summarised per caller and
reason, so one caller's flood hides nobody else's; a name typed at sign-in that matches no
account is recorded as a keyed digest.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import secrets
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import Text, cast, func, select
from werkzeug.datastructures import FileStorage

from gateway import audit
from gateway.audit import bounds
from gateway.db.models import AuditEvent
from gateway.db.units import write_transaction
from gateway.identity import accounts, groups, tokens
from gateway.platform.extensions import db
from gateway.runs import uploads
from tests.conftest import PASSWORDS, TEST_SECRET_KEY, login_response, seed_session
from tests.test_attacks import audit_rows as rows

pytestmark = pytest.mark.both_engines  # the ledger: bounded rows and the flood cap per engine

CATALOGUE = textwrap.dedent(
    """
    commands:
      - name: echo
        title: Echo
        kind: shell
        argv: ["echo", "{word}", "--n={n}"]
        params:
          word: {type: string, required: true}
          n: {type: integer, default: 1}
      - name: limited
        title: Rate limited
        kind: shell
        argv: ["echo", "{word}"]
        params:
          word: {type: string, required: true}
        rate_limit: 2/minute
    """
)
SIXTEEN_KB = 16 * 1024


@pytest.fixture
def growth_app(make_app, tmp_path: Path, users):
    def build(**settings):
        path = tmp_path / "commands.yaml"
        path.write_text(CATALOGUE)
        app = make_app(GATEWAY_COMMANDS_FILE=path, **settings)
        with app.app_context():
            groups.create_group("ops")
            for name in ("staff", "other"):
                groups.add_member("ops", name)
            for command in ("echo", "limited"):
                groups.add_grant("ops", command)
        return app

    return build


def bearer(app, username: str) -> dict[str, str]:

    with app.app_context():
        issued = tokens.create_token(accounts.get_user(username), name=f"growth-{time.monotonic_ns()}")
    return {"Authorization": f"Bearer {issued.secret}"}


def start(client, headers, name: str, params: dict, wait: int = 0):
    return client.post(f"/api/v1/commands/{name}/runs", json={"params": params, "wait": wait}, headers=headers)


def stored_sizes(app, event: str) -> list[int]:
    """Bytes of params + detail of each ``event`` row, as the database holds them."""
    with app.app_context():
        c = AuditEvent.__table__.c
        if db.engine.dialect.name == "postgresql":
            size = func.coalesce(func.octet_length(cast(c.params, Text)), 0) + func.coalesce(
                func.octet_length(cast(c.detail, Text)), 0
            )
        else:
            size = func.coalesce(func.length(func.cast(c.params, db.LargeBinary)), 0) + func.coalesce(
                func.length(func.cast(c.detail, db.LargeBinary)), 0
            )
        return list(db.session.scalars(select(size).where(c.event == event).order_by(c.seq)))


def wait_for_a_fresh_minute(margin: float = 10.0) -> None:
    """The flood cap and the rate limits count per wall-clock minute: start well inside one."""
    remaining = 60 - time.time() % 60
    if remaining < margin:
        time.sleep(remaining + 0.1)


def end_the_flood_minute(app) -> None:
    gate: audit.FloodGate = app.extensions["gateway.audit_floodgate"]
    gate._window -= 1


def huge_params(keys: int = 5000, value_chars: int = 3000) -> dict:
    """About 15 MB of invented parameters with long names, plus one declared param of the wrong type."""
    invented = {f"invented-{index:05d}-" + "k" * 90: "v" * value_chars for index in range(keys)}
    return {**invented, "n": "not a number", "word": "ok"}


# --- bounded rows -------------------------------------------------------------------------------


def test_a_15_mb_refusal_with_thousands_of_invented_names_writes_a_row_under_16_kb(growth_app):
    app = growth_app(MAX_CONTENT_LENGTH=16 * 1024 * 1024)
    client, headers = app.test_client(), bearer(app, "staff")
    params = huge_params()
    assert len(json.dumps(params)) > 15_000_000
    response = start(client, headers, "echo", params)
    assert response.status_code == 400, response.get_data(as_text=True)[:500]
    assert response.get_json()["error"]["details"]["n"] == "must be a whole number"  # the caller still hears all

    [rejected] = rows(app, "run.rejected")
    [size] = stored_sizes(app, "run.rejected")
    assert size < SIXTEEN_KB, size
    fields = rejected.detail["fields"]
    assert next(iter(fields)) == "n"  # the declared param's error comes first, not pushed out by invented names
    assert len(fields) == bounds.NAMES_KEPT + 1 and fields[bounds.MORE] == 5001 - bounds.NAMES_KEPT
    assert all(len(name) <= bounds.NAME_CHARS for name in fields)
    assert set(list(rejected.params)[:2]) == {"word", "n"}  # declared params first here too
    assert rejected.params[bounds.MORE] == 5002 - bounds.NAMES_KEPT
    assert all(len(str(value)) <= bounds.VALUE_CHARS + 1 for value in rejected.params.values())
    with app.app_context():
        assert audit.verify(db.session, audit.Keyring.from_config(app.config)).ok


def test_accepted_runs_keep_their_params_in_full(growth_app):
    """Only refusals are cut: an accepted run's params are bounded by the catalogue, and recorded whole."""
    app = growth_app()
    word = "w" * 4000  # the default max_length (4096)
    response = start(app.test_client(), bearer(app, "staff"), "echo", {"word": word}, wait=10)
    assert response.status_code == 200, response.get_json()
    assert rows(app, "run.started")[-1].params["word"] == word


def test_every_value_of_a_refusal_is_bounded_even_pathological_ones(growth_app):
    """Twenty names of characters JSON escapes to twelve bytes each still fit: the row shrinks further."""
    app = growth_app()
    emoji = "\U0001f600"
    params = {emoji * 200 + str(index): emoji * 5000 for index in range(40)}
    response = start(app.test_client(), bearer(app, "staff"), "echo", {**params, "word": emoji * 5000})
    assert response.status_code == 400
    assert max(stored_sizes(app, "run.rejected")) < SIXTEEN_KB


def test_upload_names_and_user_agents_are_one_bounded_line(growth_app):
    app = growth_app()
    upload = FileStorage(io.BytesIO(b"x"), filename="evil\n\x1b[31mname" * 100)
    values, folder = uploads.store_uploads({"f": upload}, 1024, None)
    uploads.remove_folder(folder)
    stored = values["f"]
    assert len(stored.original_name) <= bounds.FILE_NAME_CHARS
    assert "\n" not in stored.original_name and "\x1b" not in stored.original_name
    with app.app_context(), write_transaction() as tx:
        audit.append("test.event", session=tx, user_agent="agent\r\nX-Forged: 1\x1b[2J" + "a" * 1000)
    agent = rows(app, "test.event")[-1].user_agent
    assert agent.startswith("agentX-Forged: 1[2J") and len(agent) == audit.USER_AGENT_MAX


# --- rate limits ----------------------------------------------------------------------------------


def test_refused_requests_spend_the_commands_own_rate_limit(growth_app):
    app = growth_app()
    client, headers = app.test_client(), bearer(app, "staff")
    wait_for_a_fresh_minute()
    assert start(client, headers, "limited", {"nope": 1}).status_code == 400
    assert start(client, headers, "limited", {}).status_code == 400
    response = start(client, headers, "limited", {"word": "valid"})  # a valid request, but the limit is spent
    assert response.status_code == 429, response.get_json()
    assert response.get_json()["error"]["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) >= 1


def test_refusals_spend_run_refusal_rate_limit_across_a_users_tokens_and_sessions(growth_app):
    app = growth_app(RUN_REFUSAL_RATE_LIMIT="3/minute")
    client = app.test_client()
    first, second = bearer(app, "staff"), bearer(app, "staff")
    wait_for_a_fresh_minute()
    assert [start(client, first, "echo", {"bad": i}).status_code for i in range(2)] == [400, 400]
    assert start(client, second, "no-such-command", {}).status_code == 404  # an unknown name is a refusal too

    # Three refusals spent the budget: even a valid request of a command without its own limit waits now,
    # from another token of the same user, and what it sent is recorded bounded.
    limited = start(client, second, "echo", {"word": "fine", **huge_params(keys=3000, value_chars=1000)})
    assert limited.status_code == 429, limited.get_data(as_text=True)[:300]
    assert limited.get_json()["error"]["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1
    assert rows(app, "run.rejected")[-1].outcome == "rate_limited"
    assert max(stored_sizes(app, "run.rejected")) < SIXTEEN_KB

    browser = app.test_client()
    seed_session(app, browser, users_id(app, "staff"))
    page = browser.post("/commands/echo", data={"word": "fine", "csrf_token": form_token(browser, "echo")})
    assert page.status_code == 429 and int(page.headers["Retry-After"]) >= 1  # the browser session too

    other = start(app.test_client(), bearer(app, "other"), "echo", {"word": "fine"}, wait=10)
    assert other.status_code == 200, other.get_json()  # per user: someone else is not held back


def users_id(app, name: str) -> int:

    with app.app_context():
        return accounts.get_user(name).id


def form_token(client, command: str) -> str:
    from tests.conftest import csrf_token_from

    return csrf_token_from(client.get(f"/commands/{command}").get_data(as_text=True))


REDIS_URL = "redis://127.0.0.1:6379/15"


def redis_available() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.mark.skipif(not redis_available(), reason="Redis is not reachable at 127.0.0.1:6379")
def test_the_refusal_budget_is_counted_in_the_shared_storage_every_replica_reads(growth_app):
    from limits import parse
    from limits.storage import storage_from_string
    from limits.strategies import FixedWindowRateLimiter
    from sqlalchemy import update

    from gateway.db.models import User

    app = growth_app(RATELIMIT_STORAGE_URI=REDIS_URL, RUN_REFUSAL_RATE_LIMIT="2/minute")
    user_id = secrets.randbelow(10**9) + 10**6  # Redis keeps counters across tests: an id of its own
    with app.app_context():
        accounts.create_user("flooder", "flooder-password-123")
        db.session.execute(update(User).where(User.username == "flooder").values(id=user_id))
        db.session.commit()
        groups.add_member("ops", "flooder")
    client, headers = app.test_client(), bearer(app, "flooder")
    wait_for_a_fresh_minute()
    assert [start(client, headers, "echo", {"bad": i}).status_code for i in range(2)] == [400, 400]
    assert start(client, headers, "echo", {"word": "fine"}).status_code == 429

    # What another replica sees: the same key in the same Redis, read by a limiter of its own.
    other_replica = FixedWindowRateLimiter(storage_from_string(REDIS_URL))
    assert not other_replica.test(parse("2/minute"), "run-refusals", str(user_id))


# --- the flood cap, per caller -------------------------------------------------------------------


def test_one_users_flood_of_refusals_does_not_hide_anothers(growth_app):
    app = growth_app(AUDIT_FLOOD_PER_MINUTE=3)
    client, staff, other = app.test_client(), bearer(app, "staff"), bearer(app, "other")
    wait_for_a_fresh_minute()
    for index in range(10):
        assert start(client, staff, "echo", {"bad": index}).status_code == 400
    assert [start(client, other, "echo", {"bad": i}).status_code for i in range(2)] == [400, 400]

    refused = [(row.actor_name, row.outcome) for row in rows(app, "run.rejected")]
    assert refused == [("staff", "invalid_params")] * 3 + [("other", "invalid_params")] * 2

    end_the_flood_minute(app)
    assert start(client, other, "echo", {"bad": "again"}).status_code == 400
    [summary] = rows(app, "audit.suppressed")
    assert summary.actor_name == "staff" and summary.outcome == "invalid_params"
    assert summary.detail["event"] == "run.rejected" and summary.detail["suppressed"] == 7
    assert summary.detail["by"] == "actor"
    assert rows(app)[-1].event == "run.rejected" and rows(app)[-1].actor_name == "other"


def test_one_addresss_sign_in_flood_does_not_hide_another_addresss_failure(growth_app):
    app = growth_app(AUDIT_FLOOD_PER_MINUTE=2, LOGIN_MAX_ATTEMPTS=1000)
    wait_for_a_fresh_minute()
    flooder = {"REMOTE_ADDR": "127.0.0.7"}
    for index in range(8):
        response = login_response(app.test_client(), f"nobody-{index}", "wrong-password-1", environ_base=flooder)
        assert response.status_code == 401
    victim = login_response(app.test_client(), "staff", "wrong-password-1", environ_base={"REMOTE_ADDR": "127.0.0.8"})
    assert victim.status_code == 401
    failed = [(row.source_ip, row.actor_id) for row in rows(app, "auth.login_failed")]
    assert failed == [("127.0.0.7", None)] * 2 + [("127.0.0.8", users_id(app, "staff"))]

    end_the_flood_minute(app)
    assert login_response(app.test_client(), "nobody", "wrong-password-1", environ_base=flooder).status_code == 401
    [summary] = rows(app, "audit.suppressed")
    assert summary.source_ip == "127.0.0.7" and summary.actor_name is None
    assert summary.detail == {
        "window_start": summary.detail["window_start"],
        "event": "auth.login_failed",
        "reason": "invalid",
        "by": "address",
        "suppressed": 6,
    }


def test_the_flood_gate_tracks_a_bounded_number_of_callers():
    """An attacker rotating addresses or names cannot grow the gate: past its key cap they share one count."""
    gate = audit.FloodGate(per_minute=2, max_keys=16)
    admitted = 0
    for index in range(10_000):
        ok, summaries = gate.admit("auth.login_failed", {"source_ip": f"10.0.{index // 256}.{index % 256}"})
        assert summaries == []
        admitted += ok
        assert len(gate) <= 17  # 16 callers + the shared overflow count for this event and reason
    assert admitted == 16 + 2  # each rotated caller's first event, then two of the shared count
    gate._window -= 1
    ok, summaries = gate.admit("auth.login_failed", {"source_ip": "10.9.9.9"})
    assert ok and len(gate) == 1
    assert [(s["source_ip"], s["detail"]["by"], s["detail"]["suppressed"]) for s in summaries] == [
        (None, "all", 10_000 - 16 - 2)
    ]


# --- names typed at sign-in ------------------------------------------------------------------------


def test_a_name_that_matches_no_account_is_recorded_as_a_keyed_digest(growth_app):
    """SECURITY.md: a password typed into the username field must never land in the ledger in clear."""
    app = growth_app(LOGIN_MAX_ATTEMPTS=2)
    typed = "Tr0ub4dor&3-my-password"
    for _ in range(3):  # the third is refused by the lock the second started
        assert login_response(app.test_client(), typed, "wrong-password-1").status_code == 401
    assert login_response(app.test_client(), "staff", "wrong-password-1").status_code == 401

    normalised = typed.casefold()
    expected = (
        "unknown:"
        + hmac.new(
            TEST_SECRET_KEY.encode(), b"unknown-sign-in-name\0" + normalised.encode(), hashlib.sha256
        ).hexdigest()[:16]
    )
    failed = rows(app, "auth.login_failed")
    assert [row.actor_name for row in failed] == [expected] * 3 + ["staff"]  # one name, one digest: stuffing shows
    assert [row.outcome for row in failed] == ["invalid", "invalid", "locked", "invalid"]
    assert rows(app, "auth.locked")[0].actor_name == expected
    ledger = json.dumps([[row.actor_name, row.params, row.detail] for row in rows(app)])
    assert normalised not in ledger.casefold()
    assert login_response(app.test_client(), "staff", PASSWORDS["staff"]).status_code == 302  # nothing else changed
