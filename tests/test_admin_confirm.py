"""What destroys asks first, what can be undone offers Undo, and admin forms answer field by field.

Driven through the Flask test client the way a browser without JavaScript does: the first POST
of a destructive form shows "Really ...?" and changes nothing; the form on that page carries
``confirm=yes``; the change lands back on the row (``#anchor``) with an Undo form (a POST with
CSRF to the inverse route, audited like any change). The dialog that short-cuts the page with
JavaScript is tested in tests/browser/test_admin_keyboard.py.
"""

from __future__ import annotations

import re

from gateway.catalogue import switches
from gateway.identity import accounts, groups, tokens
from tests import test_admin_pages
from tests.conftest import csrf_token_from, login_response

# The admin page tests' server (catalogue with uptime), client and helpers.
app, admin = test_admin_pages.app, test_admin_pages.admin
post, events = test_admin_pages.post, test_admin_pages.events


def confirm_form(html: str) -> tuple[str, dict[str, str]]:
    """The confirmation page's form: where it posts and its hidden fields (what pressing the button sends)."""
    form = re.search(r'<form method="post" action="([^"]+)" class="confirm-actions">(.*?)</form>', html, re.S)
    assert form, "no confirmation form"
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form.group(2)))
    return form.group(1), fields


def undo_form(html: str) -> tuple[str, dict[str, str]] | None:
    block = re.search(r'<div class="flash undo-flash" role="status">(.*?)</div>', html, re.S)
    if block is None:
        return None
    form = re.search(r'<form method="post" action="([^"]+)">(.*?)</form>', block.group(1), re.S)
    assert form
    return form.group(1), dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form.group(2)))


def follow(client, response) -> str:
    assert response.status_code == 303
    return client.get(response.headers["Location"]).get_data(as_text=True)


def test_disable_asks_then_disables_then_undo_enables_again_audited(app, admin, users):
    staff = app.test_client()
    assert login_response(staff, "staff", users["staff"].password).status_code == 302
    user_id = users["staff"].id

    asked = post(admin, f"/admin/users/{user_id}/disable")
    html = asked.get_data(as_text=True)
    assert asked.status_code == 200 and "Really disable staff?" in html and "Nothing has changed yet" in html
    assert f'href="/admin/users#user-{user_id}-active">Cancel</a>' in html
    assert staff.get("/").status_code == 200 and events(app, "admin.user_updated") == []

    action, fields = confirm_form(html)
    assert action == f"/admin/users/{user_id}/disable" and fields["confirm"] == "yes"
    done = admin.post(action, data=fields)
    assert done.headers["Location"].endswith(f"/admin/users#user-{user_id}-active")  # back to the row's control
    page = follow(admin, done)
    assert "staff is disabled" in page
    undo = undo_form(page)
    assert undo is not None and undo[0] == f"/admin/users/{user_id}/enable" and "Undo: enable staff again" in page
    with app.app_context():
        assert not accounts.get_user("staff").active
    assert undo_form(admin.get("/admin/users").get_data(as_text=True)) is None  # offered once

    assert admin.get(undo[0]).status_code == 405  # no state change on GET
    assert admin.post(undo[0]).status_code == 400  # nor without the CSRF token
    restored = admin.post(undo[0], data=undo[1])
    assert restored.status_code == 303
    with app.app_context():
        assert accounts.get_user("staff").active
    changes = events(app, "admin.user_updated")
    assert [e.detail["after"]["active"] for e in changes] == [False, True]
    assert all(e.actor_name == "admin" for e in changes)


def test_remove_member_asks_and_undo_adds_them_back(app, admin, users):
    with app.app_context():
        groups.create_group("ops")
        groups.add_member("ops", "staff")
    asked = post(admin, "/admin/groups/ops/members/remove", {"username": "staff"}, page="/admin/groups")
    assert "Really remove staff from ops?" in asked.get_data(as_text=True)
    action, fields = confirm_form(asked.get_data(as_text=True))
    assert fields["username"] == "staff"
    with app.app_context():
        assert [m.user.username for m in groups.get_group("ops").members] == ["staff"]
    page = follow(admin, admin.post(action, data=fields))
    undo = undo_form(page)
    assert undo == ("/admin/groups/ops/members", {"csrf_token": undo[1]["csrf_token"], "username": "staff"})
    # The member select now offers staff again, behind a placeholder, and only non-members.
    select_html = re.search(r'<select id="add-ops".*?</select>', page, re.S).group(0)
    assert '<option value="">Choose a user…</option>' in select_html and ">staff<" in select_html
    follow(admin, admin.post(undo[0], data=undo[1]))
    assert events(app, "admin.group_member_added")[-1].detail == {"group": "ops", "user": "staff"}
    page = admin.get("/admin/groups").get_data(as_text=True)
    assert ">staff<" not in re.search(r'<select id="add-ops".*?</select>', page, re.S).group(0)


