"""/admin/users: reset a user's second factors (a lost phone or security key).

The reset removes the authenticator secret, passkeys and recovery codes and
ends the user's sessions and API tokens in the same commit
(``gateway.identity.mfa.factors.reset``, audited ``admin.mfa_reset``).
"""

from __future__ import annotations

from collections.abc import Callable

from flask import abort
from flask_babel import format_decimal as number
from flask_babel import gettext as _
from flask_babel import ngettext
from werkzeug.wrappers import Response

from gateway.admin.blueprint import bp
from gateway.admin.shared import audited, back, problem_text
from gateway.db.models import User
from gateway.identity import accounts
from gateway.identity.mfa import factors
from gateway.platform.extensions import db


@bp.context_processor
def _mfa_context() -> dict[str, Callable[[], set[int]]]:
    """The users page asks once which users have second factors (a callable: other admin pages never query)."""
    return {"mfa_enrolled_users": factors.users_with_factors}


@bp.route("/users/<int:user_id>/reset-mfa", methods=["POST"])
def reset_mfa(user_id: int) -> Response:
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    try:
        done = factors.reset(user, **audited())
    except accounts.AccountError as exc:
        return back("admin.users", problem_text(exc))
    return back(
        "admin.users",
        _(
            "%(user)s's second factors were removed; %(sessions)s ended and %(tokens)s revoked. "
            "They sign in with their password and set up a new one.",
            user=user.username,
            sessions=ngettext(
                "%(count)s session", "%(count)s sessions", done.revoked.sessions, count=number(done.revoked.sessions)
            ),
            tokens=ngettext(
                "%(count)s API token", "%(count)s API tokens", done.revoked.tokens, count=number(done.revoked.tokens)
            ),
        ),
    )
