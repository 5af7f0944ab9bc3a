"""/admin/tokens: every API token (owner, name, prefix, dates) and revoking any of them."""

from __future__ import annotations

from flask import abort, render_template, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from gateway.admin.blueprint import bp
from gateway.admin.shared import audited, back_to, confirm_page, confirmed
from gateway.db.models import ApiToken
from gateway.identity import tokens as token_service
from gateway.platform.extensions import db
from gateway.platform.phrases import N_
from gateway.platform.timeutil import utcnow


@bp.route("/tokens")
def tokens() -> str:
    return render_template("admin/tokens.html", tokens=token_service.tokens_of(None), now=utcnow())


# What a confirmation says about revoking a token, on this page and on the account page.
REVOKE_NOTE = N_("This cannot be undone: anything using it stops working at once and needs a new token.")


@bp.route("/tokens/<int:token_id>/revoke", methods=["POST"])
def revoke_token(token_id: int) -> Response | tuple[str, int]:
    token = db.session.get(ApiToken, token_id)
    if token is None:
        abort(404)
    values = {"user": token.user.username, "token": token.name or token.prefix}
    anchor = f"token-{token.id}"
    if token.revoked_at is None and not confirmed():
        cancel = url_for("admin.tokens", _anchor=anchor)
        question = _("Really revoke %(user)s's token %(token)s?", **values)
        return confirm_page(question, _("Revoke token"), cancel=cancel, note=_(REVOKE_NOTE))
    if token_service.revoke(token_id, **audited()):
        return back_to(
            "admin.tokens", _("Revoked %(user)s's token %(token)s; it no longer works.", **values), anchor=anchor
        )
    return back_to("admin.tokens", _("%(user)s's token %(token)s was already revoked.", **values), anchor=anchor)
