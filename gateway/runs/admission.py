"""Admission: the one function that starts every run (``start``).

``start()`` is the chokepoint: look up the command, ask the policy, apply the
per-user rate limit (before validation, so refused requests spend it too),
validate the parameters and have the command kind's runner plan the run, then,
in ONE write transaction, check the kill switch, join a cached or in-flight
identical run, check concurrency, write the run row and its ``run.started``
event.  Only after that commit does anything reach the executor; if the commit
fails the caller gets ``RunRejected(503)`` and nothing is spawned.  A refusal
before that point is a ``run.rejected`` event (``refusals``) and no run row.

Values whose options are read from data (``choices_from``) are checked against
those lists after the declared specs (``ListsFromData``, installed by
``gateway.choices``); a list that cannot be read refuses the run (503), it never
lets any value through.

A command with ``approval`` takes the same path up to the plan, then waits:
``pending.request`` writes its run row in ``pending_approval`` with its
``run.approval_requested`` event, and nothing spawns until the last approval
(``decisions``) admits it.

A schedule's occurrence (``occurrence``, run by ``system:scheduler``) takes the
same path, minus what the reviewed catalogue already decided (grants, networks,
the per-user rate limit): its claim is inserted in the transaction that writes
the run row and ``run.started``, or the ``run.rejected`` that refuses it, and it
never joins or reuses a cached result (its result then serves the cache).
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from flask import current_app
from limits.errors import StorageError
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from gateway import audit
from gateway.access import policy
from gateway.catalogue import Command, switches
from gateway.catalogue.params import ParamError, Source
from gateway.catalogue.values import canonical_key, collect_errors, masked
from gateway.db.models import Run
from gateway.db.units import write_connection
from gateway.platform.phrases import N_
from gateway.platform.timeutil import utcnow
from gateway.runners import runner_for
from gateway.runners.base import RunContext
from gateway.runners.shell import RunAs, account
from gateway.runs import gates, pending, store
from gateway.runs.executor import Executor, ExecutorClosed
from gateway.runs.model import (
    LISTS,
    AlreadyClaimed,
    Caller,
    ListsFromData,
    ListUnavailable,
    Occurrence,
    RunRejected,
    Started,
)
from gateway.runs.refusals import masked_raw, reject, spend_rate_limit
from gateway.runs.uploads import remove_folder
from gateway.runs.workers import get_executor

log = logging.getLogger("gateway.runs")


def run_as_account() -> RunAs | None:
    """The account commands run as (``RUN_AS_USER``), for what must be readable by it (uploads)."""
    return account(current_app.config.get("RUN_AS_USER"))


def _owns_tempdir(func: Callable[..., Started]) -> Callable[..., Started]:
    """The upload folder passed as ``tempdir`` belongs to the run: removed at once when nothing runs.

    (When a run starts, the executor removes the folder as the run ends.)
    """

    @functools.wraps(func)
    def wrapper(*args: Any, tempdir: str | None = None, **kwargs: Any) -> Started:
        try:
            started = func(*args, tempdir=tempdir, **kwargs)
        except BaseException:
            remove_folder(tempdir)
            raise
        if started.job is None:
            remove_folder(tempdir)
        return started

    return wrapper


@_owns_tempdir
def start(
    name: str,
    raw_params: Any,
    caller: Caller,
    *,
    source: Source = "json",
    files: Mapping[str, Any] | None = None,
    callback_context: Any = None,
    timeout: float | None = None,
    tempdir: str | None = None,
    occurrence: Occurrence | None = None,
    detail: Mapping[str, str] | None = None,
) -> Started:
    """Start a run of catalogue command ``name`` for ``caller`` (see the module docstring).

    With ``occurrence`` (a system principal's scheduled run) every refusal is written with
    its claim; :raise AlreadyClaimed: when the occurrence was recorded already.  ``detail``
    joins the detail of ``run.started`` or ``run.rejected`` (why a system principal runs it).
    """
    catalogue = switches.current_catalogue()
    command = catalogue.get(name)
    refusal = policy.check_run(caller.user, command, caller.source_ip)
    if refusal is not None:
        raise _refuse(
            occurrence, caller, name, refusal.status, refusal.code, refusal.outcome, refusal.message, detail=detail
        )
    if command is None:  # check_run refuses unknown commands; this only states it
        raise RuntimeError(f"the policy let unknown command {name!r} through")
    if not get_executor().accepting:
        draining = N_("This replica is shutting down.")
        raise _refuse(occurrence, caller, name, 503, "unavailable", "draining", draining, detail=detail)
    unavailable = catalogue.unavailable_reason(command)
    if unavailable:
        message = N_("This command is unavailable: %(reason)s.", reason=unavailable)
        raise _refuse(occurrence, caller, name, 503, "unavailable", "unavailable", message, detail=detail)

    # A form (MultiDict) may carry a name twice; that is refused, never silently reduced to one value
    # (a multiple choice's items are its repeated values).
    supplied, repeated = _supplied(command, raw_params)
    if files and isinstance(supplied, dict):
        supplied.update(files)
    # The rate limit comes before validation: refused requests spend it too (see spend_rate_limit).
    # System principals have none: the reviewed catalogue decides how often they run.
    try:
        retry_after = None if policy.is_system(caller.user) else spend_rate_limit(command, caller)
    except (RedisError, StorageError, ConnectionError):
        raise reject(
            caller, name, 503, "unavailable", "ratelimit_unavailable",
            N_("The rate-limit storage is unavailable; nothing was run."), params=masked_raw(command, supplied),
        ) from None  # fmt: skip
    if retry_after is not None:
        message = (
            N_("You have run this command too often; wait a little.")
            if command.rate_limit
            else N_("Too many of your requests were refused; wait a little.")
        )
        raise reject(
            caller, name, 429, "rate_limited", "rate_limited", message,
            params=masked_raw(command, supplied), retry_after=retry_after,
        )  # fmt: skip
    counted = bool(command.rate_limit)  # later refusals have spent the command's own limit

    run_id = str(uuid.uuid4())
    values, errors = collect_errors(command, supplied, source)
    errors.update({str(key): N_("is given more than once") for key in repeated})
    if not errors and command.lists_from_data:
        try:
            values, errors = _lists_from_data().check(command, values, source)
        except ListUnavailable as exc:
            message = N_("This command is unavailable: %(reason)s.", reason=exc.reason)
            raise _refuse(
                occurrence, caller, name, 503, "unavailable", "unavailable", message,
                params=masked(command, values), counted=counted, detail=detail,
            ) from None  # fmt: skip
    shown = masked(command, values) if not errors else masked_raw(command, supplied)
    plan: Any = None
    if not errors:
        context = RunContext(run_id, caller.user.username, timeout or command.timeout, current_app.config, catalogue)
        try:
            plan = runner_for(command.kind).plan(command, values, context)
        except ParamError as exc:
            errors = {exc.field: exc.message}
    if errors:
        raise _refuse(
            occurrence, caller, name, 400, "validation_error", "invalid_params", N_("Some parameters are not valid."),
            params=shown, details=errors, counted=counted, detail=detail,
        )  # fmt: skip
    if timeout is not None and not (0 < timeout <= command.timeout):
        lower = N_("timeout can only lower the command's timeout.")
        raise reject(
            caller, name, 400, "validation_error", "invalid_params", lower, params=shown,
            details={"timeout": f"must be between 0 and {command.timeout:g}"}, counted=counted,
        )  # fmt: skip

    if command.approval is not None:  # a second person first: nothing is admitted or spawned now
        return pending.request(command, caller, values, shown, run_id)

    executor = get_executor()
    key = canonical_key(command, values, current_app.config["SECRET_KEY"]) if command.cache_seconds else None
    try:
        free_slot = executor.reserve()
    except ExecutorClosed:
        raise _refuse(
            occurrence, caller, name, 503, "unavailable", "draining", N_("This replica is shutting down; try again."),
            detail=detail,
        ) from None  # fmt: skip
    try:
        admitted = _admit(command, caller, key, shown, run_id, free_slot, timeout, executor, occurrence, detail)
    except SQLAlchemyError:
        executor.release()
        log.exception("could not record the start of %s; nothing was spawned", command.name)
        raise RunRejected(
            503, "unavailable", N_("The gateway cannot record this run right now; nothing was run.")
        ) from None
    if not isinstance(admitted, Run):
        executor.release()
        if isinstance(admitted, RunRejected | AlreadyClaimed):
            raise admitted
        return admitted
    return gates.launch(
        admitted, command, plan, executor, free_slot=free_slot, tempdir=tempdir, callback_context=callback_context,
        schedule=occurrence.schedule if occurrence is not None else None,
    )  # fmt: skip


def _admit(
    command: Command,
    caller: Caller,
    key: str | None,
    shown: Any,
    run_id: str,
    free_slot: bool,
    timeout: float | None,
    executor: Executor,
    occurrence: Occurrence | None,
    detail: Mapping[str, str] | None = None,
) -> Run | Started | RunRejected | AlreadyClaimed:
    """One write transaction: join a cached or in-flight run, or check concurrency and record the start.

    Returns the new Run (committed with its run.started event), a Started for a
    cache hit (committed with run.cache_hit), or a RunRejected whose
    run.rejected event is committed.  An occurrence's claim comes first: when it
    was claimed already, nothing is written (AlreadyClaimed); otherwise it commits
    with the run or the refusal, and it never joins a cached run.
    """
    extra = {**(occurrence.detail() if occurrence is not None else {}), **(detail or {})}
    with write_connection() as tx:
        if occurrence is not None and not occurrence.claim(tx, run_id, "started"):
            return AlreadyClaimed()
        refusal = gates.disabled_refusal(tx, command)
        if refusal is not None:
            return _reject_in(tx, caller, command, refusal, shown, extra)
        if key is not None or command.concurrency is not None:
            store.lock_command(tx, command.name)
        if key is not None and occurrence is None:
            existing, joined = store.cached_run(tx, command, key)
            if existing is not None:
                audit.append(
                    "run.cache_hit", session=tx, actor=caller.actor(), source_ip=caller.source_ip or None,
                    user_agent=caller.user_agent, command=command.name, run_id=existing.id, params=shown,
                    outcome="joined" if joined else "cached",
                )  # fmt: skip
                return Started(run=existing, cached=True, joined=joined)
        refusal = gates.concurrency_refusal(tx, command)
        if refusal is not None:
            return _reject_in(tx, caller, command, refusal, shown, extra)
        now = utcnow()
        values: dict[str, Any] = {
            "id": run_id,
            "command": command.name,
            "command_sha256": command.definition_sha256(),
            "kind": command.kind,
            "params": gates.json_safe(shown),
            "cache_key": key,
            "user_id": caller.user.id,
            "username": caller.user.username,
            "source_ip": caller.source_ip or None,
            "status": "running" if free_slot else "queued",
            "created_at": now,
            "started_at": now if free_slot else None,
            "output_bytes": 0,
            "output_truncated": False,
            "host": executor.host,
            "boot_id": executor.boot_id,
            "timeout_seconds": timeout or command.timeout,
        }
        run = store.insert_run(tx, values, timedelta(seconds=3 * executor.heartbeat))
        audit.append(
            "run.started", session=tx, actor=caller.actor(), source_ip=caller.source_ip or None,
            user_agent=caller.user_agent, command=command.name, run_id=run_id, params=shown,
            outcome=run.status, detail={"command_sha256": run.command_sha256, **extra},
        )  # fmt: skip
    return run


def _reject_in(
    tx: Any, caller: Caller, command: Command, refusal: policy.Refusal, shown: Any, extra: dict[str, Any]
) -> RunRejected:
    return reject(
        caller, command.name, refusal.status, refusal.code, refusal.outcome, refusal.message,
        params=shown, session=tx, extra=extra,
    )  # fmt: skip


def _refuse(
    occurrence: Occurrence | None,
    caller: Caller,
    name: str,
    status: int,
    code: str,
    outcome: str,
    message: str,
    detail: Mapping[str, str] | None = None,
    **fields: Any,
) -> RunRejected | AlreadyClaimed:
    """``reject``, or for an occurrence its claim and ``run.rejected`` in one transaction (once across replicas).

    ``detail`` (and an occurrence's own) joins the refusal's detail.
    """
    if occurrence is None:
        return reject(caller, name, status, code, outcome, message, extra=detail, **fields)
    if outcome == "draining":
        # A draining replica claims nothing: the occurrence stays free for another replica (or this
        # one after its restart) within the grace, so neither a claim nor a refusal is written.
        return AlreadyClaimed()
    with write_connection() as tx:
        if not occurrence.claim(tx, None, "rejected"):
            return AlreadyClaimed()
        extra = {**occurrence.detail(), **(detail or {})}
        return reject(caller, name, status, code, outcome, message, session=tx, extra=extra, **fields)


def _supplied(command: Command, raw_params: Any) -> tuple[Any, list[str]]:
    """The params as a mapping, and the names a form sent more than once that take one value.

    A form (MultiDict) sends a multiple choice as repeated names: those are its items.
    """
    if not hasattr(raw_params, "getlist"):
        return (dict(raw_params) if isinstance(raw_params, Mapping) else raw_params), []
    supplied: dict[str, Any] = {}
    repeated: list[str] = []
    for key in raw_params:
        spec = command.params.get(key)
        items = raw_params.getlist(key)
        if spec is not None and spec.multiple:
            supplied[key] = items
            continue
        supplied[key] = items[0]
        if len(items) > 1:
            repeated.append(key)
    return supplied, repeated


def _lists_from_data() -> ListsFromData:
    """The checker ``gateway.choices`` installed; without it no value from data could be checked: fail closed."""
    checker: ListsFromData | None = current_app.extensions.get(LISTS)
    if checker is None:
        raise ListUnavailable("lists from data are not set up in this process")
    return checker
