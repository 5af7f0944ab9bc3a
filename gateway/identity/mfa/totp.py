"""TOTP (RFC 6238) secrets: enrolment, the QR code, and accepting a code at most once.

The secret is sealed at rest (``gateway.platform.secretbox``). A code is
accepted for the time step before, at or after now (clock drift), and only
when that step is later than the last one accepted for the user, decided by one
conditional UPDATE: a code seen once is refused on every replica, and so is any
older code.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

import pyotp
import segno
from flask import current_app
from sqlalchemy import delete, update

from gateway.db.models import MfaTotp, User
from gateway.db.units import rows_matched, write_transaction
from gateway.platform import secretbox
from gateway.platform.extensions import db
from gateway.platform.timeutil import utcnow

PURPOSE = "mfa-totp"
ISSUER = "Ops Gateway"
DRIFT_STEPS = 1  # one step (30 s) either side of now

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Enrolment:
    """What the enrolment page shows: the secret as text, its otpauth:// URI and that URI as an inline SVG QR code."""

    secret: str
    uri: str
    qr_svg: str


def confirmed(user_id: int) -> MfaTotp | None:
    row = db.session.get(MfaTotp, user_id)
    return row if row is not None and row.confirmed_at is not None else None


def pending_enrolment(user: User) -> Enrolment | None:
    """The secret a user is setting up and has not confirmed yet, ready to show; None if there is none."""
    row = db.session.get(MfaTotp, user.id)
    if row is None or row.confirmed_at is not None:
        return None
    return _enrolment(user, secretbox.open_sealed(row.secret_sealed, purpose=PURPOSE))


def begin(user: User) -> Enrolment:
    """A fresh secret to confirm (replacing one never confirmed). A confirmed secret stays: reset it first."""
    secret = pyotp.random_base32()
    with write_transaction() as tx:
        existing = tx.get(MfaTotp, user.id)
        if existing is not None and existing.confirmed_at is not None:
            raise ValueError("code: an authenticator app is already set up")
        tx.execute(delete(MfaTotp).where(MfaTotp.user_id == user.id))
        tx.add(MfaTotp(user_id=user.id, secret_sealed=secretbox.seal(secret, purpose=PURPOSE), created_at=utcnow()))
    return _enrolment(user, secret)


def _enrolment(user: User, secret: str) -> Enrolment:
    host = urlsplit(current_app.config["PUBLIC_BASE_URL"]).hostname or "gateway"
    uri = pyotp.TOTP(secret).provisioning_uri(name=f"{user.username}@{host}", issuer_name=ISSUER)
    svg = segno.make(uri, error="m").svg_inline(scale=4, title="QR code for your authenticator app")
    return Enrolment(secret=secret, uri=uri, qr_svg=svg)


def normalise_code(text: str) -> str:
    return "".join(text.split())


def is_totp_code(text: str) -> bool:
    code = normalise_code(text)
    return len(code) == 6 and code.isascii() and code.isdigit()


def _secret(row: MfaTotp) -> str | None:
    """The row's secret; None (and a log line naming no secret) when no configured key opens it."""
    try:
        return secretbox.open_sealed(row.secret_sealed, purpose=PURPOSE)
    except secretbox.SecretBoxError:
        log.warning("the TOTP secret of user id %s opens under no key in SECRET_KEY/SECRET_KEYS", row.user_id)
        return None


def matching_step(secret: str | None, code: str) -> int | None:
    """The time step ``code`` belongs to (now, or one step either side), compared in constant time."""
    if secret is None:
        return None
    totp = pyotp.TOTP(secret)
    now = totp.timecode(utcnow())
    for step in range(now - DRIFT_STEPS, now + DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def confirm(user: User, code: str) -> bool:
    """Inside a write transaction: confirm the pending secret with a code from the app; False when it does not match.

    Conditional on the very secret the code was checked against, so a "start
    again" in another tab racing with it is not confirmed by the other key's code.
    """
    row = db.session.get(MfaTotp, user.id)
    if row is None or row.confirmed_at is not None or not is_totp_code(code):
        return False
    step = matching_step(_secret(row), normalise_code(code))
    if step is None:
        return False
    result = db.session.execute(
        update(MfaTotp)
        .where(MfaTotp.user_id == user.id, MfaTotp.confirmed_at.is_(None), MfaTotp.secret_sealed == row.secret_sealed)
        .values(confirmed_at=utcnow(), last_step=step)
    )
    return rows_matched(result) == 1


def accept(user_id: int, code: str) -> bool:
    """Whether ``code`` is a valid code of the user's confirmed secret not used before (then it is used up).

    Own write transaction: the step is recorded whatever happens next, so a
    code seen once stays refused.
    """
    row = confirmed(user_id)
    if row is None or not is_totp_code(code):
        return False
    step = matching_step(_secret(row), normalise_code(code))
    if step is None:
        return False
    with write_transaction() as tx:
        later = (MfaTotp.last_step.is_(None)) | (MfaTotp.last_step < step)
        values = {"last_step": step, "secret_sealed": secretbox.reseal(row.secret_sealed, purpose=PURPOSE)}
        result = tx.execute(
            update(MfaTotp).where(MfaTotp.user_id == user_id, MfaTotp.confirmed_at.isnot(None), later).values(**values)
        )
        return rows_matched(result) == 1
