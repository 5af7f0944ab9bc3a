"""Passkeys (WebAuthn, the ``webauthn`` package) as a second factor: register, name, remove, sign in with one.

The relying-party id and origin come from ``PUBLIC_BASE_URL`` (never from the
request's Host), so a passkey made for the gateway answers only the gateway.
Each ceremony's challenge lives in the signed session cookie and is popped
when used: a challenge answers one ceremony, and a replayed cookie of a
half-signed-in session finds its record ended once the step succeeded.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlsplit

import webauthn
from flask import current_app, session
from sqlalchemy import delete, select, update
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from gateway import audit
from gateway.db.models import MfaPasskey, User
from gateway.db.units import rows_matched, write_transaction
from gateway.identity.mfa import factors
from gateway.platform.extensions import db
from gateway.platform.phrases import N_
from gateway.platform.timeutil import utcnow

RP_NAME = "Ops Gateway"
CHALLENGE_SECONDS = 300
MAX_NAME = 100
MAX_CREDENTIAL_JSON = 64 * 1024
_REGISTER = "passkey-register"
_SIGN_IN = "passkey-sign-in"


class PasskeyError(ValueError):
    """A ceremony that cannot complete; the message is for the user (no detail an attacker could use)."""


def relying_party() -> tuple[str, str]:
    """(RP id, origin) from ``PUBLIC_BASE_URL``: its host name, and its scheme://host[:port]."""
    parts = urlsplit(current_app.config["PUBLIC_BASE_URL"])
    return parts.hostname or "localhost", f"{parts.scheme}://{parts.netloc}"


def passkeys_of(user_id: int) -> list[MfaPasskey]:
    return list(db.session.scalars(select(MfaPasskey).where(MfaPasskey.user_id == user_id).order_by(MfaPasskey.id)))


def _descriptors(user_id: int) -> list[PublicKeyCredentialDescriptor]:
    return [PublicKeyCredentialDescriptor(id=base64url_to_bytes(key.credential_id)) for key in passkeys_of(user_id)]


def _keep_challenge(kind: str, challenge: bytes, user_id: int) -> None:
    session[kind] = {"challenge": bytes_to_base64url(challenge), "user": user_id, "at": int(time.time())}


def _take_challenge(kind: str, user_id: int) -> bytes:
    held = session.pop(kind, None)
    if not isinstance(held, dict) or held.get("user") != user_id or not isinstance(held.get("challenge"), str):
        raise PasskeyError(N_("The passkey request expired. Try again."))
    if not isinstance(held.get("at"), int) or time.time() - held["at"] > CHALLENGE_SECONDS:
        raise PasskeyError(N_("The passkey request expired. Try again."))
    return base64url_to_bytes(held["challenge"])


def _credential(text: str) -> dict[str, Any]:
    if not text or len(text) > MAX_CREDENTIAL_JSON:
        raise PasskeyError(N_("The browser sent no passkey."))
    try:
        value = json.loads(text)
    except ValueError:
        raise PasskeyError(N_("The browser sent no passkey.")) from None
    if not isinstance(value, dict) or not isinstance(value.get("id"), str):
        raise PasskeyError(N_("The browser sent no passkey."))
    return value


def registration_options(user: User) -> str:
    """Options for ``navigator.credentials.create`` (JSON), excluding the user's passkeys already registered."""
    rp_id, _ = relying_party()
    options = webauthn.generate_registration_options(
        rp_id=rp_id,
        rp_name=RP_NAME,
        user_name=user.username,
        user_id=f"gateway-user:{user.id}".encode(),
        user_display_name=user.display_name,
        exclude_credentials=_descriptors(user.id),
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.DISCOURAGED, user_verification=UserVerificationRequirement.PREFERRED
        ),
    )
    _keep_challenge(_REGISTER, options.challenge, user.id)
    return webauthn.options_to_json(options)


