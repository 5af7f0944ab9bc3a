"""The pages the UI sweep (test_ui_sweep.py) visits: every GET page route of the app, with a URL builder each.

``page_rules`` lists the routes that are pages (GET, HTML for a person): not static files, the
API, streams, health and metrics, downloads (a file extension in the rule) or ``NOT_PAGES``.
``VISITS`` names, per endpoint, who opens it and the URL (built from the seeded data); a page
route missing there fails ``test_the_sweep_covers_every_page_route``, so a page added later
fails until the sweep covers it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask
from werkzeug.routing import Rule

SIGNED_OUT, STAFF, ADMIN = "signed-out", "staff", "admin"
UNKNOWN_RUN = "00000000-0000-4000-8000-000000000000"
LATER = "9999-01-01T00:00:00Z%7C" + UNKNOWN_RUN  # a list cursor after every run: each list's older page

# GET routes that are not pages a person reads, with the reason.
NOT_PAGES = {
    "web.tiles": "an HTML fragment the dashboard fetches (its tiles are on the dashboard)",
    "web.tile": "one tile's HTML fragment (shown on the dashboard)",
    "auth.oidc_login": "a redirect to the identity provider",
    "auth.oidc_callback": "the identity provider's redirect back",
    "shell2http.command": "a shell2http-compatible API for scripts",
}


def page_rules(app: Flask) -> list[Rule]:
    def is_page(rule: Rule) -> bool:
        return (
            "GET" in (rule.methods or ())
            and rule.endpoint != "static"
            and not rule.rule.startswith("/api/")
            and not rule.endpoint.startswith("health.")  # healthz, livez, readyz, metrics
            and not rule.rule.endswith("/stream")
            and not re.search(r"\.(<[^>]+>|\w+)$", rule.rule)  # downloads: /runs/<id>.csv, export.<fmt>
            and rule.endpoint not in NOT_PAGES
        )

    return [rule for rule in app.url_map.iter_rules() if is_page(rule)]


@dataclass(frozen=True)
class Visit:
    role: str
    name: str  # the screenshot's name
    url: Callable[[dict[str, str]], str]  # from the seeded data
    status: int = 200
    redirects_to: str = ""  # a route that only redirects: the sweep checks where to (the target is a visit of its own)


def _fixed(path: str) -> Callable[[dict[str, str]], str]:
    return lambda seeds: path


def _staff(name: str, path: str) -> list[Visit]:
    return [Visit(STAFF, name, _fixed(path))]


def _admin(name: str, path: str) -> list[Visit]:
    return [Visit(ADMIN, name, _fixed(path))]


VISITS: dict[str, list[Visit]] = {
    "auth.login": [Visit(SIGNED_OUT, "login", _fixed("/login"))],
    "auth.invite": [Visit(SIGNED_OUT, "invite", _fixed("/invite"))],
    "auth.login_mfa": [Visit("half-signed-in", "login-mfa", _fixed("/login/mfa"))],
    "web.dashboard": _staff("dashboard", "/") + _admin("dashboard", "/"),
    "web.account": _staff("account", "/account"),
    "web.account_mfa": _staff("account-mfa", "/account/mfa"),
    "web.approvals_page": _staff("approvals", "/approvals")
    + _staff("approvals-older", f"/approvals?waiting_cursor={LATER}&requested_cursor={LATER}")  # the pagers' links
    + [Visit(STAFF, "approvals-bad-cursor", _fixed("/approvals?waiting_cursor=not-a-cursor"), status=400)],
    "web.history": _staff("my-runs", "/runs"),
    "web.command_form": _staff("command-greet", "/commands/greet") + _staff("command-tasks", "/commands/tasks"),
    "web.run_page": [
        Visit(STAFF, "run-shell", lambda seeds: f"/runs/{seeds['shell_run']}"),
        Visit(STAFF, "run-query", lambda seeds: f"/runs/{seeds['query_run']}"),
        Visit(STAFF, "run-unknown", _fixed(f"/runs/{UNKNOWN_RUN}"), status=404),  # templates/error.html
        Visit(ADMIN, "run-shell", lambda seeds: f"/runs/{seeds['shell_run']}"),
    ],
    "admin.index": [Visit(ADMIN, "admin-index", _fixed("/admin/"), redirects_to="/admin/users")],
    "admin.users": _admin("admin-users", "/admin/users"),
    "admin.groups": _admin("admin-groups", "/admin/groups"),
    "admin.permissions": _admin("admin-permissions", "/admin/permissions"),
    "admin.commands": _admin("admin-commands", "/admin/commands"),
    "admin.command_detail": _admin("admin-command-greet", "/admin/commands/greet"),
    "admin.schedules": _admin("admin-schedules", "/admin/schedules"),
    "admin.deliveries_page": _admin("admin-deliveries", "/admin/deliveries"),
    "admin.tokens": _admin("admin-tokens", "/admin/tokens"),
    "admin.audit": _admin("admin-audit", "/admin/audit"),
    "admin.audit_event": [Visit(ADMIN, "admin-audit-event", lambda seeds: f"/admin/audit/{seeds['audit_seq']}")],
    "admin.runs": _admin("admin-runs", "/admin/runs"),
}


def seed(app: Flask) -> dict[str, str]:
    """Data the pages show: a finished shell run with error output, a query run with a table, an audit
    event, an API token (the account and tokens tables); and a second factor for ``other`` (the
    half-signed-in /login/mfa page)."""
    from sqlalchemy import func, select

    from gateway import runs
    from gateway.db.audit_tables import AuditEvent
    from gateway.db.models import Run
    from gateway.identity import accounts, tokens
    from gateway.platform.extensions import db
    from tests.test_mfa import enrol

    with app.app_context():
        staff = accounts.get_user("staff")
        tokens.create_token(staff, name="deploy script on build-01")
        caller = runs.Caller(user=staff, source_ip="127.0.0.1")
        shell = runs.start("greet", {"who": "Ann Lee", "items": ["a", "b"]}, caller).run.id
        query = runs.start("tasks", {"status": "ok"}, caller).run.id
        deadline = time.monotonic() + 20
        while any(db.session.get(Run, run_id).status in runs.LIVE for run_id in (shell, query)):
            # a live run page follows its stream and reloads itself at the end: check it finished
            assert time.monotonic() < deadline, "the seeded runs did not finish in 20 s"
            time.sleep(0.05)
            db.session.rollback()
        seq = db.session.scalar(select(func.max(AuditEvent.seq)))
        other = accounts.get_user("other").id
    enrol(app, other)
    return {"shell_run": shell, "query_run": query, "audit_seq": str(seq)}
