"""Security headers on every answer, pages that work under the strict CSP, and the session cookie's flags."""

from __future__ import annotations

import re

import pytest

from tests.conftest import csrf_token_from

HTTPS = "https://gateway.example"
REQUIRED = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
REFERRER_POLICIES = {"no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin"}


def csp_directives(response) -> dict[str, list[str]]:
    policy = response.headers.get("Content-Security-Policy")
    assert policy, f"no CSP on {response.request.path}"
    directives: dict[str, list[str]] = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = words[1:]
    return directives


def assert_security_headers(response) -> None:
    path = response.request.path
    for name, value in REQUIRED.items():
        assert response.headers.get(name) == value, (path, name)
    assert response.headers.get("Referrer-Policy") in REFERRER_POLICIES, path
    directives = csp_directives(response)
    sources = [source for values in directives.values() for source in values]
    for unsafe in ("'unsafe-inline'", "'unsafe-eval'", "*", "http:", "https:", "data:"):
        if unsafe == "data:":
            # data: images are harmless; data: scripts or frames are not.
            assert unsafe not in directives.get("script-src", directives.get("default-src", [])), path
            continue
        assert unsafe not in sources, (path, unsafe)
    assert directives.get("frame-ancestors") == ["'none'"], path
    assert directives.get("default-src") == ["'self'"], path
    assert directives.get("object-src") == ["'none'"], path


def assert_no_inline_code(html: str) -> None:
    """What the CSP would block must not be in the page, or the page breaks in a browser."""
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html, re.I), "inline <script>"
    assert not re.search(r"<style\b", html, re.I), "inline <style>"
    assert not re.search(r"\sstyle\s*=", html, re.I), "style attribute"
    assert not re.search(r"\son[a-z]+\s*=", html, re.I), "inline event handler"
    assert not re.search(r"javascript:", html, re.I), "javascript: URL"
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", html, re.I), "resource from another origin"


def test_pages_carry_security_headers_and_no_inline_code(client, login):
    sign_in_page = client.get("/login")
    assert sign_in_page.status_code == 200
    assert_security_headers(sign_in_page)
    assert_no_inline_code(sign_in_page.get_data(as_text=True))
    assert sign_in_page.headers.get("Cache-Control") == "no-store"

    login("staff")
    dashboard = client.get("/")
    assert dashboard.status_code == 200
    assert_security_headers(dashboard)
    assert_no_inline_code(dashboard.get_data(as_text=True))
    assert dashboard.headers.get("Cache-Control") == "no-store"

    missing = client.get("/no-such-page")
    assert missing.status_code == 404
    assert_security_headers(missing)
    assert_no_inline_code(missing.get_data(as_text=True))


def test_redirects_errors_probes_and_refusals_carry_them_too(client):
    responses = [
        client.get("/"),  # redirect to sign-in
        client.get("/no-such-page"),  # anonymous: sent to sign-in, existing or not
        client.get("/api/v1/no-such-thing"),
        client.get("/livez"),
        client.get("/login", environ_base={"REMOTE_ADDR": "192.0.2.10"}),
        client.get("/static/gateway.css"),
    ]
    assert [response.status_code for response in responses] == [302, 302, 401, 200, 403, 200]
    for response in responses:
        assert_security_headers(response)


# --- the session cookie -----------------------------------------------------------------


def sign_in_over_https(client, username: str, password: str):
    """Sign in the way a browser does over HTTPS (CSRF's strict Referer check included)."""
    page = client.get("/login", base_url=HTTPS)
    data = {"username": username, "password": password, "csrf_token": csrf_token_from(page.get_data(as_text=True))}
    return client.post("/login", base_url=HTTPS, data=data, headers={"Referer": f"{HTTPS}/login"})


def session_cookie(response, name: str = "gateway_session") -> dict[str, str | bool]:
    """The attributes of the session cookie set by ``response`` (names lower-cased)."""
    for header in response.headers.getlist("Set-Cookie"):
        first, *attributes = (part.strip() for part in header.split(";"))
        if first.startswith(f"{name}="):
            parsed: dict[str, str | bool] = {"value": first.split("=", 1)[1]}
            for attribute in attributes:
                key, sep, value = attribute.partition("=")
                parsed[key.lower()] = value if sep else True
            return parsed
    raise AssertionError(f"no {name} cookie in {response.headers.getlist('Set-Cookie')}")


@pytest.mark.parametrize("secure", ["1", "0"])
def test_session_cookie_flags(make_app, users, secure):
    client = make_app(SESSION_COOKIE_SECURE=secure).test_client()
    response = sign_in_over_https(client, "staff", users["staff"].password)
    assert response.status_code == 302, response.get_data(as_text=True)
    cookie = session_cookie(response)
    assert cookie["value"]
    assert cookie.get("httponly") is True
    assert str(cookie.get("samesite", "")).lower() == "lax"
    assert cookie.get("path") == "/"
    assert "domain" not in cookie  # host-only: not sent to sibling subdomains
    assert ("secure" in cookie) is (secure == "1")
    dashboard = client.get("/", base_url=HTTPS)
    assert dashboard.status_code == 200  # the cookie really signs the browser in


def test_cookie_is_not_persistent(make_app, users):
    """The browser drops it when it closes; the server-side record bounds it anyway."""
    client = make_app().test_client()
    cookie = session_cookie(sign_in_over_https(client, "staff", users["staff"].password))
    assert "expires" not in cookie and "max-age" not in cookie
    assert not any(header.startswith("remember_token=") for header in client.get("/").headers.getlist("Set-Cookie"))
