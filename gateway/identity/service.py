"""Sign-in and sign-out decisions, with their audit events; the views only render."""

from __future__ import annotations

import enum
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import current_app, request
from flask_login import login_user, logout_user
from sqlalchemy import select

from gateway import audit
from gateway.db.models import User
from gateway.db.units import write_transaction
from gateway.identity import sessions, throttle
from gateway.identity.mfa import factors as mfa_factors
from gateway.identity.passwords import verify_password
from gateway.identity.usernames import login_name
from gateway.platform.addresses import client_address
from gateway.platform.extensions import db
from gateway.platform.timeutil import rfc3339

UNKNOWN_NAME_PREFIX = "unknown:"


class LoginFailure(enum.Enum):
    INVALID = "invalid"  # unknown name, wrong password or disabled account: one answer for all
    LOCKED = "locked"


@dataclass(frozen=True)
class LoginResult:
    user: User | None
    failure: LoginFailure | None = None
    mfa_pending: bool = False  # password accepted; the second step (/login/mfa) decides


def failure_actor(username: str, user: User | None) -> dict[str, Any]:
    """Who a failed sign-in names in the ledger: the account when the name has one, else a keyed digest.

    A name that matches no account is often something else typed into the wrong field,
    a password included; the ledger keeps ``unknown:`` + 16 hex of HMAC(SECRET_KEY, name)
    instead, so repeated guesses at one name still group together (credential stuffing
    stays visible) while the typed text never lands in the ledger (SECURITY.md).
    """
    if user is not None:
        return {"id": user.id, "name": user.username}
    secret = str(current_app.config["SECRET_KEY"]).encode("utf-8")
    digest = hmac.new(secret, b"unknown-sign-in-name\0" + username.encode("utf-8"), hashlib.sha256).hexdigest()
    return {"id": None, "name": UNKNOWN_NAME_PREFIX + digest[:16]}


def attempt_login(raw_username: str, password: str) -> LoginResult:
    username = login_name(raw_username)
    user = db.session.scalar(select(User).where(User.username == username))
    if throttle.locked_until(username) is not None:
        audit.record_capped(
            "auth.login_failed", actor=failure_actor(username, user), outcome="locked", detail={"method": "local"}
        )
        return LoginResult(user=None, failure=LoginFailure.LOCKED)

    password_ok = verify_password(user.password_hash if user else None, password)
    if user is None or not password_ok or not user.active:
        record_failure(username, user)
        return LoginResult(user=None, failure=LoginFailure.INVALID)

    if mfa_factors.needs_second_step(user):
        # Half-signed-in: the lock's count is not cleared until the second factor is right too.
        with write_transaction():
            sessions.start(user, client_address() or None, request.headers.get("User-Agent"), mfa_pending=True)
        return LoginResult(user=user, mfa_pending=True)

    with write_transaction() as tx:
        throttle.clear(username)
        sessions.start(user, client_address() or None, request.headers.get("User-Agent"))
        audit.append(
            "auth.login",
            session=tx,
            actor=user.actor(),
            source_ip=client_address() or None,
            user_agent=request.headers.get("User-Agent"),
            outcome="ok",
            detail={"method": "local"},
        )
    login_user(user)
    return LoginResult(user=user)


@dataclass(frozen=True)
class Confirmation:
    """The answer to "is this really the signed-in user?": ``ok``, or refused (``locked_until`` when locked)."""

    ok: bool
    locked_until: datetime | None = None


def confirm_password(user: User, password: str, *, via: str) -> Confirmation:
    """The signed-in user re-enters their password before a sensitive change (new password, new API token).

    Bounded exactly like sign-in, so a stolen session cannot guess faster
    here: while the name is locked the password is not even checked, and each
    wrong (or missing) one counts toward the same lock and is audited
    ``auth.login_failed`` with ``via`` naming where it was typed.
    """
    locked = throttle.locked_until(user.username)
    if locked is not None:
        audit.record_capped(
            "auth.login_failed", actor=user.actor(), outcome="locked", detail={"method": "local", "via": via}
        )
        return Confirmation(ok=False, locked_until=locked)
    if verify_password(user.password_hash, password):
        return Confirmation(ok=True)
    record_failure(user.username, user, via=via)
    return Confirmation(ok=False)


def record_failure(
    username: str, user: User | None, *, via: str | None = None, event: str = "auth.login_failed", factor: str = ""
) -> None:
    """A wrong password for ``username``: counted toward its lock and audited (capped).

    ``via`` names where it was guessed when not at sign-in (``password_change``,
    ``token_create``: the account page's current-password checks count toward
    the same lock). A wrong second factor counts the same way, audited as
    ``event`` ``auth.mfa_failed`` with its ``factor``.
    """
    actor = failure_actor(username, user)
    extra = {"via": via} if via else {}
    if factor:
        extra["factor"] = factor
    with write_transaction():
        outcome = throttle.register_failure(username)
    audit.record_capped(event, actor=actor, outcome="invalid", detail={"method": "local", **extra})
    if outcome.locked_until is not None:
        # Capped like the failures that cause it: a flood of guesses at many names must not fill the ledger.
        audit.record_capped(
            "auth.locked",
            actor=actor,
            outcome="locked",
            detail={"locked_until": rfc3339(outcome.locked_until), "failures": outcome.failures},
        )


def logout(user: User) -> None:
    with write_transaction() as tx:
        sessions.revoke_current()
        audit.append(
            "auth.logout",
            session=tx,
            actor=user.actor(),
            source_ip=client_address() or None,
            user_agent=request.headers.get("User-Agent"),
            outcome="ok",
        )
    logout_user()
