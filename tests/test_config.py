"""Settings: what production refuses, where secrets come from, and the defaults an operator relies on.

``load_config`` is called with an explicit environment mapping, so every test
states exactly what the operator set.  The last tests start the real entry
points (``manage.py`` and ``wsgi.py``) in a subprocess, the way an operator
meets a refusal: one line on stderr naming the setting, no traceback.
"""

from __future__ import annotations

import ipaddress
import os
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from config import ConfigError, load_config
from tests.conftest import base_environ

PROJECT = Path(__file__).resolve().parent.parent
GOOD_SECRET = "s" * 40
GOOD_AUDIT_KEY = "a" * 40
UNPRIVILEGED = "nobody"  # production refuses to run commands as root, and these tests may run as root
PUBLIC = "https://ops.example.com"


def production(**overrides: str) -> dict[str, str]:
    """A complete, safe production environment; overrides add or replace settings."""
    environ = {
        "SECRET_KEY": GOOD_SECRET,
        "AUDIT_KEY": GOOD_AUDIT_KEY,
        "RUN_AS_USER": UNPRIVILEGED,
        "PUBLIC_BASE_URL": PUBLIC,
    }
    environ.update(overrides)
    return {name: value for name, value in environ.items() if value is not None}


def refusal(environ: dict[str, str], tmp_path: Path) -> str:
    """The message ``load_config`` refuses with; it must be exactly one line."""
    with pytest.raises(ConfigError) as caught:
        load_config(environ, tmp_path / "instance")
    message = str(caught.value)
    assert message.strip()
    assert "\n" not in message and "\r" not in message, message
    return message


def nets(*cidrs: str) -> tuple:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


# --- production refuses unsafe or malformed settings ------------------------------------


def test_gateway_env_defaults_to_production(tmp_path):
    config = load_config(production(), tmp_path / "instance")
    assert config["GATEWAY_ENV"] == "production"
    assert config["TESTING"] is False
    assert config["DEBUG"] is False


def test_production_without_secret_key_refuses(tmp_path):
    assert refusal(production(SECRET_KEY=None), tmp_path).startswith("SECRET_KEY")


def test_production_without_audit_key_refuses(tmp_path):
    assert refusal(production(AUDIT_KEY=None), tmp_path).startswith("AUDIT_KEY")


@pytest.mark.parametrize("value", [None, "", "  "])
def test_production_without_public_base_url_refuses(tmp_path, value):
    # Without it every link would have to come from the request's Host, which the caller chooses.
    assert refusal(production(PUBLIC_BASE_URL=value), tmp_path).startswith("PUBLIC_BASE_URL:")


@pytest.mark.parametrize(
    "value",
    [
        "ops.example.com",
        "//ops.example.com",
        "ftp://ops.example.com",
        "javascript:alert(1)",
        "https://",
        "https://ops.example.com:99999",
        "https://ops.example.com:port",
        "https://ops.example.com/?next=x",
        "https://ops.example.com/#top",
        "https://ops.example.com?",
        "https://user:pw@ops.example.com",
        "https://ops example.com",
        "https://ops.example.com/a\tb",
    ],
)
def test_malformed_public_base_url_refuses(tmp_path, value):
    message = refusal(production(PUBLIC_BASE_URL=value), tmp_path)
    assert message.startswith("PUBLIC_BASE_URL:")
    assert "pw" not in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://ops.example.com", "https://ops.example.com"),
        ("https://Ops.Example.COM/", "https://ops.example.com"),
        ("http://10.0.0.5:8080/gateway/", "http://10.0.0.5:8080/gateway"),
        ("http://[2001:db8::5]:8000", "http://[2001:db8::5]:8000"),
    ],
)
def test_public_base_url_is_normalised(tmp_path, value, expected):
    assert load_config(production(PUBLIC_BASE_URL=value), tmp_path / "instance")["PUBLIC_BASE_URL"] == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", None),  # unset: any Host
        (",", "TRUSTED_HOSTS: no host given"),
        ("https://ops.example.com", "TRUSTED_HOSTS: 'https://ops.example.com' is not a host name"),
        ("ops.example.com:443", "TRUSTED_HOSTS: 'ops.example.com:443' is not a host name"),
        ("other.example.com", "TRUSTED_HOSTS: does not include PUBLIC_BASE_URL's host"),
    ],
)
def test_trusted_hosts_are_checked_against_the_public_base_url(tmp_path, value, message):
    if message is None:
        assert load_config(production(TRUSTED_HOSTS=value), tmp_path / "instance")["GATEWAY_TRUSTED_HOSTS"] is None
    else:
        assert refusal(production(TRUSTED_HOSTS=value), tmp_path).startswith(message)


