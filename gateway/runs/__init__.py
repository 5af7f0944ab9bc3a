"""Runs: the one function that starts every run, and the state machine that ends each exactly once.

``start()`` is the chokepoint: look up the command, ask the policy, apply the
per-user rate limit (before validation, so refused requests spend it too),
validate the parameters, then, in ONE write transaction, check the kill switch,
join a cached or in-flight identical run, check concurrency, write the run row
and its ``run.started`` event.  Only after that commit does anything reach the
executor; if the commit fails the caller gets ``RunRejected(503)`` and nothing
is spawned.  A refusal before that point is a ``run.rejected`` event (bounded
and flood-capped, ``audit.record_capped``) and no run row.

Terminal updates are conditional on the run still being live
(``queued``/``running``), so each run gets exactly one terminal state and one
``run.finished`` event, whoever gets there first: the worker, a cancel of a
queued run, or the reaper marking it ``lost``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import signal
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from redis.exceptions import RedisError
from sqlalchemy import and_, bindparam, func, insert, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.orm.instrumentation import manager_of_class

from gateway import audit
from gateway.access import policy
from gateway.catalogue import Command, switches
from gateway.catalogue.argv import build_argv, build_env, build_stdin
from gateway.catalogue.params import MASK, FileValue, ParamError, canonical_key, collect_errors, masked
from gateway.db.models import Run, RunOutputChunk
from gateway.db.prepared import Prepared
from gateway.db.units import write_connection, write_transaction
from gateway.platform import notify, signals
from gateway.platform.appctx import app_object
from gateway.platform.extensions import db, limiter
from gateway.platform.identifiers import is_name, is_run_id
from gateway.platform.timeutil import as_utc, utcnow
from gateway.platform.wakeup import wakeups
from gateway.runners import query as query_runner
from gateway.runners.shell import RunAs, ShellRun, ShellSpec, group_alive, kill_group, scrubbed_env
from gateway.runs.executor import ExecutorClosed, Job, QueryPlan, get_executor, group_belongs_to_run
from gateway.runs.output import INSERT_CHUNKS, ChunkWriter
from gateway.runs.uploads import remove_folder

log = logging.getLogger("gateway.runs")

LIVE = ("queued", "running")
TERMINAL = ("succeeded", "failed", "timed_out", "cancelled", "lost")


@dataclass(frozen=True)
class Caller:
    """Who asks and from where; ``user`` is a User row (or anything with id, username, is_admin...)."""

    user: Any
    source_ip: str | None  # None: not over the network (the CLI operator); see gateway.policy
    user_agent: str | None = None

    def actor(self) -> dict[str, Any]:
        return {"id": self.user.id, "name": self.user.username}


class RunRejected(Exception):
    """Refused before anything was spawned; the refusal is already audited."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        retry_after: int | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = dict(details or {})
        self.retry_after = retry_after


@dataclass
class Started:
    run: Run
    cached: bool = False
    joined: bool = False
    job: Job | None = field(default=None, repr=False)
    # The run's wake-up version before it could move (taken before the job was submitted),
    # so a waiter can wait first and read after; None when not known (cache hits).
    version: int | None = None


# --- start ----------------------------------------------------------------------------------

_REFUSALS = "run-refusals"  # the rate-limit key of a user's refusals (RUN_REFUSAL_RATE_LIMIT)
_REQUEST_FAULTS = frozenset({400, 403, 404, 415})


