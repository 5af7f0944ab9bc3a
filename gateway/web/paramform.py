"""The run form, generated from a command's parameter schema, and the way its submission is read.

The form is plain HTML named after each parameter (DESIGN.md), so automation
and people post the same fields.  Reading it back follows one rule: a blank
field is "not given" (the default applies, a required field is reported as
required), a checkbox that is absent means false, a textarea is one list item
per line, a multiple choice is the name repeated once per chosen item (a
multi-select, or a list of checkboxes when it is short).  Everything else is
left to ``gateway.catalogue.params`` through ``runs.start``.

Options read from data (``gateway.choices``) are the ones offered for the values
the form shows, so a form re-rendered after a refused submission offers the
list for the values just sent; ``static/choices.js`` only refreshes a dependent
list sooner and makes long lists searchable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import url_for
from werkzeug.datastructures import FileStorage, MultiDict

from gateway.catalogue import Command, ParamSpec
from gateway.catalogue.params import RefusedUpload
from gateway.catalogue.texts import localized
from gateway.choices import Offered, Options
from gateway.platform.phrases import N_, on_page, page_number
from gateway.web.words import _

CSRF_FIELD = "csrf_token"
INPUT_TYPES = {"integer": "number", "number": "number", "date": "date", "string": "text"}
CHECKBOX_LIST_MAX = 8  # a multiple choice with at most this many options is a list of checkboxes
SEARCHABLE_FROM = 15  # a list with more options than this gets a search box (static/choices.js)


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
    multiple: bool = False
    selected: tuple[str, ...] = ()  # the chosen options' texts (a choice's value, or a multiple choice's items)
    searchable: bool = False
    choices_url: str | None = None  # where static/choices.js asks for this list when the one it depends on changes
    depends_on: str | None = None
    note: str | None = None  # why the list offers nothing yet, or that it is cut
    rule: str | None = None  # a number's bounds in words ("Between 1 and 10."), integers without ".0"
    has_default: bool = False  # a select then offers no empty "(none)": leaving it means the default

    @property
    def dom_id(self) -> str:
        return f"param-{self.name}"

    @property
    def checked(self) -> bool:
        return str(self.value).lower() in ("true", "on", "1", "yes")


def _widget(spec: ParamSpec, choices: list[str]) -> str:
    if spec.secret:
        return "password"
    if spec.type == "choice" and spec.multiple and spec.depends_on is None and len(choices) <= CHECKBOX_LIST_MAX:
        return "checkboxes"
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


def _rule(spec: ParamSpec) -> str | None:
    """A number's bounds as the form states them, in the page's language (no "1.0")."""
    low, high = page_number(_number(spec, spec.min)), page_number(_number(spec, spec.max))
    whole = spec.type == "integer"
    if low is not None and high is not None:
        if whole:
            return _("A whole number between %(low)s and %(high)s.", low=low, high=high)
        return _("A number between %(low)s and %(high)s.", low=low, high=high)
    if low is not None:
        return (
            _("A whole number of at least %(low)s.", low=low) if whole else _("A number of at least %(low)s.", low=low)
        )
    if high is not None:
        return (
            _("A whole number of at most %(high)s.", high=high)
            if whole
            else _("A number of at most %(high)s.", high=high)
        )
    return None


def _number(spec: ParamSpec, value: float | None) -> int | float | None:
    if value is None or spec.type not in ("integer", "number"):
        return None
    return int(value) if spec.type == "integer" or float(value).is_integer() else value


def _display(spec: ParamSpec, value: Any) -> Any:
    """A value as the input shows it: lists one per line, secrets and files never echoed back."""
    if spec.secret or spec.type == "file" or value is None or isinstance(value, RefusedUpload):
        return ""
    if isinstance(value, list):
        return "\n".join(str(item) for item in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _errors_for(name: str, spec: ParamSpec, errors: Mapping[str, str]) -> str | None:
    """This field's error in the page's language; an item's (name[i]) is a list's line or a multiple choice's n-th."""
    messages = []
    for key, message in errors.items():
        if key == name:
            messages.append(on_page(message))
        elif key.startswith(name + "[") and key.endswith("]"):
            index = int(key[len(name) + 1 : -1]) + 1
            if spec.multiple:
                messages.append(_("choice %(index)s: %(error)s", index=index, error=on_page(message)))
            else:
                messages.append(_("line %(index)s: %(error)s", index=index, error=on_page(message)))
    return "; ".join(messages) or None


