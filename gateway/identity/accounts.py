"""User account changes, each with its audit event in the same commit.

The CLI and the admin pages both go through here, so a change is audited
the same way whoever makes it. Every change that takes an account back
(a password reset, changed or set through an invite, a disabled user) ends
the user's sessions and API tokens in the same commit, through one function,
``revoke_access``: a credential minted before the change must not outlive it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import audit
from gateway.db.models import User
from gateway.db.units import write_transaction
from gateway.identity import invites, sessions, throttle, tokens
from gateway.identity.passwords import hash_password, password_problem
from gateway.identity.usernames import normalise_username, username_problem
from gateway.platform.extensions import db
from gateway.platform.identifiers import is_name
from gateway.platform.phrases import N_
from gateway.platform.timeutil import utcnow

Actor = Mapping[str, Any] | None
# Why a user's sessions and tokens were all ended: the ``reason`` of each ``token.revoked``.
RevokeReason = Literal["password_changed", "password_reset", "password_set", "user_disabled", "mfa_reset"]


class AccountError(ValueError):
    """A change that cannot be made: ``field: problem`` in English (the CLI's and the API's words).

    ``problem`` is a ``Phrase`` where the services word it, so a page shows it in its own language.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def find_user(raw_username: str) -> User | None:
    """The account a typed name means; a value that is not a name (``gateway.platform.identifiers``) means none."""
    username = normalise_username(raw_username)
    if not is_name(username):
        return None
    return db.session.scalar(select(User).where(User.username == username))


def get_user(raw_username: str) -> User:
    user = find_user(raw_username)
    if user is None:
        raise AccountError("username", N_("no user %(name)s", name=repr(normalise_username(raw_username))))
    return user


def _snapshot(user: User) -> dict[str, Any]:
    return {"username": user.username, "is_admin": user.is_admin, "active": user.active}


def create_user(
    raw_username: str, password: str, *, is_admin: bool = False, actor: Actor = None, **fields: Any
) -> User:
    """A user who signs in with ``password`` (chosen by the admin or generated)."""
    user, _ = _create(raw_username, password, is_admin=is_admin, actor=actor, **fields)
    return user


def create_invited_user(
    raw_username: str, *, is_admin: bool = False, actor: Actor = None, **fields: Any
) -> tuple[User, invites.IssuedInvite]:
    """A user without a password and an invite link to choose one; nobody can sign in as them before that."""
    user, invite = _create(raw_username, None, is_admin=is_admin, actor=actor, **fields)
    if invite is None:  # _create issues one whenever no password is given
        raise RuntimeError("no invite was issued")
    return user, invite


def _create(
    raw_username: str, password: str | None, *, is_admin: bool, actor: Actor, **fields: Any
) -> tuple[User, invites.IssuedInvite | None]:
    username = normalise_username(raw_username)
    problem = username_problem(username)
    if problem:
        raise AccountError("username", problem)
    problem = password_problem(password) if password is not None else None
    if problem:
        raise AccountError("password", problem)
    if find_user(username) is not None:
        raise AccountError("username", N_("%(name)s already exists", name=repr(username)))
    password_hash = hash_password(password) if password is not None else None
    with write_transaction() as tx:
        user = User(
            username=username,
            display_name=raw_username.strip() or username,
            password_hash=password_hash,
            is_admin=is_admin,
            active=True,
            password_changed_at=utcnow() if password_hash else None,
        )
        tx.add(user)
        tx.flush()
        detail: dict[str, Any] = {"after": _snapshot(user)}
        if password is None:
            detail["via"] = "invite"
        audit.append("admin.user_created", session=tx, actor=actor, outcome="ok", detail=detail, **fields)
        invite = None if password is not None else invites.issue_in(tx, user, actor=actor, reason="created", **fields)
    return user, invite


@dataclass(frozen=True)
class Revoked:
    """What ``revoke_access`` ended: server-side sessions and API tokens."""

    sessions: int
    tokens: int

    def as_detail(self) -> dict[str, int]:
        return {"sessions_ended": self.sessions, "tokens_revoked": self.tokens}


