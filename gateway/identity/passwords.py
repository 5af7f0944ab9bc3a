"""argon2id password hashing, with a dummy verification for unknown users.

Hashing a dummy password when the user does not exist makes "unknown user"
and "wrong password" cost the same time, so timing does not enumerate accounts.

The argon2 cost comes from the app's ``PASSWORD_HASH_PROFILE``, which only the
``testing`` environment sets to the cheap profile (config.py); outside an app,
and in production and development, hashes are always made with RFC 9106's
recommended parameters. A hash records its own parameters, so a hash made with
either profile verifies under the other.
"""

from __future__ import annotations

import functools
import secrets

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app, has_app_context
from flask_babel import gettext as _

from gateway.platform.phrases import N_, Phrase

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024

# Named profiles a config may choose; "strong" is argon2-cffi's default (RFC 9106, low memory).
PROFILES = {"strong": profiles.RFC_9106_LOW_MEMORY, "cheap-for-tests": profiles.CHEAPEST}
STRONG_PROFILE = "strong"


@functools.cache
def _hasher(profile: str) -> tuple[PasswordHasher, str]:
    """The hasher of a profile and a dummy hash made with it (for unknown users)."""
    hasher = PasswordHasher.from_parameters(PROFILES[profile])
    return hasher, hasher.hash(secrets.token_urlsafe(16))


def _profile() -> str:
    if has_app_context():
        return str(current_app.config.get("PASSWORD_HASH_PROFILE", STRONG_PROFILE))
    return STRONG_PROFILE


def hash_password(password: str) -> str:
    hasher, _ = _hasher(_profile())
    return hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; always spends one argon2 verification."""
    hasher, dummy_hash = _hasher(_profile())
    try:
        hasher.verify(password_hash or dummy_hash, password)  # raises on a mismatch
        return password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def password_problem(password: str) -> Phrase | None:
    """Why a new password is unacceptable, or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return N_("must be at least %(num)s characters", num=MIN_PASSWORD_LENGTH)
    if len(password) > MAX_PASSWORD_LENGTH:
        return N_("must be at most %(num)s characters", num=MAX_PASSWORD_LENGTH)
    return None


def password_problem_text(password: str) -> str | None:
    """``password_problem`` as a sentence in the page's language ("The password must be at least 12 characters.")."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return str(_("The password must be at least %(num)d characters.", num=MIN_PASSWORD_LENGTH))
    if len(password) > MAX_PASSWORD_LENGTH:
        return str(_("The password must be at most %(num)d characters.", num=MAX_PASSWORD_LENGTH))
    return None


def generate_password() -> str:
    return secrets.token_urlsafe(15)
