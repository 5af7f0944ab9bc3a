"""The second sign-in step: a TOTP code, a recovery code or a passkey turns a half-signed-in session into a full one.

A wrong code counts toward the same per-name lock as a wrong password
(``service.record_failure``, audited ``auth.mfa_failed``) and, while the name
is locked, is not even checked. Success ends the half-signed-in record and
starts a fresh one (``sessions.start``), clears the lock's count and writes
``auth.login`` with the factor, in one commit.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from flask import request
from flask_login import login_user

from gateway import audit
from gateway.db.models import User
from gateway.db.units import write_transaction
from gateway.identity import service, sessions, throttle
from gateway.identity.mfa import passkeys, recovery, totp
from gateway.platform.addresses import client_address


class StepFailure(enum.Enum):
    INVALID = "invalid"
    LOCKED = "locked"


@dataclass(frozen=True)
class StepResult:
    failure: StepFailure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


def _fields() -> dict[str, Any]:
    return {"source_ip": client_address() or None, "user_agent": request.headers.get("User-Agent")}


def locked(user: User) -> bool:
    """While the name is locked no factor is checked (audited ``auth.mfa_failed``, outcome ``locked``, capped)."""
    if throttle.locked_until(user.username) is None:
        return False
    audit.record_capped("auth.mfa_failed", actor=user.actor(), outcome="locked", detail={"method": "local"})
    return True


def failed(user: User, factor: str) -> StepResult:
    """A wrong second factor: counted toward the name's lock like a wrong password."""
    service.record_failure(user.username, user, event="auth.mfa_failed", factor=factor)
    return StepResult(failure=StepFailure.INVALID)


def verify_code(user: User, typed: str) -> StepResult:
    """Check a typed code: six digits are a TOTP code (refused if used before), anything else a recovery code."""
    if locked(user):
        return StepResult(failure=StepFailure.LOCKED)
    if totp.is_totp_code(typed):
        if totp.accept(user.id, typed):
            complete(user, "totp")
            return StepResult()
        return failed(user, "totp")
    if complete(user, "recovery_code", recovery_code=typed):
        return StepResult()
    return failed(user, "recovery_code")


def verify_passkey(user: User, credential_json: str) -> StepResult:
    """Check a passkey's answer to this session's challenge (``passkeys.verify_sign_in``), counted like a code."""
    if locked(user):
        return StepResult(failure=StepFailure.LOCKED)
    if passkeys.verify_sign_in(user, credential_json):
        complete(user, "passkey")
        return StepResult()
    return failed(user, "passkey")


def complete(user: User, factor: str, *, recovery_code: str | None = None) -> bool:
    """Finish signing in with ``factor``; with ``recovery_code``, only if that code is unused (then it is used up)."""
    fields = _fields()
    with write_transaction() as tx:
        if recovery_code is not None:
            if not recovery.use_in(tx, user.id, recovery_code):
                return False
            detail = {"remaining": recovery.remaining(user.id)}
            audit.append(
                "auth.mfa_recovery_used", session=tx, actor=user.actor(), outcome="ok", detail=detail, **fields
            )
        throttle.clear(user.username)
        sessions.start(user, fields["source_ip"], fields["user_agent"])
        login_detail = {"method": "local", "mfa": factor}
        audit.append("auth.login", session=tx, actor=user.actor(), outcome="ok", detail=login_detail, **fields)
    login_user(user)
    return True
