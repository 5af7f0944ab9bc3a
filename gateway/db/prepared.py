"""Hot-path statements: compiled once, run on SQLite's cursor without SQLAlchemy's execution layer.

Every run writes its row and two ledger events, and reads back its end.  On
SQLite, where the speed targets are set, SQLAlchemy's per-statement execution
(execution context, parameter processing, result metadata) cost more CPU than
SQLite itself did, several times over once a run's other work had pushed it
out of the CPU's caches.  So these few statements are compiled once per
dialect and set of parameter names from the same Core constructs (never from
strings), their parameters go through the column types' own bind processors,
and what comes back through the types' own result processors: the values
stored are the ones SQLAlchemy would store.  Driver errors become SQLAlchemy's
(``DBAPIError.instance``), so callers catch what they always caught.

PostgreSQL keeps SQLAlchemy's execution path: its round trips need the stall
guard and the disconnect handling (invalidate, then the pool reconnects) that
live there, and a network round trip dwarfs what would be saved.

Only the write units' connections and plain reads use this; the statements
take every column they write as a parameter (no Python-side column defaults
are applied here: a missing one is an error, not a silent NULL).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError, InvalidRequestError, StatementError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.selectable import Select

from gateway.db.dialect import prepared_on_cursor

Processor = Callable[[Any], Any] | None

_MISSING = object()


@dataclass(frozen=True)
class _Compiled:
    """One statement as the driver gets it: SQL text, parameter order, processors, result columns."""

    sql: str
    names: tuple[str, ...]  # positional parameter order
    fixed: dict[str, Any]  # values bound in the statement itself (``.values(status="running")``, IN lists)
    processors: tuple[Processor, ...]  # per position
    result_keys: tuple[str, ...]
    result_processors: tuple[Processor, ...]
    writes: bool  # INSERT, UPDATE or DELETE

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The driver's parameters, through the types' processors; errors as Core raises them (StatementError)."""
        bound = []
        for name, processor in zip(self.names, self.processors, strict=True):
            value = values.get(name, _MISSING)
            if value is _MISSING:
                value = self.fixed.get(name, _MISSING)
                if value is _MISSING:
                    missing = InvalidRequestError(
                        f"A value is required for bind parameter {name!r} (no column defaults are applied here)"
                    )
                    raise StatementError(str(missing), self.sql, None, missing)
            try:
                bound.append(value if processor is None else processor(value))
            except Exception as error:
                raise StatementError(f"bind parameter {name!r}: {error}", self.sql, None, error) from error
        return tuple(bound)

    def row(self, raw: Sequence[Any]) -> dict[str, Any]:
        return {
            key: value if processor is None else processor(value)
            for key, processor, value in zip(self.result_keys, self.result_processors, raw, strict=True)
        }


class Prepared:
    """A Core statement (INSERT, UPDATE, SELECT) for the hot path; see the module docstring."""

    def __init__(self, statement: UpdateBase | Select[Any]) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, tuple[str, ...]], _Compiled] = {}
        self._lock = threading.Lock()

    # --- running it ---------------------------------------------------------------------

    def execute(self, connection: Connection, values: Mapping[str, Any] | None = None) -> int:
        """Run the statement; returns the rows it matched (UPDATE) or -1."""
        values = values or {}
        if not prepared_on_cursor(connection):
            return int(connection.execute(self.statement, dict(values)).rowcount)
        compiled = self._for(connection.dialect, values)
        rowcount, _ = _run(connection, compiled, compiled.parameters(values))
        return rowcount

    def execute_many(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """The statement once per row (all rows with the same parameter names)."""
        if not rows:
            return
        if not prepared_on_cursor(connection):
            connection.execute(self.statement, [dict(row) for row in rows])
            return
        compiled = self._for(connection.dialect, rows[0])
        _run(connection, compiled, [compiled.parameters(row) for row in rows], many=True)

    def first(self, connection: Connection, values: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """The first row (of a SELECT or of RETURNING) by column key, values as the column types load them."""
        values = values or {}
        if not prepared_on_cursor(connection):
            found = connection.execute(self.statement, dict(values)).first()
            return None if found is None else dict(found._mapping)
        compiled = self._for(connection.dialect, values)
        _, raw = _run(connection, compiled, compiled.parameters(values), fetch=True)
        return None if raw is None else compiled.row(raw)

    def scalar(self, connection: Connection, values: Mapping[str, Any] | None = None) -> Any:
        found = self.first(connection, values)
        return None if found is None else next(iter(found.values()))

    # --- compiling it once --------------------------------------------------------------

    def _for(self, dialect: Dialect, values: Mapping[str, Any]) -> _Compiled:
        key = (dialect.name, tuple(values))
        compiled = self._compiled.get(key)
        if compiled is None:
            with self._lock:
                compiled = self._compiled.get(key) or self._compile(dialect, tuple(values))
                self._compiled[key] = compiled
        return compiled

    def _compile(self, dialect: Dialect, keys: tuple[str, ...]) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect, column_keys=list(keys))
        if not isinstance(compiled, SQLCompiler):
            raise TypeError(f"not a SQL statement: {self.statement!r}")
        if not compiled.positional or compiled.positiontup is None:
            raise TypeError(f"{dialect.name}: prepared statements need a positional paramstyle")
        names = tuple(compiled.positiontup)
        binds: dict[str, BindParameter[Any]] = compiled.binds
        if compiled.post_compile_params or compiled.literal_execute_params or any(binds[n].callable for n in names):
            # Each is rendered or computed per execution by Core; compiled once, it would be wrong.
            raise TypeError("prepared statements take no expanding IN, literal_execute or callable bind values")
        # Columns whose Python-side default (or onupdate) Core would compute at execution: here the
        # caller must give them, or the statement would store NULL where Core stores the default.
        defaulted = {column.key for column in (*compiled.insert_prefetch, *compiled.update_prefetch)}
        fixed = {name: binds[name].value for name in names if not binds[name].required and name not in defaulted}
        processors = tuple(binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names)
        # What a SELECT or a RETURNING gives back, in order (INSERT and UPDATE without RETURNING: nothing).
        columns = list(getattr(self.statement, "exported_columns", ()))
        result_keys = tuple(column.key for column in columns)
        result_processors = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        )
        writes = bool(compiled.isinsert or compiled.isupdate or compiled.isdelete)
        return _Compiled(compiled.string, names, fixed, processors, result_keys, result_processors, writes)


def _run(
    connection: Connection, compiled: _Compiled, parameters: Any, *, many: bool = False, fetch: bool = False
) -> tuple[int, Sequence[Any] | None]:
    """Execute on the connection's DBAPI cursor: (rows matched, first row if ``fetch``); driver errors as Core's."""
    if compiled.writes and not connection.in_transaction():
        # Core would refuse or autobegin; on the bare cursor the write would commit on its own.
        raise InvalidRequestError("a prepared write needs the write unit's open transaction")
    dialect = connection.dialect
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if many:
            cursor.executemany(compiled.sql, parameters)
        else:
            cursor.execute(compiled.sql, parameters)
        first = None
        if fetch:
            first = cursor.fetchone()
            # Read to the end: SQLite completes an UPDATE ... RETURNING only once its rows are consumed.
            cursor.fetchall()
        return int(cursor.rowcount), first
    except dialect.loaded_dbapi.Error as error:
        raise DBAPIError.instance(
            compiled.sql, parameters, error, dialect.loaded_dbapi.Error, dialect=dialect
        ) from error
    finally:
        cursor.close()
