"""/admin/deliveries: notifications not delivered yet (pending, failed and retrying, dead), with retry.

What is shown is the outbox's bookkeeping only: the notification's name and
kind, the event, the run, attempts and the last failure's reason.  Never a
URL (a Slack or webhook URL is a credential), never the message (it quotes
the run's output).  A retry is audited (``admin.delivery_retried``).
"""

from __future__ import annotations

from flask import abort, render_template
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers import Response

from gateway import deliveries
from gateway.admin.blueprint import bp
from gateway.admin.shared import audited, back
from gateway.catalogue import switches as command_switches
from gateway.platform.timeutil import utcnow

RETRY_MESSAGES = {
    "retried": _l("The delivery is due again now, with its attempts counted afresh."),
    "delivered": _l("That delivery has been delivered meanwhile."),
    "sending": _l("That delivery is being sent right now; retry it if it fails again."),
}


@bp.route("/deliveries")
def deliveries_page() -> str:
    return render_template(
        "admin/deliveries.html",
        rows=deliveries.unfinished(),
        counts=deliveries.counts(),
        notifications=command_switches.current_catalogue().notifications,
        now=utcnow(),
    )


@bp.route("/deliveries/<run_id:delivery_id>/retry", methods=["POST"])
def retry_delivery(delivery_id: str) -> Response:
    """Make a failed or dead delivery due now; :raise 404: no such delivery."""
    outcome = deliveries.retry(delivery_id, **audited())
    if outcome == "not_found":
        abort(404)
    return back("admin.deliveries_page", str(RETRY_MESSAGES[outcome]))
