"""Helpers shared by CLI commands: who the operator is, reading secrets from stdin."""

from __future__ import annotations

import os
import pwd
import sys
from typing import Any

import click


def operator_actor() -> dict[str, Any]:
    """CLI actions are audited as the OS account that ran them.

    The name comes from the process's effective uid, not from ``$USER`` or
    ``$LOGNAME`` (which ``getpass.getuser`` prefers and anyone can set).
    """
    try:
        name = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # a uid without a passwd entry (some containers)
        name = f"uid{os.geteuid()}"
    return {"id": None, "name": f"cli:{name}"}


def read_password(from_stdin: bool) -> str:
    """A password from stdin (one line) or an interactive prompt; never from argv."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    return password


def fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)
