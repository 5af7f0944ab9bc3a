"""The JSON API v1 (``/api/v1``) and the Flask-Shell2HTTP compatibility layer (``/shell2http/<name>``).

Both sit behind the same network allowlist, sign-in gate, policy, rate limits
and audit as the browser.  They are exempt from the global form CSRF check
because they validate ``X-CSRFToken`` themselves for browser sessions, and
need none for bearer tokens.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from gateway.api import approvals, auth, schedules, shell2http, streams, views

    del approvals, schedules  # imported for their routes on views.bp
    from gateway.platform.extensions import csrf

    auth.init_app(app)
    streams.init_app(app)
    csrf.exempt(views.bp)
    csrf.exempt(shell2http.bp)
    app.register_blueprint(views.bp)
    app.register_blueprint(shell2http.bp)
