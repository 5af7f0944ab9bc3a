"""OpenID Connect, the protocol half: discovery, the authorization request, the code exchange, the ID token's checks.

Authlib does the protocol (``OAuth2Session`` builds the PKCE S256 request and
redeems the code; ``CodeIDToken`` checks ``iss``, ``aud``, ``azp``, ``exp``,
``iat``, ``nonce``, ``auth_time``) and joserfc, Authlib's JOSE library, checks
the signature against the provider's key set: nothing here parses a JWT by hand.
This module only adds what a library cannot know: which issuer and client are
ours, which algorithms we accept (asymmetric only, so neither ``none`` nor a
key guessed from the client secret), timeouts, and the caches. The discovery
document is kept for an hour and the key set until a token names a ``kid`` it
does not hold: then it is fetched once more (a rotation at the IdP), and a
``kid`` still unknown after that is not fetched for again for a minute. Both
caches live on the app, so one process asks the IdP once per key set, not per
sign-in. Every failure is an ``OidcFailure`` naming the ``auth.login_failed``
reason; none carries a code or token.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

import requests
from authlib.common.urls import add_params_to_uri
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core import CodeIDToken
from flask import Flask, current_app
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry, extract_compact

from gateway.platform.phrases import N_
from gateway.platform.urls import external_url

# Connect and read timeouts for every call to the IdP: a slow IdP costs a sign-in seconds, never a worker for minutes.
HTTP_TIMEOUT = (3.05, 5.0)
DISCOVERY_TTL_SECONDS = 3600.0
# An unknown kid that a fresh key set did not hold either is not worth another fetch this soon.
UNKNOWN_KID_PAUSE_SECONDS = 60.0
# Clock skew allowed on exp, iat and auth_time.
LEEWAY_SECONDS = 60
# Signature algorithms accepted for ID tokens: asymmetric only (no "none", no HS* keyed by the client secret).
ASYMMETRIC_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
CALLBACK_PATH_ENDPOINT = "auth.oidc_callback"
MAX_RESPONSE_BYTES = 1024 * 1024
ENDPOINT_NAMES = ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint", "end_session_endpoint")


class OidcFailure(Exception):
    """A sign-in the protocol refuses; ``reason`` is the ``auth.login_failed`` outcome, ``status`` the page's."""

    def __init__(self, reason: str, message: str, status: int):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status


def unavailable(what: str, status: int = 503) -> OidcFailure:
    message = N_("The identity provider cannot be reached (%(what)s). Try again later.", what=what)
    return OidcFailure("idp_unavailable", message, status)


def bad_token(what: str) -> OidcFailure:
    message = N_("The identity provider's answer failed a check (%(what)s). Try again.", what=what)
    return OidcFailure("bad_token", message, 401)