def test_revoke_grant_asks_grant_does_not_and_both_return_to_the_cell(app, admin, users):
    with app.app_context():
        groups.create_group("ops")
    granted = post(admin, "/admin/permissions", {"group": "ops", "command": "uptime", "action": "grant"})
    assert granted.headers["Location"].endswith("/admin/permissions#grant:ops:uptime")
    assert 'id="grant:ops:uptime"' in follow(admin, granted)

    asked = post(admin, "/admin/permissions", {"group": "ops", "command": "uptime", "action": "revoke"})
    assert "Really revoke uptime from ops?" in asked.get_data(as_text=True)
    with app.app_context():
        assert groups.list_grants() == [("ops", "uptime")]
    action, fields = confirm_form(asked.get_data(as_text=True))
    page = follow(admin, admin.post(action, data=fields))
    undo = undo_form(page)
    assert undo and undo[1]["action"] == "grant" and "Undo: grant uptime to ops again" in page
    follow(admin, admin.post(undo[0], data=undo[1]))
    with app.app_context():
        assert groups.list_grants() == [("ops", "uptime")]
    assert len(events(app, "admin.grant_added")) == 2 and len(events(app, "admin.grant_removed")) == 1


def test_kill_switch_asks_keeps_the_reason_and_undo_enables(app, admin, users):
    asked = post(admin, "/admin/commands/uptime/disable", {"reason": "vendor bug", "back": "detail"})
    action, fields = confirm_form(asked.get_data(as_text=True))
    assert fields == {"csrf_token": fields["csrf_token"], "reason": "vendor bug", "back": "detail", "confirm": "yes"}
    with app.app_context():
        assert not switches.is_disabled("uptime")
    done = admin.post(action, data=fields)
    assert done.headers["Location"].endswith("/admin/commands/uptime#switch")
    undo = undo_form(follow(admin, done))
    assert undo and undo[0] == "/admin/commands/uptime/enable"
    assert events(app, "admin.command_disabled")[-1].detail == {"reason": "vendor bug"}
    follow(admin, admin.post(undo[0], data=undo[1]))
    with app.app_context():
        assert not switches.is_disabled("uptime")
    assert events(app, "admin.command_enabled")[-1].actor_name == "admin"


def test_deleting_a_group_and_revoking_a_token_say_they_cannot_be_undone(app, admin, users):
    with app.app_context():
        groups.create_group("ops")
        groups.add_member("ops", "staff")
        issued = tokens.create_token(accounts.get_user("staff"), name="ci")
    asked = post(admin, "/admin/groups/ops/delete", page="/admin/groups").get_data(as_text=True)
    assert (
        "Really delete group ops?" in asked
        and "Its 1 membership, 0 grants and" in asked
        and "cannot be undone" in asked
    )
    action, fields = confirm_form(asked)
    assert undo_form(follow(admin, admin.post(action, data=fields))) is None
    with app.app_context():
        assert groups.find_group("ops") is None

    asked = post(admin, f"/admin/tokens/{issued.token.id}/revoke", page="/admin/tokens").get_data(as_text=True)
    assert "Really revoke staff&#39;s token ci?" in asked and "cannot be undone" in asked
    with app.app_context():
        assert tokens.authenticate(issued.secret) is not None
    action, fields = confirm_form(asked)
    assert undo_form(follow(admin, admin.post(action, data=fields))) is None
    with app.app_context():
        assert tokens.authenticate(issued.secret) is None


def test_javascript_gets_the_same_question_on_the_form(app, admin, users):
    """The dialog (admin.js) reads its question from the form; Disable is the last action in the row."""
    page = admin.get("/admin/users").get_data(as_text=True)
    row = re.search(rf'<tr id="user-{users["staff"].id}">.*?</tr>', page, re.S).group(0)
    assert 'data-confirm="Really disable staff?"' in row
    buttons = re.findall(r"<button[^>]*>([^<]+)</button>", row)
    assert buttons[-1] == "Disable"
    assert '<script src="/static/admin.js" defer></script>' in page