def test_trusted_hosts_are_parsed(tmp_path):
    config = load_config(production(TRUSTED_HOSTS=" OPS.example.com, .internal.example , [2001:db8::5]"), tmp_path)
    assert config["GATEWAY_TRUSTED_HOSTS"] == ("ops.example.com", ".internal.example", "[2001:db8::5]")
    assert "TRUSTED_HOSTS" not in config  # Flask's own would refuse the probes while routing, before netguard


@pytest.mark.parametrize("value", ["", "   "])
def test_blank_secret_counts_as_missing(tmp_path, value):
    assert refusal(production(SECRET_KEY=value), tmp_path).startswith("SECRET_KEY")


@pytest.mark.parametrize("name", ["SECRET_KEY", "AUDIT_KEY"])
def test_production_refuses_a_short_secret(tmp_path, name):
    message = refusal(production(**{name: "short-secret"}), tmp_path)
    assert message.startswith(name)
    assert "short-secret" not in message  # the secret itself is never echoed


def test_short_secret_is_fine_outside_production(tmp_path):
    config = load_config(production(GATEWAY_ENV="testing", SECRET_KEY="short"), tmp_path / "instance")
    assert config["SECRET_KEY"] == "short"


@pytest.mark.parametrize(
    "networks",
    ["0.0.0.0/0", "::/0", "10.0.0.0/8, 0.0.0.0/0", "0.0.0.0/1,128.0.0.0/1", "::/1,8000::/1"],
)
def test_allow_everything_needs_explicit_opt_in(tmp_path, networks):
    assert refusal(production(ALLOWED_NETWORKS=networks), tmp_path).startswith("ALLOWED_NETWORKS")
    config = load_config(production(ALLOWED_NETWORKS=networks, ALLOW_ALL_NETWORKS="1"), tmp_path / "instance")
    assert config["ALLOW_ALL_NETWORKS"] is True


def test_allow_all_networks_alone_opens_the_allowlist(tmp_path):
    config = load_config(production(ALLOW_ALL_NETWORKS="1"), tmp_path / "instance")
    assert ipaddress.ip_address("203.0.113.9") in config["ALLOWED_NETWORKS"][0]


@pytest.mark.parametrize("gateway_env", ["production", "development", "testing"])
@pytest.mark.parametrize("trusted", [None, "", "0.0.0.0/0", "::/0,10.0.0.0/8"])
def test_header_sign_in_needs_the_proxies_addresses_in_every_environment(tmp_path, gateway_env, trusted):
    environ = production(GATEWAY_ENV=gateway_env, AUTH_METHODS="local,header", AUTH_HEADER_TRUSTED_NETWORKS=trusted)
    assert refusal(environ, tmp_path).startswith("AUTH_HEADER_TRUSTED_NETWORKS")


def test_header_sign_in_settings_are_parsed(tmp_path):
    environ = production(
        AUTH_METHODS=" Header ,local",
        AUTH_HEADER_TRUSTED_NETWORKS="10.9.0.0/24, fd00::5",
        AUTH_HEADER_GROUPS="X-Groups",
    )
    config = load_config(environ, tmp_path / "instance")
    assert config["AUTH_METHODS"] == ("header", "local")
    assert config["AUTH_HEADER_TRUSTED_NETWORKS"] == nets("10.9.0.0/24", "fd00::5/128")
    assert (config["AUTH_HEADER_USER"], config["AUTH_HEADER_GROUPS"]) == ("X-Forwarded-User", "X-Groups")
    # Off by default: the headers mean nothing, and no proxy list is asked for.
    assert load_config(production(), tmp_path / "instance")["AUTH_METHODS"] == ("local",)


