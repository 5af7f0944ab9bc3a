"""Schedules: the catalogue's ``schedules:`` run by ``system:scheduler``, exactly once across replicas.

- ``scheduler``: the per-replica thread (no leader) and its ``tick``, which claims due
  occurrences through ``runs.start`` and records missed gaps once;
- ``overview``: what the admin page, the API and the CLI show of each schedule;
- ``store``: every statement on ``schedule_states`` / ``schedule_occurrences`` (claims,
  pause and resume, which are audited).

May import the domain rooms (access, audit, catalogue, db, platform, runs); never the
delivery layer, which calls the names re-exported here.
"""

from __future__ import annotations

from gateway.schedules.overview import ScheduleView, overview, runs_of
from gateway.schedules.scheduler import Scheduler, get_scheduler, run_now, start_scheduler, stop_scheduler
from gateway.schedules.store import recent_occurrences, set_paused, states

__all__ = [
    "ScheduleView",
    "Scheduler",
    "get_scheduler",
    "overview",
    "recent_occurrences",
    "run_now",
    "runs_of",
    "set_paused",
    "start_scheduler",
    "states",
    "stop_scheduler",
]
