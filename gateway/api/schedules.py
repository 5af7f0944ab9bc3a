"""``GET /api/v1/schedules`` and ``GET /api/v1/schedules/<name>/runs``.

A schedule exists for a caller when the policy lets them use its command from
their address (``policy.check_run``); its runs are listed only as far as
``policy.allows_run`` lets them view each one.
"""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Response

from gateway import runs, schedules
from gateway.access import policy
from gateway.api.errors import ApiError
from gateway.api.queryargs import int_arg, time_arg
from gateway.api.views import _json, _user, bp
from gateway.catalogue import switches
from gateway.platform.addresses import client_address


def _visible_names(user: Any) -> list[str]:
    catalogue = switches.current_catalogue()
    usable = {c.name for c in policy.visible_commands(user, catalogue, client_address())}
    return [name for name, schedule in catalogue.schedules.items() if schedule.command in usable]


@bp.get("/schedules")
def list_schedules() -> Response:
    items = [view.api() for view in schedules.overview(_visible_names(_user()))]
    return _json({"items": items, "next_cursor": None})


@bp.get("/schedules/<name:name>/runs")
def schedule_runs(name: str) -> Response:
    user = _user()
    if name not in _visible_names(user):
        raise ApiError(404, "not_found", "No such schedule.")
    limit = int_arg("limit", 50, 1, 500) or 50
    before = time_arg("cursor")
    page = schedules.runs_of(name, before=before, limit=limit + 1)
    address = client_address()
    shown = [run for run, _ in page[:limit] if policy.allows_run(user, run, "view", address)]
    items = [runs.run_view(run, user, include_output=False, approval=None) for run in shown]  # none needs one
    next_cursor = page[limit - 1][1].isoformat().replace("+00:00", "Z") if len(page) > limit else None
    return _json({"items": items, "next_cursor": next_cursor})
