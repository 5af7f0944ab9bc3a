"""Loading the catalogue: reviewed YAML, validated strictly before anything can run.

Unknown keys, duplicate names, a command naming an unknown data source or a
``notify:`` naming an unknown notification: loading fails with a message naming
the command (schedule, notification) and the field.  A data source whose URL
variable is unset is not an error; its commands are marked unavailable instead,
and a notification whose variables are unset is marked unconfigured.

A URL that is set is this process's environment, not the reviewed file, so a
URL the query runner cannot use (``url_problem``, the runner's own check, handed
in by whoever loads: the catalogue never imports the runners) does not refuse
the file either: its data source is recorded in ``datasource_problems`` and its
commands are unavailable, saying why.  ``commands validate`` exits non-zero on
one, and readiness warns (``catalogue:datasources``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.catalogue.model import Catalogue, CatalogueError, CatalogueFile, Command, Target
from gateway.catalogue.notification import Notification
from gateway.catalogue.schedule import Schedule
from gateway.catalogue.sources import check_sources

# Why a data source URL cannot be used (a message that never contains the URL), or None.
UrlCheck = Callable[[str], str | None]


def _location(errors: list[Any], raw: Mapping[str, Any]) -> str:
    error = errors[0]
    loc = list(error["loc"])
    where = ""
    if loc[:1] in (["commands"], ["schedules"], ["notifications"]) and len(loc) > 1 and isinstance(loc[1], int):
        section, index = str(loc[0]), loc[1]
        entries = raw.get(section) or []
        name = entries[index].get("name") if index < len(entries) and isinstance(entries[index], dict) else None
        kind = section.removesuffix("s")
        where = f"{kind} {name!r}" if name else f"{section}[{index}]"
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
    return env_value(url_env, environ)


def env_value(url_env: str, environ: Mapping[str, str]) -> str | None:
    """The value of a variable the catalogue names, or of the file named by ``<name>_FILE``; None when unset."""
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


def _load_yaml(text: str) -> Any:
    """``yaml.safe_load``, through libyaml's parser when PyYAML has it (ten times faster: every app start).

    The constructors are the same ``SafeLoader`` ones either way.  A document libyaml
    refuses is parsed again by the pure-Python parser, so what it accepts and the error
    an operator reads stay ``yaml.safe_load``'s.
    """
    if hasattr(yaml, "CSafeLoader"):
        try:
            return yaml.load(text, Loader=yaml.CSafeLoader)
        except yaml.YAMLError:
            pass
    return yaml.safe_load(text)


def parse_catalogue(
    text: str, environ: Mapping[str, str] | None = None, source: str = "<string>", url_check: UrlCheck | None = None
) -> Catalogue:
    """The catalogue in ``text``; ``url_check`` (the query runner's) decides which set data source URLs are usable."""
    environ = os.environ if environ is None else environ
    try:
        raw = _load_yaml(text) or {}
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{source}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise CatalogueError(
            f"{source}: expected a mapping with 'datasources', 'commands', 'schedules' and 'notifications'"
        )
    try:
        parsed = CatalogueFile.model_validate(raw)
    except ValidationError as exc:
        raise CatalogueError(f"{source}: {_location(exc.errors(), raw)}") from None

    notifications: dict[str, Notification] = {}
    for notification in parsed.notifications:
        if notification.name in notifications:
            raise CatalogueError(f"{source}: notification {notification.name!r} field name: defined twice")
        notifications[notification.name] = notification
    commands: dict[str, Command] = {}
    for command in parsed.commands:
        if command.name in commands:
            raise CatalogueError(f"{source}: command {command.name!r} field name: defined twice")
        if command.kind == "query" and command.datasource not in parsed.datasources:
            raise CatalogueError(
                f"{source}: command {command.name!r} field datasource: unknown data source {command.datasource!r}"
            )
        if unknown := _unknown(command.notify, notifications):
            raise CatalogueError(f"{source}: command {command.name!r} field notify: unknown notification {unknown!r}")
        if command.approval is not None and (unknown := _unknown(command.approval.notify, notifications)):
            raise CatalogueError(
                f"{source}: command {command.name!r} field approval.notify: unknown notification {unknown!r}"
            )
        commands[command.name] = command
    misuse = check_sources(commands)
    if misuse is not None:
        raise CatalogueError(f"{source}: command {misuse[0]!r} field {misuse[1]}: {misuse[2]}")
    schedules: dict[str, Schedule] = {}
    for schedule in parsed.schedules:
        if schedule.name in schedules:
            raise CatalogueError(f"{source}: schedule {schedule.name!r} field name: defined twice")
        problem = schedule.check_against(commands)
        if problem is not None:
            raise CatalogueError(f"{source}: schedule {schedule.name!r} field {problem[0]}: {problem[1]}")
        if unknown := _unknown(schedule.notify, notifications):
            raise CatalogueError(f"{source}: schedule {schedule.name!r} field notify: unknown notification {unknown!r}")
        schedules[schedule.name] = schedule
    urls, problems = {}, {}
    for name, datasource in parsed.datasources.items():
        url = datasource_url(datasource.url_env, environ)
        unusable = url_check(url) if url and url_check is not None else None
        if unusable is not None:
            problems[name] = unusable
        elif url:
            urls[name] = url
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Catalogue(
        commands=commands, datasources=dict(parsed.datasources), datasource_urls=urls, datasource_problems=problems,
        source=source, sha256=digest,
        schedules=schedules, notifications=notifications, notification_targets=_targets(notifications, environ),
        schedules_notify=any(schedule.notify for schedule in schedules.values()),
    )  # fmt: skip


def _unknown(names: list[str], notifications: Mapping[str, Notification]) -> str | None:
    return next((name for name in names if name not in notifications), None)


def _targets(notifications: Mapping[str, Notification], environ: Mapping[str, str]) -> dict[str, Target]:
    """Each notification's URL and secret from the variables it names (unset: the notification is unconfigured)."""
    targets = {}
    for name, notification in notifications.items():
        url = env_value(notification.url_env, environ) if notification.url_env else None
        secret = env_value(notification.secret_env, environ) if notification.secret_env else None
        targets[name] = Target(url=url, secret=secret.encode("utf-8") if secret else None)
    return targets


def load_catalogue(
    path: str | Path, environ: Mapping[str, str] | None = None, url_check: UrlCheck | None = None
) -> Catalogue:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogueError(f"{path}: cannot read the catalogue ({exc.strerror})") from None
    return parse_catalogue(text, environ, source=str(path), url_check=url_check)
