"""My run history: newest first, filtered by command and status, paged with the engine's cursor."""

from __future__ import annotations

from flask import render_template, request

from gateway import runs
from gateway.access import policy
from gateway.catalogue import switches as command_switches
from gateway.platform.addresses import client_address
from gateway.web.blueprint import bp
from gateway.web.shared import STATUS_LABELS, me, refuse_cursor, status_filter

PAGE_SIZE = 25


@bp.route("/runs")
def history() -> str:
    command = request.args.get("command", "").strip() or None
    status = status_filter(request.args.get("status", "").strip() or None)
    cursor = request.args.get("cursor", "").strip() or None
    address = client_address()
    try:
        page, next_cursor = runs.list_runs(  # my history: my own runs, admins' included
            owner_id=me().id, address=address, command=command, status=status, limit=PAGE_SIZE, cursor=cursor
        )
    except ValueError:
        refuse_cursor("cursor")
    catalogue = command_switches.current_catalogue()
    names = sorted(c.name for c in policy.visible_commands(me(), catalogue, address))
    return render_template(
        "history.html",
        runs=page,
        next_cursor=next_cursor,
        command=command,
        status=status,
        command_names=names,
        titles={name: c.title for name, c in catalogue.commands.items()},
        statuses=STATUS_LABELS,
        first_page=cursor is None,
    )
