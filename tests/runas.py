"""The unprivileged account tests run commands as (``RUN_AS_USER``), and what to do when it cannot be used.

Switching users needs root and the account ``gatewayrun`` (``.ci/run`` and
``make test`` create it); with ``GATEWAY_TEST_REQUIRE_RUN_AS_USER=1`` (CI) its
absence is a failure, elsewhere a skip.
"""

from __future__ import annotations

import os
import pwd

import pytest

RUN_AS_USER = os.environ.get("GATEWAY_TEST_RUN_AS_USER", "gatewayrun")
REQUIRED = os.environ.get("GATEWAY_TEST_REQUIRE_RUN_AS_USER") == "1"


def account_problem() -> str | None:
    """Why commands cannot run as ``RUN_AS_USER`` here, or None."""
    if os.geteuid() != 0:
        return "the tests do not run as root, so the gateway cannot switch users"
    try:
        pwd.getpwnam(RUN_AS_USER)
    except KeyError:
        return f"no account {RUN_AS_USER!r} (create it: useradd --system {RUN_AS_USER})"
    return None


def require_run_as_user(module_level: bool = False) -> str:
    """``RUN_AS_USER``'s name; skips (fails under CI's requirement) when it cannot be used."""
    if (reason := account_problem()) is not None:
        if REQUIRED:
            pytest.fail(f"run-as tests required but cannot run: {reason}", pytrace=False)
        pytest.skip(reason, allow_module_level=module_level)
    return RUN_AS_USER
