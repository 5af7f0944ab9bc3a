"""Process lifecycle for a serving gateway: executor start, pidfile, SIGHUP reload, SIGTERM drain.

``manage.py serve`` and ``wsgi.py`` both call ``prepare_serving`` so a serving
process starts its executor supervisor (leases, reaper) and its
cross-replica notification listener at once rather than at its first run, and
reloads the catalogue on SIGHUP.  It starts this replica's scheduler too
(``gateway.schedules``), which draining stops first, and its delivery worker
(``gateway.deliveries``), which draining stops once the runs have ended.  It also
starts the audit forwarders (``gateway.audit.forwarding``, one thread per
``AUDIT_FORWARD`` destination; the lease decides which replica sends); the drain
stops them last, after the runs' final events, and releases their leases to another
replica.

SIGTERM drains instead of stopping: the process turns not-ready (``/readyz``
503), refuses new runs (503), keeps serving status, long-polls and streams,
lets running runs finish for up to ``RUN_SHUTDOWN_GRACE_SECONDS``, cancels and
records the rest, and only then lets the server stop (gunicorn's
``gunicorn.conf.py`` and ``serve_forever`` pass the stop callback).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from flask import Flask
from werkzeug.serving import WSGIRequestHandler, make_server

from gateway.audit.forwarding import start_forwarding, stop_forwarding
from gateway.catalogue import CatalogueError
from gateway.catalogue.switches import holder
from gateway.deliveries import start_worker, stop_worker
from gateway.platform import notify
from gateway.runs.workers import get_executor
from gateway.schedules import start_scheduler, stop_scheduler

log = logging.getLogger("gateway.lifecycle")
PIDFILE = "gateway.pid"
DEFAULT_SHUTDOWN_GRACE_SECONDS = 30.0


def install_reload_on_sighup(app: Flask) -> None:
    """SIGHUP reloads the catalogue; a broken file is logged and the old catalogue stays."""
    if threading.current_thread() is not threading.main_thread():
        return

    def reload(_signum: int, _frame: FrameType | None) -> None:
        try:
            holder(app).reload()
        except CatalogueError as exc:
            log.error("catalogue reload refused, keeping the loaded one: %s", exc)
            return
        scheduler = app.extensions.get("gateway.scheduler")
        if scheduler is not None:
            scheduler.wake()  # added, changed or removed schedules take effect now

    signal.signal(signal.SIGHUP, reload)


def write_pidfile(app: Flask) -> Path:
    path = Path(app.instance_path) / PIDFILE
    path.write_text(f"{os.getpid()}\n")
    return path


def prepare_serving(app: Flask) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    get_executor(app)
    notify.start_listener(app)
    start_scheduler(app)  # every replica schedules; the claims decide who runs an occurrence
    start_forwarding(app)  # every replica may forward; a lease per destination decides who does
    start_worker(app)  # every replica delivers; the leases decide who sends a delivery
    install_reload_on_sighup(app)


def shutdown_grace(app: Flask) -> float:
    """How long running runs may go on after SIGTERM before they are cancelled (gunicorn.conf.py reads
    the same variable for ``graceful_timeout``)."""
    return max(0.0, float(app.config.get("RUN_SHUTDOWN_GRACE_SECONDS", DEFAULT_SHUTDOWN_GRACE_SECONDS)))


def drain(app: Flask, grace: float | None = None) -> None:
    """Turn not-ready, refuse new runs, give running ones ``grace`` seconds, then cancel and record the rest.

    Returns when every run of this process has its terminal state (the
    executor's pool is shut down only after each job's finish is written).
    """
    grace = shutdown_grace(app) if grace is None else grace
    started = time.monotonic()
    app.extensions["gateway.draining"] = True
    stop_scheduler(app)  # a draining replica claims nothing
    executor = app.extensions.get("gateway.executor")
    log.warning(
        "draining: refusing new runs, %d running get up to %gs", executor.active_count() if executor else 0, grace
    )
    if executor is not None:
        executor.shutdown(grace=grace)
    stop_worker(app)  # after the runs' ends: their deliveries wait in the outbox for any replica
    stop_forwarding(app)  # after the runs' last events; releases the leases to another replica
    notify.stop_listener(app)
    log.warning("drained in %.1fs", time.monotonic() - started)


def install_drain_on_sigterm(app: Flask, stop_server: Callable[[], None]) -> None:
    """SIGTERM starts ``drain`` in a thread (a signal handler must return at once), then ``stop_server``.

    A second SIGTERM during the drain changes nothing: the grace period is the
    promise made to running runs; SIGKILL is the way to cut it short.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    started = threading.Event()

    def run() -> None:
        try:
            drain(app)
        except Exception:
            log.exception("drain failed")
        finally:
            stop_server()

    def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
        if started.is_set():
            log.warning("already draining")
            return
        started.set()
        threading.Thread(target=run, name="gateway-drain", daemon=True).start()

    signal.signal(signal.SIGTERM, on_sigterm)


class _QuietRequestHandler(WSGIRequestHandler):
    """The development server's handler without werkzeug's own access line.

    The app writes one per request (``gateway.access``: method, path, status,
    duration); werkzeug's would be a second, and it carries the query string,
    where Shell2HTTP keys and audit search text travel.
    """

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


def serve_forever(app: Flask, host: str, port: int) -> None:
    """The development server (threaded), with a pidfile for ``manage.py commands reload``.

    SIGTERM drains, then stops the server itself (``shutdown()`` from the drain
    thread). Not a simulated Ctrl-C: a process started with ``cmd &`` from a
    script ignores SIGINT, and would drain and then serve on.
    """
    prepare_serving(app)
    server = make_server(host, port, app, threaded=True, request_handler=_QuietRequestHandler)
    install_drain_on_sigterm(app, server.shutdown)
    pidfile = write_pidfile(app)
    try:
        server.serve_forever()  # returns after shutdown(); Ctrl-C (KeyboardInterrupt) ends it too
    finally:
        pidfile.unlink(missing_ok=True)
        stop_scheduler(app)
        stop_forwarding(app)
        get_executor(app).shutdown(grace=0)
        stop_worker(app)
