"""PostgreSQL databases for the tests: one per test process, put back to the template's state between tests.

Copying the migrated template for every test (``CREATE DATABASE ... TEMPLATE``, then
``DROP DATABASE``) writes the whole database, catalogues included, through the WAL: about
0.1 s on an idle machine and 0.5-1 s per test when several test processes share the disk.
A test only changes rows, nearly always.  So each test process keeps one database and,
after a test, puts it back exactly as a fresh copy would be:

- nobody else may still be connected to it (a connection left open, a process that
  outlived its test), and its schema, grants, triggers, database settings and Alembic
  revision must fingerprint the same as the template's;
- then every table's rows are deleted (triggers and foreign keys off, as in a restore),
  the template's own rows are copied back, and every sequence is set to the template's state.

When either check fails, the database is dropped and a fresh copy takes its place, as
every test had before.  Either way the next test starts from the template's state.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import psycopg
import sqlalchemy as sa
from psycopg import sql

# Everything a test could change besides rows. Compared before a database is reused.
FINGERPRINT = """
SELECT md5(string_agg(part, E'\\n' ORDER BY part)) FROM (
 SELECT concat_ws(' ', 'rel', c.oid::regclass, c.relkind, c.relpersistence, c.relacl, c.reloptions,
                  c.relrowsecurity, c.relforcerowsecurity, c.relreplident) AS part
   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
     AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
 UNION ALL SELECT concat_ws(' ', 'col', a.attrelid::regclass, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod),
                  a.attnotnull, a.attidentity, a.attgenerated, a.attacl, pg_get_expr(d.adbin, d.adrelid))
   FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
   LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
   JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
     AND n.nspname NOT LIKE 'pg\\_temp%' AND a.attnum > 0 AND NOT a.attisdropped
 UNION ALL SELECT concat_ws(' ', 'con', conrelid::regclass, conname, condeferrable, condeferred, convalidated,
                  pg_get_constraintdef(oid)) FROM pg_constraint
   WHERE connamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
 UNION ALL SELECT concat_ws(' ', 'idx', pg_get_indexdef(i.indexrelid), i.indisvalid, i.indisclustered) FROM pg_index i
   JOIN pg_class c ON c.oid = i.indexrelid
   WHERE c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
 UNION ALL SELECT concat_ws(' ', 'trg', tgrelid::regclass, tgenabled, pg_get_triggerdef(oid)) FROM pg_trigger
   WHERE NOT tgisinternal
 UNION ALL SELECT concat_ws(' ', 'evt', evtname, evtenabled) FROM pg_event_trigger
 UNION ALL SELECT concat_ws(' ', 'rule', ev_class::regclass, rulename, ev_enabled) FROM pg_rewrite
   WHERE ev_class >= 16384
 UNION ALL SELECT concat_ws(' ', 'fn', p.oid::regprocedure, md5(p.prosrc), p.proacl, p.proconfig) FROM pg_proc p
   WHERE p.pronamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
 UNION ALL SELECT concat_ws(' ', 'ns', nspname, nspacl) FROM pg_namespace
   WHERE nspname NOT LIKE 'pg\\_temp%' AND nspname NOT LIKE 'pg\\_toast\\_temp%'
 UNION ALL SELECT concat_ws(' ', 'pol', polrelid::regclass, polname, pg_get_expr(polqual, polrelid)) FROM pg_policy
 UNION ALL SELECT concat_ws(' ', 'ext', extname, extversion) FROM pg_extension
 UNION ALL SELECT concat_ws(' ', 'dacl', defaclrole, defaclnamespace, defaclobjtype, defaclacl) FROM pg_default_acl
 UNION ALL SELECT concat_ws(' ', 'type', t.oid::regtype, t.typacl) FROM pg_type t
   WHERE t.typnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
     AND t.typnamespace::regnamespace::text NOT LIKE 'pg\\_%'
 UNION ALL SELECT concat_ws(' ', 'enum', enumtypid::regtype, enumsortorder, enumlabel) FROM pg_enum
 UNION ALL SELECT concat_ws(' ', 'view', c.oid::regclass, pg_get_viewdef(c.oid)) FROM pg_class c
   WHERE c.relkind IN ('v', 'm') AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
 UNION ALL SELECT concat_ws(' ', 'seq', seqrelid::regclass, seqtypid, seqstart, seqincrement, seqmin, seqmax, seqcache,
                  seqcycle) FROM pg_sequence
 UNION ALL SELECT concat_ws(' ', 'db', datallowconn, datconnlimit, datacl, datistemplate) FROM pg_database
   WHERE datname = current_database()
 UNION ALL SELECT concat_ws(' ', 'set', setrole, setconfig) FROM pg_db_role_setting s
   JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = current_database()
 UNION ALL SELECT concat_ws(' ', 'publication', pubname) FROM pg_publication
 UNION ALL SELECT concat_ws(' ', 'prepared', gid) FROM pg_prepared_xacts WHERE database = current_database()
 UNION ALL SELECT concat_ws(' ', 'lo', count(*)) FROM pg_largeobject_metadata
) parts
"""

TABLES = """
SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1
"""
SEQUENCES = "SELECT format('%I.%I', schemaname, sequencename) FROM pg_sequences ORDER BY 1"
OTHERS_CONNECTED = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
)

# A connection a test closed leaves pg_stat_activity a moment later (its backend exits
# after the socket closes); wait this long for that before calling the database dirty.
DISCONNECT_WAIT_SECONDS = 1.0
# GATEWAY_TEST_PG_FRESH_COPIES=1: a fresh copy of the template for every test, as before
# (to rule the reset out when a PostgreSQL test behaves oddly).
FRESH_COPIES = os.environ.get("GATEWAY_TEST_PG_FRESH_COPIES") == "1"


def driver_url(sqlalchemy_url: str) -> str:
    """The libpq form of a SQLAlchemy URL (``postgresql+psycopg://`` → ``postgresql://``)."""
    return sa.make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)


