"""Parameters from data, as the catalogue loads: which command may fill a parameter's choices, and how.

A ``choices_from`` source is run by ``system:choices`` with no one to fill in
its form, so everything it takes must be known: each of its parameters is the
one ``depends_on`` names (the other field's value) or has a default.  Its
result is shared through its own result cache, so it must declare
``cache_seconds`` of at least ``MIN_SOURCE_CACHE_SECONDS``.  ``source_problem``
is the one place that decides whether a command may be a source at all
(commands that need an approval may not, once approvals exist: their runs never
serve a cached result).  ``depends_on`` names another parameter of the same
command, never a secret or a multiple one, and the dependencies (within a
command, and from command to source) never go round in a circle.

The column is not known until the source has run: it is checked at first use
(``gateway.choices``), with an error naming it.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.catalogue.model import Command
from gateway.catalogue.params import ParamSpec

MIN_SOURCE_CACHE_SECONDS = 10


def source_problem(source: Command) -> str | None:
    """Why ``source`` cannot fill a parameter's choices whoever asks, or None: the one place this is decided."""
    if source.kind != "query":
        return f"{source.name!r} is a {source.kind} command; choices come from a query command"
    if source.approval is not None:
        return f"source {source.name!r} needs approval; a list nobody may wait for cannot come from it"
    if source.cache_seconds < MIN_SOURCE_CACHE_SECONDS:
        return f"source {source.name!r} must declare cache_seconds of at least {MIN_SOURCE_CACHE_SECONDS}"
    return None


def _param_problem(
    command: Command, name: str, spec: ParamSpec, commands: Mapping[str, Command]
) -> tuple[str, str] | None:
    """(field under the parameter, message) for this parameter's misuse of depends_on / choices_from, or None."""
    if spec.depends_on is not None:
        other = command.params.get(spec.depends_on)
        if other is None or spec.depends_on == name:
            return "depends_on", f"{spec.depends_on!r} is not another parameter of this command"
        if other.secret:
            return "depends_on", f"{spec.depends_on!r} is a secret parameter (its value would key a shared list)"
        if other.expands:
            return "depends_on", f"{spec.depends_on!r} takes several values; a list depends on one"
    if spec.choices_from is None:
        return None
    source = commands.get(spec.choices_from.command)
    if source is None:
        return "choices_from.command", f"unknown command {spec.choices_from.command!r}"
    problem = source_problem(source)
    if problem is not None:
        return "choices_from.command", problem
    if spec.depends_on is not None and spec.depends_on not in source.params:
        return "depends_on", f"source {source.name!r} takes no parameter {spec.depends_on!r}"
    for taken, wanted in source.params.items():
        if taken != spec.depends_on and wanted.default is None:
            return "choices_from.command", (
                f"source {source.name!r} parameter {taken!r} is neither filled by depends_on nor has a default"
            )
    return None


def _dependency_cycle(command: Command) -> str | None:
    """The first parameter whose ``depends_on`` chain comes back to itself, or None."""
    for start in command.params:
        seen = {start}
        current = command.params[start].depends_on
        while current is not None and current in command.params:
            if current in seen:
                return start
            seen.add(current)
            current = command.params[current].depends_on
    return None


def _source_cycle(commands: Mapping[str, Command]) -> str | None:
    """A command that is, through its parameters' sources, its own source; or None."""
    edges = {
        name: {spec.choices_from.command for spec in command.params.values() if spec.choices_from is not None}
        for name, command in commands.items()
    }
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str) -> bool:
        state[name] = 1
        for following in sorted(edges.get(name, ())):
            if state.get(following) == 1 or (state.get(following) is None and visit(following)):
                return True
        state[name] = 2
        return False

    return next((name for name in sorted(edges) if state.get(name) is None and visit(name)), None)


def check_sources(commands: Mapping[str, Command]) -> tuple[str, str, str] | None:
    """(command, field, message) for the first misuse of choices_from / depends_on, or None."""
    for name, command in commands.items():
        for param, spec in command.params.items():
            problem = _param_problem(command, param, spec, commands)
            if problem is not None:
                return name, f"params.{param}.{problem[0]}", problem[1]
        looping = _dependency_cycle(command)
        if looping is not None:
            return name, f"params.{looping}.depends_on", "the dependencies go round in a circle"
    looping = _source_cycle(commands)
    if looping is not None:
        return looping, "params", "its choices_from sources lead back to itself"
    return None
