"""Parameters: their declaration (``ParamSpec``) and one default-deny table from type to validator.

Every value a caller sends passes through one of these validators (by way of
``gateway.catalogue.values``); a wrong JSON type or a value outside its spec is
an error naming the field, never silently ignored or coerced.  JSON callers must
send real JSON types; browser forms send strings, which ``source="form"`` parses.
A choice whose options are read from data (``choices_from``) is checked here for
its shape only; ``gateway.choices`` checks it against its list.

``ParamSpec`` lives here, with its validators, because a declared default must
pass its own validator when the catalogue loads.  This module imports nothing of
the catalogue, so the model imports it and not the other way round.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.catalogue.texts import LocalText, Text
from gateway.platform.phrases import N_, N_counted, Phrase

Source = Literal["json", "form"]
ParamType = Literal["string", "integer", "number", "boolean", "choice", "date", "list", "file"]
DEFAULT_MAX_LENGTH = 4096
DEFAULT_MAX_ITEMS = 100
# An integer is at most 64 bits whatever the source: what a database column or a C program takes.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MASK = "***"
# Every character str.splitlines() breaks on (so a log line or a form's list cannot be split by a value) ...
_LINE_BREAK = re.compile(r"[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
# ... and the other C0 and C1 controls (terminal escapes: ESC, and CSI as U+009B); TAB is allowed.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1b\x1f\x7f-\x9f]")
# JSON's "\ud800" decodes to a lone surrogate: not text, and not encodable into argv, env or a log.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# After optional anchors and group openers: a literal dash, or a class of only sign characters.
_EXPLICIT_DASH = re.compile(r"(?:\^|\\A)?(?:\((?:\?:)?)*(?:-|\\-|\[(?:\\?[-+]){1,2}\])")


class ParamError(ValueError):
    """A bad value, naming its field; ``message`` is English (a ``Phrase`` that a page can show translated)."""

    def __init__(self, field: str, message: str | Phrase):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class FileValue:
    """An uploaded file: where it was stored for this run, and what the audit records of it."""

    path: str
    original_name: str
    size: int
    sha256: str

    def audit_view(self) -> dict[str, Any]:
        return {"file": self.original_name, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class RefusedUpload:
    """An upload a surface could not use (under a name that is no file parameter, or not referenced).

    Handed to validation in the upload's place, so it is refused by name and
    audited like any other bad value, whichever surface received it.
    """

    reason: str


class ChoicesFrom(BaseModel):
    """Where a ``choice`` parameter's options come from: one column of a query command's result.

    Which commands may be a source, and what they must declare, is decided when the
    catalogue loads (``gateway.catalogue.sources``); the list itself is read at run
    time (``gateway.choices``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
    column: Annotated[str, Field(min_length=1, max_length=128)]


class ParamSpec(BaseModel):
    """One declared parameter: its type and the bounds a value must keep (validated by ``VALIDATORS``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    type: ParamType = "string"
    required: bool = False
    default: Any = None
    pattern: str | None = None
    min: float | None = None
    max: float | None = None
    choices: list[str | int | float] | None = None
    max_length: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    max_items: Annotated[int, Field(ge=1, le=10_000)] | None = None
    help: Text = LocalText("")  # label and help may carry translations (gateway.catalogue.texts)
    secret: bool = False
    label: Text | None = None
    # Parameters from data (DESIGN.md): options read from a query, several of them, or depending on another field.
    choices_from: ChoicesFrom | None = None
    multiple: bool = False
    min_items: Annotated[int, Field(ge=0, le=10_000)] | None = None
    depends_on: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")] | None = None

    @model_validator(mode="before")
    @classmethod
    def _yaml_dates(cls, data: Any) -> Any:
        """YAML reads an unquoted 2024-01-31 as a date object; a date parameter's values are ISO strings."""
        if isinstance(data, dict) and data.get("type") == "date" and isinstance(data.get("default"), dt.date):
            return {**data, "default": data["default"].isoformat()}
        return data

    @field_validator("choices", mode="before")
    @classmethod
    def _no_boolean_choices(cls, value: Any) -> Any:
        """YAML reads yes/no/on/off as booleans, which would silently become the choices 1 and 0."""
        if isinstance(value, list) and any(isinstance(item, bool) for item in value):
            raise ValueError("choices must be strings or numbers (quote yes/no/on/off/true/false)")
        return value

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression ({exc})") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ParamSpec:
        if self.type == "choice" and not self.choices and self.choices_from is None:
            raise ValueError("a choice parameter needs 'choices' or 'choices_from'")
        if self.choices is not None and self.choices_from is not None:
            raise ValueError("'choices' and 'choices_from' exclude each other")
        for key in ("choices", "choices_from", "multiple"):
            if self.type != "choice" and getattr(self, key) not in (None, False):
                raise ValueError(f"'{key}' only goes with type choice")
        if self.min_items is not None and not self.multiple:
            raise ValueError("'min_items' only goes with 'multiple: true'")
        if self.min_items is not None and self.min_items > (self.max_items or DEFAULT_MAX_ITEMS):
            raise ValueError("'min_items' is greater than 'max_items'")
        if self.depends_on is not None and self.choices_from is None:
            raise ValueError("'depends_on' only goes with 'choices_from' (the list it changes)")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("'min' is greater than 'max'")
        if self.required and self.default is not None:
            raise ValueError("a required parameter cannot have a default")
        if self.default is not None:
            self._check_default()
        return self

    def _check_default(self) -> None:
        """A default goes to the command unvalidated at run time, so it must pass its own spec here."""
        validator = VALIDATORS.get(self.type)
        if validator is None:
            return
        try:
            validator("default", self, self.default, "json")
        except ParamError as exc:
            raise ValueError(f"'{exc.field}' {exc.message}") from None  # 'default', or an item's: 'default[1]'

    @property
    def expands(self) -> bool:
        """Whether the value is a list of items (``list``, or ``choice`` with ``multiple``): an argv element each."""
        return self.type == "list" or self.multiple

    @property
    def from_data(self) -> bool:
        """Whether the options are read from a query at run time (checked by ``gateway.choices``, not here)."""
        return self.choices_from is not None

    def admits_leading_dash(self) -> bool:
        """Whether the pattern *explicitly* lets a value start with '-' (e.g. ``-?[0-9]+``, ``[-+]?\\d+``).

        The pattern must begin with a dash or a sign class, not merely accept
        one somewhere: a file-name pattern such as ``[A-Za-z0-9._-]+`` also
        matches ``-rf`` but was not written to admit options.
        """
        if self.pattern is None or not _EXPLICIT_DASH.match(self.pattern):
            return False
        return bool(re.fullmatch(self.pattern, "-1") or re.fullmatch(self.pattern, "-a"))


def _check_text(name: str, spec: ParamSpec, value: str) -> str:
    limit = spec.max_length or DEFAULT_MAX_LENGTH
    if len(value) > limit:
        raise ParamError(name, N_("longer than %(limit)s characters", limit=limit))
    if _SURROGATE.search(value):
        raise ParamError(name, N_("is not valid Unicode text"))
    if "\x00" in value:  # no pattern can admit a NUL: no argv, environment or database text can carry it
        raise ParamError(name, N_("must not contain NUL bytes or line breaks"))
    if spec.pattern is not None:
        if not re.fullmatch(spec.pattern, value):
            raise ParamError(name, N_("does not match the required pattern"))
        return value  # an explicit pattern decides which characters are allowed
    if _LINE_BREAK.search(value):
        raise ParamError(name, N_("must not contain NUL bytes or line breaks"))
    if _CONTROL.search(value):
        raise ParamError(name, N_("must not contain control characters"))
    return value


def _string(name: str, spec: ParamSpec, value: Any, source: Source) -> str:
    if not isinstance(value, str):
        raise ParamError(name, N_("must be a string"))
    return _check_text(name, spec, value)


def _bounded(name: str, spec: ParamSpec, number: float) -> None:
    if spec.min is not None and number < spec.min:
        raise ParamError(name, N_("must be at least %(min)s", min=spec.min))
    if spec.max is not None and number > spec.max:
        raise ParamError(name, N_("must be at most %(max)s", max=spec.max))


def _form_text(value: str) -> str:
    """A form's number or yes/no without surrounding spaces: only spaces and tabs, never a line break or NUL."""
    return value.strip(" \t")


def _form_integer(text: str) -> int | None:
    """The integer a form's text spells in plain ASCII digits (as JSON would), or None."""
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        return None
    try:
        return int(text)
    except ValueError:  # more digits than int() reads: far past any bound below
        return None


def _integer(name: str, spec: ParamSpec, value: Any, source: Source) -> int:
    if source == "form" and isinstance(value, str):
        value = _form_integer(_form_text(value))
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParamError(name, N_("must be a whole number"))
    if not INT64_MIN <= value <= INT64_MAX:
        raise ParamError(name, N_("must be between %(min)s and %(max)s", min=INT64_MIN, max=INT64_MAX))
    _bounded(name, spec, value)
    return value


def _number(name: str, spec: ParamSpec, value: Any, source: Source) -> int | float:
    if source == "form" and isinstance(value, str):
        # Only plain decimal notation (float() would also take "1_000", "nan" or "infinity");
        # digits alone stay an integer, as JSON's do, so both render and cache the same.
        text = _form_text(value)
        whole = _form_integer(text)
        if whole is not None:
            value = whole
        elif re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,3})?", text):
            value = float(text)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParamError(name, N_("must be a number"))
    # A float past the double range is inf; an integer past it has no double at all (isfinite would raise).
    beyond = not math.isfinite(value) if isinstance(value, float) else abs(value) > sys.float_info.max
    if beyond:
        raise ParamError(name, N_("must be a finite number"))
    _bounded(name, spec, value)
    return value


