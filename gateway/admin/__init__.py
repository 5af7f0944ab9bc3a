"""Admin pages. The blueprint guards itself once: every route under /admin requires an admin."""

from __future__ import annotations

from flask import Blueprint, render_template
from sqlalchemy import select

from gateway.auth.forms import LogoutForm
from gateway.extensions import db
from gateway.models import User
from gateway.policy import require_admin

bp = Blueprint("admin", __name__, url_prefix="/admin")
bp.before_request(require_admin)


@bp.route("/users")
def users() -> str:
    people = db.session.scalars(select(User).order_by(User.username)).all()
    return render_template("admin/users.html", users=people, logout_form=LogoutForm())
