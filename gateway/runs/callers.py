"""The ``Caller`` of the current request: the signed-in user, the trusted client address, the user agent."""

from __future__ import annotations

from flask import request
from flask_login import current_user

from gateway.platform.addresses import client_address
from gateway.runs.model import Caller


def current_caller() -> Caller:
    return Caller(
        user=current_user._get_current_object(),
        source_ip=client_address(),
        user_agent=request.headers.get("User-Agent"),
    )
