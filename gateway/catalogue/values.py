"""A command's values: what a caller sent, validated against every declared parameter, masked, and keyed.

Every value a caller sends passes through ``collect_errors`` (or ``validate_params``);
an undeclared parameter is an error naming it, never silently ignored.  A command is
anything that ``Declares`` its parameters (``gateway.catalogue.model.Command`` does;
``gateway.choices`` declares the part of one a list depends on).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any, Protocol

from gateway.catalogue.params import (
    MASK,
    VALIDATORS,
    FileValue,
    ParamError,
    ParamSpec,
    RefusedUpload,
    Source,
    reject_unknown_type,
)
from gateway.platform.phrases import N_


class Declares(Protocol):
    """What validation needs of a command: its name and its declared parameters (``model.Command``)."""

    @property
    def name(self) -> str: ...

    @property
    def params(self) -> Mapping[str, ParamSpec]: ...

    def secret_params(self) -> frozenset[str]: ...


def validate_params(command: Declares, raw: Any, source: Source = "json") -> dict[str, Any]:
    """Validated values for every declared parameter (defaults filled); raises on the first bad field.

    Use ``collect_errors`` when every bad field should be reported at once.
    """
    values, errors = collect_errors(command, raw, source)
    if errors:
        field, message = next(iter(errors.items()))
        raise ParamError(field, message)
    return values


def collect_errors(command: Declares, raw: Any, source: Source = "json") -> tuple[dict[str, Any], dict[str, str]]:
    """(values, errors by field). Nothing unknown passes: undeclared names are errors."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        return {}, {"params": N_("must be an object")}
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    for name, spec in command.params.items():
        present = name in raw and not (source == "form" and raw[name] == "" and spec.type != "string")
        if not present or raw[name] is None:
            if spec.required:
                errors[name] = N_("is required")
            elif spec.default is not None:
                values[name] = spec.default
            else:
                values[name] = [] if spec.multiple else None  # nothing chosen: an empty list, never None
            continue
        if isinstance(raw[name], RefusedUpload):
            errors[name] = raw[name].reason
            continue
        validator = VALIDATORS.get(spec.type, reject_unknown_type)
        try:
            values[name] = validator(name, spec, raw[name], source)
        except ParamError as exc:
            errors[exc.field] = exc.message
    # Declared params' errors first: a record that keeps only the first names keeps those.
    for name in raw:
        if name not in command.params:
            errors[str(name)] = N_("is not a parameter of this command")
    return values, errors


def masked(command: Declares, values: Mapping[str, Any]) -> dict[str, Any]:
    """The values as they may be shown or recorded: secrets masked, files described."""
    shown: dict[str, Any] = {}
    secrets = command.secret_params()
    for name, value in values.items():
        if name in secrets and value is not None:
            shown[name] = MASK
        elif isinstance(value, FileValue):
            shown[name] = value.audit_view()
        else:
            shown[name] = value
    return shown


def canonical_key(command: Declares, values: Mapping[str, Any], secret: str) -> str:
    """A stable key of command + values, for result caching and joining runs in flight.

    An HMAC keyed by the server's ``SECRET_KEY`` (``secret``), not a bare hash: ``runs.cache_key``
    is stored, and a plain digest of the params could be tested offline against guesses.
    """
    body = json.dumps({"command": command.name, "params": values}, sort_keys=True, default=str)
    return hmac.new(secret.encode("utf-8"), b"run-cache-key\0" + body.encode("utf-8"), hashlib.sha256).hexdigest()
