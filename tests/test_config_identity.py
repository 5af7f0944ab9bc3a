"""How people sign in is configured strictly: a bad AUTH_METHODS, OIDC or header setting refuses to start, naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import load_config
from tests.test_config import nets, production, refusal

OIDC = {"AUTH_METHODS": "local,oidc", "OIDC_ISSUER": "https://idp.example.com/realms/ops", "OIDC_CLIENT_ID": "gateway"}
HEADER = {"AUTH_METHODS": "header", "AUTH_HEADER_TRUSTED_NETWORKS": "10.0.0.5/32"}


def test_local_passwords_are_the_default(tmp_path: Path):
    config = load_config(production(), tmp_path)
    assert config["AUTH_METHODS"] == ("local",)
    assert config["OIDC_ADMIN_GROUPS"] is None and config["OIDC_GROUPS_BY_NAME"] is True


@pytest.mark.parametrize("value", ["ldap", "local,saml", ",", "local;oidc"])
def test_unknown_auth_methods_refuse(tmp_path: Path, value: str):
    assert refusal(production(AUTH_METHODS=value), tmp_path).startswith("AUTH_METHODS:")


@pytest.mark.parametrize("missing", ["OIDC_ISSUER", "OIDC_CLIENT_ID"])
def test_oidc_needs_an_issuer_and_a_client_id(tmp_path: Path, missing: str):
    environ = production(**{**OIDC, missing: ""})
    assert refusal(environ, tmp_path).startswith(f"{missing}: not set")


@pytest.mark.parametrize("issuer", ["http://idp.example.com", "idp.example.com", "https://idp.example.com/?x=1"])
def test_production_wants_an_https_issuer(tmp_path: Path, issuer: str):
    assert refusal(production(**{**OIDC, "OIDC_ISSUER": issuer}), tmp_path).startswith("OIDC_ISSUER:")


def test_scopes_must_include_openid(tmp_path: Path):
    assert refusal(production(**OIDC, OIDC_SCOPES="profile email"), tmp_path).startswith("OIDC_SCOPES:")


def test_oidc_settings_are_parsed(tmp_path: Path):
    secret = tmp_path / "client-secret"
    secret.write_text("s3cret\n")
    config = load_config(
        production(
            **OIDC, OIDC_CLIENT_SECRET_FILE=str(secret), OIDC_SCOPES="openid profile groups",
            OIDC_ADMIN_GROUPS="/ops/admins, 0b9f-entra-id", OIDC_GROUPS_BY_NAME="off",
        ),
        tmp_path,
    )  # fmt: skip
    assert config["AUTH_METHODS"] == ("local", "oidc")
    assert config["OIDC_CLIENT_SECRET"] == "s3cret"
    assert config["OIDC_SCOPES"] == ("openid", "profile", "groups")
    assert config["OIDC_ADMIN_GROUPS"] == ("/ops/admins", "0b9f-entra-id")
    assert config["OIDC_GROUPS_BY_NAME"] is False
    assert config["OIDC_ISSUER"] == OIDC["OIDC_ISSUER"]  # exactly as given: the token's iss must equal it


@pytest.mark.parametrize("networks", [None, "", "0.0.0.0/0,::/0"])
def test_header_mode_needs_named_trusted_networks(tmp_path: Path, networks: str | None):
    environ = production(**{**HEADER, "AUTH_HEADER_TRUSTED_NETWORKS": networks})  # type: ignore[arg-type]
    assert refusal(environ, tmp_path).startswith("AUTH_HEADER_TRUSTED_NETWORKS:")


def test_header_settings_are_parsed(tmp_path: Path):
    config = load_config(production(**HEADER, AUTH_HEADER_GROUPS="X-Forwarded-Groups"), tmp_path)
    assert config["AUTH_HEADER_TRUSTED_NETWORKS"] == nets("10.0.0.5/32")
    assert (config["AUTH_HEADER_USER"], config["AUTH_HEADER_GROUPS"]) == ("X-Forwarded-User", "X-Forwarded-Groups")


@pytest.mark.parametrize("name", ["AUTH_HEADER_USER", "AUTH_HEADER_GROUPS"])
def test_header_names_must_be_header_names(tmp_path: Path, name: str):
    assert refusal(production(**HEADER, **{name: "X-User: injected"}), tmp_path).startswith(f"{name}:")