@pytest.mark.parametrize(
    ("setting", "value"),
    [("AUTH_METHODS", "local,saml"), ("AUTH_METHODS", ","), ("AUTH_HEADER_USER", "X User"),
     ("AUTH_HEADER_GROUPS", "X-Groups:"), ("AUTH_HEADER_TRUSTED_NETWORKS", "10.9.0.0/33")],
)  # fmt: skip
def test_malformed_header_sign_in_settings_refuse_naming_the_setting(tmp_path, setting, value):
    environ = production(AUTH_METHODS="header", AUTH_HEADER_TRUSTED_NETWORKS="10.9.0.5")
    environ[setting] = value
    assert refusal(environ, tmp_path).startswith(setting)


@pytest.mark.parametrize("setting", ["ALLOWED_NETWORKS", "HEALTH_ALLOWED_NETWORKS", "METRICS_ALLOWED_NETWORKS"])
@pytest.mark.parametrize("value", ["10.0.0.0/33", "banana", "10.0.0.1/8", "2001:db8::1/32", "10.0.0.0/8,nope", ","])
def test_malformed_network_refuses_naming_the_setting(tmp_path, setting, value):
    message = refusal(production(**{setting: value}), tmp_path)
    assert message.startswith(setting + ":")


@pytest.mark.parametrize("url", ["not a url", "mysql://x/y", "postgresql://u@h:notaport/db", "http://example.com"])
def test_broken_database_url_refuses(tmp_path, url):
    assert refusal(production(DATABASE_URL=url), tmp_path).startswith("DATABASE_URL")


def test_database_url_password_is_not_echoed(tmp_path):
    message = refusal(production(DATABASE_URL="mysql://user:hunter2@db/x"), tmp_path)
    assert "hunter2" not in message


def test_postgres_urls_use_the_installed_driver(tmp_path):
    config = load_config(production(DATABASE_URL="postgres://u:p@db:5432/gw"), tmp_path / "instance")
    assert config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u:p@db:5432/gw"


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("TRUSTED_PROXY_COUNT", "one"),
        ("TRUSTED_PROXY_COUNT", "1.5"),
        ("TRUSTED_PROXY_COUNT", "-1"),
        ("RUN_WORKERS", "lots"),
        ("RUN_WORKERS", "0"),
        ("LOGIN_MAX_ATTEMPTS", "5x"),
        ("SESSION_IDLE_MINUTES", "thirty"),
        ("SESSION_MAX_HOURS", "0"),
        ("STREAMS_PER_USER", "0"),
        ("STREAMS_PER_USER", "four"),
        ("MAX_OUTPUT_BYTES", "1e6"),
        ("RUN_HEARTBEAT_SECONDS", "five"),
        ("WRITE_LOCK_TIMEOUT_SECONDS", "0"),
        ("WRITE_LOCK_TIMEOUT_SECONDS", "31"),
        ("WRITE_LOCK_TIMEOUT_SECONDS", "2.5"),
        ("SESSION_COOKIE_SECURE", "maybe"),
        ("ALLOW_ALL_NETWORKS", "sure"),
    ],
)
def test_bad_number_or_switch_refuses_naming_the_setting(tmp_path, setting, value):
    message = refusal(production(**{setting: value}), tmp_path)
    assert message.startswith(setting + ":")
    assert value in message


RATE_LIMIT_SETTINGS = ["LOGIN_RATE_LIMIT", "RUN_REFUSAL_RATE_LIMIT", "CHOICES_RATE_LIMIT"]


@pytest.mark.parametrize("setting", RATE_LIMIT_SETTINGS)
@pytest.mark.parametrize("value", ["banana", "10/fortnight", "10 per", "-1/minute", "0/minute"])
def test_bad_rate_limit_refuses(tmp_path, setting, value):
    assert refusal(production(**{setting: value}), tmp_path).startswith(setting + ":")


@pytest.mark.parametrize("setting", RATE_LIMIT_SETTINGS)
def test_rate_limits_accept_flask_limiter_syntax(tmp_path, setting):
    config = load_config(production(**{setting: "10/minute;100/hour"}), tmp_path / "instance")
    assert config[setting] == "10/minute;100/hour"