def _reject(
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
    session: Session | Connection | None = None,
    counted: bool = False,
) -> RunRejected:
    """Audit a refusal (bounded and flood-capped, like every refusal) and build its exception.

    A refusal of what the caller asked (invalid, forbidden, unknown: 400, 403, 404) spends
    the caller's ``RUN_REFUSAL_RATE_LIMIT``, unless ``counted``: the request already spent
    the command's own ``rate_limit``.  Conflicts (409), waits (429) and outages (503) are
    not the request's fault and spend nothing.
    """
    if status in _REQUEST_FAULTS and not counted:
        _spend_refusal(caller)
    signals.send(signals.run_rejected, None, outcome=outcome)
    fields = {
        "actor": caller.actor(),
        "source_ip": caller.source_ip or None,
        "user_agent": caller.user_agent,
        "command": name[:100],
        "params": params,
        "outcome": outcome,
        "detail": {"status": status, "message": message, **({"fields": dict(details)} if details else {})},
    }
    try:
        audit.record_capped("run.rejected", session=session, **fields)
    except SQLAlchemyError:
        log.exception("could not audit a refused run")
        return RunRejected(503, "unavailable", "The audit ledger is unavailable; nothing was run.")
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
        message = "Too many refused run requests; try again later."
        return _reject(caller, name, 429, "rate_limited", "rate_limited", message, retry_after=wait)
    code = "unsupported_media_type" if status == 415 else "validation_error"
    return _reject(caller, name, status, code, "invalid_request", message, details=details)


def _refusals_spent(caller: Caller) -> int | None:
    """Seconds until the caller's ``RUN_REFUSAL_RATE_LIMIT`` has room again, or None when it has room now."""
    strategy, keys = limiter.limiter, (_REFUSALS, str(caller.user.id))
    spent = [item for item in _refusal_limits() if not strategy.test(item, *keys)]
    if not spent:
        return None
    reset_at = max(strategy.get_window_stats(item, *keys).reset_time for item in spent)
    return max(1, int(reset_at - time.time()) + 1)


