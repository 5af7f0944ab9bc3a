"""What second factors a user has, who must have one (``MFA_REQUIRED``), enrolling one, and the admin's reset.

Only local accounts have second factors here: OIDC and header users get
theirs from the identity provider (``OIDC_REQUIRED_ACR``). Each change is
audited in the same commit as the change itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import current_app, g
from sqlalchemy import delete, exists, or_, select

from gateway import audit
from gateway.db.models import MfaPasskey, MfaRecoveryCode, MfaTotp, User
from gateway.db.units import write_transaction
from gateway.identity import accounts
from gateway.identity.mfa import recovery, totp
from gateway.platform.extensions import db
from gateway.platform.phrases import N_

_CACHE = "gateway.mfa_enrolled"


@dataclass(frozen=True)
class Status:
    """A user's second factors as the account page shows them."""

    totp: bool
    passkeys: int
    recovery_left: int

    @property
    def enrolled(self) -> bool:
        return self.totp or self.passkeys > 0


def status(user_id: int) -> Status:
    passkeys = db.session.scalars(select(MfaPasskey.id).where(MfaPasskey.user_id == user_id)).all()
    return Status(
        totp=totp.confirmed(user_id) is not None, passkeys=len(passkeys), recovery_left=recovery.remaining(user_id)
    )


def has_factor(user_id: int) -> bool:
    """Whether the user has a confirmed TOTP secret or a passkey (one query; remembered for the request)."""
    cache: dict[int, bool] = g.setdefault(_CACHE, {})
    if user_id not in cache:
        confirmed = exists().where(MfaTotp.user_id == user_id, MfaTotp.confirmed_at.isnot(None))
        passkey = exists().where(MfaPasskey.user_id == user_id)
        cache[user_id] = bool(db.session.scalar(select(or_(confirmed, passkey))))
    return cache[user_id]


def users_with_factors() -> set[int]:
    """Ids of users with anything an MFA reset would remove (for the admin users page)."""
    ids: set[int] = set()
    for model in (MfaTotp, MfaPasskey, MfaRecoveryCode):
        ids.update(db.session.scalars(select(model.user_id).distinct()))
    return ids


def forget_cached(user_id: int) -> None:
    g.setdefault(_CACHE, {}).pop(user_id, None)


def can_enrol(user: User) -> bool:
    """Local accounts only: an IdP or a proxy authenticates the others, second factor included."""
    return user.source == "local"


def required_for(user: User) -> bool:
    """``MFA_REQUIRED`` (``none``, ``admins``, ``all``) applied to a local account."""
    policy = current_app.config.get("MFA_REQUIRED", "admins")
    return can_enrol(user) and (policy == "all" or (policy == "admins" and user.is_admin))


def must_enrol(user: User) -> bool:
    """The user must set up a second factor before anything else."""
    return required_for(user) and not has_factor(user.id)


def needs_second_step(user: User) -> bool:
    """After the password, this user's sign-in waits for a second factor."""
    return can_enrol(user) and has_factor(user.id)


@dataclass(frozen=True)
class Enrolled:
    """The outcome of confirming a factor: ``ok``, and recovery codes to show once (empty if the user has some)."""

    ok: bool
    recovery_codes: list[str] = field(default_factory=list)


def enrolled_in(tx: Any, user: User, factor: str, **fields: Any) -> list[str]:
    """Inside a write transaction: a factor was just added; ten recovery codes if the user has none, audited."""
    codes = recovery.issue_in(tx, user.id) if recovery.remaining(user.id) == 0 else []
    detail = {"factor": factor, "recovery_codes_issued": len(codes)}
    audit.append("auth.mfa_enrolled", session=tx, actor=user.actor(), outcome="ok", detail=detail, **fields)
    forget_cached(user.id)
    return codes


def confirm_totp(user: User, code: str, **fields: Any) -> Enrolled:
    """Confirm the authenticator app the user is setting up with a code it shows now."""
    with write_transaction() as tx:
        if not totp.confirm(user, code):
            return Enrolled(ok=False)
        return Enrolled(ok=True, recovery_codes=enrolled_in(tx, user, "totp", **fields))


def new_recovery_codes(user: User, **fields: Any) -> list[str]:
    """Ten fresh codes replace the user's earlier ones (audited ``auth.mfa_enrolled``, factor ``recovery_codes``)."""
    with write_transaction() as tx:
        codes = recovery.issue_in(tx, user.id)
        detail = {"factor": "recovery_codes", "recovery_codes_issued": len(codes)}
        audit.append("auth.mfa_enrolled", session=tx, actor=user.actor(), outcome="ok", detail=detail, **fields)
    return codes


@dataclass(frozen=True)
class Reset:
    """What ``reset`` removed and ended."""

    factors: list[str]
    revoked: accounts.Revoked


def reset(user: User, *, actor: Mapping[str, Any] | None, **fields: Any) -> Reset:
    """An admin removes every second factor of ``user``; their sessions and API tokens end in the same commit.

    For a lost phone or security key: the user signs in with the password
    alone and, where ``MFA_REQUIRED`` says so, is sent to enrol again at once.
    Not on one's own account from the web (it would end the session doing it).
    """
    with write_transaction() as tx:
        user = tx.merge(user)
        if actor is not None and actor.get("id") is not None and actor.get("id") == user.id:
            raise accounts.AccountError(
                "username", N_("you cannot reset your own second factors here (ask another admin)")
            )
        st = status(user.id)
        pending = db.session.get(MfaTotp, user.id) is not None
        factors = [
            name
            for name, has in (("totp", st.totp), ("passkeys", st.passkeys), ("recovery_codes", st.recovery_left))
            if has
        ]
        if not factors and not pending:
            raise accounts.AccountError(
                "username", N_("%(name)s has no second factor to reset", name=repr(user.username))
            )
        for model in (MfaTotp, MfaRecoveryCode, MfaPasskey):
            tx.execute(delete(model).where(model.user_id == user.id))
        revoked = accounts.revoke_access(tx, user, "mfa_reset", actor=actor, **fields)
        detail = {"user": user.username, "factors": factors, **revoked.as_detail()}
        audit.append("admin.mfa_reset", session=tx, actor=actor, outcome="ok", detail=detail, **fields)
    forget_cached(user.id)
    return Reset(factors=factors, revoked=revoked)
