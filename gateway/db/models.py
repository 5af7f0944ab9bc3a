"""The gateway's tables: people, groups, grants, tokens, sessions, second factors, login throttles, audit ledger.

Alembic revisions in ``migrations/`` are generated from (and checked against)
these classes; ``manage.py db check`` fails when the two drift apart.  The ledger's
tables (``audit_tables``) and the column types (``columns``) are modules of their own,
re-exported here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

# The audit room's tables live in their own module; every table is reachable from here.
from gateway.db.audit_tables import AuditEvent as AuditEvent
from gateway.db.audit_tables import AuditForwardCursor as AuditForwardCursor
from gateway.db.columns import UTCDateTime as UTCDateTime
from gateway.platform.extensions import Model
from gateway.platform.timeutil import utcnow


class User(UserMixin, Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Normalised (NFKC + casefold) so look-alike spellings are one account.
    username: Mapped[str] = mapped_column(String(150), unique=True)
    display_name: Mapped[str] = mapped_column(String(150))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # How the account signs in: "local" (password), "oidc" or "header" (created at first sign-in).
    source: Mapped[str] = mapped_column(String(16), default="local", server_default="local")
    # An IdP account is found by (issuer, subject) only, never by name: a name can be reused at the IdP.
    idp_issuer: Mapped[str | None] = mapped_column(String(512))
    idp_subject: Mapped[str | None] = mapped_column(String(255))
    # The UI language the user chose on the account page (config.SHIPPED_LANGUAGES); None: the browser's.
    language: Mapped[str | None] = mapped_column(String(16))

    __table_args__ = (UniqueConstraint("idp_issuer", "idp_subject", name="uq_users_idp_identity"),)

    memberships: Mapped[list[GroupMember]] = relationship(back_populates="user", cascade="all, delete-orphan")

    @property
    def is_active(self) -> bool:  # flask-login reads this
        return self.active

    def get_id(self) -> str:
        return str(self.id)

    def actor(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.username}

    def __repr__(self) -> str:
        return f"<User {self.username}>"


class Group(Model):
    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    members: Mapped[list[GroupMember]] = relationship(back_populates="group", cascade="all, delete-orphan")
    grants: Mapped[list[CommandGrant]] = relationship(back_populates="group", cascade="all, delete-orphan")
    idp_links: Mapped[list[IdpGroupLink]] = relationship(back_populates="group", cascade="all, delete-orphan")


class GroupMember(Model):
    __tablename__ = "group_members"

    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # "manual" (an admin added it; kept) or "idp" (an IdP groups claim brought it; replaced at each sign-in).
    origin: Mapped[str] = mapped_column(String(8), default="manual", server_default="manual")

    group: Mapped[Group] = relationship(back_populates="members")
    user: Mapped[User] = relationship(back_populates="memberships")


class IdpGroupLink(Model):
    """An admin's link from an identity provider's group name to a gateway group."""

    __tablename__ = "idp_group_links"
    __table_args__ = (UniqueConstraint("group_id", "idp_group", name="uq_idp_group_links_group_idp"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"))
    # Any string the IdP sends (``/ops/admins``, an Entra object id), hence not a gateway name.
    idp_group: Mapped[str] = mapped_column(String(256), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    group: Mapped[Group] = relationship(back_populates="idp_links")


class CommandGrant(Model):
    """A group may run a catalogue command (by name; the catalogue itself is reviewed config)."""

    __tablename__ = "command_grants"
    __table_args__ = (UniqueConstraint("group_id", "command", name="uq_command_grants_group_command"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), index=True)
    command: Mapped[str] = mapped_column(String(100), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    group: Mapped[Group] = relationship(back_populates="grants")


class ApiToken(Model):
    """A bearer token; only its SHA-256 is stored, the prefix identifies it in lists."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()


class UserSession(Model):
    """A signed-in browser session; the cookie carries a random id whose SHA-256 is ``id``.

    Server-side records are what make logout, password change and disabling a
    user end a session: a replayed cookie finds its record revoked.
    """

    __tablename__ = "user_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    source_ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    # How this session was signed in ("local", "oidc", "header"): header sessions are re-checked every request.
    method: Mapped[str] = mapped_column(String(16), default="local", server_default="local")
    # Password accepted, second factor not yet: the sign-in gate lets this session reach /login/mfa only.
    mfa_pending: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    user: Mapped[User] = relationship()


