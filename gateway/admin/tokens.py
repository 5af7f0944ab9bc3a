"""/admin/tokens: every API token (owner, name, prefix, dates) and revoking any of them."""

from __future__ import annotations

from flask import abort, render_template
from werkzeug.wrappers import Response

from gateway.admin.blueprint import bp
from gateway.admin.shared import audited, back
from gateway.db.models import ApiToken
from gateway.identity import tokens as token_service
from gateway.platform.extensions import db
from gateway.platform.timeutil import utcnow


@bp.route("/tokens")
def tokens() -> str:
    return render_template("admin/tokens.html", tokens=token_service.tokens_of(None), now=utcnow())


@bp.route("/tokens/<int:token_id>/revoke", methods=["POST"])
def revoke_token(token_id: int) -> Response:
    token = db.session.get(ApiToken, token_id)
    if token is None:
        abort(404)
    label = f"{token.user.username}'s token {token.name or token.prefix}"
    if token_service.revoke(token_id, **audited()):
        return back("admin.tokens", f"Revoked {label}; it no longer works.")
    return back("admin.tokens", f"{label} was already revoked.")