def revoke_access(tx: Session, user: User, reason: RevokeReason, *, actor: Actor, **fields: Any) -> Revoked:
    """Inside a write transaction: end every session and API token of ``user``, each token audited with ``reason``.

    The one place an account change takes back what was handed out before it,
    so no path (web, admin, CLI, invite) can end the sessions and forget the
    tokens. Logging out is not such a change: it ends only its own session.
    """
    ended = sessions.revoke_all_for(user.id)
    revoked = tokens.revoke_all_in(tx, user.id, reason=reason, actor=actor, **fields)
    return Revoked(sessions=ended, tokens=revoked)


def set_password(user: User, password: str, *, actor: Actor = None, **fields: Any) -> Revoked:
    """An operator sets a password (CLI, admin reset): every session and API token of that user ends."""
    return _set_password(user, password, "password_reset", actor=actor, **fields)


def change_own_password(user: User, password: str, **fields: Any) -> Revoked:
    """The user changed their own password (current one already checked): every session and token ends."""
    return _set_password(user, password, "password_changed", actor=user.actor(), **fields)


def _set_password(user: User, password: str, reason: RevokeReason, *, actor: Actor, **fields: Any) -> Revoked:
    problem = password_problem(password)
    if problem:
        raise AccountError("password", problem)
    password_hash = hash_password(password)
    with write_transaction() as tx:
        _, revoked = _replace_password(tx, user, password_hash, {}, reason, actor=actor, **fields)
    return revoked


def reset_password(user: User, password: str, *, actor: Actor = None, **fields: Any) -> Revoked:
    """An admin's reset to a generated password; not of their own account (it would end the very
    session the new password is about to be shown in)."""
    if _is_self(actor, user):
        raise AccountError("username", N_("you cannot reset your own password here (use your account page)"))
    return set_password(user, password, actor=actor, **fields)


def reset_by_invite(user: User, *, actor: Actor = None, **fields: Any) -> invites.IssuedInvite:
    """The password, sessions and API tokens stop working at once; an invite link lets the user choose a password."""
    with write_transaction() as tx:
        if _is_self(actor, user):
            raise AccountError("username", N_("you cannot reset your own password by invite (use your account page)"))
        user, _ = _replace_password(tx, user, None, {"via": "invite"}, "password_reset", actor=actor, **fields)
        return invites.issue_in(tx, user, actor=actor, reason="reset", **fields)


def _replace_password(
    tx: Session,
    user: User,
    password_hash: str | None,
    detail: dict[str, Any],
    reason: RevokeReason,
    *,
    actor: Actor,
    **fields: Any,
) -> tuple[User, Revoked]:
    """Inside a write transaction: set the hash (None: none until an invite), end sessions and tokens, audit."""
    user = tx.merge(user)
    if user.source != "local":
        raise AccountError(
            "username",
            N_(
                "%(name)s signs in through %(source)s; it has no local password",
                name=repr(user.username),
                source=user.source,
            ),
        )
    user.password_hash = password_hash
    user.password_changed_at = utcnow()
    revoked = revoke_access(tx, user, reason, actor=actor, **fields)
    invites.revoke_open(tx, user.id)  # a link handed out earlier must not override this password later
    audit.append(
        "admin.user_updated",
        session=tx,
        actor=actor,
        outcome="ok",
        detail={"user": user.username, "changed": ["password"], **detail, **revoked.as_detail()},
        **fields,
    )
    return user, revoked


def accept_invite(token: str, password: str, **fields: Any) -> User:
    """Use an invite link: set the password, mark the link used and end anything the user held, in one commit.

    A link that cannot be used raises ``invites.InviteError`` after writing
    ``auth.invite_failed`` (under the flood cap, like failed sign-ins); a
    password the rules refuse raises ``AccountError("password: ...")`` and the
    link stays usable. Sessions and tokens are ended as at any password reset
    (an operator may have issued a token while the link was open).
    """
    try:
        invites.check(token)  # before the argon2 work: a forged link costs a lookup, not a hash
        problem = password_problem(password)
        if problem:
            raise AccountError("password", problem)
        password_hash = hash_password(password)
        with write_transaction() as tx:
            invite, user = invites.use_in(tx, token)  # checked again under the write lock
            user.password_hash = password_hash
            user.password_changed_at = utcnow()
            revoked = revoke_access(tx, user, "password_set", actor=user.actor(), **fields)
            audit.append(
                "auth.password_set",
                session=tx,
                actor=user.actor(),
                outcome="ok",
                detail={"via": "invite", "invite_id": invite.id, **revoked.as_detail()},
                **fields,
            )
    except invites.InviteError as error:
        invites.record_failure(error, **fields)
        raise
    return user


