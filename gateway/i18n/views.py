"""The language routes: ``POST /language`` (any page, a cookie) and ``POST /account/language`` (stored on the user).

Both are POSTs with the CSRF token (nothing changes on a GET) and answer with a
303 to a same-origin ``next`` (``identity.redirects.safe_next``; anything else
lands on ``/``). ``/language`` is public: the sign-in page has a switch. A signed-in
user's stored choice wins over the cookie, so their switch is the account page's
select, which stores the choice (an ``admin.user_updated`` event, as a password
change is) and sets the cookie too, so the sign-in page after signing out stays
in that language. An empty choice clears the stored one: the browser decides again.
"""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_babel import refresh
from flask_login import current_user
from werkzeug.wrappers import Response

from gateway import audit
from gateway.db.models import User
from gateway.db.units import write_transaction
from gateway.i18n.choice import COOKIE, COOKIE_MAX_AGE, languages
from gateway.identity.redirects import safe_next

bp = Blueprint("i18n", __name__)


def _chosen() -> str | None:
    """The form's ``language`` when it is one we offer, else None."""
    value = request.form.get("language", "")
    return value if value in languages() else None


def _back(default: str) -> Response:
    return redirect(safe_next(request.form.get("next"), default), 303)


def _with_cookie(response: Response, language: str | None) -> Response:
    if language is None:
        response.delete_cookie(COOKIE, path="/")
        return response
    response.set_cookie(
        COOKIE, language, max_age=COOKIE_MAX_AGE, path="/", httponly=True, samesite="Lax",
        secure=bool(current_app.config.get("SESSION_COOKIE_SECURE")),
    )  # fmt: skip
    return response


@bp.route("/language", methods=["POST"])
def set_language() -> Response:
    """Signed out (or in): the cookie that chooses the language of pages without a stored choice."""
    language = _chosen()
    if language is None:
        return _back("/")
    return _with_cookie(_back("/"), language)


def store_language(user: User, language: str | None) -> bool:
    """Store the user's choice (None: the browser's) with its audit event; False when it was already so."""
    with write_transaction() as tx:
        user = tx.merge(user)
        tx.refresh(user)  # read under the write lock: ``before`` is what was stored, not this request's copy
        before = user.language
        if before == language:
            return False
        user.language = language
        audit.append(
            "admin.user_updated",
            session=tx,
            **{**audit.request_context_fields(), "actor": user.actor()},
            outcome="ok",
            detail={"user": user.username, "changed": ["language"], "before": before, "after": language},
        )
    return True


@bp.route("/account/language", methods=["POST"])
def account_language() -> Response:
    """The account page's select: store the choice on the user (the sign-in gate keeps strangers out)."""
    raw = request.form.get("language", "")
    language = _chosen()
    if raw and language is None:
        flash(_("Choose one of the languages offered."))
        return redirect(url_for("web.account"), 303)
    user = current_user._get_current_object()
    if store_language(user, language):
        refresh()  # the message below in the new language (the user's row is read again after the commit)
        flash(_("Your language was saved."))
    return _with_cookie(_back(url_for("web.account")), language)
