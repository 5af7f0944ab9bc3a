"""/admin/tokens: every API token (owner, name, prefix, dates) and revoking any of them."""

from __future__ import annotations

from flask import abort, render_template, url_for
from werkzeug.wrappers import Response

from gateway.admin.blueprint import bp
from gateway.admin.shared import audited, back_to, confirm_page, confirmed
from gateway.db.models import ApiToken
from gateway.identity import tokens as token_service
from gateway.platform.extensions import db
from gateway.platform.timeutil import utcnow


@bp.route("/tokens")
def tokens() -> str:
    return render_template("admin/tokens.html", tokens=token_service.tokens_of(None), now=utcnow())


# What a confirmation says about revoking a token, on this page and on the account page.
REVOKE_NOTE = "This cannot be undone: anything using it stops working at once and needs a new token."


@bp.route("/tokens/<int:token_id>/revoke", methods=["POST"])
def revoke_token(token_id: int) -> Response | tuple[str, int]:
    token = db.session.get(ApiToken, token_id)
    if token is None:
        abort(404)
    label = f"{token.user.username}'s token {token.name or token.prefix}"
    anchor = f"token-{token.id}"
    if token.revoked_at is None and not confirmed():
        cancel = url_for("admin.tokens", _anchor=anchor)
        return confirm_page(f"Really revoke {label}?", "Revoke token", cancel=cancel, note=REVOKE_NOTE)
    if token_service.revoke(token_id, **audited()):
        return back_to("admin.tokens", f"Revoked {label}; it no longer works.", anchor=anchor)
    return back_to("admin.tokens", f"{label} was already revoked.", anchor=anchor)