def _other_active_admins(tx: Session, user_id: int) -> int:
    """Inside a write transaction: active admins other than ``user_id``, rows locked.

    Counted under the write lock (SQLite ``BEGIN IMMEDIATE``; PostgreSQL ``FOR
    UPDATE`` on the admin rows), so two operators demoting the last two admins
    at the same moment cannot both succeed.
    """
    admin_ids = tx.scalars(
        select(User.id).where(User.is_admin.is_(True), User.active.is_(True)).with_for_update()
    ).all()
    return sum(1 for admin_id in admin_ids if admin_id != user_id)


def _is_self(actor: Actor, user: User) -> bool:
    """An admin acting on their own account from the UI (CLI actors have no user id)."""
    return actor is not None and actor.get("id") is not None and actor.get("id") == user.id


def set_active(user: User, active: bool, *, actor: Actor = None, **fields: Any) -> None:
    """Disable or enable; disabling ends the user's sessions and API tokens. The last active admin stays.

    Enabling again brings none of them back: the user signs in afresh and
    creates new tokens.
    """
    with write_transaction() as tx:
        user = tx.merge(user)
        tx.refresh(user)
        if not active and _is_self(actor, user):
            raise AccountError("username", N_("you cannot disable your own account (ask another admin)"))
        if not active and user.is_admin and user.active and _other_active_admins(tx, user.id) == 0:
            raise AccountError("username", N_("cannot disable the last active admin"))
        before = _snapshot(user)
        user.active = active
        revoked = Revoked(0, 0) if active else revoke_access(tx, user, "user_disabled", actor=actor, **fields)
        audit.append(
            "admin.user_updated",
            session=tx,
            actor=actor,
            outcome="ok",
            detail={"before": before, "after": _snapshot(user), **revoked.as_detail()},
            **fields,
        )


def set_admin(user: User, is_admin: bool, *, actor: Actor = None, **fields: Any) -> None:
    """Grant or revoke administrator rights. The last active admin keeps them."""
    with write_transaction() as tx:
        user = tx.merge(user)
        tx.refresh(user)
        if user.source == "oidc" and current_app.config.get("OIDC_ADMIN_GROUPS") is not None:
            raise AccountError(
                "username",
                N_(
                    "%(name)s's admin flag follows the identity provider's groups (OIDC_ADMIN_GROUPS)",
                    name=repr(user.username),
                ),
            )
        if not is_admin and _is_self(actor, user):
            raise AccountError("username", N_("you cannot revoke your own admin rights (ask another admin)"))
        if not is_admin and user.is_admin and user.active and _other_active_admins(tx, user.id) == 0:
            raise AccountError("username", N_("cannot revoke admin from the last active admin"))
        before = _snapshot(user)
        user.is_admin = is_admin
        audit.append(
            "admin.user_updated",
            session=tx,
            actor=actor,
            outcome="ok",
            detail={"before": before, "after": _snapshot(user)},
            **fields,
        )


def unlock(raw_username: str, *, actor: Actor = None, **fields: Any) -> bool:
    """Clear failed sign-ins and any lock for a name (existing or not)."""
    username = normalise_username(raw_username)
    with write_transaction() as tx:
        cleared = throttle.clear(username)
        audit.append(
            "admin.user_updated",
            session=tx,
            actor=actor,
            outcome="ok",
            detail={"user": username, "changed": ["unlocked"], "had_lock": cleared},
            **fields,
        )
    return cleared


def list_users() -> list[User]:
    return list(db.session.scalars(select(User).order_by(User.username)))
