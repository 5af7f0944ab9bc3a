"""The lists themselves: a source's result, read from its cache or by running it as ``system:choices``.

A list is the ``column`` of the newest fresh result of the source command with
the params the list depends on: the source's own result cache (``cache_seconds``,
the runs table), shared by every replica and by people running the source
themselves.  Reading a fresh result writes nothing.  Without one, the source
runs as an ordinary run of ``system:choices`` (``detail.for_command`` in the
ledger), once per process however many requests want that list at the same
moment (single flight; across replicas, the second start joins the first run).

A source that is switched off, unconfigured, refused, failing or slow, returns
no such column or no values makes the list unavailable (``ListUnavailable``,
naming the parameter and the source): nothing is ever accepted without its list.
A failed source is not run again for ``FAILURE_BACKOFF_SECONDS``, so a page
reloaded in a loop does not run it each time.

This process keeps only what is bounded: the parsed options of the last
``MAX_LISTS`` results (by run id: a finished result never changes), the recent
failures (as many), and one lock per list being fetched right now.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app

from gateway import runs
from gateway.access.policy import CHOICES
from gateway.catalogue import Command, switches
from gateway.catalogue.params import ParamError, Source, match_choice
from gateway.catalogue.values import canonical_key, collect_errors
from gateway.db.models import Run
from gateway.platform.phrases import N_, restored

MAX_LISTS = 256
FAILURE_BACKOFF_SECONDS = 5.0
# A source run is waited for up to its own timeout, plus this for its terminal write to land.
WAIT_MARGIN_SECONDS = 2.0
# How a source run that did not succeed ended, as the list's reason words it (English: the run state's key).
ENDED_AS = {
    "failed": N_("failed"),
    "timed_out": N_("timed out"),
    "cancelled": N_("cancelled"),
    "lost": N_("lost"),
    "denied": N_("denied"),
    "expired": N_("expired"),
    "withdrawn": N_("withdrawn"),
}


@dataclass(frozen=True)
class Options:
    """One parameter's options, in the order the source returned them (no nulls, no repeats)."""

    values: tuple[str | int | float, ...]
    truncated: bool = False  # the source's row limit cut its result: later values are not offered


