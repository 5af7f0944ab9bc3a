"""Settings for the gateway, read from environment variables.

Every setting DESIGN.md names is read here and nowhere else, so an operator can
see in one file what the process reacts to.  Parsing is strict: a malformed
value raises ``ConfigError`` with one line naming the setting, and production
refuses to start on a value that would make the gateway unsafe.
"""

from __future__ import annotations

import builtins
import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parent
ENVIRONMENTS = ("production", "development", "testing")
LOOPBACK_NETWORKS = "127.0.0.0/8,::1/128"
ALL_NETWORKS = "0.0.0.0/0,::/0"
MIN_SECRET_LENGTH = 32
# Where links point when PUBLIC_BASE_URL is not set: `manage.py serve`'s default address, the test client's host.
DEFAULT_PUBLIC_BASE_URLS = {"development": "http://127.0.0.1:5000", "testing": "http://localhost"}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# The languages the UI ships a translation for (translations/<code>/LC_MESSAGES/messages.po), English
# first: the source language and the fallback. The one list: the catalogue's text keys, the language
# selects and GATEWAY_LANGUAGES are checked against it. A new language is a new .po and an entry here.
SHIPPED_LANGUAGES = ("en", "de")


class ConfigError(Exception):
    """A setting is missing, malformed or unsafe; the message names it.

    The message is kept to one line (an operator reads it in a crash-looping
    pod's log), whatever text a library error or a bad value brought along.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(message.splitlines()))


class _Env:
    """Typed accessors over an environment mapping; errors name the variable."""

    # The accessors are named after the types they return, so inside this class `str`, `int`
    # and `bool` are the methods: annotations spell the builtins out.

    def __init__(self, environ: Mapping[str, str]):
        self.environ = environ

    def raw(self, name: builtins.str) -> builtins.str | None:
        value = self.environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def str(self, name: builtins.str, default: builtins.str | None = None) -> builtins.str | None:
        value = self.raw(name)
        return default if value is None else value

    def int(
        self, name: builtins.str, default: builtins.int, minimum: builtins.int = 0, maximum: builtins.int | None = None
    ) -> builtins.int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(f"{name}: expected a whole number, got {value!r}") from None
        if number < minimum or (maximum is not None and number > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise ConfigError(f"{name}: must be {bound}, got {number}")
        return number

    def bool(self, name: builtins.str, default: builtins.bool) -> builtins.bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}: expected true or false, got {value!r}")

    def secret(self, name: builtins.str) -> builtins.str | None:
        """A secret from ``NAME`` or from the file named by ``NAME_FILE`` (Kubernetes mounts)."""
        direct = self.raw(name)
        file_name = self.raw(f"{name}_FILE")
        if direct is not None and file_name is not None:
            raise ConfigError(f"{name}: set either {name} or {name}_FILE, not both")
        if file_name is None:
            return direct
        try:
            value = Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE: cannot read {file_name!r} ({exc.strerror or exc})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{name}_FILE: {file_name!r} is not UTF-8 text") from None
        if not value:
            raise ConfigError(f"{name}_FILE: {file_name!r} is empty")
        return value

    def networks(self, name: builtins.str, default: builtins.str) -> tuple[Network, ...]:
        return parse_networks(name, self.str(name, default) or "")


def parse_networks(name: str, text: str) -> tuple[Network, ...]:
    """Parse a comma-separated CIDR list; host bits set or garbage is an error."""
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=True))
        except ValueError as exc:
            raise ConfigError(f"{name}: {item!r} is not a valid network ({exc})") from None
    if not networks:
        raise ConfigError(f"{name}: no network given")
    return tuple(networks)


def covers_everything(networks: tuple[Network, ...]) -> bool:
    """Whether the list admits every IPv4 or every IPv6 address (``0.0.0.0/0``, or e.g. two ``/1`` halves)."""
    v4 = [net for net in networks if isinstance(net, ipaddress.IPv4Network)]
    v6 = [net for net in networks if isinstance(net, ipaddress.IPv6Network)]
    collapsed: list[Network] = [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]
    return any(net.prefixlen == 0 for net in collapsed)


def parse_audit_keys(text: str | None) -> dict[str, str]:
    """``AUDIT_KEYS`` = ``id:key,id:key`` (older keys kept so rotated rows still verify)."""
    keys: dict[str, str] = {}
    for item in (part.strip() for part in (text or "").split(",")):
        if not item:
            continue
        key_id, sep, key = item.partition(":")
        if not sep or not key_id.strip() or not key.strip():
            raise ConfigError("AUDIT_KEYS: each entry must look like id:key")
        keys[key_id.strip()] = key.strip()
    return keys


def normalise_database_url(url: str) -> str:
    """Pick the installed drivers and refuse anything that is not SQLite or PostgreSQL."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: e.g. a port that is not a number
        raise ConfigError("DATABASE_URL: not a valid database URL") from None
    backend = parsed.get_backend_name()
    if backend == "postgres":
        backend = "postgresql"
    if backend == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend != "sqlite":
        raise ConfigError(f"DATABASE_URL: unsupported database {backend!r} (use sqlite or postgresql)")
    return parsed.render_as_string(hide_password=False)


