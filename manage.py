#!/usr/bin/env python
"""Operator CLI: ``python manage.py --help``."""

from __future__ import annotations

import sys

import click
from flask.cli import FlaskGroup

from config import ConfigError


def _create_app():
    """The app from the environment; ``GATEWAY_INSTANCE_PATH`` moves ``instance/`` (default: the project's)."""
    from gateway import create_app, stall_guard

    # Prunes, exports and migrations may hold a statement longer than a request ever should.
    stall_guard.GUARD.enabled = False
    try:
        return create_app()
    except ConfigError as exc:
        click.echo(f"refusing to start: {exc}", err=True)
        sys.exit(2)


def build_cli() -> click.Group:
    from gateway.cli import COMMANDS

    group = FlaskGroup(
        name="manage.py",
        create_app=_create_app,
        add_default_commands=False,
        add_version_option=False,
        load_dotenv=False,
        set_debug_flag=False,
        help="Ops Gateway operator commands.",
    )
    for command in COMMANDS:
        group.add_command(command)
    return group


if __name__ == "__main__":
    build_cli()()
