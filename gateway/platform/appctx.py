"""The application object behind ``current_app``, for work that outlives the request.

Threads and signal receivers need the ``Flask`` object itself: the ``current_app`` proxy only
resolves inside an application context. Flask types the proxy as ``Flask``, which hides
``_get_current_object``; the cast below states what it is at run time (a ``LocalProxy``).
"""

from __future__ import annotations

from typing import cast

from flask import Flask, current_app
from werkzeug.local import LocalProxy


def app_object() -> Flask:
    """The real application of the current context (raises outside one, like ``current_app``)."""
    return cast("LocalProxy[Flask]", current_app)._get_current_object()
