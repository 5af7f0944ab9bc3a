"""What a form or a client is offered: every list of a command for the values at hand, and one list on request.

``offered`` gives a form (or the API's command schema) each choice parameter's
options for the values it shows (submitted, "run again", or defaults); a list
that depends on a value not chosen yet offers nothing, and a list that cannot
be read says why once, as the reason the command is unavailable.

``requested`` answers ``GET /api/v1/commands/<name>/choices/<param>?<other>=…``:
only the values the list depends on (directly or through its parent's own
list) may be sent; each is read as a form's text and validated by its own spec
(and its own list) before the list it selects is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway import runs
from gateway.catalogue import Command, ParamSpec
from gateway.catalogue.params import VALIDATORS, ParamError, Source, match_choice
from gateway.catalogue.values import collect_errors
from gateway.choices.lists import Options, lists

MAX_REPORTED = 10  # unknown names a request may send are reported up to this many (each cut to 64 characters)


@dataclass
class Offered:
    """Each choice parameter's options for the values at hand (None: nothing to offer until another is chosen)."""

    options: dict[str, Options | None] = field(default_factory=dict)
    unavailable: str | None = None  # why a list could not be read: the command cannot run now


class ChoiceErrors(Exception):
    """The values a list was asked for are wrong: errors by field, as a run's validation names them."""

    def __init__(self, errors: Mapping[str, str]):
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))
        self.errors = dict(errors)


def _parsed(spec: ParamSpec, name: str, raw: Any, source: Source, options: Options | None) -> Any:
    """A value others depend on as its own spec reads it (and its list names it), or None when it is no value."""
    if raw is None or raw == "":
        return spec.default
    try:
        value = VALIDATORS[spec.type](name, spec, raw, source)
    except (KeyError, ParamError):
        return None
    if spec.from_data:
        return None if options is None else match_choice(value, list(options.values), source)
    return value


def offered(command: Command, raw: Mapping[str, Any], source: Source = "form") -> Offered:
    """The options of every list of ``command`` for the values in ``raw`` (a form's text, or JSON values)."""
    result = Offered()
    parents: dict[str, Any] = {}
    for name in command.lists_from_data:
        spec = command.params[name]
        if spec.depends_on is not None and spec.depends_on not in parents:
            parent = command.params[spec.depends_on]
            known = result.options.get(spec.depends_on)
            parents[spec.depends_on] = _parsed(parent, spec.depends_on, raw.get(spec.depends_on), source, known)
        try:
            result.options[name] = lists().options(command, name, parents)
        except ParamError:
            result.options[name] = None
        except runs.ListUnavailable as exc:
            result.options[name] = None
            result.unavailable = result.unavailable or exc.reason
    return result


@dataclass(frozen=True)
class _Part:
    """The parameters a list depends on, declared like a command so they validate like one."""

    name: str
    params: Mapping[str, ParamSpec]
    lists_from_data: tuple[str, ...]

    def secret_params(self) -> frozenset[str]:
        return frozenset(name for name, spec in self.params.items() if spec.secret)


def depends_chain(command: Command, name: str) -> list[str]:
    """The parameters ``name``'s list depends on, the farthest first (the loader refuses circles)."""
    chain: list[str] = []
    current = command.params[name].depends_on
    while current is not None and current not in chain:
        chain.insert(0, current)
        current = command.params[current].depends_on
    return chain


def requested(command: Command, name: str, raw: Mapping[str, list[str]]) -> Options:
    """The options of ``name`` for the values a client sent (each key's list of values, as a query string has it).

    :raise ChoiceErrors: a value that is not one the list depends on, sent twice, or invalid by its own spec;
    :raise runs.ListUnavailable: a list cannot be read now.
    """
    chain = depends_chain(command, name)
    unknown = [key for key in raw if key not in chain][:MAX_REPORTED]
    errors = {key[:64]: "is not a parameter these choices depend on" for key in unknown}
    errors.update({key: "is given more than once" for key, items in raw.items() if key in chain and len(items) > 1})
    if errors:
        raise ChoiceErrors(errors)
    part = _Part(
        command.name,
        {key: command.params[key] for key in chain},
        tuple(key for key in command.lists_from_data if key in chain),
    )
    given = {key: items[0] for key, items in raw.items() if items and items[0] != ""}
    values, errors = collect_errors(part, given, "form")
    if not errors and part.lists_from_data:
        values, errors = lists().check(command, values, "form", part.lists_from_data)
    if errors:
        raise ChoiceErrors(errors)
    try:
        return lists().options(command, name, values)
    except ParamError as exc:
        raise ChoiceErrors({exc.field: exc.message}) from None
