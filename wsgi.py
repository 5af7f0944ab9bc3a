"""WSGI entry point: ``gunicorn wsgi:app``.

A setting that makes the gateway refuse to start is reported as one line on
stderr, without a traceback, and the process exits with status 4: gunicorn
reads that as "App failed to load" and stops, instead of booting workers that
fail the same way forever.
"""

from __future__ import annotations

import sys

from flask import Flask

from config import ConfigError
from gateway import create_app
from gateway.platform.lifecycle import prepare_serving

APP_LOAD_ERROR = 4  # gunicorn.arbiter.Arbiter.APP_LOAD_ERROR


def load() -> Flask:
    try:
        app = create_app()
    except ConfigError as exc:
        print(f"refusing to start: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(APP_LOAD_ERROR) from None
    prepare_serving(app)
    return app


app = load()