def _spend_rate_limit(command: Command, caller: Caller) -> int | None:
    """Before validation: seconds to wait when the caller may not ask for ``command`` now, else None.

    Every request that gets this far spends the command's own per-user ``rate_limit``,
    refused ones included, so invalid requests cannot be sent faster than valid ones.  A
    command without one answers 429 once the caller's refusals have spent
    ``RUN_REFUSAL_RATE_LIMIT`` (per user, across tokens and sessions; ``_reject`` spends it).
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


def run_as_account() -> RunAs | None:
    name = current_app.config.get("RUN_AS_USER")
    if not name:
        return None
    import pwd

    entry = pwd.getpwnam(name)
    return RunAs(uid=entry.pw_uid, gid=entry.pw_gid, name=entry.pw_name, home=entry.pw_dir)


def _lock_command(connection: Connection, name: str) -> None:
    """Serialise starts of one command (cache joins, concurrency) across replicas."""
    if connection.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(f"run:{name}".encode()).digest()[:8], "big", signed=True)
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def _cached_run(connection: Connection, command: Command, key: str) -> tuple[Run | None, bool]:
    """A live identical run to join, or a fresh enough finished one; (run, joined)."""
    table = Run.__table__
    in_flight = connection.execute(
        select(table).where(table.c.cache_key == key, table.c.status.in_(LIVE)).order_by(table.c.created_at).limit(1)
    ).first()
    if in_flight is not None:
        return detached_run(in_flight._mapping), True
    cutoff = utcnow() - timedelta(seconds=command.cache_seconds)
    recent = connection.execute(
        select(table)
        .where(table.c.cache_key == key, table.c.status == "succeeded", table.c.finished_at >= cutoff)
        .order_by(table.c.finished_at.desc())
        .limit(1)
    ).first()
    return (None if recent is None else detached_run(recent._mapping)), False


_RUN_KEYS = tuple(column.key for column in Run.__table__.c)


def detached_run(values: Mapping[Any, Any]) -> Run:
    """A Run holding ``values`` (columns of the runs table by key): in no session, nothing pending.

    Filled the way the ORM fills an object it loads, straight into the
    instance's dict: the constructor's per-attribute change events cost thirty
    times more, and every run builds two.  Absent columns read as None.
    """
    run: Run = manager_of_class(Run).new_instance()
    run.__dict__.update({key: values[key] for key in _RUN_KEYS if key in values})
    return run


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
    source: str = "json",
    files: Mapping[str, Any] | None = None,
    callback_context: Any = None,
    timeout: float | None = None,
    tempdir: str | None = None,
) -> Started:
    """Start a run of catalogue command ``name`` for ``caller`` (see the module docstring)."""
    catalogue = switches.current_catalogue()
    command = catalogue.get(name)
    refusal = policy.check_run(caller.user, command, caller.source_ip)
    if refusal is not None:
        raise _reject(caller, name, refusal.status, refusal.code, refusal.outcome, refusal.message)
    if command is None:  # check_run refuses unknown commands; this only states it
        raise RuntimeError(f"the policy let unknown command {name!r} through")
    if not get_executor().accepting:
        raise _reject(caller, name, 503, "unavailable", "draining", "This replica is shutting down; try again.")
    unavailable = catalogue.unavailable_reason(command)
    if unavailable:
        raise _reject(caller, name, 503, "unavailable", "unavailable", f"This command is unavailable: {unavailable}.")

    # A form (MultiDict) may carry a name twice; that is refused, never silently reduced to one value.
    repeated = [key for key in raw_params if len(raw_params.getlist(key)) > 1] if hasattr(raw_params, "getlist") else []
    supplied = dict(raw_params) if isinstance(raw_params, Mapping) else raw_params
    if files and isinstance(supplied, dict):
        supplied.update(files)
    # The rate limit comes before validation: refused requests spend it too (see _spend_rate_limit).
    try:
        retry_after = _spend_rate_limit(command, caller)
    except (RedisError, StorageError, ConnectionError):
        raise _reject(
            caller, name, 503, "unavailable", "ratelimit_unavailable",
            "The rate-limit storage is unavailable; nothing was run.", params=_masked_raw(command, supplied),
        ) from None  # fmt: skip
    if retry_after is not None:
        message = (
            "You have run this command too often; wait a little."
            if command.rate_limit
            else "Too many of your requests were refused; wait a little."
        )
        raise _reject(
            caller, name, 429, "rate_limited", "rate_limited", message,
            params=_masked_raw(command, supplied), retry_after=retry_after,
        )  # fmt: skip
    counted = bool(command.rate_limit)  # later refusals have spent the command's own limit

    values, errors = collect_errors(command, supplied, source)  # type: ignore[arg-type]
    errors.update({str(key): "is given more than once" for key in repeated})
    shown = masked(command, values) if not errors else _masked_raw(command, supplied)
    if not errors and command.kind == "shell":
        try:
            argv = build_argv(command, values)
        except ParamError as exc:
            errors = {exc.field: exc.message}
    if errors:
        raise _reject(
            caller, name, 400, "validation_error", "invalid_params", "Some parameters are not valid.",
            params=shown, details=errors, counted=counted,
        )  # fmt: skip
    if timeout is not None and not (0 < timeout <= command.timeout):
        raise _reject(
            caller, name, 400, "validation_error", "invalid_params", "timeout can only lower the command's timeout.",
            params=shown, details={"timeout": f"must be between 0 and {command.timeout:g}"}, counted=counted,
        )  # fmt: skip

    executor = get_executor()
    key = canonical_key(command, values, current_app.config["SECRET_KEY"]) if command.cache_seconds else None
    try:
        free_slot = executor.reserve()
    except ExecutorClosed:
        raise _reject(
            caller, name, 503, "unavailable", "draining", "This replica is shutting down; try again."
        ) from None
    run_id = str(uuid.uuid4())
    config = current_app.config
    try:
        admitted = _admit(command, caller, key, shown, run_id, free_slot, timeout, executor)
    except SQLAlchemyError:
        executor.release()
        log.exception("could not record the start of %s; nothing was spawned", command.name)
        raise RunRejected(
            503, "unavailable", "The gateway cannot record this run right now; nothing was run."
        ) from None
    if not isinstance(admitted, Run):
        executor.release()
        if isinstance(admitted, RunRejected):
            raise admitted
        return admitted
    run = admitted

    job = Job(
        run_id=run_id, command=command, username=caller.user.username, queued=not free_slot,
        tempdir=tempdir, callback_context=callback_context, started_at=run.started_at,
    )  # fmt: skip
    if command.kind == "shell":
        run_as = run_as_account()
        env = scrubbed_env(build_env(command, values), run_as, run_id, caller.user.username)
        job.shell = ShellSpec(
            argv=argv,
            env=env,
            cwd=command.cwd,
            stdin=build_stdin(command, values),
            timeout=timeout or command.timeout,
            max_output_bytes=command.max_output_bytes or config["MAX_OUTPUT_BYTES"],
            run_as=run_as,
        )
    else:
        source_ds = catalogue.datasources[command.datasource or ""]
        job.query = QueryPlan(
            url=catalogue.datasource_urls[command.datasource or ""],
            sql=command.sql or "",
            params=values,
            row_limit=source_ds.row_limit,
            statement_timeout=min(source_ds.statement_timeout, timeout or command.timeout),
        )
    signals.send(signals.run_started, app_object(), run=run, callback_context=callback_context)
    version = wakeups.version(run_id)
    executor.submit(job)
    return Started(run=run, job=job, version=version)


def _admit(
    command: Command,
    caller: Caller,
    key: str | None,
    shown: Any,
    run_id: str,
    free_slot: bool,
    timeout: float | None,
    executor: Any,
) -> Run | Started | RunRejected:
    """One write transaction: join a cached or in-flight run, or check concurrency and record the start.

    Returns the new Run (committed with its run.started event), a Started for a
    cache hit (committed with run.cache_hit), or a RunRejected whose
    run.rejected event is committed.
    """
    with write_connection() as tx:
        # The kill switch is read inside the transaction that records the start: a command
        # disabled a moment ago on another replica cannot slip through between check and start.
        if switches.is_disabled(command.name, session=tx):
            return _reject(
                caller, command.name, 409, "conflict", "disabled", "This command is disabled by an administrator.",
                params=shown, session=tx,
            )  # fmt: skip
        if key is not None or command.concurrency is not None:
            _lock_command(tx, command.name)
        if key is not None:
            existing, joined = _cached_run(tx, command, key)
            if existing is not None:
                audit.append(
                    "run.cache_hit", session=tx, actor=caller.actor(), source_ip=caller.source_ip or None,
                    user_agent=caller.user_agent, command=command.name, run_id=existing.id, params=shown,
                    outcome="joined" if joined else "cached",
                )  # fmt: skip
                return Started(run=existing, cached=True, joined=joined)
        if command.concurrency is not None:
            live = tx.scalar(
                select(func.count()).select_from(Run).where(Run.command == command.name, Run.status.in_(LIVE))
            )
            if (live or 0) >= command.concurrency:
                return _reject(
                    caller, command.name, 409, "conflict", "concurrency_full",
                    f"This command is already running {live} time(s), its limit; try again when one finishes.",
                    params=shown, session=tx,
                )  # fmt: skip
        now = utcnow()
        values: dict[str, Any] = {
            "id": run_id,
            "command": command.name,
            "command_sha256": command.definition_sha256(),
            "kind": command.kind,
            "params": audit_safe(shown),
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
        lease = timedelta(seconds=3 * executor.heartbeat)
        # A Core insert with the values as parameters (the ORM's unit of work, or .values(), cost
        # more than the commit on this path); the lease comes from the database clock.
        if tx.dialect.name == "postgresql":
            tx.execute(_insert_run_leased_by_database(lease), values)
            run = detached_run({**values, "lease_expires_at": utcnow() + lease})  # what the caller reads back
        else:  # SQLite's clock is this host's
            values["lease_expires_at"] = utcnow() + lease
            _INSERT_RUN.execute(tx, values)
            run = detached_run(values)
        audit.append(
            "run.started", session=tx, actor=caller.actor(), source_ip=caller.source_ip or None,
            user_agent=caller.user_agent, command=command.name, run_id=run_id, params=shown,
            outcome=run.status, detail={"command_sha256": run.command_sha256},
        )  # fmt: skip
    return run


def _masked_raw(command: Command, supplied: Any) -> Any:
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
        else:
            shown[str(key)] = f"<{type(value).__name__}>"
    return shown


def audit_safe(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))


# --- execution (in an executor thread, inside an app context) ---------------------------------


def _mark_running(job: Job) -> bool:
    started_at = utcnow()
    with write_connection() as tx:
        matched = _START_QUEUED.execute(tx, {"run_id": job.run_id, "started_at": started_at})
    if matched != 1:
        return False
    job.started_at = started_at
    return True


@dataclass
class Outcome:
    status: str
    exit_code: int | None = None
    error: str | None = None
    output_bytes: int = 0
    output_sha256: str | None = None
    truncated: bool = False
    result: dict[str, Any] | None = None


def execute(job: Job) -> None:
    if job.queued and not _mark_running(job):
        return  # cancelled (or reaped) while it waited for a slot
    excerpt_limit = int(current_app.config["AUDIT_OUTPUT_EXCERPT_BYTES"])
    writer = ChunkWriter(job.run_id, excerpt_limit=excerpt_limit, groups=get_executor().groups)
    if job.cancel.is_set():
        outcome = Outcome(status="cancelled")
    elif job.shell is not None:
        outcome = _execute_shell(job, job.shell, writer)
    elif job.query is not None:
        outcome = _execute_query(job, job.query)
    else:
        outcome = Outcome(status="failed", error="internal error: the run has nothing to execute")
    if outcome.status == "cancelled":
        outcome.error = job.cancel_reason
    # Uploads go before the terminal state is recorded: whoever sees the run finished
    # (a long-poll wakes on that commit) must not still find its files on disk.
    remove_folder(job.tempdir)
    try:
        finish(job, outcome, writer)
    except SQLAlchemyError:
        # The database is away as the command ends. The outcome is known and kept: the
        # supervisor retries at each beat (keeping the lease meanwhile); if this process
        # dies first, the lease runs out and another replica's reaper records it lost.
        log.warning("could not record the end of run %s; retrying at each heartbeat", job.run_id, exc_info=True)
        get_executor().defer_finish(job.run_id, functools.partial(finish, job, outcome, writer))


def _execute_shell(job: Job, spec: ShellSpec, writer: ChunkWriter) -> Outcome:
    runner = ShellRun(spec, on_output=writer.add, on_spawn=writer.spawned, cancel=job.cancel, on_tick=writer.tick)
    result = runner.run()
    writer.close_decoders()
    return Outcome(
        status=result.status,
        exit_code=result.exit_code,
        error=result.error,
        output_bytes=result.output_bytes,
        output_sha256=result.output_sha256,
        truncated=result.truncated,
    )


def _execute_query(job: Job, plan: QueryPlan) -> Outcome:
    try:
        result = query_runner.run_query(
            plan.url, plan.sql, plan.params, row_limit=plan.row_limit,
            statement_timeout=plan.statement_timeout, cancel=job.cancel,
        )  # fmt: skip
    except query_runner.QueryError as exc:
        status = "timed_out" if exc.timed_out else "cancelled" if exc.cancelled else "failed"
        return Outcome(status=status, error=exc.message)
    import json

    body = json.dumps(result.as_dict(), sort_keys=True, separators=(",", ":")).encode()
    return Outcome(
        status="succeeded", exit_code=0, result=result.as_dict(), output_sha256=hashlib.sha256(body).hexdigest()
    )


def cancel_local(job: Job) -> None:
    """Cancel a job of this process: signal its process, or end it at once if it never started."""
    job.cancel.set()
    if job.queued:
        finish(job, Outcome(status="cancelled", error="cancelled before it started"), only_from=("queued",))


def finish(job: Job, outcome: Outcome, writer: ChunkWriter | None = None, only_from: tuple[str, ...] = LIVE) -> bool:
    """Record the terminal state once (conditional on the run still being live), with run.finished.

    Written with Core statements on the table: this is on every run's path, and
    the ORM's bookkeeping cost more than the commit itself.  For a run that
    started here (``job.started_at`` known) the conditional UPDATE ... RETURNING
    is the only statement on the run row.
    """
    # Output and process group are taken now and put back if the transaction fails, so a
    # retry (see execute) writes them: nothing the command printed is lost to an outage.
    chunks = writer.take() if writer is not None else []
    pgid = writer.take_pgid() if writer is not None else None
    try:
        return _record_end(job, outcome, writer, only_from, chunks, pgid)
    except BaseException:
        if writer is not None:
            writer.restore(chunks, pgid)
        raise


def _record_end(
    job: Job,
    outcome: Outcome,
    writer: ChunkWriter | None,
    only_from: tuple[str, ...],
    chunks: list[dict[str, object]],
    pgid: int | None,
) -> bool:
    now = utcnow()
    table = Run.__table__
    with write_connection() as tx:
        values: dict[str, Any] = {
            "status": outcome.status,
            "exit_code": outcome.exit_code,
            "error": outcome.error,
            "finished_at": now,
            "output_bytes": outcome.output_bytes,
            "output_truncated": outcome.truncated,
            "output_sha256": outcome.output_sha256,
            "result": outcome.result,
            "lease_expires_at": None,
        }
        if job.started_at is not None:
            values["duration_ms"] = _duration_ms(job.started_at, now)
        if pgid is not None:
            values["pgid"] = pgid
        row = _finish_statement(only_from).first(tx, {"_run_id": job.run_id, **values})
        if row is None:
            return False
        ended = detached_run(row)
        if job.started_at is None:  # a run that did not start here: its duration from the stored start
            ended.duration_ms = _duration_ms(ended.started_at or now, now)
            tx.execute(update(table).where(table.c.id == job.run_id).values(duration_ms=ended.duration_ms))
        if chunks:
            INSERT_CHUNKS.execute_many(tx, chunks)
        detail = {
            "command_sha256": ended.command_sha256,
            "exit_code": outcome.exit_code,
            "duration_ms": ended.duration_ms,
            "output_bytes": outcome.output_bytes,
            "output_sha256": outcome.output_sha256,
            "output_truncated": outcome.truncated,
        }
        if writer is not None and writer.excerpt:
            detail["output_excerpt"] = writer.excerpt
        if outcome.result is not None:
            detail["rows"] = len(outcome.result.get("rows", []))
            detail["result_truncated"] = outcome.result.get("truncated")
        if outcome.error:
            detail["error"] = outcome.error
        audit.append(
            "run.finished", session=tx, actor={"id": ended.user_id, "name": ended.username},
            source_ip=ended.source_ip, command=ended.command, run_id=job.run_id, params=ended.params,
            outcome=outcome.status, detail=detail,
        )  # fmt: skip
        notify.publish(job.run_id, "finished", tx)  # other replicas' waiters, at commit
    wakeups.notify(job.run_id)
    cached = db.session.identity_map.get(db.session.identity_key(Run, job.run_id))
    if cached is not None:
        db.session.expire(cached)  # updated behind the ORM's back just now
    if signals.run_finished.receivers:
        signals.send(signals.run_finished, app_object(), run=ended, callback_context=job.callback_context)
    return True


@functools.lru_cache(maxsize=8)
def _finish_statement(only_from: tuple[str, ...]) -> Prepared:
    """The conditional terminal UPDATE ... RETURNING; the SET clause comes from the parameters given."""
    table = Run.__table__
    # The IN list as bound parameters of its own (not an expanding one): compiled once, as is.
    live = table.c.status.in_([bindparam(f"_from_{i}", status) for i, status in enumerate(only_from)])
    return Prepared(update(table).where(table.c.id == bindparam("_run_id"), live).returning(*table.c))


_START_QUEUED = Prepared(
    update(Run.__table__)
    .where(Run.__table__.c.id == bindparam("run_id"), Run.__table__.c.status == "queued")
    .values(status="running", started_at=bindparam("started_at"))
)


def _duration_ms(started_at: datetime, now: datetime) -> int:
    return int((now - as_utc(started_at)).total_seconds() * 1000)


def finish_with_error(job: Job, message: str) -> bool:
    return finish(job, Outcome(status="failed", error=message))


# --- cancel -----------------------------------------------------------------------------------


def cancel(run_id: str, caller: Caller) -> Run:
    """Request cancellation (audited). Queued runs end at once; running ones get SIGTERM, then SIGKILL.

    Whether the caller may is the policy's run decision (``policy.run_for``): 404 when not.
    """
    try:
        run = policy.run_for(caller.user, run_id, "cancel", caller.source_ip)
    except policy.Denied as exc:
        raise RunRejected(exc.refusal.status, exc.refusal.code, exc.refusal.message) from None
    if run.status not in LIVE:
        raise RunRejected(409, "conflict", f"The run has already ended ({run.status}).")
    fields: dict[str, Any] = {
        "actor": caller.actor(), "source_ip": caller.source_ip or None, "user_agent": caller.user_agent,
        "command": run.command, "run_id": run.id,
    }  # fmt: skip
    with write_transaction() as tx:
        tx.execute(update(Run).where(Run.id == run_id, Run.status.in_(LIVE)).values(cancel_requested_at=utcnow()))
        audit.append("run.cancel_requested", session=tx, outcome="requested", **fields)
        notify.publish(run_id, "cancel", tx)  # the replica running it cancels at once, not at its next beat
    executor = current_app.extensions.get("gateway.executor")
    job = executor.local_job(run_id) if executor is not None else None
    if job is not None:
        cancel_local(job)
    db.session.expire_all()
    return db.session.get(Run, run_id)  # type: ignore[return-value]


# --- leases and the reaper --------------------------------------------------------------------


def database_now(session: Session) -> datetime:
    """The database clock, so leases mean the same on every replica.

    SQLite has no server: its clock is this host's, the only host writing the file,
    so asking it would cost a statement and return what ``utcnow()`` does.
    """
    if session.get_bind().dialect.name == "postgresql":
        return as_utc(session.scalar(text("SELECT clock_timestamp()")))
    return utcnow()


_INSERT_RUN = Prepared(insert(Run.__table__))


@functools.lru_cache(maxsize=4)
def _insert_run_leased_by_database(lease: timedelta) -> Any:
    """INSERT of a run row whose lease ends ``lease`` after now by PostgreSQL's clock (no extra round trip)."""
    return insert(Run.__table__).values(lease_expires_at=func.clock_timestamp() + lease)


