"""gunicorn settings for the gateway: ``gunicorn -c gunicorn.conf.py wsgi:app --bind 0.0.0.0:8000``.

Threaded workers (``gthread``): SSE streams and long-polls each hold a thread
while they wait (and no database connection), so a worker needs many threads
and the per-process stream cap (``STREAMS_PER_PROCESS``) stays below them.
Each worker is a full gateway process with its own executor, lease
supervisor and NOTIFY listener, so the app is NOT preloaded in the master
(threads do not survive a fork) and workers are never recycled by request
count (``max_requests`` would cancel their runs).

SIGTERM (Kubernetes stops the pod; gunicorn passes it to each worker) drains
instead of stopping at once: see ``gateway.platform.lifecycle``.  ``graceful_timeout``
is longer than ``RUN_SHUTDOWN_GRACE_SECONDS`` so gunicorn's SIGKILL never cuts
the drain short.  Tunable through the environment: ``GUNICORN_WORKERS``,
``GUNICORN_THREADS``, ``GUNICORN_BIND``, ``RUN_SHUTDOWN_GRACE_SECONDS``; anything else through
gunicorn's own ``GUNICORN_CMD_ARGS``.
"""

from __future__ import annotations

import os
from typing import Any

# After the drain: cancelled runs need a moment to be killed and recorded, open streams to end.
DRAIN_MARGIN_SECONDS = 15

wsgi_app = "wsgi:app"
# The container port (deploy/Dockerfile, the Service); ALLOWED_NETWORKS still guards every request.
bind = [os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")]
worker_class = "gthread"
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "32"))
preload_app = False
max_requests = 0
timeout = 60  # the worker's main loop heartbeats; requests themselves may be long (streams)
keepalive = 5
graceful_timeout = int(float(os.environ.get("RUN_SHUTDOWN_GRACE_SECONDS", "30"))) + DRAIN_MARGIN_SECONDS
errorlog = "-"
# The app writes one access line per request (gateway.access: method, path without its query
# string, status, duration; JSON in production, text elsewhere), so gunicorn's own is off: a
# second line per request, and one that would need care to keep Shell2HTTP keys out.
accesslog = None
if os.environ.get("GATEWAY_ENV", "production").lower() == "production":
    # One JSON object per line on stderr, like the app's own logs: gunicorn's own messages
    # (boot, worker exits, timeouts) use the app's JSON formatter.
    logconfig_dict = {
        "formatters": {"json": {"()": "gateway.platform.logs.JsonFormatter"}},
        "handlers": {"json": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "loggers": {"gunicorn.error": {"level": "INFO", "handlers": ["json"], "propagate": False}},
        "root": {"level": "INFO", "handlers": []},  # the app adds its own JSON handler in each worker
    }


def post_worker_init(worker: Any) -> None:
    """Replace gunicorn's SIGTERM handler with the gateway's drain, then let gunicorn stop the worker."""
    from gateway.platform.lifecycle import install_drain_on_sigterm, prepare_serving

    app = worker.wsgi
    prepare_serving(app)  # idempotent: wsgi.py already did it in this worker

    def stop_worker() -> None:
        worker.handle_exit(None, None)  # gunicorn's own graceful stop: finish open requests, exit

    install_drain_on_sigterm(app, stop_worker)


def on_starting(server: Any) -> None:
    """Multiprocess metrics: start every arbiter with an empty PROMETHEUS_MULTIPROC_DIR."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        os.makedirs(directory, exist_ok=True)
        for name in os.listdir(directory):
            if name.endswith(".db"):
                os.unlink(os.path.join(directory, name))


def child_exit(server: Any, worker: Any) -> None:
    """A dead worker's live gauges (active runs) must not be summed forever."""
    from gateway.platform.metrics import mark_worker_dead

    mark_worker_dead(worker.pid)