def _instance_secret(instance_path: Path, filename: str, setting: str) -> str:
    """Development only: a generated secret kept in ``instance/`` (mode 0600) across restarts.

    The file appears complete or not at all (written aside, then hard-linked
    into place), so two processes starting at once end up sharing the first
    one's secret.  A file that cannot be read or written is a ``ConfigError``
    naming the setting rather than a traceback.
    """
    path = instance_path / filename
    try:
        if path.exists() and (existing := path.read_text(encoding="utf-8").strip()):
            return existing
        instance_path.mkdir(mode=0o700, parents=True, exist_ok=True)
        value = secrets.token_urlsafe(48)
        aside = instance_path / f".{filename}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(value + "\n")
            try:
                os.link(aside, path)
            except FileExistsError:
                if existing := path.read_text(encoding="utf-8").strip():
                    return existing
                os.replace(aside, path)  # an empty leftover file
        finally:
            aside.unlink(missing_ok=True)
        return value
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{setting}: not set, and cannot keep a generated one in {str(path)!r} ({exc})") from None


def load_config(environ: Mapping[str, str] | None = None, instance_path: Path | None = None) -> dict[str, Any]:
    """Build the Flask config mapping from the environment, refusing unsafe production settings."""
    env = _Env(os.environ if environ is None else environ)
    instance = Path(instance_path or PROJECT_ROOT / "instance")

    gateway_env = (env.str("GATEWAY_ENV", "production") or "production").lower()
    if gateway_env not in ENVIRONMENTS:
        raise ConfigError(f"GATEWAY_ENV: expected one of {', '.join(ENVIRONMENTS)}, got {gateway_env!r}")
    production = gateway_env == "production"

    secret_key = env.secret("SECRET_KEY")
    audit_key = env.secret("AUDIT_KEY")
    if gateway_env == "development":
        secret_key = secret_key or _instance_secret(instance, "secret_key", "SECRET_KEY")
        audit_key = audit_key or _instance_secret(instance, "audit_key", "AUDIT_KEY")
    if not secret_key:
        raise ConfigError("SECRET_KEY: not set (set SECRET_KEY or SECRET_KEY_FILE)")
    if not audit_key:
        raise ConfigError("AUDIT_KEY: not set (set AUDIT_KEY or AUDIT_KEY_FILE)")
    if production and len(secret_key) < MIN_SECRET_LENGTH:
        raise ConfigError(f"SECRET_KEY: too short (at least {MIN_SECRET_LENGTH} characters)")
    if production and len(audit_key) < MIN_SECRET_LENGTH:
        raise ConfigError(f"AUDIT_KEY: too short (at least {MIN_SECRET_LENGTH} characters)")

    audit_key_id = env.str("AUDIT_KEY_ID", "k1") or "k1"
    audit_keys = parse_audit_keys(env.str("AUDIT_KEYS"))
    if audit_keys.get(audit_key_id, audit_key) != audit_key:
        raise ConfigError(f"AUDIT_KEYS: entry {audit_key_id!r} differs from AUDIT_KEY")
    audit_keys[audit_key_id] = audit_key

    database_url = env.secret("DATABASE_URL") or f"sqlite:///{instance / 'gateway.db'}"
    database_url = normalise_database_url(database_url)

    allow_all = env.bool("ALLOW_ALL_NETWORKS", False)
    allowed = env.networks("ALLOWED_NETWORKS", ALL_NETWORKS if allow_all else LOOPBACK_NETWORKS)
    if covers_everything(allowed) and not allow_all:
        raise ConfigError("ALLOWED_NETWORKS: allows every address; set ALLOW_ALL_NETWORKS=1 to mean it")

    login_rate_limit = env.str("LOGIN_RATE_LIMIT", "10/minute") or "10/minute"
    _check_rate_limit("LOGIN_RATE_LIMIT", login_rate_limit)
    run_refusal_rate_limit = env.str("RUN_REFUSAL_RATE_LIMIT", "60/minute") or "60/minute"
    _check_rate_limit("RUN_REFUSAL_RATE_LIMIT", run_refusal_rate_limit)
    choices_rate_limit = env.str("CHOICES_RATE_LIMIT", "120/minute") or "120/minute"
    _check_rate_limit("CHOICES_RATE_LIMIT", choices_rate_limit)
    storage_uri = env.str("RATELIMIT_STORAGE_URI", "memory://") or "memory://"
    if not storage_uri.startswith(("memory://", "redis://", "rediss://", "redis+unix://")):
        raise ConfigError("RATELIMIT_STORAGE_URI: expected memory:// or redis://...")

    run_as_user = env.str("RUN_AS_USER")
    _check_run_as_user(run_as_user, production)

    commands_file = env.str("GATEWAY_COMMANDS_FILE", str(PROJECT_ROOT / "commands.yaml"))

    public_base_url = parse_public_base_url(env.str("PUBLIC_BASE_URL"), gateway_env)
    trusted_hosts = parse_trusted_hosts(env.str("TRUSTED_HOSTS"), public_base_url)

    settings = {
        "GATEWAY_ENV": gateway_env,
        "TESTING": gateway_env == "testing",
        # Not a setting: only the test suite's environment hashes passwords cheaply.
        "PASSWORD_HASH_PROFILE": "cheap-for-tests" if gateway_env == "testing" else "strong",
        "DEBUG": False,
        "SECRET_KEY": secret_key,
        "AUDIT_KEY": audit_key,
        "AUDIT_KEY_ID": audit_key_id,
        "AUDIT_KEYS": audit_keys,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "GATEWAY_COMMANDS_FILE": commands_file,
        "ALLOWED_NETWORKS": allowed,
        "ALLOW_ALL_NETWORKS": allow_all,
        "HEALTH_ALLOWED_NETWORKS": env.networks("HEALTH_ALLOWED_NETWORKS", ALL_NETWORKS),
        "METRICS_ALLOWED_NETWORKS": env.networks("METRICS_ALLOWED_NETWORKS", ",".join(str(net) for net in allowed)),
        "TRUSTED_PROXY_COUNT": env.int("TRUSTED_PROXY_COUNT", 0, maximum=10),
        "PUBLIC_BASE_URL": public_base_url,
        "PUBLIC_BASE_URL_DEFAULTED": env.raw("PUBLIC_BASE_URL") is None,
        # Not Flask's TRUSTED_HOSTS: Flask checks that while routing, before netguard can let the
        # probes and /metrics through whatever their Host.
        "GATEWAY_TRUSTED_HOSTS": trusted_hosts,
        "RATELIMIT_STORAGE_URI": storage_uri,
        "RATELIMIT_HEADERS_ENABLED": True,
        "RATELIMIT_SWALLOW_ERRORS": False,
        "RATELIMIT_STRATEGY": "fixed-window",
        "LOGIN_RATE_LIMIT": login_rate_limit,
        "RUN_REFUSAL_RATE_LIMIT": run_refusal_rate_limit,
        # Calls to the choices route per user (each may run a source query); then 429.
        "CHOICES_RATE_LIMIT": choices_rate_limit,
        "LOGIN_MAX_ATTEMPTS": env.int("LOGIN_MAX_ATTEMPTS", 5, minimum=1),
        "LOGIN_LOCK_SECONDS": env.int("LOGIN_LOCK_SECONDS", 60, minimum=1),
        "LOGIN_LOCK_MAX_SECONDS": env.int("LOGIN_LOCK_MAX_SECONDS", 900, minimum=1),
        "AUDIT_FLOOD_PER_MINUTE": env.int("AUDIT_FLOOD_PER_MINUTE", 60, minimum=1),
        "RUN_WORKERS": env.int("RUN_WORKERS", 32, minimum=1, maximum=1024),
        "RUN_AS_USER": run_as_user,
        "RUN_HEARTBEAT_SECONDS": env.int("RUN_HEARTBEAT_SECONDS", 5, minimum=1),
        "RUN_SHUTDOWN_GRACE_SECONDS": env.int("RUN_SHUTDOWN_GRACE_SECONDS", 30, minimum=0),
        # A scheduled occurrence still runs if claimed within this many seconds of its time; older ones
        # are recorded once per gap as schedule.missed (gateway/schedules).
        # How often an open dashboard re-reads its tiles (one conditional GET; it never starts a run).
        "DASHBOARD_REFRESH_SECONDS": env.int("DASHBOARD_REFRESH_SECONDS", 30, minimum=1, maximum=3600),
        "SCHEDULE_MISFIRE_GRACE_SECONDS": env.int("SCHEDULE_MISFIRE_GRACE_SECONDS", 300, minimum=1, maximum=86_400),
        "MAX_OUTPUT_BYTES": env.int("MAX_OUTPUT_BYTES", 10 * 1024 * 1024, minimum=1024),
        "AUDIT_OUTPUT_EXCERPT_BYTES": env.int("AUDIT_OUTPUT_EXCERPT_BYTES", 2048),
        "AUDIT_ANCHOR_EVERY": env.int("AUDIT_ANCHOR_EVERY", 1000),
        "MAX_CONTENT_LENGTH": env.int("MAX_CONTENT_LENGTH", 16 * 1024 * 1024, minimum=1024),
        # How long a request waits for the database's write lock before its 503. At least 1 s: with 0,
        # requests of one process queueing for the write lock a few ms apart would refuse each other.
        # At most the background writers' patience (30 s), which a request never outlasts.
        "WRITE_LOCK_TIMEOUT_SECONDS": env.int("WRITE_LOCK_TIMEOUT_SECONDS", 5, minimum=1, maximum=30),
        # Not a setting: the stall guard (gateway.db.stall_guard) bounds every round trip of a serving
        # app; the CLI builds its apps with it off (create_app's ``config``), except the one it serves.
        "DATABASE_STALL_GUARD": True,
        "SESSION_COOKIE_NAME": "gateway_session",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": env.bool("SESSION_COOKIE_SECURE", production),
        "REMEMBER_COOKIE_DURATION": 0,
        "SESSION_IDLE_MINUTES": env.int("SESSION_IDLE_MINUTES", 30, minimum=1),
        "SESSION_MAX_HOURS": env.int("SESSION_MAX_HOURS", 12, minimum=1),
        "STREAMS_PER_PROCESS": env.int("STREAMS_PER_PROCESS", 16, minimum=1),
        "STREAMS_PER_USER": env.int("STREAMS_PER_USER", 4, minimum=1),
        "WTF_CSRF_TIME_LIMIT": None,
        "WTF_CSRF_SSL_STRICT": True,
    }
    settings["LANGUAGES"] = parse_languages(env.str("GATEWAY_LANGUAGES"))
    settings.update(identity_settings(env, production))
    settings.update(mfa_settings(env, production, secret_key))
    settings.update(outbound_settings(env))
    settings.update(audit_forward_settings(env))
    settings.update(delivery_settings(env, public_base_url))
    return settings


