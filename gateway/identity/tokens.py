"""API tokens: random bearer secrets stored only as SHA-256, shown once at creation.

A token is ``gw_<prefix>_<secret>``; the prefix (stored in clear) identifies
it in lists, the whole token's SHA-256 is what is stored and compared.
Expiry defaults to 90 days; no expiry only when asked for explicitly.
Revocation, expiry and disabling the owner take effect on the next request.
Every revocation is audited ``token.revoked`` with its reason: ``manual``
(the owner or an admin revoked it) or the account change that ended all of
the owner's tokens at once (``gateway.identity.accounts.revoke_access``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from gateway import audit
from gateway.db.models import ApiToken, User
from gateway.db.units import rows_matched, write_transaction
from gateway.platform.extensions import db
from gateway.platform.timeutil import utcnow

DEFAULT_EXPIRY_DAYS = 90
TOKEN_PREFIX = "gw_"  # noqa: S105  # nosec B105  # a public marker at the start of every token, not a secret
# last_used_at is written at most this often per token (cheap, and no write per request).
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenError(ValueError):
    """A token request that cannot be honoured; the message names the field."""


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # the full bearer value: shown once, never stored


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def create_token(
    user: User, *, name: str = "", expires_days: int | None = DEFAULT_EXPIRY_DAYS, actor: Any = None, **fields: Any
) -> IssuedToken:
    """Issue a token for ``user``; ``expires_days=None`` means no expiry (explicit opt-in)."""
    if expires_days is not None and not (1 <= expires_days <= 3650):
        raise TokenError("expires_days: must be between 1 and 3650")
    if len(name) > 100:
        raise TokenError("name: at most 100 characters")
    prefix = secrets.token_hex(4)
    secret = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    now = utcnow()
    with write_transaction() as tx:
        token = ApiToken(
            user_id=user.id,
            name=name,
            prefix=prefix,
            token_hash=_digest(secret),
            created_at=now,
            expires_at=None if expires_days is None else now + timedelta(days=expires_days),
        )
        tx.add(token)
        tx.flush()
        audit.append(
            "token.created",
            session=tx,
            actor=actor,
            outcome="ok",
            detail={"token_id": token.id, "owner": user.username, "name": name, "prefix": prefix,
                    "expires_days": expires_days},
            **fields,
        )  # fmt: skip
    return IssuedToken(token=token, secret=secret)


# Token and owner in one statement, built once: this runs on every API request. The token's
# columns only (no ApiToken object): the owner is the one object the request goes on with.
_TOKEN_AND_OWNER = (
    select(ApiToken.id, ApiToken.token_hash, ApiToken.revoked_at, ApiToken.expires_at, ApiToken.last_used_at, User)
    .join(User, User.id == ApiToken.user_id)
    .where(ApiToken.token_hash == bindparam("digest"))
)


def authenticate(bearer: str) -> User | None:
    """The active user behind a bearer token, or None (unknown, revoked, expired, owner disabled)."""
    if not bearer.startswith(TOKEN_PREFIX) or len(bearer) > 200:
        return None
    digest = _digest(bearer)
    found = db.session.execute(_TOKEN_AND_OWNER, {"digest": digest}).first()
    if found is None:
        return None
    token = found
    user: User = found.User
    # The lookup is by digest; compare again in constant time all the same.
    if not hmac.compare_digest(token.token_hash, digest):
        return None
    now = utcnow()
    if token.revoked_at is not None or (token.expires_at is not None and token.expires_at <= now):
        return None
    if not user.active:
        return None
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        with write_transaction() as tx:
            tx.execute(update(ApiToken).where(ApiToken.id == token.id).values(last_used_at=now))
    return user


def revoke(token_id: int, *, actor: Any = None, owner: User | None = None, **fields: Any) -> bool:
    """Revoke a token (``owner`` limits it to that user's tokens). Returns whether one was revoked."""
    token = db.session.get(ApiToken, token_id)
    if token is None or (owner is not None and token.user_id != owner.id):
        return False
    with write_transaction() as tx:
        result = tx.execute(
            update(ApiToken).where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None)).values(revoked_at=utcnow())
        )
        if not rows_matched(result):
            return False
        _audit_revoked(tx, token_id, token.prefix, "manual", actor=actor, **fields)
    return True


def revoke_all_in(tx: Session, user_id: int, *, reason: str, actor: Any = None, **fields: Any) -> int:
    """Inside a write transaction: revoke every live token of a user, one ``token.revoked`` each.

    Tokens already revoked or expired are left as they are (they cannot come
    back). Returns how many were revoked.
    """
    now = utcnow()
    live = ApiToken.expires_at.is_(None) | (ApiToken.expires_at > now)
    revoked = tx.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None), live)
        .values(revoked_at=now)
        .returning(ApiToken.id, ApiToken.prefix)
    ).all()
    for token_id, prefix in sorted(revoked):
        _audit_revoked(tx, token_id, prefix, reason, actor=actor, **fields)
    return len(revoked)


def _audit_revoked(tx: Session, token_id: int, prefix: str, reason: str, *, actor: Any, **fields: Any) -> None:
    audit.append(
        "token.revoked", session=tx, actor=actor, outcome="ok",
        detail={"token_id": token_id, "prefix": prefix, "reason": reason}, **fields,
    )  # fmt: skip


def tokens_of(user: User | None = None) -> list[ApiToken]:
    """A user's tokens (or everyone's), newest first."""
    query = select(ApiToken).order_by(ApiToken.created_at.desc())
    if user is not None:
        query = query.where(ApiToken.user_id == user.id)
    return list(db.session.scalars(query))
