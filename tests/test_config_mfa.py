"""MFA_REQUIRED and SECRET_KEYS are parsed strictly, and values sealed under an older secret key still open.

The secret box is exercised on a bare Flask app carrying just the two
settings: what it promises (a rotation locks nobody out, a dropped key does)
depends only on the keys, not on the rest of the gateway.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from config import load_config
from gateway.platform import secretbox
from tests.test_config import GOOD_SECRET, production, refusal

OLD_SECRET = "o" * 40
NEWER_SECRET = "n" * 40


def test_mfa_is_required_for_admins_by_default_and_no_older_keys_are_kept(tmp_path: Path):
    config = load_config(production(), tmp_path)
    assert config["MFA_REQUIRED"] == "admins"
    assert config["SECRET_KEYS"] == {}


@pytest.mark.parametrize("value", ["none", "admins", "all", "ALL"])
def test_mfa_policies(tmp_path: Path, value: str):
    assert load_config(production(MFA_REQUIRED=value), tmp_path)["MFA_REQUIRED"] == value.lower()


@pytest.mark.parametrize("value", ["yes", "staff", "admins,all", "0"])
def test_an_unknown_mfa_policy_refuses(tmp_path: Path, value: str):
    assert refusal(production(MFA_REQUIRED=value), tmp_path).startswith("MFA_REQUIRED:")


def test_older_secret_keys_are_parsed_and_the_current_key_is_left_out(tmp_path: Path):
    environ = production(SECRET_KEYS=f"2025:{OLD_SECRET}, current:{GOOD_SECRET}")
    assert load_config(environ, tmp_path)["SECRET_KEYS"] == {"2025": OLD_SECRET}


def test_older_secret_keys_can_come_from_a_file(tmp_path: Path):
    (tmp_path / "keys").write_text(f"2025:{OLD_SECRET}\n")
    environ = production(SECRET_KEYS_FILE=str(tmp_path / "keys"))
    assert load_config(environ, tmp_path)["SECRET_KEYS"] == {"2025": OLD_SECRET}


@pytest.mark.parametrize(
    "value", [OLD_SECRET, f":{OLD_SECRET}", "2025:", f"a:{OLD_SECRET},a:{NEWER_SECRET}", "2025:short"]
)
def test_malformed_older_secret_keys_refuse_without_showing_a_key(tmp_path: Path, value: str):
    message = refusal(production(SECRET_KEYS=value), tmp_path)
    assert message.startswith("SECRET_KEYS:")
    assert OLD_SECRET not in message and NEWER_SECRET not in message


def box_app(secret_key: str, older: dict[str, str] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=secret_key, SECRET_KEYS=older or {})
    return app


def test_a_value_sealed_under_the_old_key_opens_after_a_rotation_that_keeps_it():
    with box_app(OLD_SECRET).app_context():
        sealed = secretbox.seal("JBSWY3DPEHPK3PXP", purpose="mfa-totp")
    assert "JBSWY3DPEHPK3PXP" not in sealed
    with box_app(NEWER_SECRET, {"2025": OLD_SECRET}).app_context():
        assert secretbox.open_sealed(sealed, purpose="mfa-totp") == "JBSWY3DPEHPK3PXP"
        resealed = secretbox.reseal(sealed, purpose="mfa-totp")
    # Resealed under the new key: it opens once the old key is gone.
    with box_app(NEWER_SECRET).app_context():
        assert secretbox.open_sealed(resealed, purpose="mfa-totp") == "JBSWY3DPEHPK3PXP"
        with pytest.raises(secretbox.SecretBoxError):
            secretbox.open_sealed(sealed, purpose="mfa-totp")


def test_a_value_sealed_for_one_purpose_does_not_open_as_another():
    with box_app(GOOD_SECRET).app_context():
        sealed = secretbox.seal("approve-123", purpose="approvals")
        with pytest.raises(secretbox.SecretBoxError):
            secretbox.open_sealed(sealed, purpose="mfa-totp")
        with pytest.raises(secretbox.SecretBoxError):
            secretbox.open_sealed(sealed[:-4] + "AAAA", purpose="approvals")
        assert secretbox.open_sealed(sealed, purpose="approvals") == "approve-123"