def parse_languages(text: str | None) -> tuple[str, ...]:
    """``GATEWAY_LANGUAGES``: which shipped languages the UI offers (default all), English always among them."""
    if text is None:
        return SHIPPED_LANGUAGES
    languages = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [code for code in languages if code not in SHIPPED_LANGUAGES]
    if unknown:
        raise ConfigError(
            f"GATEWAY_LANGUAGES: {unknown[0]!r} is not a shipped language ({', '.join(SHIPPED_LANGUAGES)})"
        )
    if "en" not in languages:
        raise ConfigError("GATEWAY_LANGUAGES: must include en (the source language every text falls back to)")
    return ("en", *(code for code in languages if code != "en"))


def outbound_settings(env: _Env) -> dict[str, Any]:
    """Sends to receivers the gateway does not own (DESIGN.md, "Outbound delivery"; ``gateway/outbound``).

    ``OUTBOUND_CA_FILE`` adds a private CA to the system store for every
    outbound TLS connection; it is read at start so a wrong path stops the
    process with its name instead of failing every delivery later.
    """
    ca_file = env.str("OUTBOUND_CA_FILE")
    if ca_file is not None:
        try:
            text = Path(ca_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"OUTBOUND_CA_FILE: cannot read {ca_file!r} ({exc.strerror or exc})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"OUTBOUND_CA_FILE: {ca_file!r} is not a PEM file") from None
        if "-----BEGIN CERTIFICATE-----" not in text:
            raise ConfigError(f"OUTBOUND_CA_FILE: {ca_file!r} holds no PEM certificate")
    return {"OUTBOUND_CA_FILE": ca_file}


FORWARD_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
FORWARD_SCHEMES = {"https": "http", "http": "http", "syslog+tcp": "syslog", "syslog+tls": "syslog"}


@dataclass(frozen=True)
class ForwardDestination:
    """One ``AUDIT_FORWARD`` entry: ``kind`` ``http`` (JSON lines, ``url``) or ``syslog`` (RFC 5424 to ``host:port``).

    The URL, token and secret stay out of ``repr``: a URL may carry a collector's key.
    """

    name: str
    kind: str
    url: str = field(repr=False)
    host: str
    port: int | None
    tls: bool
    token: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)


