"""The network allowlist: the first gate every request passes, and the one place that decides it.

The client address is ``request.remote_addr`` after ProxyFix (read through
``gateway.platform.addresses``), which this module installs only when
``TRUSTED_PROXY_COUNT`` > 0, and then honouring exactly that many
X-Forwarded-For hops: with 0, a forged header changes nothing.

The same gate answers 400 to a ``Host`` outside ``TRUSTED_HOSTS`` (when set),
except on the probes and ``/metrics``, which kubelet and Prometheus call by pod IP.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from flask import Flask, Response, current_app, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

from config import Network, host_trusted
from gateway import audit
from gateway.platform.addresses import client_address, parse_address
from gateway.platform.extensions import login_manager

log = logging.getLogger("gateway.netguard")

HEALTH_ENDPOINTS = frozenset({"health.livez", "health.healthz", "health.readyz"})
METRICS_ENDPOINTS = frozenset({"health.metrics"})
# Called by pod IP (kubelet, Prometheus), so they answer whatever the Host.
ANY_HOST_ENDPOINTS = HEALTH_ENDPOINTS | METRICS_ENDPOINTS


def address_allowed(address: str, networks: Iterable[Network]) -> bool:
    """Whether ``address`` lies in one of ``networks``; an unparseable address never does."""
    parsed = parse_address(address)
    if parsed is None:
        return False
    return any(parsed.version == net.version and parsed in net for net in networks)


def networks_for_request() -> tuple[Network, ...]:
    """Probes and metrics have their own lists; everything else, unknown paths included, the app's."""
    if request.endpoint in HEALTH_ENDPOINTS:
        setting = "HEALTH_ALLOWED_NETWORKS"
    elif request.endpoint in METRICS_ENDPOINTS:
        setting = "METRICS_ALLOWED_NETWORKS"
    else:
        setting = "ALLOWED_NETWORKS"
    networks: tuple[Network, ...] = current_app.config[setting]  # parsed by config.py
    return networks


def _denied() -> Response:
    """One answer for every path and method, API included: nothing tells the caller what exists here."""
    return Response("Forbidden\n", status=403, mimetype="text/plain")


def _as_anonymous() -> None:
    """Treat a refused request as anonymous without reading its session cookie.

    Loading the user would run the session loader, which renews the session's
    idle timer: a cookie replayed from a refused network must not keep a
    session alive (nor is anything behind the gate meant to run for it).
    """
    g._login_user = login_manager.anonymous_user()  # flask-login's per-request user slot


def host_allowed() -> bool:
    """Whether ``TRUSTED_HOSTS`` names the request's ``Host``; without the setting, and on probes, any Host passes."""
    trusted: tuple[str, ...] | None = current_app.config["GATEWAY_TRUSTED_HOSTS"]
    if trusted is None or request.endpoint in ANY_HOST_ENDPOINTS:
        return True
    return host_trusted(request.host, trusted)


def _unknown_host() -> Response:
    return Response("Bad Request: unknown host\n", status=400, mimetype="text/plain")


def guard() -> Response | None:
    """The before_request hook that runs first: ``None`` lets the request through, else the 403 (or 400 for a Host)."""
    address = client_address()
    if address_allowed(address, networks_for_request()):
        if host_allowed():
            return None
        _as_anonymous()
        log.info("refused a request for an untrusted Host %r", request.host[:100])
        return _unknown_host()
    g.network_denied = True  # metrics label the refusal apart: nothing of the request becomes a label
    _as_anonymous()
    try:
        audit.record_capped(
            "access.denied_network",
            outcome="denied",
            detail={"method": request.method, "path": request.path[:200]},
        )
    except Exception:  # the answer is 403 whether or not the ledger is writable
        log.exception("could not audit a network denial")
    return _denied()


def init_app(app: Flask) -> None:
    """Install ProxyFix (if proxies are trusted) and the allowlist gate, ahead of every other hook."""
    hops = app.config["TRUSTED_PROXY_COUNT"]
    if hops:
        # Flask's documented way to add WSGI middleware; Flask types wsgi_app as a method.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=0, x_port=0, x_prefix=0
        )
    app.before_request_funcs.setdefault(None, []).insert(0, guard)
