"""The database layer: engine set-up, write units, prepared statements, the stall guard, migrations, models.

``units`` opens every write (``write_transaction`` / ``write_connection``: the
write lock on SQLite, the chain's order on PostgreSQL, the request-path lock
timeout), ``prepared`` runs the hot path's statements, ``stall_guard`` bounds a
silent PostgreSQL link, ``migrate`` wraps Alembic, ``models`` maps the tables.
May import: ``platform`` only; every other room imports this one.
"""
