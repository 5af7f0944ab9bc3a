"""The catalogue's model: commands, data sources and the loaded catalogue, each valid by construction.

Unknown keys, a placeholder without a parameter, a secret parameter in ``argv``,
``cache_seconds`` on a command with a secret parameter or an ``approval``, a query
without a data source: the models refuse them, with a message naming the field.  A parameter's
own declaration and checks are ``gateway.catalogue.params`` (imported here, never
the reverse); reading the YAML file is ``gateway.catalogue.loader``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from config import ConfigError, Network, parse_networks
from gateway.catalogue.approval import Approval
from gateway.catalogue.notification import Notification, NotifyList, check_names
from gateway.catalogue.params import ParamSpec
from gateway.catalogue.schedule import Schedule
from gateway.catalogue.texts import LocalText, Text
from gateway.platform.phrases import N_

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
BIND_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")
IN_BIND = re.compile(r"\bIN\s+:([A-Za-z_][A-Za-z0-9_]*)", re.IGNORECASE)


class CatalogueError(ValueError):
    """The catalogue cannot be used; the message names the command and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class Datasource(_Strict):
    url_env: Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")]
    row_limit: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    statement_timeout: Annotated[float, Field(gt=0, le=3600)] = 10


class Command(_Strict):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    # Texts a page shows may carry translations (``gateway.catalogue.texts``); elsewhere they are the English.
    title: Text
    description: Text = LocalText("")
    category: Text = LocalText("General")
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
    approval: Approval | None = None  # a second person must agree before a run starts (DESIGN.md, Approvals)
    notify: NotifyList = Field(default_factory=list)  # names from notifications:, told of every run's end
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

    @field_validator("notify")
    @classmethod
    def _notify(cls, value: list[str]) -> list[str]:
        return check_names(value)

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
        if self.approval is not None:
            self._check_approval()
        return self

    def _check_approval(self) -> None:
        if self.cache_seconds:
            # A shared result would hand the output to someone nobody approved, or skip the approval.
            raise ValueError("cache_seconds: not allowed with approval (a run that needs approval is never shared)")
        upload = next((name for name, spec in self.params.items() if spec.type == "file"), None)
        if upload is not None:
            raise ValueError(
                f"approval: not allowed with file parameter {upload!r} (an upload is not kept while a request waits)"
            )

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
                if spec.expands and element != "{" + name + "}":
                    raise ValueError(f"argv[{index}]: list parameter {name!r} must stand alone as an element")
        for where, text in [*((f"env.{k}", v) for k, v in self.env.items()), ("stdin", self.stdin or "")]:
            for name in PLACEHOLDER.findall(text):
                spec = self.params.get(name)
                if spec is None:
                    raise ValueError(f"{where} uses {{{name}}} but there is no parameter {name!r}")
                if spec.expands:
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
        bound, listed = BIND_PARAM.findall(self.sql), IN_BIND.findall(self.sql)
        for name in sorted(binds):
            # Each item of a multiple choice is bound on its own (an expanding bind): only `IN :name` takes them.
            spec = self.params[name]
            if spec.multiple and bound.count(name) != listed.count(name):
                raise ValueError(f"sql: multiple parameter {name!r} can only be used as 'IN :{name}'")
            if spec.multiple and not (spec.required or spec.min_items):
                # SQL has no empty IN list (engines disagree on what stands in for one): one item at least.
                needs = "needs 'required: true' or 'min_items'"
                raise ValueError(f"params.{name}: a multiple parameter of a query {needs}")
            if not spec.multiple and name in listed:
                raise ValueError(f"sql: 'IN :{name}' needs a parameter with 'multiple: true'")

    # The model is frozen, so what is derived from it is computed once per loaded definition
    # (a reload builds new objects): these are read on every run's path.
    @cached_property
    def definition_digest(self) -> str:
        # Who is told of its outcome (``notify``) is not what runs: leaving it out keeps the digest of
        # every definition as it was before notifications existed, and a new receiver changes no digest.
        shape = self.model_dump(mode="json", exclude={"notify"})
        canonical = json.dumps(shape, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    @cached_property
    def secret_names(self) -> frozenset[str]:
        return frozenset(name for name, spec in self.params.items() if spec.secret)

    @cached_property
    def lists_from_data(self) -> tuple[str, ...]:
        """The parameters whose options come from a query, each after the one it depends on."""
        ordered: list[str] = []

        def place(name: str) -> None:
            parent = self.params[name].depends_on
            if parent is not None and parent not in ordered and self.params[parent].from_data:
                place(parent)
            if name not in ordered:
                ordered.append(name)

        for name, spec in self.params.items():
            if spec.from_data:
                place(name)
        return tuple(ordered)

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


class CatalogueFile(_Strict):
    """The YAML file's shape: data sources by name, the commands, their schedules, where outcomes are sent."""

    datasources: dict[Annotated[str, Field(pattern=NAME_PATTERN)], Datasource] = Field(default_factory=dict)
    commands: list[Command] = Field(default_factory=list)
    schedules: list[Schedule] = Field(default_factory=list)
    notifications: list[Notification] = Field(default_factory=list)


@dataclass(frozen=True)
class Target:
    """Where a notification goes in this process: its URL and signing secret, read from the variables it names."""

    url: str | None = field(default=None, repr=False)
    secret: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Catalogue:
    """A validated catalogue, with which data sources can be reached in this process."""

    commands: Mapping[str, Command]
    datasources: Mapping[str, Datasource]
    datasource_urls: Mapping[str, str] = field(repr=False)
    # Data sources whose URL is set but cannot be used (name -> why, never the URL): their commands are unavailable.
    datasource_problems: Mapping[str, str] = field(default_factory=dict)
    source: str = ""
    sha256: str = ""
    schedules: Mapping[str, Schedule] = field(default_factory=dict)
    notifications: Mapping[str, Notification] = field(default_factory=dict)
    notification_targets: Mapping[str, Target] = field(default_factory=dict, repr=False)
    # Whether any schedule has a notify: list (a run's end asks which schedule it belongs to only then).
    schedules_notify: bool = False

    def get(self, name: str) -> Command | None:
        return self.commands.get(name)

    def unconfigured_reason(self, name: str) -> str | None:
        """Why notification ``name`` cannot be sent from this process (a variable it names is unset), or None."""
        notification = self.notifications.get(name)
        if notification is None:
            return f"no notification {name!r} in the catalogue"
        target = self.notification_targets.get(name, Target())
        if notification.url_env is not None and target.url is None:
            return f"{notification.url_env} is not set"
        if notification.secret_env is not None and target.secret is None:
            return f"{notification.secret_env} is not set"
        return None

    def unconfigured_notifications(self) -> list[str]:
        return [name for name in self.notifications if self.unconfigured_reason(name)]

    def datasource_problem(self, name: str) -> str | None:
        """Why data source ``name``'s set URL cannot be used (naming it and its variable, never the URL), or None."""
        problem = self.datasource_problems.get(name)
        if problem is None:
            return None
        return N_(
            "data source %(source)s cannot be used (%(variable)s: %(problem)s)",
            source=repr(name), variable=self.datasources[name].url_env, problem=problem,
        )  # fmt: skip

    def unavailable_reason(self, command: Command) -> str | None:
        """Why a command cannot run in this process (its data source's URL is unset or unusable), or None."""
        if command.kind == "query" and command.datasource not in self.datasource_urls:
            source = self.datasources[command.datasource or ""]
            unusable = self.datasource_problem(command.datasource or "")
            if unusable is not None:
                return unusable
            return N_(
                "data source %(source)s is not configured (%(variable)s is not set)",
                source=repr(command.datasource), variable=source.url_env,
            )  # fmt: skip
        return None

    def unavailable(self) -> list[str]:
        return [name for name, command in self.commands.items() if self.unavailable_reason(command)]
