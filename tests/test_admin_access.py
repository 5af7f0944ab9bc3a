"""Who may reach /admin: a sweep over the app's URL map, every rule and every method it allows.

Staff get 404 (the route does not exist for them, via the blueprint's one
``require_admin`` guard); anonymous callers are sent to the sign-in page by
the sign-in gate; an admin's POST without the CSRF token is refused and
changes nothing.
"""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import func, select
from werkzeug.routing import Rule

from gateway.db.models import AuditEvent
from gateway.identity import accounts
from gateway.platform.extensions import db
from tests.conftest import csrf_token_from, login_response, sample_value

pytestmark = pytest.mark.both_engines  # the authorization sweep over /admin, per engine


def admin_rules(app: Flask) -> list[Rule]:
    rules = [rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/admin")]
    assert len(rules) >= 25, "the sweep found fewer admin routes than exist: is it still walking the right map?"
    return rules


def sample_url(app: Flask, rule: Rule) -> str:
    values = {name: sample_value(rule, name, "csv") for name in rule.arguments}
    with app.test_request_context():
        _, path = rule.build(values)
    return path


def send(client, method: str, url: str, csrf: str):
    data = {"csrf_token": csrf} if method == "POST" else None
    return client.open(url, method=method, data=data)


def test_every_admin_route_is_in_the_guarded_blueprint(app):
    for rule in admin_rules(app):
        assert rule.endpoint.startswith("admin."), f"{rule.rule} is served outside the admin blueprint"
    guards = app.before_request_funcs.get("admin", [])
    assert [f.__name__ for f in guards] == ["require_admin"]


def test_staff_get_404_on_every_admin_route_and_method(app, client, users):
    assert login_response(client, "staff", users["staff"].password).status_code == 302
    csrf = csrf_token_from(client.get("/account").get_data(as_text=True))
    for rule in admin_rules(app):
        url = sample_url(app, rule)
        for method in sorted(rule.methods):
            response = send(client, method, url, csrf)
            assert response.status_code == 404, f"staff {method} {url} -> {response.status_code}"
    assert client.get("/").status_code == 200  # the sweep ran signed in throughout


def test_anonymous_callers_are_sent_to_sign_in_on_every_admin_route_and_method(app, client, users):
    csrf = csrf_token_from(client.get("/login").get_data(as_text=True))
    for rule in admin_rules(app):
        url = sample_url(app, rule)
        for method in sorted(rule.methods):
            response = send(client, method, url, csrf)
            assert response.status_code == 302, f"anonymous {method} {url} -> {response.status_code}"
            assert response.headers["Location"].startswith("/login"), response.headers["Location"]


def test_a_disabled_admin_is_not_an_admin(app, client, users, login):
    login("admin")
    with app.app_context():
        accounts.create_user("admin2", "admin2-password-123", is_admin=True)
        accounts.set_active(accounts.get_user("admin"), False, actor={"id": None, "name": "cli:test"})
    response = client.get("/admin/users")
    assert response.status_code in (302, 404)


def test_admin_reaches_every_parameterless_admin_page(app, client, users, login):
    login("admin")
    for rule in admin_rules(app):
        if "GET" in rule.methods and not rule.arguments:
            response = client.get(rule.rule)
            assert response.status_code in (200, 303), f"{rule.rule} -> {response.status_code}"


def audit_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(AuditEvent))


@pytest.mark.parametrize("with_wrong_token", [False, True])
def test_every_admin_post_without_a_valid_csrf_token_is_refused(app, client, users, login, with_wrong_token):
    login("admin")
    before = audit_count(app)
    posts = [rule for rule in admin_rules(app) if "POST" in rule.methods]
    assert len(posts) >= 15
    for rule in posts:
        url = sample_url(app, rule).replace("/1/", f"/{users['staff'].id}/")
        data = {"csrf_token": "forged"} if with_wrong_token else {}
        response = client.post(url, data={**data, "username": "staff", "name": "ops", "group": "ops"})
        assert response.status_code == 400, f"POST {url} without CSRF -> {response.status_code}"
    assert audit_count(app) == before
    with app.app_context():
        staff = accounts.get_user("staff")
        assert staff.active and not staff.is_admin