def renew_leases(boot_id: str, heartbeat: float) -> list[str]:
    """Extend this worker's leases; return ids of its runs that were asked to cancel (from anywhere)."""
    with write_transaction() as tx:
        expires = database_now(tx) + timedelta(seconds=3 * heartbeat)
        tx.execute(update(Run).where(Run.boot_id == boot_id, Run.status.in_(LIVE)).values(lease_expires_at=expires))
        rows = tx.scalars(
            select(Run.id).where(Run.boot_id == boot_id, Run.status.in_(LIVE), Run.cancel_requested_at.is_not(None))
        ).all()
    return list(rows)


def reap_expired() -> list[str]:
    """Mark runs whose lease expired as ``lost`` (one run.finished each); returns their ids."""
    with write_transaction() as tx:
        now = database_now(tx)
        expired = tx.scalars(
            select(Run.id).where(and_(Run.status.in_(LIVE), Run.lease_expires_at < now)).limit(500)
        ).all()
    lost = []
    for run_id in expired:
        job = Job(run_id=run_id, command=None, username="", queued=False)  # type: ignore[arg-type]
        if finish(job, Outcome(status="lost", error="the worker running it stopped (lease expired)")):
            lost.append(run_id)
    for run_id in lost:
        log.warning("run %s marked lost", run_id)
    return lost


