"""The operator CLI (``python manage.py ...``): one module per command group."""

from __future__ import annotations

from typing import Any

import click

from gateway.cli.audit import audit_group
from gateway.cli.commands import commands_group
from gateway.cli.db import db_group
from gateway.cli.demo import demo_command, serve_command
from gateway.cli.groups import grants_group, groups_group
from gateway.cli.runs import runs_group
from gateway.cli.schedules import schedules_group
from gateway.cli.tokens import tokens_group
from gateway.cli.users import users_group

COMMANDS: list[click.Command] = [
    db_group,
    users_group,
    groups_group,
    grants_group,
    tokens_group,
    commands_group,
    runs_group,
    schedules_group,
    audit_group,
    demo_command,
    serve_command,
]

# The commands that answer requests: their app keeps the stall guard (gateway.db.stall_guard).
SERVING: tuple[click.Command, ...] = (serve_command,)


def app_config(command: click.Command | None) -> dict[str, Any]:
    """What the CLI sets, over the environment's settings, in the app that ``command`` runs in.

    Prunes, exports and migrations may hold a statement longer than a request
    ever should: their app's engine has no stall guard; ``serve``'s has.
    """
    return {"DATABASE_STALL_GUARD": command in SERVING}