def audit_forward_settings(env: _Env) -> dict[str, Any]:
    """Audit forwarding to a SIEM (DESIGN.md, "Outbound delivery"; ``gateway/audit/forwarding``).

    ``AUDIT_FORWARD`` is a comma list of ``name=url``; each name's bearer token
    and signing secret come from ``AUDIT_FORWARD_<NAME>_TOKEN`` / ``_SECRET`` (or
    their ``_FILE``).  A send times out after a third of the lease (at most 10 s), so a
    forwarder always finishes a batch while its lease still holds.
    """
    destinations: list[ForwardDestination] = []
    for item in _comma_list(env.str("AUDIT_FORWARD")):
        name, sep, url = (part.strip() for part in item.partition("="))
        name = name.lower()
        if not sep or not FORWARD_NAME.fullmatch(name):
            raise ConfigError(
                f"AUDIT_FORWARD: each entry must look like name=url, the name a letter then letters, digits"
                f" or _ (at most 32), got {name[:40]!r}"
            )
        if any(known.name == name for known in destinations):
            raise ConfigError(f"AUDIT_FORWARD: destination {name!r} is given twice")
        destinations.append(_forward_destination(env, name, url))
    lease = env.int("AUDIT_FORWARD_LEASE_SECONDS", 30, minimum=3, maximum=3600)
    return {
        "AUDIT_FORWARD": tuple(destinations),
        "AUDIT_FORWARD_BATCH": env.int("AUDIT_FORWARD_BATCH", 500, minimum=1, maximum=10_000),
        "AUDIT_FORWARD_POLL_SECONDS": env.int("AUDIT_FORWARD_POLL_SECONDS", 2, minimum=1, maximum=300),
        "AUDIT_FORWARD_LEASE_SECONDS": lease,
        # Not a setting: derived from the lease, so a batch in flight never outlives it.
        "AUDIT_FORWARD_TIMEOUT_SECONDS": min(10.0, lease / 3),
    }


