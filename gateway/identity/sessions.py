"""Server-side session records behind the signed cookie.

The cookie carries a random session id; the database keeps its SHA-256 with
the times that bound it.  A cookie is only as good as its record: logout,
password change and disabling the user revoke records, so a captured cookie
replayed later is refused.  Idle and absolute timeouts are computed from the
record, and background requests (tiles, streams) never extend the idle timer.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from flask import current_app, request, session
from sqlalchemy import update

from gateway.db.models import User, UserSession
from gateway.db.units import rows_matched, write_transaction
from gateway.platform.extensions import db
from gateway.platform.timeutil import utcnow

SESSION_KEY = "sid"
BACKGROUND_HEADER = "X-Gateway-Background"
# last_seen_at is written at most this often per session, to keep reads cheap.
TOUCH_INTERVAL = timedelta(seconds=30)


def record_id(token: str) -> str:
    """The stored id of a session token: its SHA-256, so the database never holds a usable cookie."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def is_background_request() -> bool:
    """Requests the page makes on its own (tile refresh, event streams) are not user activity."""
    return request.headers.get(BACKGROUND_HEADER) == "1" or request.accept_mimetypes.best == "text/event-stream"


def start(
    user: User, source_ip: str | None, user_agent: str | None, *, method: str = "local", mfa_pending: bool = False
) -> None:
    """Inside a write transaction: open a fresh session record and put its id in a cleared cookie (no fixation).

    A record the browser already carried (signing in again, or as someone
    else) is ended first, so a copy of the earlier cookie does not stay valid.
    With ``mfa_pending`` the record only lets its holder reach the second sign-in
    step (``gateway.identity.mfa.gate``); that step starts a new, full record.
    """
    _revoke(current_record())
    session.clear()
    token = secrets.token_urlsafe(32)
    now = utcnow()
    db.session.add(
        UserSession(
            id=record_id(token),
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            source_ip=source_ip,
            user_agent=(user_agent or "")[:300],
            method=method,
            mfa_pending=mfa_pending,
        )
    )
    session[SESSION_KEY] = token


def current_record() -> UserSession | None:
    token = session.get(SESSION_KEY)
    if not isinstance(token, str) or not token:
        return None
    return db.session.get(UserSession, record_id(token))


def _expired(record: UserSession) -> bool:
    now = utcnow()
    idle = timedelta(minutes=current_app.config["SESSION_IDLE_MINUTES"])
    absolute = timedelta(hours=current_app.config["SESSION_MAX_HOURS"])
    return now - record.last_seen_at > idle or now - record.created_at > absolute


def load_user(user_id: str) -> User | None:
    """flask-login's user loader: the cookie's user only while its record is live and fully signed in."""
    record = current_record()
    if record is None or record.revoked_at is not None or record.mfa_pending or str(record.user_id) != user_id:
        return None
    if _expired(record):
        return None
    user = db.session.get(User, record.user_id)
    if user is None or not user.active:
        return None
    if not is_background_request() and utcnow() - record.last_seen_at > TOUCH_INTERVAL:
        with write_transaction() as tx:
            tx.execute(update(UserSession).where(UserSession.id == record.id).values(last_seen_at=utcnow()))
    return user


def _revoke(record: UserSession | None) -> None:
    if record is not None and record.revoked_at is None:
        db.session.execute(update(UserSession).where(UserSession.id == record.id).values(revoked_at=utcnow()))


def revoke_current() -> None:
    """Inside a write transaction: end the session this request carries."""
    _revoke(current_record())
    session.clear()


def revoke_all_for(user_id: int) -> int:
    """Inside a write transaction: end every session of a user (password change, disable)."""
    result = db.session.execute(
        update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return rows_matched(result)
