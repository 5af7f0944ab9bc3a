"""Trusted header sign-in: the identity proxy in front of the gateway (oauth2-proxy, Pomerium) names the user.

One before_request hook, right after the network allowlist and before the CSRF
check and the sign-in gate, so a request never runs as anyone but the user the
proxy names.  The headers count only when ``header`` is in ``AUTH_METHODS`` and
the TCP peer (the socket's address, never X-Forwarded-For) is in
``AUTH_HEADER_TRUSTED_NETWORKS``; the same headers from any other peer are refused
with 403 and ``access.denied_header`` (flood-capped), bearer requests included.
From the trusted proxy, every request is checked: no session or another user's
session signs the named user in (JIT account, group sync, ``auth.login``); the
same user with a changed groups header is re-synced (``auth.groups_synced``);
a header session that arrives without the header, or from another peer, ends.  The signed cookie keeps
a digest of the groups header, so the usual request costs no database work
beyond loading the session.  A bearer token on the API wins over the headers:
the token names its owner, the proxy only vouches for the browser.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from flask import Flask, current_app, g, request, session
from flask_login import current_user, logout_user
from werkzeug.wrappers import Response

from config import Network
from gateway import audit
from gateway.db.models import User
from gateway.db.units import write_transaction
from gateway.identity import external, sessions
from gateway.identity.idp_links import claimed_groups
from gateway.platform.addresses import client_address, parse_address, peer_address
from gateway.platform.errors import error_response
from gateway.platform.extensions import login_manager
from gateway.platform.phrases import N_, on_page

log = logging.getLogger("gateway.header_auth")

# The signed cookie's mark of a session the proxy's header began: the digest of the groups header it carried.
SESSION_MARK = "header_groups"
# Probes and metrics carry no identity and get no session (their own allowlists guard them).
NO_IDENTITY_ENDPOINTS = frozenset({"health.livez", "health.healthz", "health.readyz", "health.metrics"})
API_PREFIXES = ("/api/", "/shell2http/")
UNTRUSTED_MESSAGE = N_("Identity headers are accepted only from the trusted sign-in proxy.")


def header_names() -> tuple[str, ...]:
    """The identity headers this deployment reads: the user header, and the groups header when set."""
    config = current_app.config
    groups: str | None = config["AUTH_HEADER_GROUPS"]
    return (config["AUTH_HEADER_USER"],) + ((groups,) if groups else ())


def peer_trusted(networks: tuple[Network, ...]) -> bool:
    """Whether the socket's peer (before ``TRUSTED_PROXY_COUNT``) is one of the identity proxies."""
    peer = parse_address(peer_address())
    return peer is not None and any(peer.version == net.version and peer in net for net in networks)