def kill_orphaned_groups(host: str, boot_id: str) -> list[int]:
    """At worker start: kill process groups that dead workers on this host left behind.

    Only runs whose lease has expired count (their worker stopped renewing it),
    and only a group whose leader still carries that run's GATEWAY_RUN_ID.
    """
    now = database_now(db.session())
    rows = db.session.execute(
        select(Run.id, Run.pgid).where(
            Run.host == host,
            Run.boot_id != boot_id,
            Run.status.in_(LIVE),
            Run.pgid.is_not(None),
            Run.lease_expires_at < now,
        )
    ).all()
    killed = []
    for run_id, pgid in rows:
        if pgid and group_alive(pgid) and group_belongs_to_run(pgid, run_id) and kill_group(pgid, signal.SIGKILL):
            killed.append(pgid)
            log.warning("killed process group %s left behind by a dead worker (run %s)", pgid, run_id)
    return killed


# --- reading --------------------------------------------------------------------------------


_OUTPUT_TEXT = (
    select(RunOutputChunk.__table__.c.text)
    .where(RunOutputChunk.__table__.c.run_id == bindparam("run_id"))
    .order_by(RunOutputChunk.__table__.c.seq)
)


def output_chunks(run_id: str, after_seq: int = 0, limit: int = 1000) -> list[RunOutputChunk]:
    return list(
        db.session.scalars(
            select(RunOutputChunk)
            .where(RunOutputChunk.run_id == run_id, RunOutputChunk.seq > after_seq)
            .order_by(RunOutputChunk.seq)
            .limit(limit)
        )
    )


