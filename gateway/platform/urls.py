"""Absolute URLs the gateway hands out: ``PUBLIC_BASE_URL`` joined to a route's path, never the request's Host.

Invite links, the API's ``url``/``stream_url``/``runs_url`` and Shell2HTTP's
``result_url`` all come from ``external_url``. It binds the URL map to
``PUBLIC_BASE_URL`` itself instead of asking Flask's ``url_for(_external=True)``,
which would take scheme and host from the request (so ``Host: attacker.example``
chose where a link pointed) and cannot build anything outside a request. The
same function therefore serves views and background work alike.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import current_app


def external_url(endpoint: str, **values: Any) -> str:
    """``PUBLIC_BASE_URL`` + the path of ``endpoint``; values the route does not take become the query string.

    Works with or without a request (only an app context is needed).
    :raise werkzeug.routing.BuildError: for an unknown endpoint or missing values, like ``url_for``.
    """
    app = current_app
    base = urlsplit(app.config["PUBLIC_BASE_URL"])
    adapter = app.url_map.bind(base.netloc, script_name=base.path or "/", url_scheme=base.scheme)
    app.inject_url_defaults(endpoint, values)
    return adapter.build(endpoint, values, force_external=True)
