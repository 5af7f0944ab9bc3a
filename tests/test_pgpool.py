"""The PostgreSQL reset between tests (tests/pgpool.py): a reset database is a fresh copy in all but name,
and a database changed beyond its rows is never reset (it is replaced)."""

from __future__ import annotations

import psycopg
import pytest

from tests import pgpool
from tests.conftest import PG_ADMIN_URL, create_pg_database, drop_pg_database, pg_url

pytestmark = pytest.mark.postgres


def sql(name: str, statement: str) -> list[tuple[object, ...]]:
    with psycopg.connect(pgpool.driver_url(pg_url(name)), autocommit=True) as connection:
        cursor = connection.execute(statement)  # type: ignore[call-overload]
        return cursor.fetchall() if cursor.description else []


@pytest.fixture
def copy(pg_template: str):
    name = create_pg_database(template=pg_template)
    yield name
    drop_pg_database(name)


def test_a_reset_database_has_the_templates_rows_and_sequences(pg_template: str, copy: str) -> None:
    template = pgpool.TemplateState.read(pg_url(pg_template))
    fresh_dump = [
        sql(copy, "SELECT * FROM alembic_version"),
        sql(copy, "SELECT last_value, is_called FROM users_id_seq"),
    ]
    sql(
        copy,
        "INSERT INTO users (username, display_name, is_admin, active, created_at, updated_at) VALUES ('a', 'a', false, true, now(), now())",
    )
    sql(copy, "UPDATE alembic_version SET version_num = '0001'")  # the template's own rows come back too
    assert sql(copy, "SELECT count(*) FROM users") == [(1,)]

    assert pgpool.reset_to_template(pg_url(copy), template)
    assert sql(copy, "SELECT count(*) FROM users") == [(0,)]
    assert [
        sql(copy, "SELECT * FROM alembic_version"),
        sql(copy, "SELECT last_value, is_called FROM users_id_seq"),
    ] == (fresh_dump)
    sql(
        copy,
        "INSERT INTO users (username, display_name, is_admin, active, created_at, updated_at) VALUES ('b', 'b', false, true, now(), now())",
    )
    assert sql(copy, "SELECT id FROM users") == [(1,)]  # ids start where a fresh copy's do


@pytest.mark.parametrize(
    "change",
    [
        "DROP TRIGGER audit_events_no_update ON audit_events",
        "ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update",
        "CREATE TABLE leftover (id int)",
        "ALTER TABLE users ADD COLUMN extra text",
        "CREATE INDEX extra_index ON users (username, id)",
        "GRANT SELECT ON users TO PUBLIC",
        "ALTER DATABASE {name} SET default_transaction_read_only = on",
        "ALTER DATABASE {name} ALLOW_CONNECTIONS false",
    ],
)
def test_a_database_changed_beyond_its_rows_is_not_reset(pg_template: str, copy: str, change: str) -> None:
    template = pgpool.TemplateState.read(pg_url(pg_template))
    pgpool.admin_execute(PG_ADMIN_URL, change.format(name=f'"{copy}"')) if "DATABASE" in change else sql(copy, change)
    try:
        assert not pgpool.reset_to_template(pg_url(copy), template)
    finally:
        if "ALLOW_CONNECTIONS" in change:
            pgpool.admin_execute(PG_ADMIN_URL, f'ALTER DATABASE "{copy}" ALLOW_CONNECTIONS true')


def test_a_database_someone_is_still_connected_to_is_not_reset(pg_template: str, copy: str) -> None:
    template = pgpool.TemplateState.read(pg_url(pg_template))
    with psycopg.connect(pgpool.driver_url(pg_url(copy)), autocommit=True):
        assert not pgpool.reset_to_template(pg_url(copy), template)
