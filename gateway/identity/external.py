"""Sign-in by an identity established elsewhere (an OIDC provider, a trusted proxy's header).

One path for both methods, so they share every rule DESIGN.md fixes: an account
is created at first sign-in and bound to (issuer, subject), found by that pair
only afterwards; a name already held by another account refuses the sign-in
(an IdP identity never takes over an existing account); a disabled user cannot
sign in; memberships the IdP's groups brought are replaced at every sign-in
while an admin's hand-added ones stay; ``OIDC_ADMIN_GROUPS``, when set, decides
an OIDC user's admin flag. Failures raise ``SignInRefused`` with the reason
the ``auth.login_failed`` event names.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from flask import current_app, request
from flask_login import login_user
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway import audit
from gateway.db.models import GroupMember, User
from gateway.db.units import write_transaction
from gateway.identity import sessions
from gateway.identity.idp_links import gateway_groups_for
from gateway.identity.usernames import normalise_username
from gateway.platform.addresses import client_address
from gateway.platform.phrases import N_

log = logging.getLogger("gateway.identity.external")
Method = Literal["oidc", "header"]
# A browser's first page and its assets, or several tabs, arrive together before any cookie: their sign-ins race.
RACE_ATTEMPTS = 3
T = TypeVar("T")
# IdP usernames may be e-mail addresses; still a plain alphabet (no look-alikes, no '/'), at most 100 characters.
EXTERNAL_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@+-]{0,99}$")
# The issuer recorded for header accounts: the proxy vouches for the name, which is therefore the subject.
HEADER_ISSUER = "header"


class SignInRefused(Exception):
    """An external sign-in that must not go through; ``reason`` is the ``auth.login_failed`` outcome."""

    def __init__(self, reason: str, message: str, user: User | None = None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.user = user


@dataclass(frozen=True)
class ExternalIdentity:
    """Who the IdP or proxy says signed in, already verified by the method (token checks, trusted peer)."""

    method: Method
    issuer: str
    subject: str
    raw_username: str | None
    display_name: str | None = None
    # None: the IdP said nothing about groups (memberships are left as they are); () means "in no group".
    groups: tuple[str, ...] | None = None


def external_username(raw: str | None) -> str:
    """The account name for an IdP's username claim, or ``SignInRefused`` (``no_username``)."""
    if not raw or not isinstance(raw, str):
        raise SignInRefused("no_username", N_("The identity provider did not send a username."))
    name = normalise_username(raw)
    if not EXTERNAL_USERNAME.match(name):
        raise SignInRefused("no_username", N_("The username the identity provider sent cannot be used here."))
    return name


def settle_race(step: Callable[[], T]) -> T:
    """Run a sign-in or re-sync again when a parallel request of the same user wrote the same rows first.

    The unique constraints (one account per identity and per name, one membership
    per group) make the loser fail; its next attempt finds the winner's rows.
    """
    for _ in range(RACE_ATTEMPTS - 1):
        try:
            return step()
        except IntegrityError:
            log.info("a parallel request signed the same user in first; trying again")
    return step()


def sign_in(identity: ExternalIdentity) -> User:
    """Find or create the bound account, sync its groups, start its session and audit ``auth.login``."""
    return settle_race(lambda: _sign_in_once(identity))


def _sign_in_once(identity: ExternalIdentity) -> User:
    with write_transaction() as tx:
        user = _account(tx, identity)
        if not user.active:
            raise SignInRefused("user_disabled", N_("This account is disabled."), user)
        changes = sync_groups(tx, user, identity)
        sessions.start(user, client_address() or None, request.headers.get("User-Agent"), method=identity.method)
        audit.append(
            "auth.login", session=tx, actor=user.actor(), source_ip=client_address() or None,
            user_agent=request.headers.get("User-Agent"), outcome="ok", detail={"method": identity.method, **changes},
        )  # fmt: skip
    login_user(user)
    return user


def record_refusal(refused: SignInRefused, method: Method) -> None:
    """``auth.login_failed`` naming the reason, flood-capped like every refusal; no token or code is recorded."""
    actor = refused.user.actor() if refused.user is not None else None
    audit.record_capped("auth.login_failed", actor=actor, outcome=refused.reason, detail={"method": method})


def _account(tx: Session, identity: ExternalIdentity) -> User:
    user: User | None = tx.scalar(
        select(User).where(User.idp_issuer == identity.issuer, User.idp_subject == identity.subject)
    )
    if user is not None:
        return user
    username = external_username(identity.raw_username)
    if tx.scalar(select(User.id).where(User.username == username)) is not None:
        raise SignInRefused("username_taken", N_("This username belongs to another account; ask an administrator."))
    user = User(
        username=username,
        display_name=(identity.display_name or username)[:150],
        password_hash=None,
        is_admin=False,
        active=True,
        source=identity.method,
        idp_issuer=identity.issuer,
        idp_subject=identity.subject,
    )
    tx.add(user)
    tx.flush()
    audit.append(
        "admin.user_created", session=tx, actor=None, outcome="ok",
        detail={"after": {"username": user.username, "is_admin": False, "active": True}, "via": identity.method},
    )  # fmt: skip
    return user


def sync_groups(tx: Session, user: User, identity: ExternalIdentity) -> dict[str, Any]:
    """Inside a write transaction: make the IdP-given memberships (and the OIDC admin flag) match the claim.

    Returns what changed, for the sign-in's ledger row; a change outside sign-in
    (header mode re-checks every request) is audited ``auth.groups_synced``.
    """
    changes: dict[str, Any] = {}
    if identity.groups is not None:
        changes.update(_sync_memberships(tx, user, identity.groups))
    admin_groups = current_app.config.get("OIDC_ADMIN_GROUPS")
    if identity.method == "oidc" and admin_groups is not None:
        wanted = identity.groups is not None and any(group in admin_groups for group in identity.groups)
        if user.is_admin != wanted:
            user.is_admin = wanted
            changes["is_admin"] = wanted
    return changes


def _sync_memberships(tx: Session, user: User, idp_groups: tuple[str, ...]) -> dict[str, Any]:
    wanted = gateway_groups_for(idp_groups, by_name=bool(current_app.config.get("OIDC_GROUPS_BY_NAME", True)))
    held = {row.group_id: row for row in tx.scalars(select(GroupMember).where(GroupMember.user_id == user.id))}
    added = [wanted[group_id] for group_id in wanted if group_id not in held]
    stale = [group_id for group_id, row in held.items() if row.origin == "idp" and group_id not in wanted]
    for group_id in wanted:
        if group_id not in held:
            tx.add(GroupMember(group_id=group_id, user_id=user.id, origin="idp"))
    if stale:
        removed_names = [row.group.name for group_id, row in held.items() if group_id in stale]
        tx.execute(delete(GroupMember).where(GroupMember.user_id == user.id, GroupMember.group_id.in_(stale)))
    else:
        removed_names = []
    tx.flush()
    tx.expire(user, ["memberships"])
    changes: dict[str, Any] = {}
    if added:
        changes["groups_added"] = sorted(added)
    if removed_names:
        changes["groups_removed"] = sorted(removed_names)
    return changes