@pytest.mark.parametrize("value", ["staging", "prod", "dev"])
def test_unknown_gateway_env_refuses(tmp_path, value):
    message = refusal(production(GATEWAY_ENV=value), tmp_path)
    assert message.startswith("GATEWAY_ENV")
    assert value in message


@pytest.mark.parametrize("account", ["root", "no-such-account-here"])
def test_production_refuses_a_root_or_unknown_run_as_user(tmp_path, account):
    assert refusal(production(RUN_AS_USER=account), tmp_path).startswith("RUN_AS_USER")


def test_production_as_root_without_run_as_user_refuses(tmp_path):
    environ = production(RUN_AS_USER=None)
    if os.geteuid() == 0:
        assert refusal(environ, tmp_path).startswith("RUN_AS_USER")
    else:
        assert load_config(environ, tmp_path / "instance")["RUN_AS_USER"] is None


def test_unknown_ratelimit_storage_refuses(tmp_path):
    assert refusal(production(RATELIMIT_STORAGE_URI="memcached://x"), tmp_path).startswith("RATELIMIT_STORAGE_URI")


# --- secrets from files (Kubernetes secret mounts) ----------------------------------------


def write_secret(tmp_path: Path, name: str, value: str) -> str:
    path = tmp_path / name
    path.write_text(value + "\n", encoding="utf-8")
    return str(path)


def test_secrets_from_files(tmp_path):
    database = f"sqlite:///{tmp_path / 'from-file.db'}"
    environ = {
        "RUN_AS_USER": UNPRIVILEGED,
        "PUBLIC_BASE_URL": PUBLIC,
        "SECRET_KEY_FILE": write_secret(tmp_path, "secret", "f" * 40),
        "AUDIT_KEY_FILE": write_secret(tmp_path, "audit", "g" * 40),
        "DATABASE_URL_FILE": write_secret(tmp_path, "dburl", database),
    }
    config = load_config(environ, tmp_path / "instance")
    assert config["SECRET_KEY"] == "f" * 40  # the trailing newline of the mount is not part of it
    assert config["AUDIT_KEY"] == "g" * 40
    assert config["SQLALCHEMY_DATABASE_URI"] == database


@pytest.mark.parametrize("name", ["SECRET_KEY", "AUDIT_KEY", "DATABASE_URL"])
def test_secret_and_its_file_together_refuse(tmp_path, name):
    value = f"sqlite:///{tmp_path / 'x.db'}" if name == "DATABASE_URL" else "h" * 40
    environ = production(**{name: value, f"{name}_FILE": write_secret(tmp_path, "both", value)})
    message = refusal(environ, tmp_path)
    assert message.startswith(name)
    assert f"{name}_FILE" in message


@pytest.mark.parametrize("name", ["SECRET_KEY", "AUDIT_KEY", "DATABASE_URL"])
def test_unreadable_secret_file_refuses_naming_the_file_variable(tmp_path, name):
    environ = production(**{name: None, f"{name}_FILE": str(tmp_path / "does-not-exist")})
    assert refusal(environ, tmp_path).startswith(f"{name}_FILE:")


def test_secret_file_that_is_a_directory_or_binary_refuses(tmp_path):
    environ = production(SECRET_KEY=None, SECRET_KEY_FILE=str(tmp_path))
    assert refusal(environ, tmp_path).startswith("SECRET_KEY_FILE:")
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe" * 30)
    environ["SECRET_KEY_FILE"] = str(binary)
    assert refusal(environ, tmp_path).startswith("SECRET_KEY_FILE:")


def test_empty_secret_file_refuses(tmp_path):
    environ = production(AUDIT_KEY=None, AUDIT_KEY_FILE=write_secret(tmp_path, "empty", ""))
    assert refusal(environ, tmp_path).startswith("AUDIT_KEY_FILE:")


# --- audit keys -------------------------------------------------------------------------


def test_audit_keys_keep_rotated_keys(tmp_path):
    environ = production(AUDIT_KEY_ID="k2", AUDIT_KEYS="k1:old-key-one, k0:older:with:colons")
    config = load_config(environ, tmp_path / "instance")
    assert config["AUDIT_KEY_ID"] == "k2"
    assert config["AUDIT_KEYS"] == {"k0": "older:with:colons", "k1": "old-key-one", "k2": GOOD_AUDIT_KEY}