@dataclass(frozen=True)
class Metadata:
    """The parts of the discovery document we use."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    end_session_endpoint: str | None
    algorithms: tuple[str, ...]


@dataclass
class _KeyCache:
    uri: str
    keys: KeySet
    missing_kids: dict[str, float] = field(default_factory=dict)


class OidcClient:
    """One per app: the settings, the cached discovery document and key set, and counters for the bench."""

    def __init__(self, app: Flask):
        config = app.config
        self.issuer: str = config["OIDC_ISSUER"]
        self.client_id: str = config["OIDC_CLIENT_ID"]
        self.client_secret: str | None = config["OIDC_CLIENT_SECRET"]
        self.scopes: tuple[str, ...] = config["OIDC_SCOPES"]
        self.production: bool = config["GATEWAY_ENV"] == "production"
        self._lock = threading.Lock()
        self._metadata: tuple[float, Metadata] | None = None
        self._keys: _KeyCache | None = None
        self._authorizer: tuple[Metadata, OAuth2Session] | None = None
        self.jwks_fetches = 0
        self.idp_seconds = 0.0  # time spent waiting on the IdP, for the bench

    # --- calls to the IdP ---------------------------------------------------------------

    def _get_json(self, url: str, what: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            response = requests.get(url, timeout=HTTP_TIMEOUT, headers=headers, allow_redirects=False)
            body = response.content[: MAX_RESPONSE_BYTES + 1]
        except requests.RequestException:
            raise unavailable(what) from None
        finally:
            self.idp_seconds += time.perf_counter() - started
        if response.status_code == 401 and what == "userinfo":
            raise bad_token(N_("userinfo refused the access token"))
        if response.status_code != 200 or len(body) > MAX_RESPONSE_BYTES:
            raise unavailable(N_("%(what)s answered %(status)s", what=what, status=response.status_code), 502)
        try:
            document = response.json()
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise unavailable(N_("%(what)s is not a JSON object", what=what), 502)
        return document

    def metadata(self) -> Metadata:
        """The discovery document, fetched at most once an hour (an older copy serves while the IdP is down)."""
        cached = self._metadata
        if cached is not None and time.monotonic() - cached[0] < DISCOVERY_TTL_SECONDS:
            return cached[1]
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            parsed = self._parse_metadata(self._get_json(url, "discovery"))
        except OidcFailure:
            if cached is not None:
                return cached[1]
            raise
        with self._lock:
            self._metadata = (time.monotonic(), parsed)
            if self._keys is not None and self._keys.uri != parsed.jwks_uri:
                self._keys = None
        return parsed

    def _parse_metadata(self, document: dict[str, Any]) -> Metadata:
        # OpenID Connect Discovery 4.3: the document's issuer must be exactly the one we asked.
        if document.get("issuer") != self.issuer:
            raise unavailable(N_("discovery names another issuer"), 502)
        urls: dict[str, str | None] = {}
        for name in ENDPOINT_NAMES:
            value = document.get(name)
            if value is None and name in ("userinfo_endpoint", "end_session_endpoint"):
                urls[name] = None
                continue
            if not self._usable_url(value):
                raise unavailable(N_("discovery has no usable %(name)s", name=name), 502)
            urls[name] = cast(str, value)
        offered = document.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = tuple(alg for alg in ASYMMETRIC_ALGS if isinstance(offered, list) and alg in offered)
        if not algorithms:
            raise unavailable(N_("the IdP signs ID tokens with no algorithm we accept"), 502)
        return Metadata(
            issuer=self.issuer, authorization_endpoint=cast(str, urls["authorization_endpoint"]),
            token_endpoint=cast(str, urls["token_endpoint"]), jwks_uri=cast(str, urls["jwks_uri"]),
            userinfo_endpoint=urls["userinfo_endpoint"], end_session_endpoint=urls["end_session_endpoint"],
            algorithms=algorithms,
        )  # fmt: skip

    def _usable_url(self, value: object) -> bool:
        if not isinstance(value, str) or len(value) > 2000:
            return False
        parts = urlsplit(value)
        schemes = ("https",) if self.production else ("https", "http")
        return parts.scheme in schemes and bool(parts.hostname) and not parts.fragment

    def key_set(self, metadata: Metadata, *, refresh: bool = False) -> KeySet:
        """The IdP's signing keys, fetched once per key set; again on ``refresh`` (a token named an unknown kid)."""
        cached = self._keys
        if cached is not None and cached.uri == metadata.jwks_uri and not refresh:
            return cached.keys
        document = self._get_json(metadata.jwks_uri, "keys")
        self.jwks_fetches += 1
        try:
            keys = KeySet.import_key_set(cast(Any, document))
        except (JoseError, ValueError, TypeError, KeyError):
            raise unavailable(N_("the key set cannot be read"), 502) from None
        with self._lock:
            self._keys = _KeyCache(uri=metadata.jwks_uri, keys=keys)
        return keys

    def _may_refetch_for(self, kid: object) -> bool:
        cached = self._keys
        if cached is None or not isinstance(kid, str):
            return True
        now = time.monotonic()
        for old in [k for k, at in cached.missing_kids.items() if now - at > UNKNOWN_KID_PAUSE_SECONDS]:
            cached.missing_kids.pop(old, None)
        return kid not in cached.missing_kids and len(cached.missing_kids) < 100

    # --- the flow -------------------------------------------------------------------------

    def _session(self, metadata: Metadata) -> OAuth2Session:
        return OAuth2Session(
            client_id=self.client_id,
            client_secret=self.client_secret,
            token_endpoint_auth_method="client_secret_basic" if self.client_secret else "none",
            scope=" ".join(self.scopes),
            redirect_uri=external_url(CALLBACK_PATH_ENDPOINT),
            code_challenge_method="S256",
            token_endpoint=metadata.token_endpoint,
        )

    def authorization_url(self, *, state: str, nonce: str, code_verifier: str, max_age: int | None = None) -> str:
        """Where to send the browser: the IdP's authorization endpoint with PKCE S256, ``state`` and ``nonce``."""
        metadata = self.metadata()
        extra: dict[str, Any] = {"nonce": nonce}
        if max_age is not None:
            extra["max_age"] = str(max_age)
        authorizer = self._authorizer
        if authorizer is None or authorizer[0] is not metadata:
            # Building the URL sends nothing; one session serves every start (it only reads its settings).
            authorizer = self._authorizer = (metadata, self._session(metadata))
        url, _ = authorizer[1].create_authorization_url(
            metadata.authorization_endpoint, state=state, code_verifier=code_verifier, **extra
        )
        return url

    def redeem(self, code: str, code_verifier: str) -> dict[str, Any]:
        """Exchange the code (with the PKCE verifier) at the token endpoint; a refusal is ``code_rejected``."""
        metadata = self.metadata()
        started = time.perf_counter()
        try:
            with self._session(metadata) as client:
                token = client.fetch_token(
                    metadata.token_endpoint, grant_type="authorization_code", code=code,
                    code_verifier=code_verifier, timeout=HTTP_TIMEOUT, allow_redirects=False,
                )  # fmt: skip
        except OAuthError:
            message = N_("The identity provider did not accept the sign-in. Try again.")
            raise OidcFailure("code_rejected", message, 400) from None
        except requests.RequestException:
            raise unavailable("token endpoint") from None
        except ValueError:
            raise unavailable(N_("the token endpoint's answer is not JSON"), 502) from None
        finally:
            self.idp_seconds += time.perf_counter() - started
        return dict(token)

    def id_token_claims(
        self, token: dict[str, Any], *, nonce: str, max_age: int | None = None, required_acr: str | None = None
    ) -> dict[str, Any]:
        """The ID token's claims after every check: signature (the IdP's key set), iss, aud/azp, exp/iat, nonce."""
        metadata = self.metadata()
        value = token.get("id_token")
        if not isinstance(value, str) or not value or len(value) > 64 * 1024:
            raise bad_token(N_("no ID token"))
        registry = JWSRegistry(algorithms=list(metadata.algorithms))
        try:
            try:
                decoded = jwt.decode(value, self.key_set(metadata), registry=registry)
            except InvalidKeyIdError:
                kid = _header_kid(value)
                if not self._may_refetch_for(kid):
                    raise
                decoded = jwt.decode(value, self.key_set(metadata, refresh=True), registry=registry)
        except InvalidKeyIdError:
            self._remember_missing(_header_kid(value))
            raise bad_token(N_("signed by a key the identity provider does not publish")) from None
        except (JoseError, ValueError, TypeError, KeyError):
            raise bad_token(N_("signature")) from None
        params: dict[str, Any] = {"nonce": nonce, "client_id": self.client_id}
        if isinstance(token.get("access_token"), str):
            params["access_token"] = token["access_token"]
        if max_age is not None:
            params["max_age"] = max_age
        options: dict[str, Any] = {
            "iss": {"essential": True, "value": self.issuer},
            "aud": {"essential": True, "value": self.client_id},
            "sub": {"essential": True},
        }
        claims = CodeIDToken(decoded.claims, decoded.header, options, params)
        try:
            claims.validate(leeway=LEEWAY_SECONDS)
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise bad_token(N_("claim %(name)s", name=getattr(exc, "claim", "") or "check")) from None
        if not isinstance(claims.get("sub"), str) or not claims["sub"] or len(claims["sub"]) > 255:
            raise bad_token(N_("subject"))
        if required_acr is not None and claims.get("acr") != required_acr:
            raise OidcFailure(
                "acr_not_met", N_("The identity provider did not confirm the required sign-in strength."), 403
            )
        return dict(claims)

    def _remember_missing(self, kid: object) -> None:
        if self._keys is not None and isinstance(kid, str):
            self._keys.missing_kids[kid[:100]] = time.monotonic()

    def userinfo(self, access_token: object, subject: str) -> dict[str, Any]:
        """Claims from the userinfo endpoint; refused unless its ``sub`` is the ID token's."""
        metadata = self.metadata()
        if metadata.userinfo_endpoint is None or not isinstance(access_token, str) or not access_token:
            raise bad_token(N_("no userinfo for the missing groups claim"))
        claims = self._get_json(metadata.userinfo_endpoint, "userinfo", {"Authorization": f"Bearer {access_token}"})
        if claims.get("sub") != subject:
            raise bad_token(N_("userinfo names another subject"))
        return claims

    def end_session_url(self) -> str | None:
        """The IdP's sign-out page (RP-initiated logout) returning to our sign-in page, when discovery names one."""
        try:
            endpoint = self.metadata().end_session_endpoint
        except OidcFailure:
            return None
        if endpoint is None:
            return None
        params = {"client_id": self.client_id, "post_logout_redirect_uri": external_url("auth.login")}
        return add_params_to_uri(endpoint, params)


def _header_kid(value: str) -> object:
    try:
        return extract_compact(value.encode("ascii")).headers().get("kid")
    except (JoseError, ValueError, UnicodeError):
        return None


def client() -> OidcClient:
    """This app's OIDC client, made on first use (the settings are fixed for the app's life)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    found = app.extensions.get("gateway.oidc")
    if found is None:
        found = app.extensions.setdefault("gateway.oidc", OidcClient(app))
    return cast(OidcClient, found)