def test_new_user_form_names_every_wrong_field_at_once_and_keeps_values(app, admin, users):
    data = {"username": "Bad Name!", "password_mode": "set", "password": "short", "password_confirm": "short"}
    response = post(admin, "/admin/users", data)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert re.search(
        r'id="username"[^>]*value="Bad Name!"[^>]*aria-invalid="true" aria-describedby="username-error"', html
    )
    assert 'id="username-error">Use 1-64 of' in html
    assert 'id="password-error">The password must be at least 12 characters.' in html
    assert re.search(r'id="mode-set"[^>]*value="set" checked', html)  # "Set it now" stays chosen
    # The password fields sit after the "Set it now" radio, so CSS shows them only when it is checked.
    assert html.index('id="mode-set"') < html.index('class="set-password"') < html.index('id="password"')
    mismatch = post(admin, "/admin/users", {**data, "username": "newbie", "password": "x" * 12})
    assert 'id="password_confirm-error">The two passwords are not the same.' in mismatch.get_data(as_text=True)
    taken = post(admin, "/admin/users", {"username": "staff", "password_mode": "generate"})
    assert 'id="username-error">&#39;staff&#39; already exists.' in taken.get_data(as_text=True)
    assert len(events(app, "admin.user_created")) == 3  # only the fixture's users


def test_add_member_without_a_choice_is_an_error_next_to_the_select(app, admin, users):
    with app.app_context():
        groups.create_group("ops")
    response = post(admin, "/admin/groups/ops/members", {"username": ""}, page="/admin/groups")
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and 'id="add-ops-error">Choose a user to add.' in html
    assert events(app, "admin.group_member_added") == []


def test_one_time_secrets_have_a_copy_button(app, admin, users):
    response = post(admin, f"/admin/users/{users['staff'].id}/reset-password")
    page = follow(admin, response)
    assert 'data-copy="#new-password"' in page
    page = follow(admin, post(admin, f"/admin/users/{users['staff'].id}/invite"))
    assert 'data-copy="#invite-link"' in page


def test_my_token_revoke_asks_first(app, users, login):
    staff = login("staff")
    with app.app_context():
        issued = tokens.create_token(accounts.find_user("staff"), name="ci")
    token = csrf_token_from(staff.get("/account").get_data(as_text=True))
    asked = staff.post(f"/account/tokens/{issued.token.id}/revoke", data={"csrf_token": token})
    html = asked.get_data(as_text=True)
    assert "Really revoke your token ci?" in html and "cannot be undone" in html
    assert 'href="/account#token-' in html and "admin-nav" not in html
    with app.app_context():
        assert tokens.authenticate(issued.secret) is not None
    action, fields = confirm_form(html)
    assert staff.post(action, data=fields).status_code == 303
    with app.app_context():
        assert tokens.authenticate(issued.secret) is None


def test_undo_shows_only_on_the_page_it_belongs_to(app, admin, users):
    asked = post(admin, "/admin/commands/uptime/disable", {"back": "detail"}, page="/admin/commands")
    action, fields = confirm_form(asked.get_data(as_text=True))
    done = admin.post(action, data=fields)
    assert undo_form(admin.get("/admin/users").get_data(as_text=True)) is None  # elsewhere: dropped
    assert undo_form(admin.get(done.headers["Location"]).get_data(as_text=True)) is None  # and gone for good


def test_new_token_form_keeps_what_was_chosen(app, users, login):
    staff = login("staff")
    token = csrf_token_from(staff.get("/account").get_data(as_text=True))
    data = {"csrf_token": token, "name": "", "expires": "365", "current_password": "x"}
    html = staff.post("/account/tokens", data=data).get_data(as_text=True)
    assert 'id="token-name-error"' in html and '<option value="365" selected>' in html


def test_the_confirmation_carries_a_hostile_reason_as_text(app, admin, users):
    reason = '"><script>alert(1)</script>'
    asked = post(admin, "/admin/commands/uptime/disable", {"reason": reason}, page="/admin/commands")
    html = asked.get_data(as_text=True)
    assert "<script>alert(1)" not in html
    action, fields = confirm_form(html)
    assert fields["reason"] == "&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"
    assert admin.post(action, data={**fields, "reason": reason}).status_code == 303
    assert events(app, "admin.command_disabled")[-1].detail == {"reason": reason}
