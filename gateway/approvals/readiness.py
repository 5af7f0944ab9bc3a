"""Readiness: approver groups the catalogue names and the database does not know are a warning.

An ``approval:`` naming a group nobody created yet is a reviewed file ahead of
the runtime data, not a broken catalogue: loading it never fails, and
``/readyz`` reports ``approvals:groups`` as ``warn`` (requests for such a
command wait for an approver who does not exist yet) until the group exists.
"""

from __future__ import annotations

import logging

from flask import Flask, current_app
from sqlalchemy import select

from gateway.catalogue.switches import current_catalogue
from gateway.db.models import Group
from gateway.platform import health
from gateway.platform.extensions import db

log = logging.getLogger("gateway.approvals")
CHECK_NAME = "approvals:groups"
_LOGGED = "gateway.approvals.unknown_groups"  # what was last logged, so a probe every few seconds logs once


def unknown_approver_groups() -> dict[str, list[str]]:
    """Command name -> approver groups it names that do not exist in the database."""
    wanted = {
        name: command.approval.approvers
        for name, command in current_catalogue().commands.items()
        if command.approval is not None
    }
    if not wanted:
        return {}
    named = sorted({group for groups in wanted.values() for group in groups})
    known = set(db.session.scalars(select(Group.name).where(Group.name.in_(named))))
    unknown = {name: [group for group in groups if group not in known] for name, groups in wanted.items()}
    return {name: groups for name, groups in unknown.items() if groups}


def check_approver_groups() -> str:
    """``warn`` while an approver group is unknown (logged with the names when they change; the probe shows none)."""
    unknown = unknown_approver_groups()
    described = "; ".join(f"{name}: {', '.join(groups)}" for name, groups in sorted(unknown.items()))
    if described and current_app.extensions.get(_LOGGED) != described:
        log.warning("approver groups that do not exist: %s", described)
    current_app.extensions[_LOGGED] = described
    return health.WARN if unknown else health.PASS


def init_app(app: Flask) -> None:
    health.add_readiness_check(app, CHECK_NAME, check_approver_groups)