def _boolean(name: str, spec: ParamSpec, value: Any, source: Source) -> bool:
    if source == "form" and isinstance(value, str):
        lowered = _form_text(value).lower()
        if lowered in ("true", "on", "1", "yes"):
            return True
        if lowered in ("false", "off", "0", "no", ""):
            return False
    if not isinstance(value, bool):
        raise ParamError(name, N_("must be true or false"))
    return value


def match_choice(value: Any, choices: list[str | int | float], source: Source) -> str | int | float | None:
    """The option ``value`` names, or None: a form's text names an option by its text, JSON by value and type."""
    if source == "form" and isinstance(value, str):
        for choice in choices:
            if str(choice) == value:
                return choice
    if isinstance(value, bool) or value not in choices or type(value) not in {type(c) for c in choices}:
        return None
    chosen: str | int | float = value
    return chosen


def _one_choice(name: str, spec: ParamSpec, value: Any, source: Source) -> str | int | float:
    if spec.choices is None:
        # Options from data: only the value's shape here; gateway.choices checks it against the list.
        if isinstance(value, str):
            return _check_text(name, spec, value)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ParamError(name, N_("must be one of the offered choices"))
        return value
    chosen = match_choice(value, spec.choices, source)
    if chosen is None:
        raise ParamError(name, N_("must be one of %(choices)s", choices=", ".join(str(c) for c in spec.choices)))
    return chosen


