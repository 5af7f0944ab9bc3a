"""Values kept encrypted at rest (TOTP secrets, approval secrets): one box, keyed by the app's secret keys.

Each value is sealed with Fernet (AES-CBC + HMAC) under a key derived by HKDF
from ``SECRET_KEY`` and a *purpose* label, so a TOTP secret cannot be passed off
as another kind of value. Opening tries ``SECRET_KEY`` first, then every older
key in ``SECRET_KEYS`` (``cryptography``'s MultiFernet): rotating the secret
key locks nobody out, and ``reseal`` moves a value onto the current key.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

_SALT = b"ops-gateway secretbox v1"
_CACHE_KEY = "gateway.secretbox"


class SecretBoxError(ValueError):
    """A sealed value that no configured key opens (a key was dropped too early, or the value was altered)."""


def derive_key(secret_key: str, purpose: str) -> bytes:
    """The Fernet key for ``purpose`` under one secret key: HKDF-SHA256, never the secret key itself."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=purpose.encode("utf-8"))
    return base64.urlsafe_b64encode(hkdf.derive(secret_key.encode("utf-8")))


def _box(purpose: str) -> MultiFernet:
    """The app's box for ``purpose``: the current key first (it seals), then the older ones (they only open)."""
    cache: dict[str, MultiFernet] = current_app.extensions.setdefault(_CACHE_KEY, {})
    box = cache.get(purpose)
    if box is None:
        config = current_app.config
        keys = [str(config["SECRET_KEY"]), *config.get("SECRET_KEYS", {}).values()]
        box = MultiFernet([Fernet(derive_key(key, purpose)) for key in keys])
        cache[purpose] = box
    return box


def seal(value: str, *, purpose: str) -> str:
    """Encrypt ``value`` under the current secret key (the result is ASCII, about 1.4x longer plus 100 bytes)."""
    return _box(purpose).encrypt(value.encode("utf-8")).decode("ascii")


def open_sealed(sealed: str, *, purpose: str) -> str:
    """Decrypt a value ``seal`` made under the current key or any key in ``SECRET_KEYS``.

    :raise SecretBoxError: no configured key opens it.
    """
    try:
        return _box(purpose).decrypt(sealed.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError):
        raise SecretBoxError(f"a sealed {purpose} value opens under none of the configured secret keys") from None


def reseal(sealed: str, *, purpose: str) -> str:
    """The same value sealed under the current key (unchanged in meaning; call after a rotation).

    :raise SecretBoxError: no configured key opens it.
    """
    try:
        return _box(purpose).rotate(sealed.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError):
        raise SecretBoxError(f"a sealed {purpose} value opens under none of the configured secret keys") from None
