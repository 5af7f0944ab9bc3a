"""deploy/postgres-roles.sql on a real PostgreSQL: the ledger is append-only for the application role.

A fresh database gets the roles (random names: roles are cluster-wide), the
migrations run as the owner through ``manage.py db upgrade`` like the Kubernetes
Job, and then a whole gateway runs as the application role.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from gateway import create_app, runs
from gateway.db.models import AuditEvent, Run
from gateway.identity import accounts
from gateway.platform.extensions import db
from tests import manage_process
from tests.conftest import (
    PASSWORDS,
    PG_ADMIN_URL,
    PG_AVAILABLE,
    base_environ,
    close_app,
    create_pg_database,
    drop_pg_database,
    login_response,
    pg_url,
)

PROJECT = Path(__file__).resolve().parent.parent
SCRIPT = PROJECT / "deploy" / "postgres-roles.sql"

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.skipif(not PG_AVAILABLE, reason="PostgreSQL is not reachable"),
]


def as_role(url: str, role: str) -> str:
    return sa.make_url(url).set(username=role).render_as_string(hide_password=False)


def libpq(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def apply_roles(url: str, roles: dict[str, str]) -> None:
    variables = [arg for name, role in roles.items() for arg in ("-v", f"{name}={role}")]
    command = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", *variables, "-d", libpq(url), "-f", str(SCRIPT)]
    subprocess.run(command, check=True, capture_output=True, timeout=60)


@pytest.fixture
def roles_database(tmp_path):
    suffix = uuid.uuid4().hex[:10]
    roles = {"owner": f"gw_owner_{suffix}", "app": f"gw_app_{suffix}", "reader": f"gw_reader_{suffix}"}
    name = create_pg_database()
    url = pg_url(name)
    try:
        apply_roles(url, roles)  # before the first upgrade: the roles
        environ = base_environ(as_role(url, roles["owner"]), GATEWAY_INSTANCE_PATH=str(tmp_path / "migrate"))
        upgrade = [sys.executable, "manage.py", "db", "upgrade"]
        done = manage_process.run(upgrade, cwd=PROJECT, env=environ, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        apply_roles(url, roles)  # after it: the grants on the new tables
        yield url, roles
    finally:
        drop_pg_database(name)
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            for role in roles.values():
                connection.exec_driver_sql(f'DROP ROLE IF EXISTS "{role}"')
        admin.dispose()


def refused(url: str, statement: str) -> type[Exception] | None:
    """The psycopg error class a statement raised, or None when it went through (rolled back either way)."""
    with psycopg.connect(libpq(url)) as connection:
        try:
            connection.execute(statement)
        except psycopg.Error as exc:
            return type(exc)
        finally:
            connection.rollback()
    return None


def test_the_application_role_cannot_rewrite_the_ledger_but_the_gateway_works_under_it(roles_database, tmp_path):
    url, roles = roles_database
    app_url, reader_url = as_role(url, roles["app"]), as_role(url, roles["reader"])
    with psycopg.connect(libpq(as_role(url, roles["owner"])), autocommit=True) as owner:
        owner.execute("CREATE TABLE tasks (id integer PRIMARY KEY, name text)")
        owner.execute("INSERT INTO tasks VALUES (1, 'one'), (2, 'two')")
        owner.execute(f'GRANT SELECT ON tasks TO "{roles["reader"]}"')

    catalogue = tmp_path / "commands.yaml"
    catalogue.write_text(
        textwrap.dedent(
            """
            datasources:
              ops:
                url_env: ROLES_TEST_OPS_URL
            commands:
              - name: hello
                title: Hello
                kind: shell
                argv: ["echo", "hello"]
              - name: sneaky-write
                title: Tries to write through the read-only role
                kind: query
                datasource: ops
                sql: "UPDATE tasks SET name = 'pwned' RETURNING id"
              - name: task-names
                title: Reads
                kind: query
                datasource: ops
                sql: "SELECT name FROM tasks ORDER BY id"
            """
        )
    )
    os.environ["ROLES_TEST_OPS_URL"] = reader_url
    app = create_app(base_environ(app_url, GATEWAY_COMMANDS_FILE=str(catalogue)), instance_path=tmp_path / "instance")
    try:
        client = app.test_client()
        assert client.get("/readyz").status_code == 200
        with app.app_context():
            admin = accounts.create_user("admin", PASSWORDS["admin"], is_admin=True)
            caller = runs.Caller(user=admin, source_ip="127.0.0.1", user_agent="pytest")
            statuses = {}
            for name in ("hello", "task-names", "sneaky-write"):
                run_id = runs.start(name, {}, caller).run.id
                deadline = time.monotonic() + 15
                while (run := db.session.get(Run, run_id)).status in runs.LIVE and time.monotonic() < deadline:
                    time.sleep(0.05)
                    db.session.expire_all()
                statuses[name] = run.status
            assert statuses == {"hello": "succeeded", "task-names": "succeeded", "sneaky-write": "failed"}
        assert login_response(client, "admin", PASSWORDS["admin"]).status_code == 302
        assert login_response(app.test_client(), "admin", "not-the-password").status_code == 401
        with app.app_context():
            events = db.session.scalars(sa.select(AuditEvent.event).order_by(AuditEvent.seq)).all()
            assert {"run.started", "run.finished", "auth.login", "auth.login_failed"} <= set(events)
            from gateway import audit

            assert audit.verify(db.session, audit.Keyring.from_config(app.config)).ok
    finally:
        close_app(app)
        os.environ.pop("ROLES_TEST_OPS_URL", None)

    denied = psycopg.errors.InsufficientPrivilege
    assert refused(app_url, "UPDATE audit_events SET outcome = 'forged'") is denied
    assert refused(app_url, "DELETE FROM audit_events") is denied
    assert refused(app_url, "TRUNCATE audit_events") is denied
    assert refused(app_url, "UPDATE alembic_version SET version_num = 'x'") is denied
    assert refused(as_role(url, roles["owner"]), "DELETE FROM audit_events WHERE seq = 1") is None  # audit prune
    # The read-only role cannot write even on a table it can read, whatever the runner does.
    assert refused(reader_url, "SELECT count(*) FROM tasks") is None
    assert refused(reader_url, "UPDATE tasks SET name = 'pwned'") in (denied, psycopg.errors.ReadOnlySqlTransaction)
    assert refused(reader_url, "SELECT count(*) FROM audit_events") is denied
    with psycopg.connect(libpq(url)) as connection:
        assert connection.execute("SELECT name FROM tasks ORDER BY id").fetchall() == [("one",), ("two",)]


def test_tables_a_later_migration_creates_are_usable_by_the_application_role_at_once(roles_database):
    """A new release's migration (run as the owner) must not need the roles script again to work."""
    url, roles = roles_database
    with psycopg.connect(libpq(as_role(url, roles["owner"])), autocommit=True) as owner:
        owner.execute("CREATE TABLE later_feature (id serial PRIMARY KEY, note text)")
    app_url = libpq(as_role(url, roles["app"]))
    with psycopg.connect(app_url) as application:
        application.execute("INSERT INTO later_feature (note) VALUES ('works')")
        assert application.execute("SELECT note FROM later_feature").fetchall() == [("works",)]
    assert refused(app_url, "UPDATE audit_events SET outcome = 'x'") is psycopg.errors.InsufficientPrivilege
