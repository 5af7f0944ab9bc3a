"""What a runner kind is (the ``Runner`` protocol: plan, then run) and what every run ends with (``Outcome``).

A run is planned before it is admitted, so a value the kind cannot use is
refused before anything is recorded, and run later in a worker thread.  The
runs engine (gateway.runs) knows each kind only through this protocol and the
registry in ``gateway.runners``; this module imports only the catalogue's model.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from gateway.catalogue import Catalogue, Command


@dataclass
class Outcome:
    """How a run ended: what its terminal write records (``status`` is one of the terminal states)."""

    status: str
    exit_code: int | None = None
    error: str | None = None
    output_bytes: int = 0
    output_sha256: str | None = None
    truncated: bool = False
    result: dict[str, Any] | None = None


@dataclass(frozen=True)
class RunContext:
    """What a runner is told about one run when it plans it."""

    run_id: str
    username: str
    timeout: float  # the run's own: the command's, or lower when the request asked for less
    settings: Mapping[str, Any]  # the gateway's configuration (MAX_OUTPUT_BYTES, RUN_AS_USER...)
    catalogue: Catalogue


class Output(Protocol):
    """Where a runner sends what the run prints (``gateway.runs.output.ChunkWriter``)."""

    def add(self, stream: str, data: bytes) -> None: ...

    def spawned(self, pgid: int) -> None: ...

    def tick(self) -> None: ...


PlanT = TypeVar("PlanT")


class Runner(Protocol[PlanT]):
    """One kind of command (``Command.kind``): how a run of it is planned and run."""

    def plan(self, command: Command, values: Mapping[str, Any], context: RunContext) -> PlanT:
        """Everything the run needs, from the command and its validated values.

        :raise ParamError: a value this kind cannot use (the request is refused, nothing recorded).
        """
        ...

    def run(self, plan: PlanT, output: Output, cancel: threading.Event) -> Outcome:
        """Execute the plan in the calling (worker) thread until it ends; ``cancel`` asks it to stop."""
        ...
