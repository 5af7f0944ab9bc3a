"""Blinker signals for integrators (the Flask-Shell2HTTP callback idea).

``run_started`` is sent with ``run`` (the Run row) and ``callback_context``
right after the run row and its ``run.started`` event are committed;
``run_finished`` with ``run`` (terminal) and ``callback_context`` after the
terminal state and ``run.finished`` are committed; ``run_rejected`` with
``outcome`` (the refusal's reason) for every refused run request, whether or
not the flood cap left its ``run.rejected`` row out of the ledger.  Receivers run in the
worker thread: keep them quick, and never let them raise (errors are logged
and swallowed so a receiver cannot break a run).
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


def send(signal: Any, sender: Any, **kwargs: Any) -> None:
    try:
        signal.send(sender, **kwargs)
    except Exception:
        log.exception("a %s receiver raised", signal.name)
