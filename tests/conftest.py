"""Shared fixtures: a database per test, an app, a client, users, sign-in.

Every test that asks for ``app`` (or anything built on ``backend``) runs on SQLite, in a
fresh database copied from a migrated template.  On PostgreSQL, each test process keeps one
database and puts it back to the template's state between tests, or replaces it with a fresh
copy when a test changed more than rows (tests/pgpool.py).  Where database semantics matter (the
ledger, runs, leases, throttles, migrations, faults, the attack and sweep suites...) a
module or test opts in with ``pytest.mark.both_engines`` and runs on PostgreSQL too, when
it answers at ``GATEWAY_TEST_PG_URL`` (default 127.0.0.1:5432).
``GATEWAY_TEST_ALL_ENGINES=1`` runs every such test on both engines.  With
``GATEWAY_TEST_REQUIRE_POSTGRES=1`` (CI sets it) an unreachable PostgreSQL is a failure,
not a skip.  MySQL / MariaDB data sources are tested against the MariaDB server at
``GATEWAY_TEST_MARIADB_URL`` (default root at 127.0.0.1:3306) when it answers;
``GATEWAY_TEST_REQUIRE_MARIADB=1`` (CI) makes its absence a failure too.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flask
import jinja2
import pytest
import sqlalchemy as sa
from flask import Flask, request_finished
from flask.testing import FlaskClient
from werkzeug.wrappers import Response

from gateway import create_app
from gateway.db import migrate
from gateway.identity import accounts
from tests import pgpool, route_builders

PG_ADMIN_URL = os.environ.get("GATEWAY_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REQUIRE_POSTGRES = os.environ.get("GATEWAY_TEST_REQUIRE_POSTGRES") == "1"
MARIADB_ADMIN_URL = os.environ.get("GATEWAY_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/")
REQUIRE_MARIADB = os.environ.get("GATEWAY_TEST_REQUIRE_MARIADB") == "1"
ALL_ENGINES = os.environ.get("GATEWAY_TEST_ALL_ENGINES") == "1"
TEST_SECRET_KEY = "test-secret-key-" + "x" * 32
TEST_AUDIT_KEY = "test-audit-key-" + "y" * 32
PASSWORDS = {"admin": "admin-password-123", "staff": "staff-password-123", "other": "other-password-123"}
CSRF_PATTERN = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


# Each app's URL builders come from one compilation per distinct route (tests/route_builders.py).
route_builders.install()

# pytester: tests/test_no_500_guard.py runs the guard below on a test of its own; oidc_idp: the test OpenID provider.
pytest_plugins = ["pytester", "tests.oidc_idp"]


# --- no 500s ---------------------------------------------------------------------------

ANSWERED_500 = pytest.StashKey[list[str]]()


@pytest.fixture(autouse=True)
def no_500_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """Record every request that answered 500, from any app a test builds, in any thread.

    ``request_finished`` is sent for every response Flask finalises, error
    handlers' included (the app turns unhandled exceptions into a 500 page, so
    ``got_request_exception`` never fires).  ``pytest_runtest_call`` below
    fails the test unless it is marked ``allow_500``.
    """
    answered: list[str] = []
    request.node.stash[ANSWERED_500] = answered

    def record(sender: Flask, response: Response, **extra: Any) -> None:
        if response.status_code == 500:
            answered.append(f"{flask.request.method} {flask.request.full_path.rstrip('?')[:200]}")

    request_finished.connect(record, weak=False)
    yield
    request_finished.disconnect(record)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """A request that answered 500 fails the test: an internal error is a bug, not an answer."""
    __tracebackhide__ = True
    result = yield
    answered = item.stash.get(ANSWERED_500, [])
    if answered and item.get_closest_marker("allow_500") is None:
        shown = "\n  ".join(answered[:20])
        pytest.fail(
            f"{len(answered)} request(s) answered 500 (mark the test allow_500 if that is the point):\n  {shown}"
        )
    return result


# --- PostgreSQL availability ------------------------------------------------------------


def _pg_available() -> bool:
    try:
        engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 2})
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
        engine.dispose()
        return True
    except Exception:
        return False


PG_AVAILABLE = _pg_available()


def mariadb_admin() -> Any:
    """A PyMySQL connection (autocommit) as the MariaDB administrator of ``GATEWAY_TEST_MARIADB_URL``."""
    import pymysql

    url = sa.make_url(MARIADB_ADMIN_URL)
    return pymysql.connect(
        host=url.host or "127.0.0.1", port=url.port or 3306, user=url.username or "root", password=url.password or "",
        autocommit=True, connect_timeout=2, ssl_disabled=True,
    )  # fmt: skip


def _mariadb_available() -> bool:
    try:
        mariadb_admin().close()
        return True
    except Exception:
        return False


MARIADB_AVAILABLE = _mariadb_available()


def pytest_sessionstart(session: pytest.Session) -> None:
    if REQUIRE_POSTGRES and not PG_AVAILABLE:
        raise pytest.UsageError(f"GATEWAY_TEST_REQUIRE_POSTGRES=1 but PostgreSQL is unreachable at {PG_ADMIN_URL}")
    if REQUIRE_MARIADB and not MARIADB_AVAILABLE:
        raise pytest.UsageError(f"GATEWAY_TEST_REQUIRE_MARIADB=1 but MariaDB is unreachable at {MARIADB_ADMIN_URL}")


def pg_url(database: str) -> str:
    return sa.make_url(PG_ADMIN_URL).set(database=database).render_as_string(hide_password=False)


def create_pg_database(template: str | None = None) -> str:
    """A new database (named ``gw_test_...``), empty or a copy of ``template``."""
    return pgpool.create_database(PG_ADMIN_URL, template)


def drop_pg_database(name: str) -> None:
    pgpool.drop_database(PG_ADMIN_URL, name)


# --- environments and apps --------------------------------------------------------------


def base_environ(database_url: str, **overrides: str) -> dict[str, str]:
    environ = {
        "GATEWAY_ENV": "testing",
        "SECRET_KEY": TEST_SECRET_KEY,
        "AUDIT_KEY": TEST_AUDIT_KEY,
        "AUDIT_KEY_ID": "test1",
        "DATABASE_URL": database_url,
        "ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
        "RATELIMIT_STORAGE_URI": "memory://",
        "LOGIN_RATE_LIMIT": "1000/minute",
        # Tests sign in with seeded sessions (seed_session), which carry no second factor: with the
        # production default (admins must enrol) every admin page would redirect to /account/mfa.
        # The MFA tests (tests/test_mfa*.py) set MFA_REQUIRED themselves.
        "MFA_REQUIRED": "none",
        "RUN_REFUSAL_RATE_LIMIT": "1000/minute",
    }
    environ.update(overrides)
    return environ


def _migrate(database_url: str, instance: Path) -> None:
    app = create_app(base_environ(database_url), instance_path=instance)
    from gateway.platform.extensions import db

    with app.app_context():
        migrate.upgrade("head")
        db.engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("sqlite-template")
    path = directory / "template.db"
    _migrate(f"sqlite:///{path}", directory / "instance")
    return path


@pytest.fixture(scope="session")
def pg_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not PG_AVAILABLE:
        pytest.skip("PostgreSQL is not reachable")
    name = create_pg_database()
    _migrate(pg_url(name), tmp_path_factory.mktemp("pg-template"))
    yield name
    drop_pg_database(name)


@pytest.fixture(scope="session")
def pg_databases(pg_template: str) -> Iterator[pgpool.PgDatabases]:
    """This test process's PostgreSQL database, reset to the template's state between tests (tests/pgpool.py)."""
    databases = pgpool.PgDatabases(PG_ADMIN_URL, pg_template, pg_url)
    yield databases
    databases.close()


# --- which engines a test runs on --------------------------------------------------------

ENGINES = [pytest.param("sqlite"), pytest.param("postgresql", marks=pytest.mark.postgres)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run a database test on SQLite; on PostgreSQL too where it carries ``both_engines``.

    Most tests exercise the web, the API or the CLI, not the database, and one engine
    is enough for them.  Where database semantics matter, a module says
    ``pytestmark = pytest.mark.both_engines`` (or a test ``@pytest.mark.both_engines``).
    ``GATEWAY_TEST_ALL_ENGINES=1`` puts every database test on both.  A test that
    parametrizes ``backend`` itself, or a module with its own ``backend`` fixture, keeps
    its choice.
    """
    if "backend" not in metafunc.fixturenames or _chooses_its_own_engine(metafunc):
        return
    both = ALL_ENGINES or metafunc.definition.get_closest_marker("both_engines") is not None
    metafunc.parametrize("backend", ENGINES if both else ENGINES[:1], indirect=True)


