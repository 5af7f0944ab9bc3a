"""Kubernetes probes: ``/livez`` (and ``/healthz``), ``/readyz``.

Built on the ``healthcheck`` package (py-healthcheck) with its result cache
off and its SIGALRM timeout unused (it breaks outside the main thread).
Instead every check runs on a small shared thread pool and all of them share
one deadline below a second; a check that has not answered by then fails.
Answers carry check names and statuses only: no hostnames, exception text,
versions or environment.

Other parts of the gateway add their own checks with ``add_liveness_check``
and ``add_readiness_check`` (the executor registers "executor:supervisor").
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from healthcheck import HealthCheck

from gateway import migrate
from gateway.extensions import db, limiter

log = logging.getLogger("gateway.health")

PASS, WARN, FAIL = "pass", "warn", "fail"
DEADLINE_SECONDS = 0.8
CONTENT_TYPE = "application/health+json"

# A check returns PASS, WARN or FAIL; raising or running past the deadline is FAIL.
Check = Callable[[], str]

bp = Blueprint("health", __name__)
_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="health")


@dataclass
class HealthRegistry:
    liveness: dict[str, Check] = field(default_factory=dict)
    readiness: dict[str, Check] = field(default_factory=dict)


def _registry(app: Flask | None = None) -> HealthRegistry:
    return (app or current_app).extensions["gateway.health"]


def add_liveness_check(app: Flask, name: str, check: Check) -> None:
    _registry(app).liveness[name] = check


def add_readiness_check(app: Flask, name: str, check: Check) -> None:
    _registry(app).readiness[name] = check


def _with_app_context(app: Flask, check: Check, timings: dict[str, float], name: str) -> Check:
    def run() -> str:
        started = time.monotonic()
        with app.app_context():
            try:
                return check()
            finally:
                db.session.remove()
                timings[name] = time.monotonic() - started

    return run


def _bounded(name: str, future: Any, deadline: float) -> Callable[[], tuple[bool, str]]:
    """A healthcheck checker that waits for an already running check until the shared deadline."""

    def checker() -> tuple[bool, str]:
        try:
            status = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            log.warning("health check %s timed out", name)
            return False, FAIL
        except Exception:
            log.warning("health check %s raised", name, exc_info=True)
            return False, FAIL
        if status not in (PASS, WARN):
            return False, FAIL
        return True, status

    checker.__name__ = name
    return checker


def _render(results: list[dict[str, Any]], timings: dict[str, float] | None) -> str:
    """health+json; with ``timings`` (``?verbose``) each check also says how long it took."""
    checks: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        entry: dict[str, Any] = {"status": result["output"] if result["passed"] else FAIL}
        if timings is not None:
            entry["observedValue"] = round(timings.get(result["checker"], DEADLINE_SECONDS) * 1000, 3)
            entry["observedUnit"] = "ms"
        checks[result["checker"]] = [entry]
    statuses = {entry[0]["status"] for entry in checks.values()}
    overall = FAIL if FAIL in statuses else WARN if WARN in statuses else PASS
    return json.dumps({"status": overall, "checks": checks})


def run_checks(checks: dict[str, Check]) -> Response:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    timings: dict[str, float] = {}
    deadline = time.monotonic() + DEADLINE_SECONDS
    futures = {name: _pool.submit(_with_app_context(app, check, timings, name)) for name, check in checks.items()}
    health = HealthCheck(
        success_ttl=0,
        failed_ttl=0,
        error_timeout=0,
        failed_status=503,
        success_headers={"Content-Type": CONTENT_TYPE},
        failed_headers={"Content-Type": CONTENT_TYPE},
        success_handler=lambda results, **_: _render(results, shown),
        failed_handler=lambda results, **_: _render(results, shown),
        checkers=[_bounded(name, future, deadline) for name, future in futures.items()],
    )
    shown = timings if "verbose" in request.args else None
    body, status, headers = health.run()
    response = Response(body, status=status, headers=headers)
    response.headers["Cache-Control"] = "no-store"
    return response


# --- the built-in checks ----------------------------------------------------------------


def check_database() -> str:
    with db.engine.connect() as connection:
        connection.exec_driver_sql("SELECT 1")
    return PASS


def check_migrations() -> str:
    return PASS if migrate.database_at_head(db.engine) else FAIL


def check_ratelimit_storage() -> str:
    storage = limiter.storage
    return PASS if storage is not None and storage.check() else FAIL


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
    registry.readiness["database:connection"] = check_database
    registry.readiness["database:migrations"] = check_migrations
    if not app.config["RATELIMIT_STORAGE_URI"].startswith("memory://"):
        registry.readiness["ratelimit:storage"] = check_ratelimit_storage
    registry.readiness["process:draining"] = check_not_draining
    app.register_blueprint(bp)
    limiter.exempt(bp)
