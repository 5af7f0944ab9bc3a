#!/usr/bin/env python
"""Operator CLI: ``python manage.py --help``."""

from __future__ import annotations

import sys

import click
from flask import Flask
from flask.cli import ScriptInfo

from config import ConfigError


def _create_app() -> Flask:
    """The app from the environment; ``GATEWAY_INSTANCE_PATH`` moves ``instance/`` (default: the project's)."""
    from gateway import create_app
    from gateway.cli import app_config

    # Built for the command being run (``with_appcontext`` loads the app inside its context).
    context = click.get_current_context(silent=True)
    try:
        return create_app(config=app_config(None if context is None else context.command))
    except ConfigError as exc:
        click.echo(f"refusing to start: {exc}", err=True)
        sys.exit(2)


def build_cli() -> click.Group:
    """The operator commands (``gateway.cli.COMMANDS``, nothing else).

    The app, and with it the settings and secrets, is built only when a command
    that needs it runs (``with_appcontext`` loads it from the ``ScriptInfo``):
    help, an unknown command's error and ``commands validate`` need no secrets.
    Not Flask's ``FlaskGroup``, which builds the app to list its plugin commands.
    """
    from gateway.cli import COMMANDS

    group = click.Group(
        name="manage.py",
        help="Ops Gateway operator commands.",
        context_settings={
            "obj": ScriptInfo(create_app=_create_app, set_debug_flag=False, load_dotenv_defaults=False),
        },
    )
    for command in COMMANDS:
        group.add_command(command)
    return group


if __name__ == "__main__":
    build_cli()()
