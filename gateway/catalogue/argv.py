"""argv from the catalogue template and validated values; never a shell, never string concatenation of a command line.

Rules (DESIGN.md): ``{param}`` placeholders fill a whole element or part of
one; a value filling a whole element that starts with ``-`` is refused unless
a ``--`` element comes before it or the parameter's pattern explicitly admits
a leading dash; ``--opt={value}`` inside one element is always safe; a list
parameter (or a choice with ``multiple``) standing alone expands to one element per item; secrets never
appear in argv (the catalogue refuses that at load time) and reach the
command through ``env`` or ``stdin``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.catalogue.model import PLACEHOLDER, Command
from gateway.catalogue.params import FileValue, ParamError


def render_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, FileValue):
        return value.path
    return str(value)


def fill(template: str, values: Mapping[str, Any]) -> str:
    """Substitute placeholders inside one string (one argv element, an env value, stdin)."""
    return PLACEHOLDER.sub(lambda match: render_value(values.get(match.group(1))), template)


def _whole_placeholder(element: str) -> str | None:
    match = PLACEHOLDER.fullmatch(element)
    return match.group(1) if match else None


def _leading_param(template: str, values: Mapping[str, Any]) -> str | None:
    """The parameter whose value supplies the first character of a filled element, or None for literal text.

    ``{name}.log`` with ``name = "-rf x"`` would start the element with a dash
    just as ``{name}`` alone would, so the same rule must apply to it.
    """
    position = 0
    while True:
        match = PLACEHOLDER.match(template, position)
        if match is None:
            return None
        if render_value(values.get(match.group(1))):
            return match.group(1)
        position = match.end()  # an empty value: the next part decides


def _refuse_leading_dash(command: Command, name: str, field: str | None = None) -> None:
    if not command.params[name].admits_leading_dash():
        raise ParamError(field or name, "must not start with '-' (it would be read as an option)")


def build_argv(command: Command, values: Mapping[str, Any]) -> list[str]:
    """The argv list to exec. Raises ``ParamError`` naming the field when a value is unsafe here."""
    if command.argv is None:
        raise ValueError(f"{command.name} is not a shell command")
    argv: list[str] = []
    options_ended = False
    for element in command.argv:
        name = _whole_placeholder(element)
        if name is None:
            filled = fill(element, values)
            leading = _leading_param(element, values)
            if leading is not None and filled.startswith("-") and not options_ended:
                _refuse_leading_dash(command, leading)
            argv.append(filled)
            if element == "--":
                options_ended = True
            continue
        spec = command.params[name]
        value = values.get(name)
        items = value if isinstance(value, list) else [value]
        if value is None:
            continue  # an optional parameter left out adds no element
        for index, item in enumerate(items):
            text = render_value(item)
            if text.startswith("-") and not options_ended:
                _refuse_leading_dash(command, name, f"{name}[{index}]" if spec.expands else name)
            argv.append(text)
    return argv


def build_env(command: Command, values: Mapping[str, Any]) -> dict[str, str]:
    return {key: fill(template, values) for key, template in command.env.items()}


def build_stdin(command: Command, values: Mapping[str, Any]) -> bytes | None:
    return None if command.stdin is None else fill(command.stdin, values).encode("utf-8")