def register(user: User, credential_json: str, name: str, **fields: Any) -> list[str]:
    """Verify the browser's new credential and keep it; recovery codes to show once if the user had none.

    :raise PasskeyError: the challenge expired, the name is missing, or the credential does not verify.
    """
    name = " ".join(name.split())[:MAX_NAME]
    if not name:
        raise PasskeyError(N_("Give the passkey a name, so you can recognise it later."))
    challenge = _take_challenge(_REGISTER, user.id)
    rp_id, origin = relying_party()
    try:
        verified = webauthn.verify_registration_response(
            credential=_credential(credential_json), expected_challenge=challenge, expected_rp_id=rp_id,
            expected_origin=origin,
        )  # fmt: skip
    except (WebAuthnException, ValueError, KeyError, TypeError):
        raise PasskeyError(N_("The passkey could not be verified. Try again.")) from None
    credential_id = bytes_to_base64url(verified.credential_id)
    transports = _credential(credential_json).get("response", {}).get("transports") or []
    with write_transaction() as tx:
        if tx.scalar(select(MfaPasskey.id).where(MfaPasskey.credential_id == credential_id)) is not None:
            raise PasskeyError(N_("This passkey is registered already."))
        tx.add(
            MfaPasskey(
                user_id=user.id, credential_id=credential_id, name=name, created_at=utcnow(),
                public_key=bytes_to_base64url(verified.credential_public_key), sign_count=verified.sign_count,
                transports=",".join(t for t in transports if isinstance(t, str))[:200],
            )
        )  # fmt: skip
        return factors.enrolled_in(tx, user, "passkey", **fields)


def sign_in_options(user: User) -> str:
    """Options for ``navigator.credentials.get`` (JSON), naming the user's passkeys."""
    rp_id, _ = relying_party()
    options = webauthn.generate_authentication_options(
        rp_id=rp_id, allow_credentials=_descriptors(user.id), user_verification=UserVerificationRequirement.PREFERRED
    )
    _keep_challenge(_SIGN_IN, options.challenge, user.id)
    return webauthn.options_to_json(options)


def verify_sign_in(user: User, credential_json: str) -> bool:
    """Whether the browser's assertion is one of the user's passkeys answering this session's challenge.

    The signature counter must grow where the authenticator keeps one (a
    cloned key shows up as a counter that went back); it is stored with one
    conditional UPDATE.
    """
    try:
        challenge = _take_challenge(_SIGN_IN, user.id)
        credential = _credential(credential_json)
    except PasskeyError:
        return False
    key = db.session.scalar(
        select(MfaPasskey).where(MfaPasskey.user_id == user.id, MfaPasskey.credential_id == credential["id"])
    )
    if key is None:
        return False
    rp_id, origin = relying_party()
    try:
        verified = webauthn.verify_authentication_response(
            credential=credential, expected_challenge=challenge, expected_rp_id=rp_id, expected_origin=origin,
            credential_public_key=base64url_to_bytes(key.public_key), credential_current_sign_count=key.sign_count,
        )  # fmt: skip
    except (WebAuthnException, ValueError, KeyError, TypeError):
        return False
    with write_transaction() as tx:
        result = tx.execute(
            update(MfaPasskey)
            .where(MfaPasskey.id == key.id, MfaPasskey.sign_count == key.sign_count)
            .values(sign_count=verified.new_sign_count, last_used_at=utcnow())
        )
        return rows_matched(result) == 1


def rename(user: User, passkey_id: int, name: str) -> bool:
    name = " ".join(name.split())[:MAX_NAME]
    if not name:
        raise PasskeyError(N_("Give the passkey a name."))
    with write_transaction() as tx:
        query = update(MfaPasskey).where(MfaPasskey.id == passkey_id, MfaPasskey.user_id == user.id)
        return rows_matched(tx.execute(query.values(name=name))) == 1


def remove(user: User, passkey_id: int, **fields: Any) -> bool:
    """Remove one of the user's passkeys (audited ``auth.mfa_removed``); False when it is not theirs."""
    with write_transaction() as tx:
        key = tx.scalar(select(MfaPasskey).where(MfaPasskey.id == passkey_id, MfaPasskey.user_id == user.id))
        if key is None:
            return False
        tx.execute(delete(MfaPasskey).where(MfaPasskey.id == key.id))
        detail = {"factor": "passkey", "passkey_id": key.id, "name": key.name}
        audit.append("auth.mfa_removed", session=tx, actor=user.actor(), outcome="ok", detail=detail, **fields)
    factors.forget_cached(user.id)
    return True