def _chooses_its_own_engine(metafunc: pytest.Metafunc) -> bool:
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0] if marker.args else marker.kwargs["argnames"]
        if "backend" in ([name.strip() for name in names.split(",")] if isinstance(names, str) else names):
            return True
    return getattr(metafunc.module, "backend", backend) is not backend


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """``"sqlite"`` or ``"postgresql"``: the engine of this test's database (see ``pytest_generate_tests``)."""
    return request.param


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database for one test, in the template's state (a copy on SQLite, a reset one on PostgreSQL)."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "gateway.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    databases: pgpool.PgDatabases = request.getfixturevalue("pg_databases")
    name = databases.take()
    yield pg_url(name)
    databases.give_back(name)


@pytest.fixture
def empty_database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database with no schema at all (for migration tests)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    if not PG_AVAILABLE:
        pytest.skip("PostgreSQL is not reachable")
    name = create_pg_database()
    yield pg_url(name)
    drop_pg_database(name)


@pytest.fixture(scope="session")
def template_bytecode(tmp_path_factory: pytest.TempPathFactory) -> jinja2.BytecodeCache:
    """Compiled templates shared by the session's apps; each new app would compile every page again (~20 ms each)."""
    return jinja2.FileSystemBytecodeCache(str(tmp_path_factory.mktemp("jinja-bytecode")))