class UserInvite(Model):
    """A one-time "set your password" link for a user an admin created or reset.

    Only the link token's SHA-256 is stored; it works once, until ``expires_at``,
    and a newer invite for the same user revokes the older ones.
    """

    __tablename__ = "user_invites"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(150))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OneTimeReveal(Model):
    """Half of a secret waiting to be shown once after a redirect (``gateway.platform.reveal``).

    ``masked`` is the secret XOR a random pad that only the session cookie
    holds: neither half alone tells anything, and the row is deleted when shown.
    """

    __tablename__ = "one_time_reveals"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("user_sessions.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    masked: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MfaTotp(Model):
    """A user's TOTP secret, sealed (``gateway.platform.secretbox``); a second factor once ``confirmed_at`` is set."""

    __tablename__ = "mfa_totp"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    secret_sealed: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The time step of the last accepted code; only a later step is accepted (no replay, on any replica).
    last_step: Mapped[int | None] = mapped_column(BigInteger)


class MfaRecoveryCode(Model):
    """A one-time recovery code; only its SHA-256 is stored (80 random bits: no guessing from the hash)."""

    __tablename__ = "mfa_recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class MfaPasskey(Model):
    """A WebAuthn credential registered as a second factor (id and COSE public key base64url-encoded)."""

    __tablename__ = "mfa_passkeys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)
    public_key: Mapped[str] = mapped_column(Text)
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    name: Mapped[str] = mapped_column(String(100))
    transports: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LoginThrottle(Model):
    """Failed sign-ins per normalised username, existing or not (a lock reveals nothing)."""

    __tablename__ = "login_throttles"

    username: Mapped[str] = mapped_column(String(150), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    lock_count: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Run(Model):
    """One invocation of a catalogue command. Every state a page or the API shows comes from here."""

    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_user_created", "user_id", "created_at"),
        Index("ix_runs_command_status", "command", "status"),
        Index("ix_runs_cache_key", "cache_key", "status"),
        Index("ix_runs_status_lease", "status", "lease_expires_at"),
        Index("ix_runs_created", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    command: Mapped[str] = mapped_column(String(100))
    command_sha256: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    params: Mapped[Any] = mapped_column(JSON)  # secrets masked
    cache_key: Mapped[str | None] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    username: Mapped[str] = mapped_column(String(150))
    source_ip: Mapped[str | None] = mapped_column(String(45))
    status: Mapped[str] = mapped_column(String(16))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    # The error's phrase (gateway.platform.phrases: msgid, values, plural, amount), so a page says it in
    # its language; None (SQL NULL) for a plain text and for rows recorded before revision 0014.
    error_phrase: Mapped[Any | None] = mapped_column(JSON(none_as_null=True))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    output_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    output_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    output_sha256: Mapped[str | None] = mapped_column(String(64))
    result: Mapped[Any | None] = mapped_column(JSON)
    # Where it runs: the replica (host + boot id) that accepted it, and its process group.
    host: Mapped[str] = mapped_column(String(255))
    boot_id: Mapped[str] = mapped_column(String(36), index=True)
    pgid: Mapped[int | None] = mapped_column(Integer)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    timeout_seconds: Mapped[float] = mapped_column(Float)


class RunOutputChunk(Model):
    """Output in arrival order; ``seq`` is the SSE event id, so a stream resumes without loss."""

    __tablename__ = "run_output_chunks"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    stream: Mapped[str] = mapped_column(String(8))
    text: Mapped[str] = mapped_column(Text)


class CommandState(Model):
    """Runtime switches for catalogue commands (the kill switch); the catalogue itself is config."""

    __tablename__ = "command_states"

    command: Mapped[str] = mapped_column(String(100), primary_key=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str | None] = mapped_column(String(500))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    changed_by: Mapped[str | None] = mapped_column(String(150))


class ScheduleState(Model):
    """A schedule's runtime state: counted from ``since`` (first seen, or resumed), and the pause switch."""

    __tablename__ = "schedule_states"

    schedule: Mapped[str] = mapped_column(String(100), primary_key=True)
    since: Mapped[datetime] = mapped_column(UTCDateTime)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    changed_by: Mapped[str | None] = mapped_column(String(150))


class ScheduleOccurrence(Model):
    """One claimed occurrence (its UTC instant): the primary key is what makes it run exactly once."""

    __tablename__ = "schedule_occurrences"

    schedule: Mapped[str] = mapped_column(String(100), primary_key=True)
    scheduled_for: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    outcome: Mapped[str] = mapped_column(String(16))  # started | rejected | missed | manual (an operator's run-now)
    run_id: Mapped[str | None] = mapped_column(String(36), index=True)
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime)
