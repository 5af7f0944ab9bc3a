"""Blinker signals for integrators (the Flask-Shell2HTTP callback idea).

``run_started`` is sent with ``run`` (the Run row) and ``callback_context``
right after the run row and its ``run.started`` event are committed;
``run_finished`` with ``run`` (terminal) and ``callback_context`` after the
terminal state and ``run.finished`` are committed; ``run_rejected`` with
``outcome`` (the refusal's reason) for every refused run request, whether or
not the flood cap left its ``run.rejected`` row out of the ledger.  Receivers run in the
worker thread: keep them quick, and never let them raise (errors are logged
and swallowed so a receiver cannot break a run).

``audit_appended`` is sent by the ledger after each append, with ``row`` (the
``LedgerRow`` written), ``unit`` (the caller's write unit, not yet committed)
and ``seconds`` (the append's latency, chain lock included): metrics time
appends with it and the anchor log schedules its line for the commit.  It is
sent while the chain lock is held, so its receivers must be quicker still.
"""

from __future__ import annotations

import logging
from typing import Any

from blinker import Namespace

log = logging.getLogger("gateway.signals")
_signals = Namespace()

run_started = _signals.signal("run-started")
run_finished = _signals.signal("run-finished")
run_rejected = _signals.signal("run-rejected")
audit_appended = _signals.signal("audit-appended")
schedule_started = _signals.signal("schedule-started")  # schedule=, lag= (seconds after its time)
schedule_missed = _signals.signal("schedule-missed")  # schedule=, count=
# destination= (a catalogue notification's name, or None for one no longer loaded), result= ("delivered" or a reason)
delivery_attempted = _signals.signal("delivery-attempted")


def send(signal: Any, sender: Any, **kwargs: Any) -> None:
    try:
        signal.send(sender, **kwargs)
    except Exception:
        log.exception("a %s receiver raised", signal.name)
