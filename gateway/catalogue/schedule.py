"""A schedule of the catalogue: a command, its fixed params, a cron expression and a time zone.

The expression is parsed by ``cronsim`` (Debian cron's rules through time-zone
transitions) and the zone by ``zoneinfo``, both when the file is loaded, so a
bad cron or an unknown zone refuses start-up naming the schedule and field.
Whether the command exists and accepts the params is checked by the loader,
which knows the commands (``check_against``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.catalogue.notification import NotifyList, check_names
from gateway.catalogue.values import collect_errors

if TYPE_CHECKING:
    from gateway.catalogue.model import Command

# The commands' slug (model.NAME_PATTERN), repeated: the model imports this module for its file shape.
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"


@functools.lru_cache(maxsize=4096)
def _interval(cron: str, timezone: str, minute: datetime) -> timedelta:
    zone = ZoneInfo(timezone)
    upcoming = CronSim(cron, minute.astimezone(zone))
    first = next(upcoming).astimezone(UTC)
    return next(upcoming).astimezone(UTC) - first


class Schedule(BaseModel):
    """One ``schedules:`` entry; ``occurrences`` gives its UTC instants."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    command: Annotated[str, Field(pattern=NAME_PATTERN)]
    params: dict[str, Any] = Field(default_factory=dict)
    cron: str
    timezone: str = "UTC"
    dashboard: bool = False
    notify: NotifyList = Field(default_factory=list)  # names from notifications:

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError(f"needs 5 fields (minute hour day month weekday): {value!r}")
        try:
            CronSim(value, datetime(2000, 1, 1, tzinfo=UTC))
        except CronSimError as exc:
            raise ValueError(f"not a valid cron expression {value!r} ({exc})") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name like Europe/Berlin)") from None
        return value

    @field_validator("notify")
    @classmethod
    def _notify(cls, value: list[str]) -> list[str]:
        return check_names(value)  # whether each exists is checked by the loader, which knows them

    def occurrences(self, after: datetime) -> Iterator[datetime]:
        """The UTC instants strictly after ``after`` (aware), in order, by Debian cron's DST rules."""
        zone = ZoneInfo(self.timezone)
        start = after.astimezone(zone)
        for local in CronSim(self.cron, start):
            instant = local.astimezone(UTC)
            if instant > after:
                yield instant

    def next_after(self, after: datetime) -> datetime:
        return next(self.occurrences(after))

    def interval(self, around: datetime) -> timedelta:
        """The time between two occurrences after ``around``: what "stale" is measured in.

        Per minute (cron's resolution) and cached: every tile of every board asks it.
        """
        return _interval(self.cron, self.timezone, around.replace(second=0, microsecond=0))

    def check_against(self, commands: Mapping[str, Command]) -> tuple[str, str] | None:
        """(field, message) when the command is unknown or refuses these params, else None."""
        command = commands.get(self.command)
        if command is None:
            return "command", f"unknown command {self.command!r}"
        if command.approval is not None:
            return "command", f"command {self.command!r} needs approval (a second person), so no schedule can run it"
        secret = next((name for name in self.params if name in command.secret_params()), None)
        if secret is not None:
            return f"params.{secret}", "a secret parameter cannot be stored in a schedule"
        _values, errors = collect_errors(command, self.params, "json")
        if errors:
            field, message = sorted(errors.items())[0]
            return f"params.{field}", message
        return None