def _value(spec: ParamSpec, values: Mapping[str, Any], name: str) -> Any:
    """The value a field shows: submitted or "run again" (a multiple choice's every item), else the default."""
    if spec.multiple and hasattr(values, "getlist") and name in values:
        return values.getlist(name)
    return values.get(name, spec.default)


def _options(command: Command, name: str, spec: ParamSpec, offered: Offered | None) -> Options | None:
    if not spec.from_data:
        return Options(tuple(spec.choices or ()))
    return offered.options.get(name) if offered is not None else None


def _list_note(command: Command, spec: ParamSpec, options: Options | None) -> str | None:
    if options is None and spec.depends_on is not None:
        other = command.params[spec.depends_on]
        return _("Choose %(name)s first.", name=(localized(other.label) or spec.depends_on.replace("_", " ")).lower())
    if options is not None and options.truncated:
        return _("Only the first %(count)s choices are offered.", count=page_number(len(options.values)))
    return None


def build_fields(
    command: Command,
    values: Mapping[str, Any] | None = None,
    errors: Mapping[str, str] | None = None,
    offered: Offered | None = None,
) -> list[Field]:
    """One Field per parameter, in catalogue order; ``values`` (submitted or "run again") override defaults.

    ``offered``: the lists from data for these values (``choices.offered``); a list it does
    not have offers nothing (yet).
    """
    values = values or {}
    errors = errors or {}
    fields = []
    for name, spec in command.params.items():
        value = _value(spec, values, name)
        options = _options(command, name, spec, offered) if spec.type == "choice" else None
        choices = [str(choice) for choice in options.values] if options is not None else []
        shown = _display(spec, value)
        selected = tuple(str(item) for item in value) if isinstance(value, list) else ((shown,) if shown else ())
        fields.append(
            Field(
                name=name,
                label=localized(spec.label) or name.replace("_", " ").capitalize(),
                widget=_widget(spec, choices),
                required=spec.required,
                help=localized(spec.help),
                value=shown,
                choices=choices,
                min=_bound(spec, spec.min),
                max=_bound(spec, spec.max),
                step="1" if spec.type == "integer" else ("any" if spec.type == "number" else None),
                pattern=spec.pattern if spec.type == "string" and not spec.secret else None,
                max_length=spec.max_length,
                error=_errors_for(name, spec, errors),
                multiple=spec.multiple,
                selected=selected,
                searchable=len(choices) > SEARCHABLE_FROM,
                choices_url=url_for("api.command_choices", name=command.name, param=name) if spec.depends_on else None,
                depends_on=spec.depends_on,
                note=_list_note(command, spec, options) if spec.type == "choice" else None,
                rule=_rule(spec),
                has_default=spec.default is not None,
            )
        )
    return fields


def unknown_errors(command: Command, errors: Mapping[str, str]) -> dict[str, str]:
    """Errors that belong to no field of the form (shown at the top), in the page's language."""
    return {key: on_page(message) for key, message in errors.items() if key.split("[", 1)[0] not in command.params}


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
            raw.add(name, RefusedUpload(N_("takes text, not an uploaded file")))
    return raw


def prefill_from(command: Command, args: MultiDict[str, str]) -> dict[str, Any]:
    """Values for "run again with these parameters" (query string of a GET form); secrets never."""
    prefill: dict[str, Any] = {}
    for name, spec in command.params.items():
        if name in args and not spec.secret and spec.type != "file":
            prefill[name] = args.getlist(name) if spec.multiple else args[name]
    return prefill


def again_values(command: Command | None, params: Any) -> list[tuple[str, str]]:
    """Hidden fields for the "run again" form: the run's params minus secrets and files (an item per field)."""
    if command is None or not isinstance(params, Mapping):
        return []
    pairs: list[tuple[str, str]] = []
    for name, spec in command.params.items():
        value = params.get(name)
        if value is None or spec.secret or spec.type == "file":
            continue
        if spec.multiple and isinstance(value, list):
            pairs.extend((name, str(_display(spec, item))) for item in value)
            continue
        pairs.append((name, str(_display(spec, value))))
    return pairs
