"""Brute-force defences over HTTP: the login rate limit (memory and Redis), the timed lock, unlock, audit."""

from __future__ import annotations

import secrets
import threading
from datetime import timedelta

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy import select, update

from gateway.db.models import AuditEvent, LoginThrottle, UserSession
from gateway.db.units import write_transaction
from gateway.identity import accounts
from gateway.identity.views import INVALID_MESSAGE, LOCKED_START
from gateway.platform.extensions import db
from gateway.platform.timeutil import utcnow
from tests.conftest import PASSWORDS, csrf_token_from

pytestmark = pytest.mark.both_engines  # throttles: the sign-in throttle's upsert and row lock per engine

REDIS_URL = "redis://127.0.0.1:6379/15"
WIDE_NETWORKS = "127.0.0.0/8,::1/128,10.0.0.0/8,2001:db8::/32"


def post_login(client, username: str, password: str, address: str = "127.0.0.1"):
    environ = {"REMOTE_ADDR": address}
    token = csrf_token_from(client.get("/login", environ_base=environ).get_data(as_text=True))
    return client.post(
        "/login", data={"username": username, "password": password, "csrf_token": token}, environ_base=environ
    )


def signed_in(client) -> bool:
    return client.get("/").status_code == 200


def events(app, name: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name).order_by(AuditEvent.seq)))


def throttle_row(app, username: str) -> LoginThrottle | None:
    with app.app_context():
        return db.session.get(LoginThrottle, username)


def expire_lock(app, username: str) -> None:
    """Simulate the lock running out by moving its end into the past."""
    with app.app_context(), write_transaction() as tx:
        tx.execute(
            update(LoginThrottle)
            .where(LoginThrottle.username == username)
            .values(locked_until=utcnow() - timedelta(seconds=1))
        )


def lock_seconds(app, username: str) -> float:
    row = throttle_row(app, username)
    assert row is not None and row.locked_until is not None
    return (row.locked_until - utcnow()).total_seconds()


def redis_available() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def unique_address() -> str:
    """A loopback address of its own, so rate-limit keys in shared Redis never meet another test's."""
    return "127.{}.{}.{}".format(*secrets.token_bytes(3))


# --- rate limit ------------------------------------------------------------------------------


def test_fourth_post_from_one_address_is_rate_limited(make_app, users):
    app = make_app(LOGIN_RATE_LIMIT="3/minute")
    client = app.test_client()
    for username in ("nobody-1", "nobody-2", "nobody-3"):
        assert post_login(client, username, "wrong-password-1").status_code == 401
    response = post_login(client, "staff", PASSWORDS["staff"])
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    assert not signed_in(client)
    # Fetching the form is not a sign-in attempt and stays available.
    assert client.get("/login").status_code == 200


def test_rate_limit_is_per_normalised_username_across_addresses(make_app, users):
    app = make_app(LOGIN_RATE_LIMIT="3/minute", ALLOWED_NETWORKS=WIDE_NETWORKS)
    client = app.test_client()
    spellings = ["admin", "ADMIN", "\uff21\uff44\uff4d\uff49\uff4e"]
    for index, spelling in enumerate(spellings, start=1):
        assert post_login(client, spelling, "wrong-password-1", address=f"10.0.0.{index}").status_code == 401
    response = post_login(client, "Admin", PASSWORDS["admin"], address="2001:db8::4")
    assert response.status_code == 429
    assert "Retry-After" in response.headers
    assert not signed_in(client)
    # Another name from a fresh address is not affected: the limit is per name, not global.
    assert post_login(client, "staff", PASSWORDS["staff"], address="10.0.0.5").status_code == 302


def test_rate_limited_attempts_are_not_audited_as_sign_ins(make_app, users):
    app = make_app(LOGIN_RATE_LIMIT="1/minute")
    client = app.test_client()
    assert post_login(client, "staff", "wrong-password-1").status_code == 401
    for _ in range(3):
        assert post_login(client, "staff", PASSWORDS["staff"]).status_code == 429
    assert events(app, "auth.login") == []
    assert len(events(app, "auth.login_failed")) == 1