def _forward_destination(env: _Env, name: str, url: str) -> ForwardDestination:
    """One destination's URL checked and its credentials read; errors never quote the URL (it may hold a key)."""
    expected = (
        f"AUDIT_FORWARD: destination {name!r}: expected https://host/path, http://host/path, "
        "syslog+tcp://host:port or syslog+tls://host:port"
    )
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError when the port is not a number in range
    except ValueError:
        raise ConfigError(expected) from None
    scheme = parts.scheme.lower()
    kind = FORWARD_SCHEMES.get(scheme)
    if kind is None or not parts.hostname or any(c.isspace() or ord(c) < 32 for c in url) or parts.fragment:
        raise ConfigError(expected)
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"AUDIT_FORWARD: destination {name!r}: no user name or password in the URL (use a token)")
    if kind == "syslog" and (port is None or parts.path not in ("", "/") or parts.query):
        raise ConfigError(f"AUDIT_FORWARD: destination {name!r}: a syslog URL is host:port, nothing after it")
    prefix = f"AUDIT_FORWARD_{name.upper()}"
    token, secret = env.secret(f"{prefix}_TOKEN"), env.secret(f"{prefix}_SECRET")
    if kind == "syslog" and (token or secret):
        raise ConfigError(
            f"{prefix}_TOKEN/_SECRET: destination {name!r} speaks syslog; tokens and secrets are for https"
        )
    if scheme == "http" and token and not _loopback(parts.hostname):
        raise ConfigError(
            f"{prefix}_TOKEN: the token would travel in clear text; use https (http is for a local collector)"
        )
    return ForwardDestination(
        name=name, kind=kind, url=url, host=parts.hostname, port=port,
        tls=scheme in ("https", "syslog+tls"), token=token, secret=secret,
    )  # fmt: skip


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class SmtpServer:
    """Where notification mail goes (``SMTP_URL``): how the connection is secured, and who signs in.

    ``security``: ``starttls`` (``smtp://``; refuses to send when the server does not offer it),
    ``tls`` (``smtps://``, TLS from the first byte) or ``none`` (``smtp://...?starttls=off``, a
    local relay; never with credentials).
    """

    host: str
    port: int
    security: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)


_MAIL_ADDRESS = re.compile(r"[^\s@<>,;:\"()\[\]\\\x00-\x1f\x7f]{1,64}@[A-Za-z0-9.-]{1,253}")