def _choice(name: str, spec: ParamSpec, value: Any, source: Source) -> Any:
    if not spec.multiple:
        return _one_choice(name, spec, value, source)
    if source == "form" and isinstance(value, str):
        value = [value]  # one ticked box or one selected option
    if not isinstance(value, list):
        raise ParamError(name, N_("must be a list of choices"))
    low, high = spec.min_items or 0, spec.max_items or DEFAULT_MAX_ITEMS
    if len(value) > high:
        raise ParamError(name, N_("has more than %(limit)s items", limit=high))
    if spec.required and not value:
        raise ParamError(name, N_("is required"))
    if len(value) < low:
        raise ParamError(name, N_counted("needs at least %(num)s item", "needs at least %(num)s items", low))
    items: list[Any] = []
    for index, item in enumerate(value):
        chosen = _one_choice(f"{name}[{index}]", spec, item, source)
        if chosen in items:
            raise ParamError(f"{name}[{index}]", N_("is chosen twice"))
        items.append(chosen)
    return items


def _date(name: str, spec: ParamSpec, value: Any, source: Source) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise ParamError(name, N_("must be a date like %(example)s", example="2024-01-31"))
    try:
        parsed = dt.date.fromisoformat(value)
    except ValueError:
        raise ParamError(name, N_("is not a real date")) from None
    if spec.min is not None or spec.max is not None:
        _bounded(name, spec, parsed.toordinal())  # min/max for dates are ordinals; rarely used
    return parsed.isoformat()


def _list(name: str, spec: ParamSpec, value: Any, source: Source) -> list[str]:
    if source == "form" and isinstance(value, str):
        value = [line for line in value.splitlines() if line.strip()]
    if not isinstance(value, list):
        raise ParamError(name, N_("must be a list of strings"))
    limit = spec.max_items or DEFAULT_MAX_ITEMS
    if len(value) > limit:
        raise ParamError(name, N_("has more than %(limit)s items", limit=limit))
    items = []
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise ParamError(f"{name}[{index}]", N_("must be a string"))
        items.append(_check_text(f"{name}[{index}]", spec, item))
    return items


def _file(name: str, spec: ParamSpec, value: Any, source: Source) -> FileValue:
    if not isinstance(value, FileValue):
        raise ParamError(name, N_("must be an uploaded file"))
    return value


VALIDATORS: dict[str, Callable[[str, ParamSpec, Any, Source], Any]] = {
    "string": _string,
    "integer": _integer,
    "number": _number,
    "boolean": _boolean,
    "choice": _choice,
    "date": _date,
    "list": _list,
    "file": _file,
}


def reject_unknown_type(name: str, spec: ParamSpec, value: Any, source: Source) -> Any:
    """The validator of a type the table does not know: default-deny."""
    raise ParamError(name, N_("type %(type)s is not supported", type=repr(spec.type)))
