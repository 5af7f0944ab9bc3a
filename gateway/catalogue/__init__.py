"""The command catalogue: reviewed YAML config, validated strictly before anything can run.

Unknown keys, duplicate names, a placeholder without a parameter, a secret
parameter in ``argv``, ``cache_seconds`` on a command with a secret parameter, a
query without a data source: loading fails with a
message naming the command and the field.  A data source whose URL variable is
unset is not an error; its commands are marked unavailable instead.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from config import ConfigError, Network, parse_networks

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
BIND_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")
# After optional anchors and group openers: a literal dash, or a class of only sign characters.
_EXPLICIT_DASH = re.compile(r"(?:\^|\\A)?(?:\((?:\?:)?)*(?:-|\\-|\[(?:\\?[-+]){1,2}\])")
ParamType = Literal["string", "integer", "number", "boolean", "choice", "date", "list", "file"]


class CatalogueError(ValueError):
    """The catalogue cannot be used; the message names the command and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class ParamSpec(_Strict):
    type: ParamType = "string"
    required: bool = False
    default: Any = None
    pattern: str | None = None
    min: float | None = None
    max: float | None = None
    choices: list[str | int | float] | None = None
    max_length: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    max_items: Annotated[int, Field(ge=1, le=10_000)] | None = None
    help: str = ""
    secret: bool = False
    label: str | None = None

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
        if self.type == "choice" and not self.choices:
            raise ValueError("a choice parameter needs 'choices'")
        if self.type != "choice" and self.choices is not None:
            raise ValueError("'choices' only goes with type choice")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("'min' is greater than 'max'")
        if self.required and self.default is not None:
            raise ValueError("a required parameter cannot have a default")
        if self.default is not None:
            self._check_default()
        return self

    def _check_default(self) -> None:
        """A default goes to the command unvalidated at run time, so it must pass its own spec here."""
        from gateway.catalogue.params import VALIDATORS, ParamError  # params imports this module

        validator = VALIDATORS.get(self.type)
        if validator is None:
            return
        try:
            validator("default", self, self.default, "json")
        except ParamError as exc:
            raise ValueError(f"'default' {exc.message}") from None

    def admits_leading_dash(self) -> bool:
        """Whether the pattern *explicitly* lets a value start with '-' (e.g. ``-?[0-9]+``, ``[-+]?\\d+``).

        The pattern must begin with a dash or a sign class, not merely accept
        one somewhere: a file-name pattern such as ``[A-Za-z0-9._-]+`` also
        matches ``-rf`` but was not written to admit options.
        """
        if self.pattern is None or not _EXPLICIT_DASH.match(self.pattern):
            return False
        return bool(re.fullmatch(self.pattern, "-1") or re.fullmatch(self.pattern, "-a"))


class Datasource(_Strict):
    url_env: Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")]
    row_limit: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    statement_timeout: Annotated[float, Field(gt=0, le=3600)] = 10