def parse_smtp_url(text: str | None) -> SmtpServer | None:
    """``SMTP_URL``: ``smtp://host[:port][?starttls=off]`` (default port 587) or ``smtps://host[:port]`` (465).

    Credentials never sit in the URL (it is shown in errors and process listings):
    they come from ``SMTP_USERNAME`` / ``SMTP_PASSWORD`` (or their ``_FILE``).
    """
    if text is None:
        return None
    expected = "expected smtp://host[:port][?starttls=off] or smtps://host[:port]"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ConfigError(f"SMTP_URL: {expected}") from None
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname or parts.path not in ("", "/") or parts.fragment:
        raise ConfigError(f"SMTP_URL: {expected}")
    if parts.username is not None or parts.password is not None:
        raise ConfigError("SMTP_URL: put the user name and password in SMTP_USERNAME and SMTP_PASSWORD, not the URL")
    options = dict(item.partition("=")[::2] for item in parts.query.split("&") if item)
    if set(options) - {"starttls"} or options.get("starttls", "on") not in ("on", "off"):
        raise ConfigError(f"SMTP_URL: the only option is starttls=off (for smtp://), got {parts.query!r}")
    if parts.scheme == "smtps":
        if "starttls" in options:
            raise ConfigError("SMTP_URL: smtps:// is TLS from the start; starttls does not apply")
        return SmtpServer(parts.hostname, port or 465, "tls")
    return SmtpServer(parts.hostname, port or 587, "none" if options.get("starttls") == "off" else "starttls")


def delivery_settings(env: _Env, public_base_url: str) -> dict[str, Any]:
    """The notification outbox and mail (DESIGN.md, "Outbound delivery"; ``gateway/deliveries``).

    A failed delivery is retried after ``DELIVERY_RETRY_SECONDS``, doubling (with jitter) up to
    ``DELIVERY_RETRY_MAX_SECONDS``, until ``DELIVERY_MAX_ATTEMPTS`` attempts: then it is dead.
    A replica that claims a delivery holds it for ``DELIVERY_LEASE_SECONDS``; if it dies meanwhile,
    any replica takes it over once that lease has run out.
    """
    server = parse_smtp_url(env.secret("SMTP_URL"))
    username, password = env.secret("SMTP_USERNAME"), env.secret("SMTP_PASSWORD")
    if (username is None) != (password is None):
        raise ConfigError("SMTP_PASSWORD: set SMTP_USERNAME and SMTP_PASSWORD together (or neither)")
    if server is not None and username is not None:
        if server.security == "none":
            raise ConfigError("SMTP_URL: starttls=off with SMTP_USERNAME set: credentials never travel without TLS")
        server = SmtpServer(server.host, server.port, server.security, username, password)
    host = urlsplit(public_base_url).hostname or ""
    domain = host if re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", host) and not host[-1].isdigit() else "localhost"
    default_sender = f"ops-gateway@{domain}"
    sender = env.str("SMTP_FROM", default_sender) or default_sender
    if not _MAIL_ADDRESS.fullmatch(sender):
        raise ConfigError(f"SMTP_FROM: expected a plain address like gateway@example.com, got {sender!r}")
    retry = env.int("DELIVERY_RETRY_SECONDS", 30, minimum=1, maximum=86_400)
    return {
        "DELIVERY_MAX_ATTEMPTS": env.int("DELIVERY_MAX_ATTEMPTS", 8, minimum=1, maximum=100),
        "DELIVERY_RETRY_SECONDS": retry,
        "DELIVERY_RETRY_MAX_SECONDS": env.int("DELIVERY_RETRY_MAX_SECONDS", max(3600, retry), minimum=retry),
        "DELIVERY_LEASE_SECONDS": env.int("DELIVERY_LEASE_SECONDS", 120, minimum=2, maximum=3600),
        "SMTP_SERVER": server,
        "SMTP_FROM": sender,
    }


MFA_POLICIES = ("none", "admins", "all")


def mfa_settings(env: _Env, production: bool, secret_key: str) -> dict[str, Any]:
    """Second factors and the keys that encrypt values at rest (DESIGN.md, the MFA bullet; ``SECRET_KEYS``).

    ``SECRET_KEYS`` keeps older secret keys (``id:key,…``) so a value
    encrypted before a rotation (a TOTP secret) stays readable: refusing a
    malformed entry at start is kinder than locking users out at sign-in.
    """
    policy = (env.str("MFA_REQUIRED", "admins") or "admins").lower()
    if policy not in MFA_POLICIES:
        raise ConfigError(f"MFA_REQUIRED: expected one of {', '.join(MFA_POLICIES)}, got {policy!r}")
    older: dict[str, str] = {}
    for item in _comma_list(env.secret("SECRET_KEYS")):
        key_id, sep, key = (part.strip() for part in item.partition(":"))
        if not sep or not key_id or not key:
            raise ConfigError("SECRET_KEYS: each entry must look like id:key")
        if key_id in older:
            raise ConfigError(f"SECRET_KEYS: id {key_id!r} is given twice")
        if production and len(key) < MIN_SECRET_LENGTH:
            raise ConfigError(f"SECRET_KEYS: key {key_id!r} is too short (at least {MIN_SECRET_LENGTH} characters)")
        if key != secret_key:  # the current key is always tried first anyway
            older[key_id] = key
    return {"MFA_REQUIRED": policy, "SECRET_KEYS": older}


