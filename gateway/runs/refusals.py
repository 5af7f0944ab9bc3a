"""Refusing a run request: the audited ``run.rejected`` event, and the rate limits refusals spend.

Every refusal is a bounded, flood-capped ``run.rejected`` event
(``audit.record_capped``) and no run row.  A refusal of what the caller sent
spends their ``RUN_REFUSAL_RATE_LIMIT``, so invalid requests cannot be sent
faster than valid ones; past it they are refused with 429.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from flask import current_app
from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from gateway import audit
from gateway.catalogue import Command
from gateway.catalogue.params import MASK, FileValue
from gateway.db.units import WriteUnit
from gateway.platform import signals
from gateway.platform.extensions import limiter
from gateway.platform.phrases import N_
from gateway.runs.model import Caller, RunRejected

log = logging.getLogger("gateway.runs")

_REFUSALS = "run-refusals"  # the rate-limit key of a user's refusals (RUN_REFUSAL_RATE_LIMIT)
_REQUEST_FAULTS = frozenset({400, 403, 404, 415})


def reject(
    caller: Caller,
    name: str,
    status: int,
    code: str,
    outcome: str,
    message: str,
    *,
    params: Any = None,
    details: Mapping[str, Any] | None = None,
    retry_after: int | None = None,
    session: WriteUnit | None = None,
    counted: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> RunRejected:
    """Audit a refusal (bounded and flood-capped, like every refusal) and build its exception.

    A refusal of what the caller asked (invalid, forbidden, unknown: 400, 403, 404) spends
    the caller's ``RUN_REFUSAL_RATE_LIMIT``, unless ``counted``: the request already spent
    the command's own ``rate_limit``.  Conflicts (409), waits (429) and outages (503) are
    not the request's fault and spend nothing.  ``extra`` joins the detail (a schedule's occurrence).
    """
    if status in _REQUEST_FAULTS and not counted:
        _spend_refusal(caller)
    signals.send(signals.run_rejected, None, outcome=outcome)
    fields: dict[str, Any] = {
        "actor": caller.actor(),
        "source_ip": caller.source_ip or None,
        "user_agent": caller.user_agent,
        "command": name[:100],
        "params": params,
        "outcome": outcome,
        "detail": {"status": status, "message": message, **({"fields": dict(details)} if details else {})},
    }
    fields["detail"].update(extra or {})
    try:
        audit.record_capped("run.rejected", session=session, **fields)
    except SQLAlchemyError:
        log.exception("could not audit a refused run")
        return RunRejected(503, "unavailable", N_("The audit ledger is unavailable; nothing was run."))
    return RunRejected(status, code, message, details, retry_after)


def refuse_request(
    caller: Caller, name: str, status: int, message: str, details: Mapping[str, Any] | None = None
) -> RunRejected:
    """A run request refused before it could be read as one (malformed body, wrong content type).

    Audited as ``run.rejected`` (outcome ``invalid_request``) and spending the caller's refusal
    budget like any other refusal of what the caller sent, so no bad request goes unrecorded.
    """
    try:
        wait = _refusals_spent(caller)
    except (RedisError, StorageError, ConnectionError):  # the refusal stands whatever the storage says
        log.warning("could not read RUN_REFUSAL_RATE_LIMIT for a refused run request", exc_info=True)
        wait = None
    if wait is not None:
        message = N_("Too many refused run requests; try again later.")
        return reject(caller, name, 429, "rate_limited", "rate_limited", message, retry_after=wait)
    code = "unsupported_media_type" if status == 415 else "validation_error"
    return reject(caller, name, status, code, "invalid_request", message, details=details)


def _refusals_spent(caller: Caller) -> int | None:
    """Seconds until the caller's ``RUN_REFUSAL_RATE_LIMIT`` has room again, or None when it has room now."""
    strategy, keys = limiter.limiter, (_REFUSALS, str(caller.user.id))
    spent = [item for item in _refusal_limits() if not strategy.test(item, *keys)]
    if not spent:
        return None
    reset_at = max(strategy.get_window_stats(item, *keys).reset_time for item in spent)
    return max(1, int(reset_at - time.time()) + 1)


def spend_rate_limit(command: Command, caller: Caller) -> int | None:
    """Before validation: seconds to wait when the caller may not ask for ``command`` now, else None.

    Every request that gets this far spends the command's own per-user ``rate_limit``,
    refused ones included, so invalid requests cannot be sent faster than valid ones.  A
    command without one answers 429 once the caller's refusals have spent
    ``RUN_REFUSAL_RATE_LIMIT`` (per user, across tokens and sessions; ``reject`` spends it).
    Raises the storage's error when it cannot answer: runs fail closed then (DESIGN.md).
    """
    if not command.rate_limit:
        return _refusals_spent(caller)
    strategy = limiter.limiter
    keys = ("command", command.name, str(caller.user.id))
    # hit, not test: every window of the limit counts this request, refused or not
    spent = [item for item in parse_many(command.rate_limit) if not strategy.hit(item, *keys)]
    if not spent:
        return None
    reset_at = max(strategy.get_window_stats(item, *keys).reset_time for item in spent)
    return max(1, int(reset_at - time.time()) + 1)


def _refusal_limits() -> list[RateLimitItem]:
    return parse_many(current_app.config["RUN_REFUSAL_RATE_LIMIT"])


def _spend_refusal(caller: Caller) -> None:
    """Count one refusal against the caller's ``RUN_REFUSAL_RATE_LIMIT`` (the refusal stands if the storage fails)."""
    user_id = getattr(caller.user, "id", None)
    if user_id is None:
        return
    try:
        for item in _refusal_limits():
            limiter.limiter.hit(item, _REFUSALS, str(user_id))
    except (RedisError, StorageError, ConnectionError):
        log.warning("could not count a refused run against RUN_REFUSAL_RATE_LIMIT", exc_info=True)


def masked_raw(command: Command, supplied: Any) -> Any:
    """What a refused request asked for, safe to record: secrets masked, declared params first.

    Sizes are bounded where every refusal is recorded (``audit.record_capped``), which keeps
    the first names: declared ones come first so invented names cannot push them out.
    """
    if not isinstance(supplied, Mapping):
        return {"_invalid": type(supplied).__name__}
    secrets = command.secret_params()
    shown: dict[str, Any] = {}
    for key in sorted(supplied, key=lambda name: name not in command.params):
        value = supplied[key]
        if key in secrets:
            shown[str(key)] = MASK
        elif isinstance(value, FileValue):
            shown[str(key)] = value.audit_view()
        elif isinstance(value, str | int | float | bool) or value is None:
            shown[str(key)] = value
        elif isinstance(value, list) and all(isinstance(item, str | int | float | bool) for item in value):
            shown[str(key)] = value  # a list's items (a multiple choice's): cut by the ledger's bounds
        else:
            shown[str(key)] = f"<{type(value).__name__}>"
    return shown