def output_text(run_id: str) -> str:
    return "".join(db.session.connection().scalars(_OUTPUT_TEXT, {"run_id": run_id}))


def prune(older_than: datetime, actor: Any = None) -> int:
    """Delete finished runs (and their output) created before ``older_than``; audited as runs.pruned."""
    from sqlalchemy import delete

    with write_transaction() as tx:
        ids = tx.scalars(select(Run.id).where(Run.status.in_(TERMINAL), Run.created_at < older_than)).all()
        for start_index in range(0, len(ids), 500):
            batch = ids[start_index : start_index + 500]
            tx.execute(delete(RunOutputChunk).where(RunOutputChunk.run_id.in_(batch)))
            tx.execute(delete(Run).where(Run.id.in_(batch)))
        audit.append(
            "runs.pruned", session=tx, actor=actor, outcome="ok",
            detail={"deleted": len(ids), "older_than": older_than.isoformat()},
        )  # fmt: skip
    return len(ids)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else as_utc(value).isoformat().replace("+00:00", "Z")


def run_view(run: Run, viewer: Any, *, cached: bool = False, include_output: bool = True) -> dict[str, Any]:
    """The DESIGN.md ``<run>`` shape; a shared cached result hides who ran it, from where, with what."""
    details = policy.sees_run_details(viewer, run)
    view: dict[str, Any] = {
        "id": run.id,
        "command": run.command,
        "params": run.params if details else None,
        "status": run.status,
        "exit_code": run.exit_code,
        "user": run.username if details else None,
        "source_ip": run.source_ip if details else None,
        "created_at": _iso(run.created_at),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "duration_ms": run.duration_ms,
        "output_bytes": run.output_bytes,
        "output_truncated": run.output_truncated,
        "output_sha256": run.output_sha256,
        "result": run.result,
        "error": run.error,
        "cached": cached,
    }
    if include_output:
        view["output"] = output_text(run.id)
    return view


