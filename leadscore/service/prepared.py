"""Statements of the ingest path, compiled once and run on the driver's cursor.

Each request runs the same few statements over about a hundred rows. Through
``Connection.execute`` every run pays for a cache key, a lookup and turning every row's
parameters into the driver's, which a profile of the server put at about 15% of its time.
A ``Prepared`` statement is still built from SQLAlchemy objects — the SQL is SQLAlchemy's, for
the dialect at hand — but compiled once per dialect, and its rows go to the driver as they are.

That is only right when the driver takes the values as the service holds them, which is the
case on SQLite (text, integers, floats, booleans; JSON is already text there). On PostgreSQL,
where SQLAlchemy adapts JSON values for the driver, the statement runs through
``Connection.execute`` as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, bindparam, func
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.expression import Executable

__all__ = ["Prepared", "json_ids"]


class Prepared:
    """``statement`` compiled once per dialect; ``keys``: the parameters every row gives (for an
    INSERT, its columns)."""

    def __init__(self, statement: Executable, keys: Sequence[str] | None = None) -> None:
        self.statement = statement
        self.keys = list(keys) if keys is not None else None
        self._sql: dict[str, tuple[str, list[str]]] = {}

    def _compiled(self, conn: Connection) -> tuple[str, list[str]]:
        dialect = conn.dialect
        got = self._sql.get(dialect.name)
        if got is None:
            compiled = self.statement.compile(dialect=dialect, column_keys=self.keys)  # type: ignore[attr-defined]
            got = (str(compiled), list(compiled.positiontup or []))
            self._sql[dialect.name] = got
        return got

    def run(self, conn: Connection, rows: list[dict[str, Any]]) -> int:
        """Runs the statement once per row in the caller's transaction; rows changed."""
        if not rows:
            return 0
        if conn.dialect.name != "sqlite":
            return int(conn.execute(self.statement, rows).rowcount)
        return int(self._cursor(conn, rows, many=True))

    def fetch(self, conn: Connection, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """The rows of a query, as the driver gives them (SQLite only)."""
        return self._cursor(conn, [params], many=False)  # type: ignore[no-any-return]

    def _cursor(self, conn: Connection, rows: list[dict[str, Any]], many: bool) -> Any:
        sql, names = self._compiled(conn)
        dbapi_error = conn.dialect.loaded_dbapi.Error
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            if many:
                cur.executemany(sql, _tuples(rows, names))
                return cur.rowcount
            cur.execute(sql, _tuples(rows, names)[0])
            return cur.fetchall()
        except dbapi_error as e:
            # the error SQLAlchemy would raise (OperationalError for a full disk, …), which the
            # service tells apart from its own
            raise DBAPIError.instance(sql, None, e, dbapi_error) from e
        finally:
            cur.close()


def json_ids(param: str) -> Any:
    """The values of a JSON array given as one parameter (SQLite's ``json_each``): for
    ``column.in_(select(json_ids("ids").c.value))``, a list of any length in one compiled
    statement."""
    return func.json_each(bindparam(param)).table_valued("value")


def _tuples(rows: Iterable[dict[str, Any]], names: list[str]) -> list[tuple[Any, ...]]:
    if len(names) < 2:  # itemgetter of one name gives the value, not a tuple
        return [tuple(r[n] for n in names) for r in rows]
    return list(map(itemgetter(*names), rows))
