"""Password hashes: production and development always use the strong argon2 parameters.

The test suite's environment hashes cheaply so that creating users in fixtures
is fast; that must be a property of the ``testing`` environment alone, never a
setting an operator could turn on by accident.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from argon2 import extract_parameters, profiles

from config import load_config
from gateway import create_app
from gateway.identity import passwords

STRONG = profiles.RFC_9106_LOW_MEMORY


def _hash_in(environ: dict[str, str], instance: Path) -> str:
    app = create_app(environ, instance_path=instance)
    with app.app_context():
        return passwords.hash_password("correct horse battery staple")


@pytest.mark.parametrize("environment", ["production", "development"])
def test_production_and_development_hash_with_the_strong_parameters(tmp_path, environment):
    environ = {
        "GATEWAY_ENV": environment,
        "SECRET_KEY": "s" * 40,
        "AUDIT_KEY": "a" * 40,
        "RUN_AS_USER": "nobody",
        "PUBLIC_BASE_URL": "https://ops.example.com",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'gateway.db'}",
        # The name an operator might guess for a switch: it must change nothing.
        "PASSWORD_HASH_PROFILE": "cheap-for-tests",
    }
    parameters = extract_parameters(_hash_in(environ, tmp_path / "instance"))
    assert (parameters.time_cost, parameters.memory_cost, parameters.parallelism) == (
        STRONG.time_cost,
        STRONG.memory_cost,
        STRONG.parallelism,
    )


def test_outside_an_app_hashes_are_strong():
    parameters = extract_parameters(passwords.hash_password("correct horse battery staple"))
    assert parameters.memory_cost == STRONG.memory_cost


def test_testing_environment_hashes_cheaply_and_both_verify(app):
    with app.app_context():
        cheap = passwords.hash_password("correct horse battery staple")
        assert extract_parameters(cheap).memory_cost < STRONG.memory_cost
        assert passwords.verify_password(cheap, "correct horse battery staple")
        assert not passwords.verify_password(cheap, "wrong horse battery staple")
    strong = passwords.hash_password("correct horse battery staple")
    with app.app_context():
        assert passwords.verify_password(strong, "correct horse battery staple")
        assert not passwords.verify_password(None, "correct horse battery staple")


def test_config_profile_is_chosen_by_environment_only(tmp_path):
    assert (
        load_config({"GATEWAY_ENV": "testing", "SECRET_KEY": "x", "AUDIT_KEY": "y"}, tmp_path)["PASSWORD_HASH_PROFILE"]
        == "cheap-for-tests"
    )
    assert load_config({"GATEWAY_ENV": "development"}, tmp_path)["PASSWORD_HASH_PROFILE"] == "strong"
