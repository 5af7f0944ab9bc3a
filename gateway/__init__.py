"""Ops Gateway: a secured internal gateway for predefined reports and queries."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from config import PROJECT_ROOT, load_config


def create_app(
    environ: Mapping[str, str] | None = None,
    instance_path: str | Path | None = None,
    config: Mapping[str, Any] | None = None,
) -> Flask:
    """Build the app; reads like a table of contents. ``environ`` defaults to ``os.environ``.

    ``instance/`` (SQLite file, generated development secrets, demo credentials)
    is the project's unless ``instance_path`` or ``GATEWAY_INSTANCE_PATH`` says otherwise.
    ``config``: values that are not the operator's settings, set by the code that
    builds the app (the CLI's ``DATABASE_STALL_GUARD``), over the loaded ones.
    """
    env = os.environ if environ is None else environ
    instance = Path(instance_path or env.get("GATEWAY_INSTANCE_PATH") or PROJECT_ROOT / "instance")
    app = Flask(
        __name__,
        instance_path=str(instance),
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder="static",
    )
    app.config.update(load_config(environ, instance))
    app.config.update(config or {})
    make_instance_private(instance)
    make_process_undumpable()
    register_guards(app)
    register_extensions(app)
    register_blueprints(app)
    register_errorhandlers(app)
    return app


def make_instance_private(instance: Path) -> None:
    """``instance/`` holds the SQLite file and generated secrets: only the gateway's user may read it."""
    instance.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(instance, 0o700)


def make_process_undumpable() -> None:
    """PR_SET_DUMPABLE 0: a process of the same user cannot read our environment or memory via /proc."""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    pr_set_dumpable = 4
    libc.prctl(pr_set_dumpable, 0, 0, 0, 0)


def register_guards(app: Flask) -> None:
    from gateway.access import netguard
    from gateway.platform import headers

    netguard.init_app(app)  # first before_request hook: nothing runs for a refused address
    headers.init_app(app)


def register_extensions(app: Flask) -> None:
    from gateway import audit, choices, i18n
    from gateway.audit import forwarding
    from gateway.audit import status as audit_status
    from gateway.catalogue import switches
    from gateway.db import units
    from gateway.platform import logs, metrics
    from gateway.platform.extensions import csrf, limiter
    from gateway.runners.query_engines import url_problem
    from gateway.schedules.overview import last_successes

    logs.init_app(app)
    metrics.init_app(
        app,
        chain_status=audit_status.latest,
        schedule_successes=last_successes,
        forward_lag=forwarding.lag_by_destination,
    )
    units.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    audit.init_app(app)
    switches.init_app(app, url_check=url_problem)  # the query runner decides which data source URLs it can open
    choices.init_app(app)
    i18n.init_app(app)  # Flask-Babel: the page's language, the catalogues, /language


def register_blueprints(app: Flask) -> None:
    from gateway import admin, api, approvals, identity, web
    from gateway.platform import health, identifiers

    identifiers.init_app(app)  # the URL converters for run ids and names, before any route uses them
    health.init_app(app)
    approvals.init_app(app)  # its readiness check (unknown approver groups warn)
    identity.init_app(app)
    app.register_blueprint(web.bp)
    app.register_blueprint(admin.bp)
    api.init_app(app)


def register_errorhandlers(app: Flask) -> None:
    from gateway.platform import errors

    errors.init_app(app)