def admin_execute(admin_url: str, statement: str) -> None:
    with psycopg.connect(driver_url(admin_url), autocommit=True) as connection:
        connection.execute(statement)  # type: ignore[call-overload]


def create_database(admin_url: str, template: str | None = None) -> str:
    name = f"gw_test_{uuid.uuid4().hex[:16]}"
    suffix = f" TEMPLATE {template}" if template else ""
    admin_execute(admin_url, f'CREATE DATABASE "{name}"{suffix}')
    return name


def drop_database(admin_url: str, name: str) -> None:
    admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass(frozen=True)
class TemplateState:
    """What a fresh copy of the template holds: its fingerprint, rows and sequence positions."""

    fingerprint: str
    rows: dict[str, bytes]  # table -> COPY text of its rows, for tables that have any
    sequences: dict[str, tuple[int, bool]]  # sequence -> (last_value, is_called)

    @classmethod
    def read(cls, url: str) -> TemplateState:
        with psycopg.connect(driver_url(url), autocommit=True) as connection:
            fingerprint = connection.execute(FINGERPRINT).fetchone()[0]  # type: ignore[index]
            rows = {}
            for (table,) in connection.execute(TABLES).fetchall():
                data = bytearray()
                with connection.cursor().copy(sql.SQL("COPY {} TO STDOUT").format(sql.SQL(table))) as copy:
                    for chunk in copy:
                        data += chunk
                if data:
                    rows[table] = bytes(data)
            sequences = {}
            for (sequence,) in connection.execute(SEQUENCES).fetchall():
                state = connection.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(sql.SQL(sequence)))
                last_value, is_called = state.fetchone()  # type: ignore[misc]
                sequences[sequence] = (last_value, is_called)
        return cls(fingerprint, rows, sequences)


def reset_to_template(url: str, template: TemplateState) -> bool:
    """Put the database at ``url`` back to the template's state; False (nothing done) when it cannot be trusted."""
    try:
        connection = psycopg.connect(driver_url(url), autocommit=True)
    except psycopg.OperationalError:  # a test left it refusing connections
        return False
    with connection:
        deadline = time.monotonic() + DISCONNECT_WAIT_SECONDS
        while connection.execute(OTHERS_CONNECTED).fetchone()[0]:  # type: ignore[index]
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        if connection.execute(FINGERPRINT).fetchone()[0] != template.fingerprint:  # type: ignore[index]
            return False
        with connection.transaction():
            # As pg_restore does: no triggers (the ledger's append-only guard) and no foreign-key checks.
            connection.execute("SET LOCAL session_replication_role = replica")
            for (table,) in connection.execute(TABLES).fetchall():
                connection.execute(sql.SQL("DELETE FROM {}").format(sql.SQL(table)))
            for table, data in template.rows.items():
                with connection.cursor().copy(sql.SQL("COPY {} FROM STDIN").format(sql.SQL(table))) as copy:
                    copy.write(data)
            for sequence, (last_value, is_called) in template.sequences.items():
                connection.execute("SELECT setval(%s::regclass, %s, %s)", (sequence, last_value, is_called))
    return True


class PgDatabases:
    """This test process's PostgreSQL database: handed to one test at a time, reset or replaced in between.

    A background thread does the reset (or the drop and the fresh copy) while the
    next test sets up; ``take`` waits for it only when the next test needs PostgreSQL.
    """

    def __init__(self, admin_url: str, template: str, url_of: Callable[[str], str]):
        self.admin_url = admin_url
        self.template = template
        self.url_of = url_of
        self.state = TemplateState.read(url_of(template))
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-databases")
        self.ready: Future[str] | None = None

    def take(self) -> str:
        ready = self.ready or self.worker.submit(create_database, self.admin_url, self.template)
        self.ready = None
        return ready.result()

    def give_back(self, name: str) -> None:
        self.ready = self.worker.submit(self._recycle, name)

    def _recycle(self, name: str) -> str:
        if not FRESH_COPIES and reset_to_template(self.url_of(name), self.state):
            return name
        drop_database(self.admin_url, name)
        return create_database(self.admin_url, self.template)

    def close(self) -> None:
        if self.ready is not None:
            drop_database(self.admin_url, self.ready.result())  # a failed reset or drop fails the session
        self.worker.shutdown(wait=True)
