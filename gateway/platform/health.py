"""Kubernetes probes: ``/livez`` (and ``/healthz``), ``/readyz``.

Built on the ``healthcheck`` package (py-healthcheck) with its result cache
off and its SIGALRM timeout unused (it breaks outside the main thread).
Instead every check runs on a small shared thread pool and all of them share
one deadline below a second; a check that has not answered by then fails.
A check still running from an earlier probe is awaited, not started again,
so a hanging dependency holds one pool thread, never all of them.
Answers carry check names and statuses only: no hostnames, exception text,
versions or environment.

Other parts of the gateway add their own checks with ``add_liveness_check``
and ``add_readiness_check``.  The executor's checks: liveness "executor:supervisor"
(thread alive, a beat within 3 heartbeats + 5 s); readiness "executor:supervisor"
(a beat within 3 heartbeats) and "executor:workers" (the run pool is up).
The catalogue's: "catalogue:loaded" (``warn`` while some commands are
unavailable) and "catalogue:datasources" (``warn`` while a data source URL is
set but unusable; the check's fixed name is the whole reason the probe gives).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from healthcheck import HealthCheck

from gateway.db import dialect, migrate
from gateway.platform.extensions import db, limiter

log = logging.getLogger("gateway.health")

PASS, WARN, FAIL = "pass", "warn", "fail"
DEADLINE_SECONDS = 0.8
CONTENT_TYPE = "application/health+json"
# Below this much free space on the SQLite file's filesystem, writes are about to fail.
MIN_FREE_BYTES = 1 << 20

# A check returns PASS, WARN or FAIL; raising or running past the deadline is FAIL.
Check = Callable[[], str]

bp = Blueprint("health", __name__)
# Bigger than the number of distinct checks: in-flight runs are shared, so even all of them hanging fit.
_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="health")


# A check's (status, seconds) on its way from the pool.
CheckFuture = Future[tuple[str, float]]


@dataclass
class HealthRegistry:
    liveness: dict[str, Check] = field(default_factory=dict)
    readiness: dict[str, Check] = field(default_factory=dict)
    # Checks in flight, by (name, check): a slow check is shared by the probes that arrive meanwhile.
    running: dict[tuple[str, Check], CheckFuture] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _registry(app: Flask | None = None) -> HealthRegistry:
    registry: HealthRegistry = (app or current_app).extensions["gateway.health"]
    return registry


def add_liveness_check(app: Flask, name: str, check: Check) -> None:
    _registry(app).liveness[name] = check


def add_readiness_check(app: Flask, name: str, check: Check) -> None:
    _registry(app).readiness[name] = check


def _timed(app: Flask, check: Check) -> Callable[[], tuple[str, float]]:
    """Run ``check`` in its own app context; return its status and how long it took (seconds)."""

    def run() -> tuple[str, float]:
        started = time.monotonic()
        with app.app_context():
            try:
                return check(), time.monotonic() - started
            finally:
                db.session.remove()

    return run


def _start(app: Flask, registry: HealthRegistry, name: str, check: Check) -> CheckFuture:
    """Submit a check, or join the run of it that an earlier probe started and is still waiting on."""
    key = (name, check)
    with registry.lock:
        future = registry.running.get(key)
        if future is None or future.done():
            future = _pool.submit(_timed(app, check))
            registry.running[key] = future
    return future


def _bounded(name: str, future: CheckFuture, deadline: float) -> Callable[[], tuple[bool, tuple[str, float | None]]]:
    """A healthcheck checker that waits for an already running check until the shared deadline."""

    def checker() -> tuple[bool, tuple[str, float | None]]:
        try:
            status, elapsed = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            log.warning("health check %s timed out", name)
            return False, (FAIL, None)
        except Exception:
            log.warning("health check %s raised", name, exc_info=True)
            return False, (FAIL, None)
        if status not in (PASS, WARN):
            return False, (FAIL, elapsed)
        return True, (status, elapsed)

    checker.__name__ = name
    return checker


def _render(results: list[dict[str, Any]], verbose: bool) -> str:
    """health+json: check names and statuses; with ``?verbose`` each check also says how long it took."""
    checks: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        status, elapsed = result["output"]
        entry: dict[str, Any] = {"status": status if result["passed"] else FAIL}
        if verbose:
            # A check that missed the deadline is reported at the deadline: it took at least that long.
            entry["observedValue"] = round((DEADLINE_SECONDS if elapsed is None else elapsed) * 1000, 3)
            entry["observedUnit"] = "ms"
        checks[result["checker"]] = [entry]
    statuses = {entry[0]["status"] for entry in checks.values()}
    overall = FAIL if FAIL in statuses else WARN if WARN in statuses else PASS
    return json.dumps({"status": overall, "checks": checks})


def run_checks(checks: dict[str, Check]) -> Response:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    registry = _registry(app)
    deadline = time.monotonic() + DEADLINE_SECONDS
    futures = {name: _start(app, registry, name, check) for name, check in checks.items()}
    verbose = "verbose" in request.args
    health = HealthCheck(
        success_ttl=0,
        failed_ttl=0,
        error_timeout=0,
        failed_status=503,
        success_headers={"Content-Type": CONTENT_TYPE},
        failed_headers={"Content-Type": CONTENT_TYPE},
        success_handler=lambda results, **_: _render(results, verbose),
        failed_handler=lambda results, **_: _render(results, verbose),
        checkers=[_bounded(name, future, deadline) for name, future in futures.items()],
    )
    body, status, headers = health.run()
    response = Response(body, status=status, headers=headers)
    response.headers["Cache-Control"] = "no-store"
    return response


# --- the built-in checks ----------------------------------------------------------------


def _sqlite_file_missing() -> bool:
    """True when the SQLite database file is gone.

    Pooled connections keep using a moved or deleted file, and a new connection
    would silently create an empty database in its place, so only the path says
    the truth; the checks look before they connect.
    """
    path = dialect.sqlite_file(db.engine.url)
    return path is not None and not os.path.exists(path)


def _sqlite_disk_full() -> bool:
    """True when the SQLite file's filesystem has (almost) no space left: every write would fail."""
    path = dialect.sqlite_file(db.engine.url)
    if path is None:
        return False
    stats = os.statvfs(os.path.dirname(os.path.abspath(path)))
    return stats.f_bavail * stats.f_frsize < MIN_FREE_BYTES


