-- Least privilege for the gateway on PostgreSQL (DESIGN.md: audit ledger, scale-out).
--
-- Three roles:
--   owner  - owns the schema: runs `manage.py db upgrade` and `manage.py audit prune`.
--   app    - what the gateway replicas connect as: INSERT and SELECT only on audit_events,
--            read/write on the other tables, SELECT only on alembic_version.
--   reader - for query data sources: read-only by default, granted SELECT where it is needed.
--
-- Run with psql as a superuser (or a role with CREATEROLE that owns the database), connected to
-- the gateway's database. It is idempotent; run it before the first `db upgrade` (creates the roles)
-- and again after it (grants on the tables it created; later tables get theirs by default privileges,
-- and re-running after every upgrade does no harm):
--
--   psql -v ON_ERROR_STOP=1 -v owner=gateway_owner -v app=gateway_app -v reader=gateway_reader \
--        -d "$ADMIN_DATABASE_URL" -f deploy/postgres-roles.sql
--
-- Passwords are not set here (they would land in shell history); set them with psql's \password
-- or `ALTER ROLE ... PASSWORD` from a secret, then put the URLs in the Kubernetes Secret.
-- In each data-source database, grant the reader what its queries read, e.g.:
--   GRANT USAGE ON SCHEMA public TO gateway_reader;
--   GRANT SELECT ON ALL TABLES IN SCHEMA public TO gateway_reader;

\set ON_ERROR_STOP on
\if :{?owner}
\else
  \set owner gateway_owner
\endif
\if :{?app}
\else
  \set app gateway_app
\endif
\if :{?reader}
\else
  \set reader gateway_reader
\endif

-- Roles (cluster-wide), created once.
SELECT format('CREATE ROLE %I LOGIN', :'owner') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'owner') \gexec
SELECT format('CREATE ROLE %I LOGIN', :'app') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'app') \gexec
SELECT format('CREATE ROLE %I LOGIN', :'reader') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'reader') \gexec
-- The reader cannot write even where a grant is too wide: every transaction starts read-only.
ALTER ROLE :"reader" SET default_transaction_read_only = on;

-- This database and its schema.
SELECT format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I, %I', current_database(), :'owner', :'app') \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), :'reader') \gexec
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
-- Extensions the migrations use (the audit viewer's text index, migration 0005): creating one
-- needs CREATE on the database, which the owner is not given.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
GRANT USAGE, CREATE ON SCHEMA public TO :"owner";
GRANT USAGE ON SCHEMA public TO :"app";

-- The application role on the tables the migrations created (nothing happens before the first upgrade).
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO :"app";
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO :"app";
-- Tables and sequences that later migrations (run as the owner) create get the same grants at
-- once, so a new release's tables work before anyone re-runs this script. The revokes below still
-- need a re-run if a migration ever recreates the ledger or the version table.
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"app";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO :"app";
-- The ledger is append-only for the application: no UPDATE, DELETE or TRUNCATE, ever.
SELECT format('REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON audit_events FROM %I', :'app')
  WHERE to_regclass('public.audit_events') IS NOT NULL \gexec
-- The schema version is the owner's business; the app only reads it (readiness).
SELECT format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON alembic_version FROM %I', :'app')
  WHERE to_regclass('public.alembic_version') IS NOT NULL \gexec