class Command(_Strict):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    title: str
    description: str = ""
    category: str = "General"
    kind: Literal["shell", "query"]
    params: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")], ParamSpec] = Field(
        default_factory=dict
    )
    timeout: Annotated[float, Field(gt=0, le=86_400)] = 60
    max_output_bytes: Annotated[int, Field(ge=1024)] | None = None
    concurrency: Annotated[int, Field(ge=1, le=1000)] | None = None
    rate_limit: str | None = None
    allowed_networks: list[str] | None = None
    cache_seconds: Annotated[float, Field(ge=0, le=86_400)] = 0
    dashboard: bool = False
    # shell
    argv: list[str] | None = None
    env: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], str] = Field(default_factory=dict)
    cwd: str | None = None
    stdin: str | None = None
    # query
    datasource: str | None = None
    sql: str | None = None

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit(cls, value: str | None) -> str | None:
        if value is not None:
            from limits import parse_many

            try:
                parse_many(value)
            except ValueError:
                raise ValueError(f"not a rate limit like '5/minute': {value!r}") from None
        return value

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            try:
                parse_networks("allowed_networks", ",".join(value))
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _shape(self) -> Command:
        if self.kind == "shell":
            self._check_shell()
        else:
            self._check_query()
        if self.dashboard and any(spec.required for spec in self.params.values()):
            raise ValueError("a dashboard report cannot have required parameters")
        secret = next((name for name, spec in self.params.items() if spec.secret), None)
        if self.cache_seconds and secret is not None:
            # A shared result keyed by the params would answer anyone sending the same secret: an oracle.
            raise ValueError(
                f"cache_seconds: not allowed with secret parameter {secret!r} "
                "(a cached result would answer whoever sends the same secret)"
            )
        return self

    def _check_shell(self) -> None:
        if not self.argv:
            raise ValueError("a shell command needs a non-empty 'argv'")
        if self.datasource is not None or self.sql is not None:
            raise ValueError("'datasource' and 'sql' belong to query commands")
        if PLACEHOLDER.search(self.argv[0]):
            raise ValueError("argv[0] (the program) cannot contain a placeholder")
        for index, element in enumerate(self.argv):
            for name in PLACEHOLDER.findall(element):
                spec = self.params.get(name)
                if spec is None:
                    raise ValueError(f"argv[{index}] uses {{{name}}} but there is no parameter {name!r}")
                if spec.secret:
                    raise ValueError(
                        f"argv[{index}]: secret parameter {name!r} cannot appear in argv (use env or stdin)"
                    )
                if spec.type == "list" and element != "{" + name + "}":
                    raise ValueError(f"argv[{index}]: list parameter {name!r} must stand alone as an element")
        for where, text in [*((f"env.{k}", v) for k, v in self.env.items()), ("stdin", self.stdin or "")]:
            for name in PLACEHOLDER.findall(text):
                spec = self.params.get(name)
                if spec is None:
                    raise ValueError(f"{where} uses {{{name}}} but there is no parameter {name!r}")
                if spec.type == "list":
                    raise ValueError(f"{where}: list parameter {name!r} can only be used in argv")

    def _check_query(self) -> None:
        if not self.datasource:
            raise ValueError("a query command needs a 'datasource'")
        if not self.sql:
            raise ValueError("a query command needs 'sql'")
        if self.argv is not None or self.env or self.cwd is not None or self.stdin is not None:
            raise ValueError("'argv', 'env', 'cwd' and 'stdin' belong to shell commands")
        binds = set(BIND_PARAM.findall(self.sql))
        unknown = binds - set(self.params)
        if unknown:
            raise ValueError(f"sql uses :{sorted(unknown)[0]} but there is no such parameter")
        for name, spec in self.params.items():
            if spec.type in ("list", "file"):
                raise ValueError(f"params.{name}: type {spec.type} is not supported in queries")

    # The model is frozen, so what is derived from it is computed once per loaded definition
    # (a reload builds new objects): these are read on every run's path.
    @cached_property
    def definition_digest(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    @cached_property
    def secret_names(self) -> frozenset[str]:
        return frozenset(name for name, spec in self.params.items() if spec.secret)

    @cached_property
    def network_list(self) -> tuple[Network, ...] | None:
        if self.allowed_networks is None:
            return None
        return parse_networks("allowed_networks", ",".join(self.allowed_networks))

    def definition_sha256(self) -> str:
        """Digest of the definition that ran, recorded in run.started / run.finished."""
        return self.definition_digest

    def secret_params(self) -> frozenset[str]:
        return self.secret_names

    def networks(self) -> tuple[Network, ...] | None:
        return self.network_list


class _CatalogueFile(_Strict):
    datasources: dict[Annotated[str, Field(pattern=NAME_PATTERN)], Datasource] = Field(default_factory=dict)
    commands: list[Command] = Field(default_factory=list)


@dataclass(frozen=True)
class Catalogue:
    """A validated catalogue, with which data sources can be reached in this process."""

    commands: Mapping[str, Command]
    datasources: Mapping[str, Datasource]
    datasource_urls: Mapping[str, str] = field(repr=False)
    source: str = ""
    sha256: str = ""

    def get(self, name: str) -> Command | None:
        return self.commands.get(name)

    def unavailable_reason(self, command: Command) -> str | None:
        """Why a command cannot run in this process (its data source's URL is not set), or None."""
        if command.kind == "query" and command.datasource not in self.datasource_urls:
            source = self.datasources[command.datasource or ""]
            return f"data source {command.datasource!r} is not configured ({source.url_env} is not set)"
        return None

    def unavailable(self) -> list[str]:
        return [name for name, command in self.commands.items() if self.unavailable_reason(command)]


def _location(errors: list[Any], raw: Mapping[str, Any]) -> str:
    error = errors[0]
    loc = list(error["loc"])
    where = ""
    if loc[:1] == ["commands"] and len(loc) > 1 and isinstance(loc[1], int):
        index = loc[1]
        commands = raw.get("commands") or []
        name = commands[index].get("name") if index < len(commands) and isinstance(commands[index], dict) else None
        where = f"command {name!r}" if name else f"commands[{index}]"
        loc = loc[2:]
    elif loc:
        where = str(loc[0])
        loc = loc[1:]
    # pydantic appends the failing type's tag (e.g. 'float') to union locations; drop noise.
    path = ".".join(str(part) for part in loc if not str(part).startswith("function-"))
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}{(' field ' + path) if path else ''}: {message}"


def datasource_url(url_env: str, environ: Mapping[str, str]) -> str | None:
    """The URL from ``url_env``, or from the file named by ``<url_env>_FILE`` (Kubernetes secret mounts)."""
    direct = environ.get(url_env, "").strip()
    if direct:
        return direct
    file_name = environ.get(f"{url_env}_FILE", "").strip()
    if not file_name:
        return None
    try:
        return Path(file_name).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None  # unreadable: the data source's commands are unavailable, like an unset variable


def parse_catalogue(text: str, environ: Mapping[str, str] | None = None, source: str = "<string>") -> Catalogue:
    environ = os.environ if environ is None else environ
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{source}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise CatalogueError(f"{source}: expected a mapping with 'datasources' and 'commands'")
    try:
        parsed = _CatalogueFile.model_validate(raw)
    except ValidationError as exc:
        raise CatalogueError(f"{source}: {_location(exc.errors(), raw)}") from None

    commands: dict[str, Command] = {}
    for command in parsed.commands:
        if command.name in commands:
            raise CatalogueError(f"{source}: command {command.name!r} field name: defined twice")
        if command.kind == "query" and command.datasource not in parsed.datasources:
            raise CatalogueError(
                f"{source}: command {command.name!r} field datasource: unknown data source {command.datasource!r}"
            )
        commands[command.name] = command
    urls = {}
    for name, datasource in parsed.datasources.items():
        url = datasource_url(datasource.url_env, environ)
        if url:
            urls[name] = url
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Catalogue(
        commands=commands, datasources=dict(parsed.datasources), datasource_urls=urls, source=source, sha256=digest
    )


def load_catalogue(path: str | Path, environ: Mapping[str, str] | None = None) -> Catalogue:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogueError(f"{path}: cannot read the catalogue ({exc.strerror})") from None
    return parse_catalogue(text, environ, source=str(path))
