"""What admins see and do about identity-provider users and groups: IdP group links (pages and CLI), each user's source.

The pages are driven the way a browser does (CSRF token from the page, POST,
follow the redirect); the CLI through Flask's runner against the same database.
Users from the IdP are made by real sign-ins: a header user through the trusted
proxy's request, an OIDC user through ``external.sign_in`` (the protocol is the
OIDC tests' business).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from gateway.cli.groups import groups_group
from gateway.cli.users import users_group
from gateway.db.models import AuditEvent
from gateway.identity import accounts, groups, idp_links
from gateway.identity.external import ExternalIdentity, sign_in
from gateway.platform.extensions import db
from tests.conftest import csrf_token_from, seed_session

PROXY = "10.9.0.5"


@pytest.fixture
def idp_app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(
        AUTH_METHODS="local,header",
        AUTH_HEADER_TRUSTED_NETWORKS="10.9.0.0/24",
        AUTH_HEADER_GROUPS="X-Forwarded-Groups",
        ALLOWED_NETWORKS="127.0.0.0/8,10.0.0.0/8",
        OIDC_ADMIN_GROUPS="/ops/admins",
    )


@pytest.fixture
def admin(idp_app: Flask, users) -> FlaskClient:
    client = idp_app.test_client()
    seed_session(idp_app, client, users["admin"].id)
    with idp_app.app_context():
        groups.create_group("ops")
    return client


def post(client: FlaskClient, url: str, data: dict[str, str]):
    token = csrf_token_from(client.get("/admin/groups").get_data(as_text=True))
    return client.post(url, data={"csrf_token": token, **data}, follow_redirects=True)


def events(app: Flask, *names: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event.in_(names)).order_by(AuditEvent.seq)))


def links(app: Flask) -> dict[str, list[str]]:
    with app.app_context():
        return idp_links.links_by_group()


# --- links on /admin/groups -------------------------------------------------------------------


def test_an_admin_links_and_unlinks_an_idp_group_on_the_groups_page(idp_app, admin):
    page = post(admin, "/admin/groups/ops/idp-links", {"idp_group": "  /corp/Ops Team  "})
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "Linked /corp/Ops Team to ops." in text
    assert "<code>/corp/Ops Team</code>" in text and 'aria-label="Unlink /corp/Ops Team from ops"' in text
    assert "Users who sign in through the identity provider become members" in text
    again = post(admin, "/admin/groups/ops/idp-links", {"idp_group": "/corp/Ops Team"})
    assert "/corp/Ops Team was already linked to ops." in again.get_data(as_text=True)
    assert links(idp_app) == {"ops": ["/corp/Ops Team"]}
    removed = post(admin, "/admin/groups/ops/idp-links/remove", {"idp_group": "/corp/Ops Team"})
    assert "Unlinked /corp/Ops Team from ops." in removed.get_data(as_text=True)
    assert links(idp_app) == {}
    gone = post(admin, "/admin/groups/ops/idp-links/remove", {"idp_group": "/corp/Ops Team"})
    assert "/corp/Ops Team was not linked to ops." in gone.get_data(as_text=True)
    linked, unlinked = events(idp_app, "admin.idp_group_linked", "admin.idp_group_unlinked")
    assert (linked.event, linked.actor_name, linked.source_ip) == ("admin.idp_group_linked", "admin", "127.0.0.1")
    assert linked.detail == unlinked.detail == {"group": "ops", "idp_group": "/corp/Ops Team"}


@pytest.mark.parametrize(
    ("url", "value", "message"),
    [
        ("/admin/groups/ops/idp-links", "", "IdP group name: use 1-256 characters."),
        ("/admin/groups/ops/idp-links", "x" * 257, "IdP group name: use 1-256 characters."),
        ("/admin/groups/ops/idp-links", "ops\x07", "IdP group name: must not contain control characters."),
        ("/admin/groups/nope/idp-links", "/corp/x", "Group: no group &#39;nope&#39;."),
        ("/admin/groups/nope/idp-links/remove", "/corp/x", "Group: no group &#39;nope&#39;."),
    ],
)
def test_a_refused_link_names_the_field(idp_app, admin, url, value, message):
    page = post(admin, url, {"idp_group": value})
    assert page.status_code == 200 and message in page.get_data(as_text=True)
    assert links(idp_app) == {} and events(idp_app, "admin.idp_group_linked", "admin.idp_group_unlinked") == []


def test_the_groups_page_marks_memberships_the_idp_brought(idp_app, admin):
    with idp_app.app_context():
        idp_links.link("ops", "/corp/ops")
    proxy = idp_app.test_client()
    headers = {"X-Forwarded-User": "gail", "X-Forwarded-Groups": "/corp/ops"}
    assert proxy.get("/", headers=headers, environ_base={"REMOTE_ADDR": PROXY}).status_code == 200
    text = admin.get("/admin/groups").get_data(as_text=True)
    assert '<li>gail <span class="muted">(from the identity provider)</span>' in text


# --- the CLI --------------------------------------------------------------------------------


def test_cli_links_lists_and_unlinks_idp_groups_with_audit(idp_app, admin):
    runner = idp_app.test_cli_runner()
    linked = runner.invoke(groups_group, ["link-idp", "ops", "3f2a0c1e-entra-object-id"])
    assert linked.exit_code == 0, linked.output
    assert runner.invoke(groups_group, ["link-idp", "ops", "/corp/ops, west"]).exit_code == 0
    listed = runner.invoke(groups_group, ["list"])
    name, members, shown = listed.stdout.splitlines()[0].split("\t")
    assert (name, members, json.loads(shown)) == ("ops", "", ["/corp/ops, west", "3f2a0c1e-entra-object-id"])
    unlinked = runner.invoke(groups_group, ["unlink-idp", "ops", "/corp/ops, west"])
    assert unlinked.exit_code == 0 and "unlinked from ops" in unlinked.output
    refused = runner.invoke(groups_group, ["link-idp", "nope", "x"])
    assert refused.exit_code == 1 and "error: group: no group 'nope'" in refused.output
    recorded = events(idp_app, "admin.idp_group_linked", "admin.idp_group_unlinked")
    assert [(e.event, e.detail["idp_group"]) for e in recorded] == [
        ("admin.idp_group_linked", "3f2a0c1e-entra-object-id"),
        ("admin.idp_group_linked", "/corp/ops, west"),
        ("admin.idp_group_unlinked", "/corp/ops, west"),
    ]
    assert all(e.actor_name.startswith("cli:") for e in recorded)


# --- each user's source -----------------------------------------------------------------------


def row(page: str, user_id: int) -> str:
    match = re.search(rf'<tr id="user-{user_id}">(.*?)</tr>', page, re.S)
    assert match, f"no row for user {user_id}"
    return match.group(1)


def external_users(app: Flask) -> dict[str, int]:
    """``henk`` signed in through the proxy, ``iris`` through OIDC (not in the admin IdP group)."""
    proxy = app.test_client()
    assert proxy.get("/", headers={"X-Forwarded-User": "henk"}, environ_base={"REMOTE_ADDR": PROXY}).status_code == 200
    with app.test_request_context("/login/oidc/callback", environ_base={"REMOTE_ADDR": "127.0.0.1"}):
        sign_in(ExternalIdentity(method="oidc", issuer="https://idp.test", subject="s-1", raw_username="iris"))
    with app.app_context():
        return {name: accounts.get_user(name).id for name in ("henk", "iris")}


def test_the_users_page_shows_each_source_and_offers_passwords_only_to_local_users(idp_app, admin, users):
    ids = {**external_users(idp_app), "staff": users["staff"].id}
    page = admin.get("/admin/users").get_data(as_text=True)
    assert "header (sign-in proxy)" in row(page, ids["henk"]) and "oidc (single sign-on)" in row(page, ids["iris"])
    assert "local (password)" in row(page, ids["staff"])
    for name in ("henk", "iris"):
        assert "Reset password" not in row(page, ids[name]) and "invite link" not in row(page, ids[name])
        assert "no password yet" not in row(page, ids[name]) and "Disable" in row(page, ids[name])
    assert "Reset password" in row(page, ids["staff"]) and "Reset by invite link" in row(page, ids["staff"])
    # The form is gone, and the route itself refuses too.
    token = csrf_token_from(page)
    refused = admin.post(f"/admin/users/{ids['henk']}/reset-password", data={"csrf_token": token})
    assert refused.status_code == 400 and "signs in through header" in refused.get_data(as_text=True)
    listed = idp_app.test_cli_runner().invoke(users_group, ["list"]).stdout.splitlines()
    assert "henk\tstaff\tactive\theader" in listed and "iris\tstaff\tactive\toidc" in listed
    assert "staff\tstaff\tactive\tlocal" in listed


def test_make_admin_of_an_oidc_user_shows_why_it_is_refused(idp_app, admin):
    ids = external_users(idp_app)
    token = csrf_token_from(admin.get("/admin/users").get_data(as_text=True))
    page = admin.post(f"/admin/users/{ids['iris']}/make-admin", data={"csrf_token": token}, follow_redirects=True)
    assert "admin flag follows the identity provider&#39;s groups (OIDC_ADMIN_GROUPS)" in page.get_data(as_text=True)
    made = admin.post(f"/admin/users/{ids['henk']}/make-admin", data={"csrf_token": token}, follow_redirects=True)
    assert "henk is now an administrator." in made.get_data(as_text=True)  # header users' flag is kept by hand
    with idp_app.app_context():
        assert not accounts.get_user("iris").is_admin and accounts.get_user("henk").is_admin