def test_audit_key_id_defaults(tmp_path):
    config = load_config(production(), tmp_path / "instance")
    assert config["AUDIT_KEYS"] == {config["AUDIT_KEY_ID"]: GOOD_AUDIT_KEY}


@pytest.mark.parametrize("value", ["k1", "k1:", ":key", "k1:key,broken"])
def test_malformed_audit_keys_refuse(tmp_path, value):
    assert refusal(production(AUDIT_KEYS=value), tmp_path).startswith("AUDIT_KEYS")


def test_audit_keys_cannot_contradict_the_current_key(tmp_path):
    message = refusal(production(AUDIT_KEY_ID="k1", AUDIT_KEYS="k1:something-else"), tmp_path)
    assert message.startswith("AUDIT_KEYS")


# --- defaults ---------------------------------------------------------------------------


def test_production_defaults(tmp_path):
    config = load_config(production(), tmp_path / "instance")
    assert config["ALLOWED_NETWORKS"] == nets("127.0.0.0/8", "::1/128")
    assert config["ALLOW_ALL_NETWORKS"] is False
    assert config["HEALTH_ALLOWED_NETWORKS"] == nets("0.0.0.0/0", "::/0")
    assert config["METRICS_ALLOWED_NETWORKS"] == config["ALLOWED_NETWORKS"]
    assert config["TRUSTED_PROXY_COUNT"] == 0
    assert config["RATELIMIT_STORAGE_URI"] == "memory://"
    assert config["LOGIN_RATE_LIMIT"] == "10/minute"
    assert config["RUN_REFUSAL_RATE_LIMIT"] == "60/minute"
    assert config["CHOICES_RATE_LIMIT"] == "120/minute"
    assert config["LOGIN_MAX_ATTEMPTS"] == 5
    assert config["RUN_WORKERS"] == 32
    assert config["RUN_HEARTBEAT_SECONDS"] == 5
    assert config["SESSION_IDLE_MINUTES"] == 30
    assert config["SESSION_MAX_HOURS"] == 12
    assert config["STREAMS_PER_USER"] == 4
    assert config["WRITE_LOCK_TIMEOUT_SECONDS"] == 5
    assert config["SESSION_COOKIE_SECURE"] is True
    assert config["SESSION_COOKIE_HTTPONLY"] is True
    assert config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'instance' / 'gateway.db'}"
    assert config["PUBLIC_BASE_URL"] == PUBLIC and config["PUBLIC_BASE_URL_DEFAULTED"] is False
    assert config["GATEWAY_TRUSTED_HOSTS"] is None


def test_metrics_networks_follow_allowed_networks(tmp_path):
    config = load_config(production(ALLOWED_NETWORKS="10.0.0.0/8, 2001:db8::/32"), tmp_path / "instance")
    assert config["ALLOWED_NETWORKS"] == nets("10.0.0.0/8", "2001:db8::/32")
    assert config["METRICS_ALLOWED_NETWORKS"] == config["ALLOWED_NETWORKS"]
    config = load_config(production(METRICS_ALLOWED_NETWORKS="192.0.2.0/24"), tmp_path / "instance")
    assert config["METRICS_ALLOWED_NETWORKS"] == nets("192.0.2.0/24")


def test_session_cookie_secure_can_be_turned_off_in_production(tmp_path):
    config = load_config(production(SESSION_COOKIE_SECURE="0"), tmp_path / "instance")
    assert config["SESSION_COOKIE_SECURE"] is False


def test_settings_are_parsed(tmp_path):
    environ = production(
        TRUSTED_PROXY_COUNT="2",
        RATELIMIT_STORAGE_URI="redis://127.0.0.1:6379/0",
        SESSION_IDLE_MINUTES=" 45 ",
        STREAMS_PER_USER="2",
        HEALTH_ALLOWED_NETWORKS="10.1.0.0/16",
        WRITE_LOCK_TIMEOUT_SECONDS="1",
    )
    config = load_config(environ, tmp_path / "instance")
    assert config["WRITE_LOCK_TIMEOUT_SECONDS"] == 1
    assert config["TRUSTED_PROXY_COUNT"] == 2
    assert config["RATELIMIT_STORAGE_URI"] == "redis://127.0.0.1:6379/0"
    assert config["SESSION_IDLE_MINUTES"] == 45
    assert config["STREAMS_PER_USER"] == 2
    assert config["HEALTH_ALLOWED_NETWORKS"] == nets("10.1.0.0/16")