@pytest.fixture
def make_app(
    database_url: str, tmp_path: Path, template_bytecode: jinja2.BytecodeCache
) -> Iterator[Callable[..., Flask]]:
    """Build an app on this test's database; keyword arguments override environment settings."""

    apps: list[Flask] = []

    def factory(**overrides: Any) -> Flask:
        environ = base_environ(database_url, **{k: str(v) for k, v in overrides.items()})
        app = create_app(environ, instance_path=tmp_path / f"instance{len(apps)}")
        app.jinja_env.bytecode_cache = template_bytecode
        apps.append(app)
        return app

    yield factory
    for app in apps:
        close_app(app)


def close_app(app: Flask) -> None:
    """Stop an app a test built: its executor (cancelling what still runs) and its connections."""
    from gateway.platform.extensions import db

    executor = app.extensions.get("gateway.executor")
    if executor is not None:
        executor.shutdown(grace=0)
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


# --- users and sign-in ------------------------------------------------------------------


@dataclass
class TestUser:
    id: int
    username: str
    password: str


@pytest.fixture
def users(app: Flask) -> dict[str, TestUser]:
    """An admin, a staff member and another staff member, with known passwords."""

    created = {}
    with app.app_context():
        for name, password in PASSWORDS.items():
            user = accounts.create_user(name, password, is_admin=(name == "admin"))
            created[name] = TestUser(id=user.id, username=name, password=password)
    return created


def csrf_token_from(html: str) -> str:
    match = CSRF_PATTERN.search(html)
    assert match, "no CSRF token in page"
    return match.group(1) or match.group(2)


def login_response(client: FlaskClient, username: str, password: str, **extra: Any):
    """POST the sign-in form the way a browser does (CSRF token from the form)."""
    environ_base = extra.pop("environ_base", None) or {}
    token = csrf_token_from(client.get("/login", environ_base=environ_base).get_data(as_text=True))
    data = {"username": username, "password": password, "csrf_token": token, **extra}
    return client.post("/login", data=data, environ_base=environ_base)


def seed_session(app: Flask, client: FlaskClient, user_id: int) -> None:
    """Sign ``client`` in as ``user_id`` the way a completed sign-in leaves it, without the form.

    A live server-side session record and the cookie that names it: what
    ``sessions.start`` and flask-login write.  The sign-in itself (form, CSRF,
    password, lockout, ``auth.login``) is what the auth tests exercise with
    ``login_response``; every other test starts from this state.
    """
    from gateway.db.models import UserSession
    from gateway.identity import sessions
    from gateway.platform.extensions import db
    from gateway.platform.timeutil import utcnow

    token = secrets.token_urlsafe(32)
    with app.app_context():
        now = utcnow()
        db.session.add(
            UserSession(
                id=sessions.record_id(token), user_id=user_id, created_at=now, last_seen_at=now, source_ip="127.0.0.1"
            )
        )
        db.session.commit()
    with client.session_transaction() as cookie:
        cookie.clear()
        cookie[sessions.SESSION_KEY] = token
        cookie["_user_id"] = str(user_id)
        cookie["_fresh"] = True


@pytest.fixture
def login(app: Flask, client: FlaskClient, users: dict[str, TestUser]) -> Callable[[str], FlaskClient]:
    """``login("staff")`` signs the shared test client in as that user (a seeded session)."""

    def sign_in(name: str) -> FlaskClient:
        seed_session(app, client, users[name].id)
        return client

    return sign_in


def new_secret() -> str:
    return secrets.token_urlsafe(32)


# --- route sweeps -----------------------------------------------------------------------

SAMPLE_RUN_ID = "0b6f2a57-3f0f-4d43-9d4b-6a5b4d1f7a10"


def sample_value(rule: Any, argument: str, text: str = "x") -> object:
    """A value the rule's converter accepts (so the request reaches the view): 1, a run id, or ``text``."""
    converter = type(rule._converters[argument]).__name__
    if "Integer" in converter:
        return 1
    if converter == "RunIdConverter":
        return SAMPLE_RUN_ID
    return text
