"""/admin/schedules: each schedule's next and last occurrence, last outcome, duration trend, pause/resume.

The schedules themselves are reviewed configuration (the catalogue); pausing is
runtime data, audited (``admin.schedule_paused`` / ``admin.schedule_resumed``).
"""

from __future__ import annotations

from flask import abort, current_app, render_template
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from gateway.admin.blueprint import bp
from gateway.admin.shared import audited, back
from gateway.catalogue import switches as command_switches
from gateway.schedules import overview, set_paused


@bp.route("/schedules")
def schedules() -> str:
    return render_template("admin/schedules.html", views=overview())


def _pause(name: str, paused: bool) -> Response:
    if name not in command_switches.current_catalogue().schedules:
        abort(404)
    changed = set_paused(name, paused, **audited())
    scheduler = current_app.extensions.get("gateway.scheduler")
    if scheduler is not None:
        scheduler.wake()
    if not changed:
        message = (
            _("%(name)s was already paused.", name=name) if paused else _("%(name)s was already running.", name=name)
        )
    elif paused:
        message = _(
            "%(name)s is paused: its occurrences are skipped, and not recorded, until it is resumed.", name=name
        )
    else:
        message = _("%(name)s is resumed from its next occurrence (the paused time is not caught up).", name=name)
    return back("admin.schedules", message)


@bp.route("/schedules/<name:name>/pause", methods=["POST"])
def pause_schedule(name: str) -> Response:
    return _pause(name, True)


@bp.route("/schedules/<name:name>/resume", methods=["POST"])
def resume_schedule(name: str) -> Response:
    return _pause(name, False)