def list_runs(
    viewer: Any,
    *,
    address: str | None,
    command: str | None = None,
    status: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Run], str | None]:
    """Newest first with keyset paging: what ``policy.listed_runs`` shows the viewer from ``address``.

    Returns (runs, next_cursor).  The cursor is ``<created_at ISO>|<id>`` of
    the last run of the page; a malformed cursor or a ``command`` that is not
    a name raises ValueError.
    """
    query = select(Run).order_by(Run.created_at.desc(), Run.id.desc()).where(policy.listed_runs(viewer, address))
    if command:
        if not is_name(command):
            raise ValueError("command: not a command name")
        query = query.where(Run.command == command)
    if status:
        query = query.where(Run.status == status)
    if cursor:
        stamp, _, last_id = cursor.partition("|")
        try:
            at = as_utc(datetime.fromisoformat(stamp.replace("Z", "+00:00")))
        except OverflowError:  # a time zone that pushes the last year past UTC's calendar
            raise ValueError("cursor: malformed") from None
        if not is_run_id(last_id):
            raise ValueError("cursor: malformed")
        query = query.where((Run.created_at < at) | ((Run.created_at == at) & (Run.id < last_id)))
    rows = list(db.session.scalars(query.limit(limit + 1)))
    page, more = rows[:limit], len(rows) > limit
    next_cursor = f"{_iso(page[-1].created_at)}|{page[-1].id}" if more and page else None
    return page, next_cursor
