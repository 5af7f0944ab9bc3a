"""Runs: the engine that starts every run, executes it in this process and ends it exactly once.

Modules, in the order a run meets them:

- ``model``: the vocabulary (``Caller``, ``Started``, ``RunRejected``, ``Job``, ``LIVE``/``TERMINAL``);
- ``admission``: ``start``, the one chokepoint (policy, rate limit, validation, the runner's plan,
  then the run row and ``run.started`` in one commit); ``refusals``: the audited ``run.rejected``;
- ``workers`` / ``executor``: this process's slots and supervisor, wired to the engine by callbacks;
- ``execution``: a run in its worker thread, handed to its kind's runner (``gateway.runners``);
- ``output``: what the run prints, on its way to the database;
- ``pending`` / ``decisions``: a run that needs approval, from its request (``pending_approval``) to its
  start at the last approval, or its end (denied, expired, withdrawn); ``inbox``: the approvals lists;
- ``gates``: the admission checks a start and an approved start share, and the hand-over to the executor;
- ``ending``: the one terminal write with ``run.finished``; ``notices``: the notifications it enqueues;
- ``leases``: cancel, lease renewal, the reaper, the orphan kill;
- ``store``: every statement on the runs tables, ``list_runs``, output reads, prune;
- ``waiting``: waiting for a run to finish with no connection held (long-polls, lists from data);
- ``shape``: the ``<run>`` view the API and the pages share; ``uploads``, ``callers``: request helpers.

This package may import the domain rooms below it (access, approvals, audit, catalogue, db, deliveries,
platform, runners), never the delivery layer (web, api, admin, cli).  Its submodules import each other,
never this ``__init__``, which only re-exports what other rooms use: ``from gateway import runs;
runs.start(...)``.
"""

from __future__ import annotations

from gateway.runs.admission import run_as_account, start
from gateway.runs.decisions import decide, refuse_decision
from gateway.runs.inbox import SCOPES, Scope, approval_runs
from gateway.runs.leases import cancel, cancel_local, reap_expired
from gateway.runs.model import (
    LISTS,
    LIVE,
    PENDING_APPROVAL,
    STATUSES,
    TERMINAL,
    AlreadyClaimed,
    Caller,
    ListUnavailable,
    Occurrence,
    RunRejected,
    Started,
)
from gateway.runs.pending import expire_overdue
from gateway.runs.refusals import refuse_request
from gateway.runs.shape import run_view
from gateway.runs.store import (
    current_run,
    detached_run,
    list_runs,
    output_chunks,
    output_text,
    prune,
    reusable_run,
)
from gateway.runs.waiting import wait_for_finish
from gateway.runs.workers import get_executor

__all__ = [
    "LISTS",
    "LIVE",
    "PENDING_APPROVAL",
    "SCOPES",
    "STATUSES",
    "TERMINAL",
    "AlreadyClaimed",
    "Caller",
    "ListUnavailable",
    "Occurrence",
    "RunRejected",
    "Scope",
    "Started",
    "approval_runs",
    "cancel",
    "cancel_local",
    "current_run",
    "decide",
    "detached_run",
    "expire_overdue",
    "get_executor",
    "list_runs",
    "output_chunks",
    "output_text",
    "prune",
    "reap_expired",
    "refuse_decision",
    "refuse_request",
    "reusable_run",
    "run_as_account",
    "run_view",
    "start",
    "wait_for_finish",
]
