"""Staff pages: the dashboard (commands and runs arrive with the engine)."""

from __future__ import annotations

from flask import Blueprint, render_template

from gateway.auth.forms import LogoutForm

bp = Blueprint("web", __name__)


@bp.route("/")
def dashboard() -> str:
    return render_template("dashboard.html", logout_form=LogoutForm())
