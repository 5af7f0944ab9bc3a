"""Alembic environment: runs against the gateway app's engine and metadata.

Called from ``gateway.db.migrate`` inside an app context (``manage.py db ...``);
run bare (``alembic -c ...``) it builds the app from the environment first.
"""

from __future__ import annotations

from alembic import context
from flask import has_app_context

import gateway.db.approval_tables  # noqa: F401  (the approval tables, kept apart from the others)
from gateway.db import models, outbox  # noqa: F401  (they register every table on the metadata)
from gateway.db.migrate import UNMODELLED_INDEXES, is_unmodelled_table
from gateway.platform.extensions import db


def _include_name(name, type_, parent_names) -> bool:
    """Autogenerate (``db check``) compares what the models describe, not the params text index."""
    if type_ == "table":
        return not is_unmodelled_table(name)
    if type_ == "index":
        return name not in UNMODELLED_INDEXES
    return True


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=db.metadata,
        compare_type=True,
        include_name=_include_name,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    if has_app_context():
        engine = db.engine
    else:
        from gateway import create_app

        app = create_app()
        app.app_context().push()
        engine = db.engine
    with engine.connect() as connection:
        _run(connection)
        connection.commit()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run them against a database")
run_migrations_online()
