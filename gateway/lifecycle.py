"""Process lifecycle for a serving gateway: executor start, pidfile, SIGHUP reload.

``manage.py serve`` and ``wsgi.py`` both call ``prepare_serving`` so a serving
process starts its executor supervisor (leases, reaper) at once rather than at
its first run, and reloads the catalogue on SIGHUP.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType

from flask import Flask
from werkzeug.serving import run_simple

from gateway.catalogue import CatalogueError
from gateway.commands import holder
from gateway.executor import get_executor

log = logging.getLogger("gateway.lifecycle")
PIDFILE = "gateway.pid"


def install_reload_on_sighup(app: Flask) -> None:
    """SIGHUP reloads the catalogue; a broken file is logged and the old catalogue stays."""
    if threading.current_thread() is not threading.main_thread():
        return

    def reload(_signum: int, _frame: FrameType | None) -> None:
        try:
            holder(app).reload()
        except CatalogueError as exc:
            log.error("catalogue reload refused, keeping the loaded one: %s", exc)

    signal.signal(signal.SIGHUP, reload)


def write_pidfile(app: Flask) -> Path:
    path = Path(app.instance_path) / PIDFILE
    path.write_text(f"{os.getpid()}\n")
    return path


def prepare_serving(app: Flask) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    get_executor(app)
    install_reload_on_sighup(app)


def serve_forever(app: Flask, host: str, port: int) -> None:
    """The development server (threaded), with a pidfile for ``manage.py commands reload``."""
    prepare_serving(app)
    pidfile = write_pidfile(app)
    try:
        # Not app.run(): Flask ignores it inside a Flask CLI command.
        run_simple(host, port, app, threaded=True, use_reloader=False, use_debugger=False)
    finally:
        pidfile.unlink(missing_ok=True)
        get_executor(app).shutdown(grace=0)
