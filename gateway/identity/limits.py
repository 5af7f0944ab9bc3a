"""The sign-in rate limits' keys: every place a password, code or sign-in start is tried counts here.

``LOGIN_RATE_LIMIT`` applies per source address and per normalised name, and the
sign-in page, the second step, the invite page, the account page's password checks
and the OIDC start all draw on the same keys, so guessing at one door does not
reset the count at another.
"""

from __future__ import annotations

from flask import current_app, request
from flask_login import current_user

from gateway.identity.usernames import login_name
from gateway.platform.addresses import client_address

NAME_KEY_PREFIX = "login-user:"


def login_limit() -> str:
    limit: str = current_app.config["LOGIN_RATE_LIMIT"]
    return limit


def address_key() -> str:
    return "login-ip:" + client_address()


def name_key(username: str) -> str:
    """The per-name key for a name already normalised (the signed-in or half-signed-in user's own)."""
    return NAME_KEY_PREFIX + username


def typed_name_key() -> str:
    """The per-name key for the name typed into the sign-in form."""
    return name_key(login_name(request.form.get("username", "")))


def own_name_key() -> str:
    """The per-name key for the signed-in user's own name (their password or code re-entered on the account pages)."""
    return name_key(getattr(current_user, "username", ""))