# --- development: generated secrets kept in instance/ ------------------------------------


def test_development_generates_and_keeps_secrets(tmp_path):
    instance = tmp_path / "instance"
    first = load_config({"GATEWAY_ENV": "development"}, instance)
    assert len(first["SECRET_KEY"]) >= 32
    assert len(first["AUDIT_KEY"]) >= 32
    assert first["SECRET_KEY"] != first["AUDIT_KEY"]
    for name, key in (("secret_key", "SECRET_KEY"), ("audit_key", "AUDIT_KEY")):
        path = instance / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text(encoding="utf-8").strip() == first[key]
    second = load_config({"GATEWAY_ENV": "development"}, instance)
    assert (second["SECRET_KEY"], second["AUDIT_KEY"]) == (first["SECRET_KEY"], first["AUDIT_KEY"])
    assert sorted(path.name for path in instance.iterdir()) == ["audit_key", "secret_key"]


def test_development_processes_starting_together_share_one_secret(tmp_path):
    instance = tmp_path / "instance"
    with ThreadPoolExecutor(max_workers=6) as pool:
        configs = list(pool.map(lambda _: load_config({"GATEWAY_ENV": "development"}, instance), range(12)))
    assert len({config["SECRET_KEY"] for config in configs}) == 1
    assert len({config["AUDIT_KEY"] for config in configs}) == 1
    assert (instance / "secret_key").read_text(encoding="utf-8").strip() == configs[0]["SECRET_KEY"]


def test_development_prefers_given_secrets(tmp_path):
    instance = tmp_path / "instance"
    config = load_config({"GATEWAY_ENV": "development", "SECRET_KEY": "dev-secret"}, instance)
    assert config["SECRET_KEY"] == "dev-secret"
    assert not (instance / "secret_key").exists()


def test_development_replaces_an_empty_generated_secret(tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "secret_key").write_text("", encoding="utf-8")
    config = load_config({"GATEWAY_ENV": "development"}, instance)
    assert len(config["SECRET_KEY"]) >= 32


def test_development_with_unusable_instance_refuses(tmp_path):
    (tmp_path / "not-a-directory").write_text("", encoding="utf-8")
    instance = tmp_path / "not-a-directory" / "instance"  # cannot be created, not even by root
    assert refusal({"GATEWAY_ENV": "development"}, instance).startswith("SECRET_KEY")


def test_development_defaults(tmp_path):
    config = load_config({"GATEWAY_ENV": "development"}, tmp_path / "instance")
    assert config["SESSION_COOKIE_SECURE"] is False
    # manage.py serve's default address (serve moves it to its --host/--port); tests use the test client's host.
    assert config["PUBLIC_BASE_URL"] == "http://127.0.0.1:5000" and config["PUBLIC_BASE_URL_DEFAULTED"] is True
    testing = load_config(production(GATEWAY_ENV="testing", PUBLIC_BASE_URL=None), tmp_path / "instance")
    assert testing["PUBLIC_BASE_URL"] == "http://localhost"
    config = load_config({"GATEWAY_ENV": "development", "SESSION_COOKIE_SECURE": "1"}, tmp_path / "instance")
    assert config["SESSION_COOKIE_SECURE"] is True


def test_production_does_not_generate_secrets(tmp_path):
    instance = tmp_path / "instance"
    refusal({}, instance)
    assert not (instance / "secret_key").exists()


# --- the real entry points refuse with one line ------------------------------------------


def run_entry_point(args: list[str], environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=PROJECT,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **environ},
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_one_line_refusal(result: subprocess.CompletedProcess[str], setting: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert setting in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.slow  # manage.py / wsgi in processes of their own
def test_manage_py_refuses_with_one_line(tmp_path):
    result = run_entry_point(["manage.py", "users", "list"], {"GATEWAY_ENV": "production"})
    assert_one_line_refusal(result, "SECRET_KEY")
    assert result.stdout == ""


@pytest.mark.slow  # manage.py / wsgi in processes of their own
def test_manage_py_names_a_malformed_network(tmp_path):
    environ = {
        "SECRET_KEY": GOOD_SECRET,
        "AUDIT_KEY": GOOD_AUDIT_KEY,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'gw.db'}",
        "PUBLIC_BASE_URL": PUBLIC,
        "ALLOWED_NETWORKS": "10.0.0.1/8",
    }
    assert_one_line_refusal(run_entry_point(["manage.py", "users", "list"], environ), "ALLOWED_NETWORKS")


