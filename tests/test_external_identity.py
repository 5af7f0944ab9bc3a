"""The rules every external sign-in shares (OIDC and trusted headers), on both engines.

DESIGN.md, "Identity beyond local passwords": accounts are created at first
sign-in and bound to (issuer, subject); a name held by another account refuses
the sign-in; IdP-given memberships are replaced at each sign-in and hand-added
ones kept; ``OIDC_ADMIN_GROUPS`` decides the admin flag; a disabled user is
refused. The protocol tests (tests/test_oidc*.py, tests/test_header_auth.py)
drive these through real requests; here they are checked once, at the seam.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from sqlalchemy import select

from gateway.cli.users import users_group
from gateway.db.models import AuditEvent, GroupMember, User
from gateway.identity import accounts, groups, idp_links
from gateway.identity.external import ExternalIdentity, SignInRefused, sign_in
from gateway.platform.extensions import db

pytestmark = pytest.mark.both_engines  # unique (issuer, subject) and membership replacement are database semantics

ISSUER = "https://idp.example.test"


def oidc(subject: str, username: str | None, groups: tuple[str, ...] | None = None) -> ExternalIdentity:
    return ExternalIdentity(method="oidc", issuer=ISSUER, subject=subject, raw_username=username, groups=groups)


def signed_in(app: Flask, identity: ExternalIdentity) -> User:
    with app.test_request_context("/login/oidc/callback", environ_base={"REMOTE_ADDR": "127.0.0.1"}):
        user = sign_in(identity)
        db.session.expunge(user)
        return user


def refusal(app: Flask, identity: ExternalIdentity) -> SignInRefused:
    with app.test_request_context("/login/oidc/callback"), pytest.raises(SignInRefused) as caught:
        sign_in(identity)
    return caught.value


def member_groups(app: Flask, username: str) -> dict[str, str]:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == username))
        assert user is not None
        return {
            m.group.name: m.origin
            for m in db.session.scalars(select(GroupMember).where(GroupMember.user_id == user.id))
        }


@pytest.fixture
def make_groups(app: Flask) -> Callable[..., None]:
    def make(*names: str) -> None:
        with app.app_context():
            for name in names:
                groups.create_group(name)

    return make


def test_first_sign_in_creates_a_bound_account_found_by_issuer_and_subject_only(app: Flask):
    first = signed_in(app, oidc("sub-1", "Alice@Example.com"))
    assert (first.username, first.source, first.idp_subject) == ("alice@example.com", "oidc", "sub-1")
    assert first.password_hash is None
    # The IdP renamed the user: the same (issuer, subject) is the same account, whatever the name says now.
    again = signed_in(app, oidc("sub-1", "alice.renamed"))
    assert again.id == first.id and again.username == "alice@example.com"
    with app.app_context():
        events = [e.event for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.seq))]
        logins = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "auth.login")).all()
    assert events.count("admin.user_created") == 1
    assert [e.detail["method"] for e in logins] == ["oidc", "oidc"]


def test_a_name_held_by_a_local_account_refuses_the_sign_in(app: Flask, users):
    refused = refusal(app, oidc("sub-attacker", "admin"))
    assert refused.reason == "username_taken"
    with app.app_context():
        admin = accounts.get_user("admin")
        assert admin.source == "local" and admin.idp_subject is None
        assert db.session.scalar(select(User).where(User.idp_subject == "sub-attacker")) is None


def test_a_second_subject_with_the_same_name_is_refused_too(app: Flask):
    signed_in(app, oidc("sub-1", "bob"))
    assert refusal(app, oidc("sub-2", "bob")).reason == "username_taken"
    other_issuer = ExternalIdentity(method="oidc", issuer="https://other.test", subject="sub-1", raw_username="bob")
    assert refusal(app, other_issuer).reason == "username_taken"


@pytest.mark.parametrize("name", [None, "", "   ", "bad/name", "a" * 101, "x\u202ey"])
def test_a_missing_or_unusable_username_claim_is_refused(app: Flask, name: str | None):
    assert refusal(app, oidc("sub-1", name)).reason == "no_username"
    with app.app_context():
        assert db.session.scalar(select(User)) is None


def test_a_disabled_user_cannot_sign_in(app: Flask):
    user = signed_in(app, oidc("sub-1", "carol"))
    with app.app_context():
        accounts.set_active(accounts.get_user("carol"), False)
    assert refusal(app, oidc("sub-1", "carol")).reason == "user_disabled"
    assert user.active  # the detached copy from before: the refusal came from the database's flag


def test_idp_memberships_are_replaced_and_hand_added_ones_kept(app: Flask, make_groups):
    make_groups("ops", "dba", "auditors")
    with app.app_context():
        idp_links.link("dba", "/org/database-admins")
    signed_in(app, oidc("sub-1", "dave", groups=("ops", "/org/database-admins", "not-a-gateway-group")))
    assert member_groups(app, "dave") == {"ops": "idp", "dba": "idp"}
    with app.app_context():
        groups.add_member("auditors", "dave")
        groups.add_member("ops", "dave")  # the admin adopts an IdP membership: now it is theirs
    signed_in(app, oidc("sub-1", "dave", groups=()))
    assert member_groups(app, "dave") == {"auditors": "manual", "ops": "manual"}


def test_a_removed_group_takes_its_grant_with_it_at_the_next_sign_in(app: Flask, make_groups):
    make_groups("ops")
    with app.app_context():
        groups.add_grant("ops", "disk-usage", known_commands=None)
    signed_in(app, oidc("sub-1", "erin", groups=("ops",)))
    with app.app_context():
        from gateway.access import policy

        assert "disk-usage" in policy.granted_commands(accounts.get_user("erin"))
    signed_in(app, oidc("sub-1", "erin", groups=("staff",)))
    with app.app_context():
        from gateway.access import policy

        assert "disk-usage" not in policy.granted_commands(accounts.get_user("erin"))


def test_groups_by_name_off_maps_only_linked_groups(make_app: Callable[..., Flask]):
    app = make_app(OIDC_GROUPS_BY_NAME="0")
    with app.app_context():
        groups.create_group("ops")
        groups.create_group("dba")
        idp_links.link("dba", "ops")  # an IdP group literally named "ops" means dba here
    signed_in(app, oidc("sub-1", "frank", groups=("ops",)))
    assert member_groups(app, "frank") == {"dba": "idp"}


def test_no_groups_claim_leaves_memberships_alone(app: Flask, make_groups):
    make_groups("ops")
    signed_in(app, oidc("sub-1", "gina", groups=("ops",)))
    signed_in(app, oidc("sub-1", "gina", groups=None))
    assert member_groups(app, "gina") == {"ops": "idp"}


def test_admin_groups_decide_the_admin_flag_and_set_admin_is_refused(make_app: Callable[..., Flask]):
    app = make_app(OIDC_ADMIN_GROUPS="/ops/admins")
    assert signed_in(app, oidc("sub-1", "hank", groups=("/ops/admins",))).is_admin
    assert not signed_in(app, oidc("sub-1", "hank", groups=("/ops/staff",))).is_admin
    result = app.test_cli_runner().invoke(users_group, ["set-admin", "hank", "on"])
    assert result.exit_code != 0
    assert "OIDC_ADMIN_GROUPS" in result.output
    with app.app_context():
        assert not accounts.get_user("hank").is_admin


def test_without_admin_groups_the_flag_is_kept_by_hand(app: Flask):
    signed_in(app, oidc("sub-1", "ivy", groups=("/ops/admins",)))
    with app.app_context():
        accounts.set_admin(accounts.get_user("ivy"), True)
    assert signed_in(app, oidc("sub-1", "ivy", groups=())).is_admin


def test_an_idp_account_has_no_local_password_to_set(app: Flask):
    signed_in(app, oidc("sub-1", "jack"))
    with app.app_context(), pytest.raises(accounts.AccountError, match="signs in through oidc"):
        accounts.set_password(accounts.get_user("jack"), "a-long-enough-password-1")