AUTH_METHOD_NAMES = ("local", "oidc", "header")


def identity_settings(env: _Env, production: bool) -> dict[str, Any]:
    """How people sign in (DESIGN.md, "Identity beyond local passwords"): local passwords, OIDC, trusted headers."""
    methods = tuple(dict.fromkeys(part.strip().lower() for part in (env.str("AUTH_METHODS", "local") or "").split(",")))
    methods = tuple(method for method in methods if method)
    unknown = [method for method in methods if method not in AUTH_METHOD_NAMES]
    if unknown or not methods:
        raise ConfigError(
            f"AUTH_METHODS: expected a comma list of {', '.join(AUTH_METHOD_NAMES)}, got {env.raw('AUTH_METHODS')!r}"
        )
    settings: dict[str, Any] = {"AUTH_METHODS": methods}
    settings.update(_oidc_settings(env, production, enabled="oidc" in methods))
    settings.update(_header_settings(env, enabled="header" in methods))
    return settings


def _comma_list(text: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (text or "").split(",") if part.strip())


def _oidc_settings(env: _Env, production: bool, *, enabled: bool) -> dict[str, Any]:
    issuer = env.str("OIDC_ISSUER")
    client_id = env.str("OIDC_CLIENT_ID")
    if enabled:
        if not issuer:
            raise ConfigError("OIDC_ISSUER: not set (AUTH_METHODS includes oidc)")
        if not client_id:
            raise ConfigError("OIDC_CLIENT_ID: not set (AUTH_METHODS includes oidc)")
        parts = urlsplit(issuer)
        allowed_schemes = ("https",) if production else ("https", "http")
        if parts.scheme not in allowed_schemes or not parts.hostname or parts.query or parts.fragment:
            raise ConfigError(f"OIDC_ISSUER: expected an {' or '.join(allowed_schemes)} URL, got {issuer!r}")
    scopes = tuple((env.str("OIDC_SCOPES", "openid profile email") or "").split())
    if enabled and "openid" not in scopes:
        raise ConfigError(f"OIDC_SCOPES: must include openid, got {' '.join(scopes)!r}")
    admin_groups = env.str("OIDC_ADMIN_GROUPS")
    return {
        # Kept exactly as given: the ID token's iss must equal it character for character.
        "OIDC_ISSUER": issuer,
        "OIDC_CLIENT_ID": client_id,
        "OIDC_CLIENT_SECRET": env.secret("OIDC_CLIENT_SECRET"),
        "OIDC_SCOPES": scopes,
        "OIDC_USERNAME_CLAIM": env.str("OIDC_USERNAME_CLAIM", "preferred_username"),
        "OIDC_GROUPS_CLAIM": env.str("OIDC_GROUPS_CLAIM", "groups"),
        # None: the admin flag of OIDC users is managed by hand; a tuple (even empty) decides it at each sign-in.
        "OIDC_ADMIN_GROUPS": None if admin_groups is None else _comma_list(admin_groups),
        "OIDC_GROUPS_BY_NAME": env.bool("OIDC_GROUPS_BY_NAME", True),
        "OIDC_DISPLAY_NAME": env.str("OIDC_DISPLAY_NAME", "single sign-on"),
        "OIDC_REQUIRED_ACR": env.str("OIDC_REQUIRED_ACR"),
    }


def _header_settings(env: _Env, *, enabled: bool) -> dict[str, Any]:
    trusted_text = env.str("AUTH_HEADER_TRUSTED_NETWORKS")
    trusted = parse_networks("AUTH_HEADER_TRUSTED_NETWORKS", trusted_text) if trusted_text else ()
    if enabled and not trusted:
        raise ConfigError(
            "AUTH_HEADER_TRUSTED_NETWORKS: not set (AUTH_METHODS includes header: name the proxies' addresses)"
        )
    if enabled and covers_everything(trusted):
        raise ConfigError("AUTH_HEADER_TRUSTED_NETWORKS: trusts every address; name the proxies' addresses")
    user_header = env.str("AUTH_HEADER_USER", "X-Forwarded-User") or "X-Forwarded-User"
    groups_header = env.str("AUTH_HEADER_GROUPS")
    for name, value in (("AUTH_HEADER_USER", user_header), ("AUTH_HEADER_GROUPS", groups_header)):
        if value is not None and not re.fullmatch(r"[A-Za-z0-9-]{1,100}", value):
            raise ConfigError(f"{name}: expected an HTTP header name, got {value!r}")
    return {
        "AUTH_HEADER_USER": user_header,
        "AUTH_HEADER_GROUPS": groups_header,
        "AUTH_HEADER_TRUSTED_NETWORKS": trusted,
    }