def _bearer_api_request() -> bool:
    """An API call with a bearer token: the token, not the proxy's header, says who calls."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return request.path.startswith(API_PREFIXES) and scheme.lower() == "bearer" and bool(value.strip())


def check_headers() -> Response | None:
    """The hook: refuse identity headers from untrusted peers; from the proxy, keep the session on its user."""
    config = current_app.config
    if "header" not in config["AUTH_METHODS"] or request.endpoint in NO_IDENTITY_ENDPOINTS:
        return None
    carried = [name for name in header_names() if name in request.headers]
    if not peer_trusted(config["AUTH_HEADER_TRUSTED_NETWORKS"]):
        if carried:
            return _refuse_untrusted(carried)
        if SESSION_MARK in session:
            _end_session("not_through_proxy")  # the proxy vouches for each request: its sessions live behind it
        return None
    if _bearer_api_request():
        return None
    raw_user = request.headers.get(config["AUTH_HEADER_USER"], "").strip()
    if not raw_user:
        if SESSION_MARK in session:
            _end_session("header_missing")
        return None
    groups_value = request.headers.get(config["AUTH_HEADER_GROUPS"]) if config["AUTH_HEADER_GROUPS"] else None
    return _follow(raw_user, groups_value)


def _groups_digest(groups_value: str | None) -> str:
    return hashlib.sha256((groups_value or "").encode("utf-8", "surrogateescape")).hexdigest()


def _identity(subject: str, raw_user: str, groups_value: str | None) -> external.ExternalIdentity:
    # Without AUTH_HEADER_GROUPS the proxy says nothing about groups (None); set but absent means "in no group".
    groups = None
    if current_app.config["AUTH_HEADER_GROUPS"]:
        groups = claimed_groups([part.strip() for part in (groups_value or "").split(",")])
    return external.ExternalIdentity(
        method="header", issuer=external.HEADER_ISSUER, subject=subject, raw_username=raw_user, groups=groups
    )


def _follow(raw_user: str, groups_value: str | None) -> Response | None:
    """The proxy names ``raw_user``: keep, re-sync, or replace the session so it is theirs."""
    try:
        subject = external.external_username(raw_user)
    except external.SignInRefused as refused:
        return _refuse_sign_in(refused)
    identity = _identity(subject, raw_user, groups_value)
    digest = _groups_digest(groups_value)
    user = current_user._get_current_object() if current_user.is_authenticated else None
    if _same_header_user(user, subject) and SESSION_MARK in session:
        if session[SESSION_MARK] != digest:
            external.settle_race(lambda: _resync(user, identity))
            session[SESSION_MARK] = digest
        return None
    if user is not None:
        _audit_replaced(user)
    try:
        external.sign_in(identity)
    except external.SignInRefused as refused:
        return _refuse_sign_in(refused)
    session[SESSION_MARK] = digest
    return None


def _same_header_user(user: User | None, subject: str) -> bool:
    return user is not None and user.idp_issuer == external.HEADER_ISSUER and user.idp_subject == subject


def _resync(user: Any, identity: external.ExternalIdentity) -> None:
    """The groups header changed within a session: make the memberships match, audited when any moved."""
    with write_transaction() as tx:
        changes = external.sync_groups(tx, user, identity)
        if changes:
            audit.append(
                "auth.groups_synced", session=tx, actor=user.actor(), source_ip=client_address() or None,
                user_agent=request.headers.get("User-Agent"), outcome="ok", detail={"method": "header", **changes},
            )  # fmt: skip


def _audit_replaced(user: User) -> None:
    """The proxy now names someone else: the earlier user's session ends here (sign_in revokes its record)."""
    audit.record(
        "auth.logout", actor=user.actor(), outcome="ok",
        detail={"method": "header", "reason": "header_user_changed"},
    )  # fmt: skip


def _end_session(reason: str) -> None:
    """Inside the request: end the session the proxy began, now that its header is gone."""
    user = current_user._get_current_object() if current_user.is_authenticated else None
    with write_transaction() as tx:
        sessions.revoke_current()
        if user is not None:
            audit.append(
                "auth.logout", session=tx, actor=user.actor(), source_ip=client_address() or None,
                user_agent=request.headers.get("User-Agent"), outcome="ok",
                detail={"method": "header", "reason": reason},
            )  # fmt: skip
    logout_user()


def _refuse_sign_in(refused: external.SignInRefused) -> Response:
    """The proxy's user may not sign in (name taken, disabled, unusable name): any session here ends too."""
    if sessions.current_record() is not None:
        with write_transaction():
            sessions.revoke_current()
    session.clear()
    logout_user()
    external.record_refusal(refused, "header")
    reason = on_page(refused.message)  # English outside pages (what machines read)
    return error_response(403, N_("Sign-in through the proxy was refused: %(reason)s", reason=reason))


def _refuse_untrusted(carried: list[str]) -> Response:
    """Identity headers from a peer that is not the proxy: 403, audited under the flood cap, session untouched."""
    g._login_user = login_manager.anonymous_user()  # never load (and so renew) the session of a refused request
    try:
        audit.record_capped(
            "access.denied_header",
            outcome="denied",
            detail={"method": request.method, "path": request.path[:200], "headers": carried, "peer": peer_address()},
        )
    except Exception:  # the answer is 403 whether or not the ledger is writable
        log.exception("could not audit an identity header from an untrusted peer")
    return error_response(403, UNTRUSTED_MESSAGE)


def init_app(app: Flask) -> None:
    """Run right after the network allowlist, ahead of the CSRF check and the sign-in gate.

    ``create_app`` installs the allowlist first (``gateway.access.netguard`` puts its
    hook at the head of the list), so second place is right behind it;
    tests/test_header_auth.py checks the order.
    """
    hooks = app.before_request_funcs.setdefault(None, [])
    hooks.insert(min(1, len(hooks)), check_headers)
