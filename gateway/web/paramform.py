"""The run form, generated from a command's parameter schema, and the way its submission is read.

The form is plain HTML named after each parameter (DESIGN.md), so automation
and people post the same fields.  Reading it back follows one rule: a blank
field is "not given" (the default applies, a required field is reported as
required), a checkbox that is absent means false, a textarea is one list item
per line.  Everything else is left to ``gateway.catalogue.params`` through ``runs.start``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from werkzeug.datastructures import FileStorage, MultiDict

from gateway.catalogue import Command, ParamSpec
from gateway.catalogue.params import RefusedUpload

CSRF_FIELD = "csrf_token"
INPUT_TYPES = {"integer": "number", "number": "number", "date": "date", "string": "text"}


@dataclass(frozen=True)
class Field:
    """What a template needs to render one parameter's input."""

    name: str
    label: str
    widget: str  # text | number | date | password | select | checkbox | textarea | file
    required: bool
    help: str
    value: Any
    choices: list[str]
    min: str | None
    max: str | None
    step: str | None
    pattern: str | None
    max_length: int | None
    error: str | None

    @property
    def dom_id(self) -> str:
        return f"param-{self.name}"

    @property
    def checked(self) -> bool:
        return str(self.value).lower() in ("true", "on", "1", "yes")


def _widget(spec: ParamSpec) -> str:
    if spec.secret:
        return "password"
    if spec.type == "choice":
        return "select"
    if spec.type == "boolean":
        return "checkbox"
    if spec.type == "list":
        return "textarea"
    if spec.type == "file":
        return "file"
    return INPUT_TYPES.get(spec.type, "text")


def _bound(spec: ParamSpec, value: float | None) -> str | None:
    if value is None or spec.type not in ("integer", "number"):
        return None
    return str(int(value)) if spec.type == "integer" or float(value).is_integer() else repr(value)


def _display(spec: ParamSpec, value: Any) -> Any:
    """A value as the input shows it: lists one per line, secrets and files never echoed back."""
    if spec.secret or spec.type == "file" or value is None or isinstance(value, RefusedUpload):
        return ""
    if isinstance(value, list):
        return "\n".join(str(item) for item in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _errors_for(name: str, errors: Mapping[str, str]) -> str | None:
    """This field's error; list items are reported as name[i]."""
    messages = []
    for key, message in errors.items():
        if key == name:
            messages.append(message)
        elif key.startswith(name + "[") and key.endswith("]"):
            messages.append(f"line {int(key[len(name) + 1 : -1]) + 1}: {message}")
    return "; ".join(messages) or None


def build_fields(
    command: Command, values: Mapping[str, Any] | None = None, errors: Mapping[str, str] | None = None
) -> list[Field]:
    """One Field per parameter, in catalogue order; ``values`` (submitted or "run again") override defaults."""
    values = values or {}
    errors = errors or {}
    fields = []
    for name, spec in command.params.items():
        value = values.get(name, spec.default)
        fields.append(
            Field(
                name=name,
                label=spec.label or name.replace("_", " ").capitalize(),
                widget=_widget(spec),
                required=spec.required,
                help=spec.help,
                value=_display(spec, value),
                choices=[str(choice) for choice in spec.choices or []],
                min=_bound(spec, spec.min),
                max=_bound(spec, spec.max),
                step="1" if spec.type == "integer" else ("any" if spec.type == "number" else None),
                pattern=spec.pattern if spec.type == "string" and not spec.secret else None,
                max_length=spec.max_length,
                error=_errors_for(name, errors),
            )
        )
    return fields


def unknown_errors(command: Command, errors: Mapping[str, str]) -> dict[str, str]:
    """Errors that belong to no field of the form (shown at the top)."""
    return {key: message for key, message in errors.items() if key.split("[", 1)[0] not in command.params}


def read_submission(
    command: Command, form: MultiDict[str, str], files: MultiDict[str, FileStorage] | None = None
) -> MultiDict[str, Any]:
    """The submitted params as ``runs.start(source="form")`` expects them (stored files are added separately).

    Everything the form sent goes on to validation, as the JSON API's params do:
    a name that is no parameter, a name sent twice, a checkbox's value and a
    file part under a name that is no file parameter are refused there by name,
    never dropped here.
    """
    raw: MultiDict[str, Any] = MultiDict()
    for name in form:
        if name == CSRF_FIELD:
            continue
        spec = command.params.get(name)
        for value in form.getlist(name):
            if spec is not None and value.strip() == "":
                continue  # a blank field is "not given"
            raw.add(name, value)
    for name, spec in command.params.items():
        if spec.type == "boolean" and name not in raw:
            raw[name] = "false"  # an unticked checkbox sends nothing
    for name, upload in (files or MultiDict()).items(multi=True):
        spec = command.params.get(name)
        if upload.filename and (spec is None or spec.type != "file"):
            raw.add(name, RefusedUpload("takes text, not an uploaded file"))
    return raw


def prefill_from(command: Command, args: Mapping[str, str]) -> dict[str, Any]:
    """Values for "run again with these parameters" (query string of a GET form); secrets never."""
    return {
        name: args[name]
        for name, spec in command.params.items()
        if name in args and not spec.secret and spec.type != "file"
    }


def again_values(command: Command | None, params: Any) -> list[tuple[str, str]]:
    """Hidden fields for the "run again" form: the run's params minus secrets and files."""
    if command is None or not isinstance(params, Mapping):
        return []
    pairs = []
    for name, spec in command.params.items():
        value = params.get(name)
        if value is None or spec.secret or spec.type == "file":
            continue
        pairs.append((name, str(_display(spec, value))))
    return pairs