def parse_public_base_url(text: str | None, gateway_env: str) -> str:
    """``PUBLIC_BASE_URL``: an absolute http(s) URL, maybe with a path prefix; returned without a trailing slash.

    Every absolute URL the gateway hands out starts with it, so a request's
    ``Host`` header never chooses where an invite link points.  Production has
    no default: a guess there would be the very thing this setting replaces.
    """
    if text is None:
        default = DEFAULT_PUBLIC_BASE_URLS.get(gateway_env)
        if default is None:
            raise ConfigError(
                "PUBLIC_BASE_URL: not set (the gateway's address as users reach it, e.g. https://ops.example.com)"
            )
        return default
    expected = "expected an absolute http(s) URL such as https://ops.example.com"
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises ValueError when the port is not a number in range
    except ValueError:
        raise ConfigError(f"PUBLIC_BASE_URL: {expected}, got {text!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() or ord(c) < 32 for c in text):
        raise ConfigError(f"PUBLIC_BASE_URL: {expected}, got {text!r}")
    if parts.username is not None or parts.password is not None:
        raise ConfigError("PUBLIC_BASE_URL: must not carry a user name or password")
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise ConfigError(f"PUBLIC_BASE_URL: must not have a query or fragment, got {text!r}")
    return f"{parts.scheme}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


_HOST_NAME = re.compile(r"\.?[a-z0-9-]+(\.[a-z0-9-]+)*|\[[0-9a-f:.]+\]")
_HOST_HEADER = re.compile(r"([a-z0-9.-]+|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?")


def host_trusted(host_header: str, trusted: tuple[str, ...]) -> bool:
    """Whether a ``Host`` value (``name[:port]``, ``[v6][:port]``) names one of ``trusted`` (ports ignored).

    An entry starting with a dot admits that domain and its subdomains.
    Werkzeug's ``host_is_trusted`` cannot match bracketed IPv6 entries, hence our own.
    """
    match = _HOST_HEADER.fullmatch(host_header.lower())
    if match is None:
        return False
    name = match.group(1).rstrip(".")
    return any(
        name == entry or (entry.startswith(".") and (name == entry[1:] or name.endswith(entry))) for entry in trusted
    )


def parse_trusted_hosts(text: str | None, public_base_url: str) -> tuple[str, ...] | None:
    """``TRUSTED_HOSTS``: host names (``.example.com`` for its subdomains) the ``Host`` header may name; None = any.

    The list must admit ``PUBLIC_BASE_URL``'s own host, or every link the
    gateway hands out would lead to a 400.
    """
    if text is None:
        return None
    hosts = tuple(item.strip().lower() for item in text.split(",") if item.strip())
    if not hosts:
        raise ConfigError("TRUSTED_HOSTS: no host given")
    for host in hosts:
        if not _HOST_NAME.fullmatch(host):
            raise ConfigError(f"TRUSTED_HOSTS: {host!r} is not a host name (no scheme, port or path)")
    if not host_trusted(urlsplit(public_base_url).netloc, hosts):
        raise ConfigError("TRUSTED_HOSTS: does not include PUBLIC_BASE_URL's host")
    return hosts


def _check_run_as_user(name: str | None, production: bool) -> None:
    """Commands run as RUN_AS_USER when the gateway can switch to it; production never runs them as root."""
    import pwd

    if name is not None:
        try:
            uid = pwd.getpwnam(name).pw_uid
        except KeyError:
            raise ConfigError(f"RUN_AS_USER: no such account {name!r}") from None
        if production and uid == 0:
            raise ConfigError("RUN_AS_USER: commands must not run as root")
    elif production and os.geteuid() == 0:
        raise ConfigError("RUN_AS_USER: not set and the gateway runs as root, so commands would run as root")


def _check_rate_limit(name: str, value: str) -> None:
    """Refuse what flask-limiter would only reject on the first sign-in (or a limit nobody can meet)."""
    from limits import parse_many

    try:
        parsed = parse_many(value)
    except ValueError:
        raise ConfigError(f"{name}: not a rate limit like '10/minute', got {value!r}") from None
    if any(limit.amount < 1 for limit in parsed):
        raise ConfigError(f"{name}: a limit of 0 would refuse every request, got {value!r}")