class ChoiceLists:
    """This process's reader of lists from data (``app.extensions[runs.LISTS]``); safe across threads."""

    def __init__(self, max_lists: int = MAX_LISTS):
        self.max_lists = max_lists
        self._guard = threading.Lock()
        self._parsed: OrderedDict[tuple[str, str], Options] = OrderedDict()
        self._failed: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._flights: dict[str, list[Any]] = {}

    # --- one list -------------------------------------------------------------------------------

    def options(self, command: Command, name: str, values: Mapping[str, Any]) -> Options:
        """The options of ``command``'s parameter ``name``, given the (validated) value it depends on.

        :raise ParamError: the value it depends on is missing, or its source does not take it;
        :raise ListUnavailable: the list cannot be read now.
        """
        spec = command.params[name]
        if spec.choices_from is None:
            return Options(tuple(spec.choices or ()))
        catalogue = switches.current_catalogue()
        source = catalogue.get(spec.choices_from.command)
        if source is None:  # the loader refuses this; a list never falls back to "anything"
            raise runs.ListUnavailable(
                N_(
                    "the choices of %(name)s: source %(source)s is not in the catalogue",
                    name=repr(name), source=repr(spec.choices_from.command),
                )
            )  # fmt: skip
        raw: dict[str, Any] = {}
        if spec.depends_on is not None:
            if values.get(spec.depends_on) is None:
                raise ParamError(
                    spec.depends_on,
                    N_("is required (the choices of %(name)s depend on it)", name=repr(name)),
                )
            raw[spec.depends_on] = values[spec.depends_on]
        source_values, errors = collect_errors(source, raw, "json")
        if not errors and source.lists_from_data:
            source_values, errors = self.check(source, source_values, "json")
        if errors:
            message = next(iter(errors.values()))
            raise ParamError(
                spec.depends_on or name,
                N_(
                    "is not accepted by the source of the choices of %(name)s (%(reason)s)",
                    name=repr(name),
                    reason=message,
                ),
            )
        key = canonical_key(source, source_values, current_app.config["SECRET_KEY"])
        run = self._result(command, source, source_values, key, name)
        return self._parse(run, spec.choices_from.column, source.name, name)

    def _result(self, command: Command, source: Command, values: dict[str, Any], key: str, name: str) -> Run:
        """The source's succeeded run for these values: a fresh one, the one in flight, or a new one."""
        with self._guard:
            failed = self._failed.get(key)
        if failed is not None and failed[0] > time.monotonic():
            raise runs.ListUnavailable(failed[1])
        which = {"name": repr(name), "source": repr(source.name)}
        if switches.is_disabled(source.name):
            raise runs.ListUnavailable(
                N_("the choices of %(name)s: source %(source)s is disabled by an administrator", **which)
            )
        reason = switches.current_catalogue().unavailable_reason(source)
        if reason is not None:
            raise runs.ListUnavailable(N_("the choices of %(name)s: %(reason)s", name=repr(name), reason=reason))
        run = runs.reusable_run(source, key)
        version: int | None = None
        if run is None:
            with self._flight(key):
                run = runs.reusable_run(source, key)  # another request may have fetched it meanwhile
                if run is None:
                    started = self._start(command, source, values, name)
                    run, version = started.run, started.version
        if run.status in runs.LIVE:
            run = runs.wait_for_finish(run.id, source.timeout + WAIT_MARGIN_SECONDS, version) or run
        if run.status in runs.LIVE:
            raise runs.ListUnavailable(
                N_("the choices of %(name)s: source %(source)s is still running; try again shortly", **which)
            )
        if run.status != "succeeded":
            status = ENDED_AS.get(run.status, run.status.replace("_", " "))
            why = (
                N_("the choices of %(name)s: source %(source)s ended %(status)s (%(error)s)",
                   **which, status=status, error=restored(run.error, run.error_phrase))
                if run.error
                else N_("the choices of %(name)s: source %(source)s ended %(status)s", **which, status=status)
            )  # fmt: skip
            self._remember_failure(key, why)
            raise runs.ListUnavailable(why)
        return run

    def _start(self, command: Command, source: Command, values: dict[str, Any], name: str) -> runs.Started:
        """An ordinary run of the source by ``system:choices``, on behalf of ``command``."""
        try:
            return runs.start(source.name, values, runs.Caller(CHOICES, None), detail={"for_command": command.name})
        except runs.RunRejected as exc:
            raise runs.ListUnavailable(
                N_(
                    "the choices of %(name)s: source %(source)s was refused: %(reason)s",
                    name=repr(name), source=repr(source.name), reason=exc.message,
                )
            ) from None  # fmt: skip

    def _parse(self, run: Run, column: str, source: str, name: str) -> Options:
        with self._guard:
            known = self._parsed.get((run.id, column))
            if known is not None:
                self._parsed.move_to_end((run.id, column))
                return known
        result = run.result or {}
        columns = [str(name) for name in result.get("columns") or []]
        if column not in columns:
            raise runs.ListUnavailable(
                N_(
                    "the choices of %(name)s: source %(source)s has no column %(column)s (its columns: %(columns)s)",
                    name=repr(name), source=repr(source), column=repr(column), columns=", ".join(columns) or "none",
                )
            )  # fmt: skip
        index = columns.index(column)
        options = Options(_distinct(row[index] for row in result.get("rows") or []), bool(result.get("truncated")))
        if not options.values:
            raise runs.ListUnavailable(
                N_(
                    "the choices of %(name)s: source %(source)s returned no values",
                    name=repr(name),
                    source=repr(source),
                )
            )
        with self._guard:
            self._parsed[(run.id, column)] = options
            while len(self._parsed) > self.max_lists:
                self._parsed.popitem(last=False)
        return options

    def _remember_failure(self, key: str, reason: str) -> None:
        with self._guard:
            self._failed[key] = (time.monotonic() + FAILURE_BACKOFF_SECONDS, reason)
            self._failed.move_to_end(key)
            while len(self._failed) > self.max_lists:
                self._failed.popitem(last=False)

    @contextlib.contextmanager
    def _flight(self, key: str) -> Iterator[None]:
        """One fetch of a list at a time in this process; the entry lives only while someone wants it."""
        with self._guard:
            entry = self._flights.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._guard:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._flights[key]

    # --- a command's values -------------------------------------------------------------------------

    def check(
        self, command: Command, values: Mapping[str, Any], source: Source, names: Iterable[str] | None = None
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Each value from data checked against its list (``names``: only those), as the list has it.

        A value that is not offered is an error naming the field (``name[i]`` for an item);
        a list that cannot be read raises ``ListUnavailable``: nothing is accepted without it.
        """
        checked, errors = dict(values), {}
        for name in command.lists_from_data if names is None else names:
            spec = command.params[name]
            value = checked.get(name)
            if value is None or value == [] or (spec.depends_on is not None and spec.depends_on in errors):
                continue  # not given ("required" is the spec's), or the value it depends on is wrong already
            try:
                options = self.options(command, name, checked)
            except ParamError as exc:
                errors[exc.field] = exc.message
                continue
            items = value if spec.multiple else [value]
            chosen = [match_choice(item, list(options.values), source) for item in items]
            wrong = next((index for index, item in enumerate(chosen) if item is None), None)
            if wrong is not None:
                field = f"{name}[{wrong}]" if spec.multiple else name
                errors[field] = (
                    N_("is not one of the choices offered for this %(name)s", name=spec.depends_on)
                    if spec.depends_on
                    else N_("is not one of the choices offered")
                )
                continue
            checked[name] = chosen if spec.multiple else chosen[0]
        return checked, errors


def _distinct(cells: Iterable[Any]) -> tuple[str | int | float, ...]:
    """The cells in order, without nulls or repeats (1 and "1" differ, as they do to the validator)."""
    seen: set[tuple[str, Any]] = set()
    kept: list[str | int | float] = []
    for cell in cells:
        if cell is None or isinstance(cell, bool) or not isinstance(cell, str | int | float):
            continue
        marker = (type(cell).__name__, cell)
        if marker not in seen:
            seen.add(marker)
            kept.append(cell)
    return tuple(kept)


def init_app(app: Flask) -> None:
    app.extensions[runs.LISTS] = ChoiceLists()


def lists() -> ChoiceLists:
    """This app's reader of lists from data."""
    found: ChoiceLists = current_app.extensions[runs.LISTS]
    return found
