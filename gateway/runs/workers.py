"""This process's executor: created once per app, started at first use, with the runs engine's callbacks.

The one place the executor is wired to the engine (``RunHooks``), so the
executor itself never imports it: the request path calls down (admission
submits a job) and the executor calls back only what it was given here.
"""

from __future__ import annotations

import threading

from flask import Flask, current_app

from gateway.runs import leases, pending
from gateway.runs.ending import finish
from gateway.runs.execution import execute
from gateway.runs.executor import Executor, RunHooks

HOOKS = RunHooks(
    execute=execute,
    finish=finish,
    cancel=leases.cancel_local,
    renew_leases=leases.renew_leases,
    reap_expired=leases.reap_expired,
    expire_requests=pending.expire_overdue,
    kill_orphans=leases.kill_orphaned_groups,
)

_create_lock = threading.Lock()


def get_executor(app: Flask | None = None) -> Executor:
    """The app's executor, created and started (supervisor, orphan clean-up) on first use."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    executor = app.extensions.get("gateway.executor")
    if executor is None:
        with _create_lock:
            executor = app.extensions.get("gateway.executor")
            if executor is None:
                executor = app.extensions["gateway.executor"] = Executor(app, HOOKS)
    executor.start()
    return executor