@pytest.mark.skipif(not redis_available(), reason="Redis is not reachable at 127.0.0.1:6379")
def test_redis_storage_signs_in_and_limits(make_app):
    address = unique_address()
    app = make_app(RATELIMIT_STORAGE_URI=REDIS_URL, LOGIN_RATE_LIMIT="3/minute")
    # A name of its own too: the per-name limit of a shared Redis would count every other run's "staff".
    staff = f"staff-{secrets.token_hex(6)}"
    with app.app_context():
        accounts.create_user(staff, PASSWORDS["staff"])
    client = app.test_client()
    assert post_login(client, staff, PASSWORDS["staff"], address=address).status_code == 302
    assert signed_in(client)
    keys = redis.Redis.from_url(REDIS_URL).keys(f"*{address}*")
    assert keys, "the limiter did not count in Redis"

    name = f"nobody-{secrets.token_hex(6)}"
    for _ in range(2):
        assert post_login(app.test_client(), name, "wrong-password-1", address=address).status_code == 401
    assert post_login(app.test_client(), name, "wrong-password-1", address=address).status_code == 429


def test_unreachable_redis_fails_closed(make_app, users):
    app = make_app(RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0")
    client = app.test_client()
    page = client.get("/login")
    assert page.status_code == 200
    token = csrf_token_from(page.get_data(as_text=True))
    response = client.post("/login", data={"username": "staff", "password": PASSWORDS["staff"], "csrf_token": token})
    assert response.status_code == 503
    assert "Retry-After" in response.headers
    assert not signed_in(client)
    assert events(app, "auth.login") == []
    with app.app_context():
        assert db.session.scalars(select(UserSession)).all() == []


# --- timed lock ------------------------------------------------------------------------------


def lock_app(make_app, **overrides):
    settings = {"LOGIN_MAX_ATTEMPTS": 3, "LOGIN_LOCK_SECONDS": 60, "LOGIN_LOCK_MAX_SECONDS": 150, **overrides}
    return make_app(**settings)


def fail_times(client, username: str, count: int) -> list:
    return [post_login(client, username, "wrong-password-1") for _ in range(count)]


def test_lock_refuses_even_the_correct_password(make_app, users):
    app = lock_app(make_app)
    client = app.test_client()
    answers = fail_times(client, "admin", 3)
    assert [answer.status_code for answer in answers] == [401, 401, 401]
    assert all(INVALID_MESSAGE in answer.get_data(as_text=True) for answer in answers)

    response = post_login(client, "admin", PASSWORDS["admin"])
    assert response.status_code == 401
    assert LOCKED_START in response.get_data(as_text=True)
    assert not signed_in(client)
    # Another spelling of the same name is the same lock; another account is unaffected.
    assert LOCKED_START in post_login(client, "ADMIN", PASSWORDS["admin"]).get_data(as_text=True)
    assert post_login(client, "staff", PASSWORDS["staff"]).status_code == 302


def test_failures_in_different_spellings_add_up(make_app, users):
    app = lock_app(make_app)
    client = app.test_client()
    for spelling in ("admin", "Admin", "\uff21\uff24\uff2d\uff29\uff2e"):
        assert post_login(client, spelling, "wrong-password-1").status_code == 401
    assert LOCKED_START in post_login(client, "admin", PASSWORDS["admin"]).get_data(as_text=True)


def test_unknown_username_locks_exactly_like_a_real_one(make_app, users):
    app = lock_app(make_app)
    real, ghost = app.test_client(), app.test_client()
    real_answers = [*fail_times(real, "admin", 3), post_login(real, "admin", PASSWORDS["admin"])]
    ghost_answers = [*fail_times(ghost, "ghost", 3), post_login(ghost, "ghost", PASSWORDS["admin"])]
    assert [a.status_code for a in real_answers] == [a.status_code for a in ghost_answers]
    for real_answer, ghost_answer in zip(real_answers, ghost_answers, strict=True):
        real_text = real_answer.get_data(as_text=True).replace('value="admin"', 'value="NAME"')
        ghost_text = ghost_answer.get_data(as_text=True).replace('value="ghost"', 'value="NAME"')
        strip = csrf_token_from(real_text), csrf_token_from(ghost_text)
        assert real_text.replace(strip[0], "T") == ghost_text.replace(strip[1], "T")
    assert LOCKED_START in ghost_answers[-1].get_data(as_text=True)
    assert throttle_row(app, "ghost").locked_until is not None


def test_a_name_that_grows_under_nfkc_fails_and_locks_like_any_other(make_app, users):
    """U+FDFA is one character in the form and 18 after NFKC: still an ordinary failure, never a 500."""
    app = lock_app(make_app)
    client = app.test_client()
    name = "\ufdfa" * 150
    answers = fail_times(client, name, 3)
    assert [answer.status_code for answer in answers] == [401, 401, 401]
    assert INVALID_MESSAGE in answers[0].get_data(as_text=True)
    assert LOCKED_START in post_login(client, name, "wrong-password-1").get_data(as_text=True)
    assert all(len(event.actor_name) <= 150 for event in events(app, "auth.login_failed"))


def test_lock_expires_and_the_right_password_then_signs_in(make_app, users):
    app = lock_app(make_app)
    client = app.test_client()
    fail_times(client, "admin", 3)
    expire_lock(app, "admin")
    assert post_login(client, "admin", PASSWORDS["admin"]).status_code == 302
    assert signed_in(client)
    assert throttle_row(app, "admin") is None  # success forgets the failures


def test_lock_doubles_and_is_capped(make_app, users):
    app = lock_app(make_app)
    client = app.test_client()
    durations = []
    for _ in range(3):
        fail_times(client, "admin", 3)
        durations.append(lock_seconds(app, "admin"))
        expire_lock(app, "admin")
    first, second, third = durations
    assert 50 <= first <= 60
    assert 110 <= second <= 120
    assert 140 <= third <= 150  # 240 without the cap
    assert throttle_row(app, "admin").lock_count == 3


def test_unlock_clears_the_lock(make_app, users):
    app = lock_app(make_app)
    client = app.test_client()
    fail_times(client, "staff", 3)
    assert LOCKED_START in post_login(client, "staff", PASSWORDS["staff"]).get_data(as_text=True)
    with app.app_context():
        assert accounts.unlock("STAFF") is True
    assert throttle_row(app, "staff") is None
    assert post_login(client, "staff", PASSWORDS["staff"]).status_code == 302


def test_lock_is_audited_and_no_password_reaches_the_ledger(make_app, users):
    app = lock_app(make_app)
    client = app.test_client()
    wrong = "Hunter2-wrong-guess"
    for _ in range(3):
        post_login(client, "admin", wrong)
    post_login(client, "admin", PASSWORDS["admin"])  # refused by the lock
    fail_times(app.test_client(), "ghost", 3)

    failed = events(app, "auth.login_failed")
    ghost = failed[-1].actor_name  # a name with no account: a keyed digest (SECURITY.md), the same for each try
    assert ghost.startswith("unknown:") and "ghost" not in ghost
    assert [(e.actor_name, e.outcome) for e in failed] == [("admin", "invalid")] * 3 + [("admin", "locked")] + [
        (ghost, "invalid")
    ] * 3
    assert all(e.source_ip == "127.0.0.1" for e in failed)
    locked = events(app, "auth.locked")
    assert [(e.actor_id, e.actor_name) for e in locked] == [(users["admin"].id, "admin"), (None, ghost)]
    assert locked[0].detail["failures"] == 3
    assert "locked_until" in locked[0].detail

    with app.app_context():
        rows = db.session.execute(sa.text("SELECT * FROM audit_events")).all()
    text = "\n".join(str(value) for row in rows for value in row)
    for secret in (wrong, PASSWORDS["admin"], "wrong-password-1"):
        assert secret not in text


def test_concurrent_failures_are_all_counted(make_app, users):
    """Parallel guesses must not lose counts (or crash on the first row): that would buy extra attempts."""
    app = make_app(LOGIN_MAX_ATTEMPTS=100)
    threads_count = 6
    for name in ("fresh-name", "admin"):
        if name == "admin":
            assert post_login(app.test_client(), name, "wrong-password-1").status_code == 401
        clients = [app.test_client() for _ in range(threads_count)]
        tokens = [csrf_token_from(c.get("/login").get_data(as_text=True)) for c in clients]
        barrier = threading.Barrier(threads_count)
        statuses: list[int] = []

        def guess(client, token, name=name, barrier=barrier, statuses=statuses) -> None:
            barrier.wait()
            data = {"username": name, "password": "wrong-password-1", "csrf_token": token}
            statuses.append(client.post("/login", data=data).status_code)

        threads = [threading.Thread(target=guess, args=pair) for pair in zip(clients, tokens, strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert statuses == [401] * threads_count, (name, statuses)
        expected = threads_count + (1 if name == "admin" else 0)
        assert throttle_row(app, name).failures == expected, name


def test_lock_events_are_capped_like_failures(make_app, users):
    """A flood of guesses at many names writes a bounded number of rows (cap 2 per minute here)."""
    app = make_app(LOGIN_MAX_ATTEMPTS=1, AUDIT_FLOOD_PER_MINUTE=2)
    client = app.test_client()
    for index in range(6):
        assert post_login(client, f"flood-{index}", "wrong-password-1").status_code == 401
    # At most one minute boundary falls inside the loop, so at most two windows' worth of rows.
    assert 1 <= len(events(app, "auth.locked")) <= 4
    assert 1 <= len(events(app, "auth.login_failed")) <= 4
    assert throttle_row(app, "flood-5").locked_until is not None  # the locks themselves are not capped
