"""The database layer: engine set-up, write units, prepared statements, the stall guard, migrations, models.

``dialect`` holds every difference between SQLite and PostgreSQL (the write
lock and advisory locks, the clock, batching, LISTEN/NOTIFY, storage): other
code asks it a question and never compares engine names.  ``units`` opens
every write (``write_transaction`` / ``write_connection``, both a
``WriteUnit``: the write lock on SQLite, the chain's order on PostgreSQL, the
request-path lock timeout), ``prepared`` runs the hot path's statements,
``stall_guard`` bounds a silent PostgreSQL link (on by configuration,
``DATABASE_STALL_GUARD``), ``migrate`` wraps Alembic, ``models`` maps the tables
(``outbox`` the notifications' one).
May import: ``platform`` only; every other room imports this one.
"""
