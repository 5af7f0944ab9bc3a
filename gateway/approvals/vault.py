"""The secret values of a request waiting for approval: sealed at the request, opened once at its start.

Sealed with ``gateway.platform.secretbox`` under a purpose of their own, so a
sealed TOTP key cannot be passed off as a request's secrets (nor the reverse),
and bound to their run: a sealed value copied onto another request opens as
nothing.  The row holding them is wiped when the run starts or the request
ends (``store.close``); rotating ``SECRET_KEY`` keeps waiting requests
openable while the old key is listed in ``SECRET_KEYS``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from gateway.platform import secretbox

PURPOSE = "approval-secrets"


def seal_secrets(run_id: str, values: Mapping[str, Any], secret_names: frozenset[str]) -> str | None:
    """The request's secret values sealed for ``run_id``; None when it has none to keep."""
    kept = {name: values[name] for name in sorted(secret_names) if values.get(name) is not None}
    if not kept:
        return None
    document = json.dumps({"run": run_id, "values": kept}, separators=(",", ":"), ensure_ascii=False)
    return secretbox.seal(document, purpose=PURPOSE)


def open_secrets(run_id: str, sealed: str | None) -> dict[str, Any]:
    """The secret values sealed for ``run_id`` (``{}`` when there were none).

    :raise secretbox.SecretBoxError: no configured key opens them, or they were sealed for another run.
    """
    if sealed is None:
        return {}
    document = json.loads(secretbox.open_sealed(sealed, purpose=PURPOSE))
    if not isinstance(document, dict) or document.get("run") != run_id or not isinstance(document.get("values"), dict):
        raise secretbox.SecretBoxError("sealed approval secrets belong to another request")
    values: dict[str, Any] = document["values"]
    return values