def check_database() -> str:
    """Reachable and writable: every sign-in and run writes, so a database that only reads is not ready.

    PostgreSQL reports a read-only session (a standby after failover, or
    ``default_transaction_read_only``) in ``transaction_read_only``; for SQLite
    the filesystem's free space tells whether a commit can land.
    """
    if _sqlite_file_missing() or _sqlite_disk_full():
        return FAIL
    with db.engine.connect() as connection:
        return PASS if dialect.accepts_writes(connection) else FAIL


def check_migrations() -> str:
    if _sqlite_file_missing():
        return FAIL
    return PASS if migrate.database_at_head(db.engine) else FAIL


def check_ratelimit_storage() -> str:
    return PASS if limiter.storage.check() else FAIL


def check_catalogue() -> str:
    """Loaded; ``warn`` when some commands are unavailable (their data source URL is not set) or some
    notifications cannot be sent (a variable they name is unset, or mail without ``SMTP_URL``)."""
    from gateway.catalogue.switches import current_catalogue

    catalogue = current_catalogue()
    mail_unset = current_app.config.get("SMTP_SERVER") is None and any(
        notification.kind == "email" for notification in catalogue.notifications.values()
    )
    return WARN if catalogue.unavailable() or catalogue.unconfigured_notifications() or mail_unset else PASS


def check_datasources() -> str:
    """``warn`` while a data source's URL is set but unusable (an unsupported database, a URL that does not parse,
    an option its driver does not take); which one is in the log. Like an unset URL it only makes that source's
    commands unavailable: every replica shares the setting, so failing readiness would take the whole gateway,
    and every other command, out of service for one source."""
    from gateway.catalogue.switches import current_catalogue

    return WARN if current_catalogue().datasource_problems else PASS


def check_executor_supervisor() -> str:
    executor = current_app.extensions.get("gateway.executor")
    return PASS if executor is None or executor.supervisor_alive() else FAIL


def check_executor_cycling() -> str:
    """Readiness is stricter than liveness: a supervisor without a completed beat in 3 heartbeats
    (its leases lapse then, and other replicas reap its runs) stops new traffic first."""
    executor = current_app.extensions.get("gateway.executor")
    return PASS if executor is None or "supervisor" not in executor.wedged() else FAIL


def check_executor_workers() -> str:
    executor = current_app.extensions.get("gateway.executor")
    return PASS if executor is None or "workers" not in executor.wedged() else FAIL


def check_not_draining() -> str:
    return FAIL if current_app.extensions.get("gateway.draining") else PASS


@bp.route("/livez")
def livez() -> Response:
    return run_checks(_registry().liveness)


@bp.route("/healthz")
def healthz() -> Response:
    return run_checks(_registry().liveness)


@bp.route("/readyz")
def readyz() -> Response:
    return run_checks(_registry().readiness)


def init_app(app: Flask) -> None:
    registry = HealthRegistry()
    app.extensions["gateway.health"] = registry
    registry.liveness["executor:supervisor"] = check_executor_supervisor
    registry.readiness["database:connection"] = check_database
    registry.readiness["database:migrations"] = check_migrations
    if not app.config["RATELIMIT_STORAGE_URI"].startswith("memory://"):
        registry.readiness["ratelimit:storage"] = check_ratelimit_storage
    registry.readiness["catalogue:loaded"] = check_catalogue
    registry.readiness["catalogue:datasources"] = check_datasources
    registry.readiness["executor:supervisor"] = check_executor_cycling
    registry.readiness["executor:workers"] = check_executor_workers
    registry.readiness["process:draining"] = check_not_draining
    app.register_blueprint(bp)
    limiter.exempt(bp)
