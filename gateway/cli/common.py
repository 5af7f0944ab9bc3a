"""Helpers shared by CLI commands: who the operator is, reading secrets from stdin."""

from __future__ import annotations

import getpass
import sys
from typing import Any

import click


def operator_actor() -> dict[str, Any]:
    """CLI actions are audited as the OS account that ran them."""
    try:
        name = getpass.getuser()
    except Exception:
        name = "unknown"
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