@pytest.mark.slow  # manage.py / wsgi in processes of their own
def test_wsgi_refuses_with_one_line():
    result = run_entry_point(["-c", "import wsgi"], {"GATEWAY_ENV": "production", "SECRET_KEY": GOOD_SECRET})
    assert_one_line_refusal(result, "AUDIT_KEY")


@pytest.mark.slow  # manage.py / wsgi in processes of their own
def test_wsgi_without_public_base_url_refuses_with_one_line(tmp_path):
    environ = production(PUBLIC_BASE_URL=None, DATABASE_URL=f"sqlite:///{tmp_path / 'gw.db'}")
    assert_one_line_refusal(run_entry_point(["-c", "import wsgi"], environ), "PUBLIC_BASE_URL")


# --- SMTP_URL and its companions ------------------------------------------------------------


def smtp_settings(**overrides: str) -> dict:
    return load_config(base_environ("sqlite://", **overrides))


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"SMTP_URL": "http://mail.example.com"}, "SMTP_URL: expected smtp://"),
        ({"SMTP_URL": "smtp://user:pw@mail.example.com"}, "SMTP_URL: put the user name and password"),
        ({"SMTP_URL": "smtp://mail.example.com?starttls=maybe"}, "SMTP_URL: the only option is starttls=off"),
        ({"SMTP_URL": "smtps://mail.example.com?starttls=off"}, "SMTP_URL: smtps:// is TLS from the start"),
        (
            {"SMTP_URL": "smtp://relay?starttls=off", "SMTP_USERNAME": "u", "SMTP_PASSWORD": "p"},
            "credentials never travel without TLS",
        ),
        ({"SMTP_URL": "smtp://mail.example.com", "SMTP_USERNAME": "u"}, "SMTP_PASSWORD: set SMTP_USERNAME and"),
        ({"SMTP_FROM": "gateway@example.com\r\nBcc: x@y.org"}, "SMTP_FROM: expected a plain address"),
        ({"DELIVERY_MAX_ATTEMPTS": "0"}, "DELIVERY_MAX_ATTEMPTS: must be between 1 and 100"),
        ({"DELIVERY_LEASE_SECONDS": "1"}, "DELIVERY_LEASE_SECONDS: must be between 2"),
    ],
)
def test_a_bad_mail_or_delivery_setting_is_named(overrides, expected):
    with pytest.raises(ConfigError) as caught:
        smtp_settings(**overrides)
    assert expected in str(caught.value)
    assert "pw@" not in str(caught.value)  # the URL (and a password in it) is not repeated


def test_mail_settings_and_their_defaults(tmp_path):
    password = tmp_path / "smtp-password"
    password.write_text("from-a-mount\n")
    settings = smtp_settings(
        SMTP_URL="smtp://mail.example.com", SMTP_USERNAME="gateway", SMTP_PASSWORD_FILE=str(password),
        PUBLIC_BASE_URL="https://ops.example.com",
    )  # fmt: skip
    server = settings["SMTP_SERVER"]
    assert (server.host, server.port, server.security, server.username) == (
        "mail.example.com",
        587,
        "starttls",
        "gateway",
    )
    assert server.password == "from-a-mount" and "from-a-mount" not in repr(server)
    assert settings["SMTP_FROM"] == "ops-gateway@ops.example.com"
    assert smtp_settings(SMTP_URL="smtps://mail.example.com")["SMTP_SERVER"].port == 465
    assert smtp_settings(SMTP_URL="smtp://relay:25?starttls=off")["SMTP_SERVER"].security == "none"
    assert (settings["DELIVERY_MAX_ATTEMPTS"], settings["DELIVERY_RETRY_SECONDS"]) == (8, 30)
