"""Invite links: an admin-created (or reset) user chooses their own password through a one-time link.

The link carries a random token; only its SHA-256 is stored, with an expiry
(``INVITE_TTL``). It works once, and issuing a new invite for a user revokes
the older ones. Until the link is used the user has no password at all, so
nobody can sign in as them. The token never reaches the ledger or the logs:
events name the invite by its id.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gateway import audit
from gateway.db.models import User, UserInvite
from gateway.db.units import rows_matched
from gateway.platform.extensions import db
from gateway.platform.timeutil import rfc3339, utcnow

INVITE_TTL = timedelta(hours=72)
MAX_TOKEN_LENGTH = 100


class InviteProblem(enum.Enum):
    """Why a link was refused; the value is the audit ``outcome``."""

    INVALID = "invalid"  # unknown or forged token
    USED = "used"
    EXPIRED = "expired"
    REVOKED = "revoked"  # a newer invite, or a password set another way, replaced it
    DISABLED = "disabled"  # the user was disabled meanwhile


class InviteError(ValueError):
    def __init__(self, problem: InviteProblem, invite: UserInvite | None = None, user: User | None = None):
        super().__init__(problem.value)
        self.problem = problem
        self.invite = invite
        self.user = user


@dataclass(frozen=True)
class IssuedInvite:
    invite_id: int
    token: str  # shown once, never stored
    expires_at: datetime


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def revoke_open(tx: Session, user_id: int) -> int:
    """Inside a write transaction: end the user's unused invites (a newer invite or a password replaces them)."""
    result = tx.execute(
        update(UserInvite)
        .where(UserInvite.user_id == user_id, UserInvite.used_at.is_(None), UserInvite.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return rows_matched(result)


def issue_in(tx: Session, user: User, *, actor: Mapping[str, Any] | None, reason: str, **fields: Any) -> IssuedInvite:
    """Inside a write transaction: revoke the user's open invites, issue a new one, audit it.

    ``reason`` is ``created`` (a new user) or ``reset`` (an admin reset the password).
    """
    now = utcnow()
    revoke_open(tx, user.id)
    token = secrets.token_urlsafe(32)
    invite = UserInvite(
        user_id=user.id,
        token_hash=_digest(token),
        created_at=now,
        created_by=(actor or {}).get("name"),
        expires_at=now + INVITE_TTL,
    )
    tx.add(invite)
    tx.flush()
    audit.append(
        "admin.user_invited",
        session=tx,
        actor=actor,
        outcome="ok",
        detail={
            "user": user.username,
            "invite_id": invite.id,
            "reason": reason,
            "expires_at": rfc3339(invite.expires_at),
        },
        **fields,
    )
    return IssuedInvite(invite_id=invite.id, token=token, expires_at=invite.expires_at)


def _check(tx: Session, token: str, *, lock: bool) -> tuple[UserInvite, User]:
    """The invite and its user if the token may be used now; else ``InviteError``."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise InviteError(InviteProblem.INVALID)
    digest = _digest(token)
    query = select(UserInvite).where(UserInvite.token_hash == digest)
    invite = tx.scalar(query.with_for_update() if lock else query)
    if invite is None or not hmac.compare_digest(invite.token_hash, digest):
        raise InviteError(InviteProblem.INVALID)
    user = tx.get(User, invite.user_id)
    if user is None:
        raise InviteError(InviteProblem.INVALID, invite)
    if invite.used_at is not None:
        raise InviteError(InviteProblem.USED, invite, user)
    if invite.revoked_at is not None:
        raise InviteError(InviteProblem.REVOKED, invite, user)
    if invite.expires_at <= utcnow():
        raise InviteError(InviteProblem.EXPIRED, invite, user)
    if not user.active:
        raise InviteError(InviteProblem.DISABLED, invite, user)
    return invite, user


def check(token: str) -> User:
    """The link's user; raises ``InviteError`` (not audited) if the link cannot be used, so the page can say so
    (and whose password it sets) before any typing."""
    return _check(db.session(), token, lock=False)[1]


def use_in(tx: Session, token: str) -> tuple[UserInvite, User]:
    """Inside a write transaction: check the link again under the write lock and mark it used.

    It may have been used, replaced or expired since ``check``; raises
    ``InviteError`` then. Setting the password is ``accounts.accept_invite``'s
    part, in the same commit.
    """
    invite, user = _check(tx, token, lock=True)
    invite.used_at = utcnow()
    return invite, user


def record_failure(error: InviteError, **fields: Any) -> None:
    """Audit a refused link as ``auth.invite_failed`` (flood-capped like failed sign-ins); never the token."""
    actor = error.user.actor() if error.user is not None else None
    detail = {"invite_id": error.invite.id if error.invite is not None else None}
    audit.record_capped("auth.invite_failed", actor=actor, outcome=error.problem.value, detail=detail, **fields)


def pending(user_ids: list[int] | None = None) -> dict[int, UserInvite]:
    """Each user's newest open (unused, unrevoked) invite, expired or not, for the users page."""
    query = select(UserInvite).where(UserInvite.used_at.is_(None), UserInvite.revoked_at.is_(None))
    if user_ids is not None:
        query = query.where(UserInvite.user_id.in_(user_ids))
    return {invite.user_id: invite for invite in db.session.scalars(query.order_by(UserInvite.id))}
