"""Runners: one module per command kind, behind the ``Runner`` protocol, found by kind in ``RUNNERS``.

The shell runner spawns processes (``processes`` owns their groups), the query
runner talks to data sources (``query_engines`` decides which URLs it can open;
the app factory and ``commands validate`` hand that check to the catalogue).
They know nothing of Flask, requests or users, so they are tested with real
processes and real databases and no server; they import only the catalogue's
model.  A new kind is one module with a ``Runner`` and one line in ``RUNNERS``.
"""

from __future__ import annotations

from typing import Any

from gateway.runners.base import Runner
from gateway.runners.query import QueryRunner
from gateway.runners.shell import ShellRunner

RUNNERS: dict[str, Runner[Any]] = {"shell": ShellRunner(), "query": QueryRunner()}


def runner_for(kind: str) -> Runner[Any]:
    """The runner of a command kind (the catalogue only loads kinds that have one)."""
    return RUNNERS[kind]
