"""The loaded catalogue for this process, and the runtime kill switch for its commands.

The catalogue is read at start-up (an invalid file refuses to start, naming
the command and field), again on SIGHUP or ``manage.py commands reload``.
A reload that fails keeps the catalogue already loaded.  Each load checks the
data source URLs with the query runner's check the app factory hands in, and
logs every one it cannot use (its commands are unavailable).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from flask import Flask, current_app
from sqlalchemy import bindparam, select

from config import ConfigError
from gateway import audit
from gateway.catalogue.loader import UrlCheck, load_catalogue
from gateway.catalogue.model import Catalogue, CatalogueError
from gateway.db.models import CommandState
from gateway.db.prepared import Prepared
from gateway.db.units import WriteUnit, core, write_transaction
from gateway.platform.extensions import db
from gateway.platform.timeutil import utcnow

log = logging.getLogger("gateway.commands")


class CatalogueHolder:
    def __init__(self, path: str, url_check: UrlCheck | None = None):
        self.path = path
        self.url_check = url_check
        self._lock = threading.Lock()
        self._catalogue = self._load()

    @property
    def catalogue(self) -> Catalogue:
        return self._catalogue

    def reload(self) -> Catalogue:
        """Load the file again; on error the old catalogue stays and the error is raised."""
        catalogue = self._load()
        with self._lock:
            self._catalogue = catalogue
        log.info("catalogue reloaded: %d commands (sha256 %s)", len(catalogue.commands), catalogue.sha256[:12])
        return catalogue

    def _load(self) -> Catalogue:
        catalogue = load_catalogue(self.path, url_check=self.url_check)
        for name in sorted(catalogue.datasource_problems):
            log.error("%s; its commands are unavailable", catalogue.datasource_problem(name))
        return catalogue


def holder(app: Flask | None = None) -> CatalogueHolder:
    found: CatalogueHolder = (app or current_app).extensions["gateway.catalogue"]
    return found


def current_catalogue() -> Catalogue:
    return holder().catalogue


def disabled_commands() -> dict[str, str | None]:
    """Command name -> reason, for every command switched off at runtime."""
    rows = db.session.execute(select(CommandState.command, CommandState.reason).where(CommandState.disabled))
    return {row.command: row.reason for row in rows}


def is_disabled(name: str, session: WriteUnit | None = None) -> bool:
    """The kill switch, read from the database (never a cached object: another replica may flip it)."""
    return bool(_DISABLED.scalar(core(session or db.session()), {"name": name}))


_STATES = CommandState.__table__
_DISABLED = Prepared(select(_STATES.c.disabled).where(_STATES.c.command == bindparam("name")))


def set_disabled(name: str, disabled: bool, *, actor: Any = None, reason: str | None = None, **fields: Any) -> bool:
    """Flip the kill switch (audited). Returns whether anything changed."""
    with write_transaction() as tx:
        state = tx.get(CommandState, name)
        if state is None:
            state = CommandState(command=name, disabled=False)
            tx.add(state)
        if bool(state.disabled) == disabled:
            return False
        state.disabled = disabled
        state.reason = reason if disabled else None
        state.changed_at = utcnow()
        state.changed_by = (actor or {}).get("name")
        audit.append(
            "admin.command_disabled" if disabled else "admin.command_enabled",
            session=tx,
            actor=actor,
            command=name,
            outcome="ok",
            detail={"reason": reason} if reason else None,
            **fields,
        )
    return True


def init_app(app: Flask, url_check: UrlCheck | None = None) -> None:
    """Load the catalogue; ``url_check`` is the query runner's verdict on a data source URL."""
    try:
        app.extensions["gateway.catalogue"] = CatalogueHolder(app.config["GATEWAY_COMMANDS_FILE"], url_check)
    except CatalogueError as exc:
        raise ConfigError(f"GATEWAY_COMMANDS_FILE: {exc}") from None
