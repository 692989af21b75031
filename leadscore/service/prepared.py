"""Statements of the ingest path, compiled once and run on the driver's cursor.

Each request runs the same few statements over about a hundred rows. Through
``Connection.execute`` every run pays for a cache key, a lookup and turning every row's
parameters into the driver's, which a profile of the server put at about 15% of its time on
SQLite and half of it on PostgreSQL. A ``Prepared`` statement is still built from SQLAlchemy
objects — the SQL is SQLAlchemy's, for the dialect at hand — but compiled once per dialect, and
its rows go to the driver with as little done to them as the driver needs:

- on SQLite, as they are (text, integers, floats, booleans; JSON is already text there);
- on PostgreSQL, a plain INSERT of ``keys`` and an UPDATE made with ``Prepared.update`` run
  as one statement over all the rows, sent as one JSON array that orjson writes in one call
  (``json_to_recordset``, each column read as its column's type: JSON as jsonb, a JSON
  ``null`` as SQL NULL, as the jsonb columns' ``none_as_null`` has it). An UPDATE given the
  same key twice keeps the last row, as running the rows one after the other would. An UPDATE
  names its keys once more, as a JSON array of their own that the planner looks up in the
  key's index: joined to the function's rows alone (which it guesses at a hundred), it read a
  leads table of a few thousand rows whole for every request. Any
  other statement runs once per row (psycopg pipelines them: one round trip), JSON values
  serialised here and sent as text to the ``::JSONB`` cast SQLAlchemy writes into the
  statement, every other value through the bind processor SQLAlchemy would apply. psycopg
  prepares a statement it has seen five times on a connection (preparing it at its first run
  was measured and dropped: docs/benchmarks.md, "the first query of a write as a function").

``run_sql`` runs a statement written for one database on the same cursor. Either way a driver's
error comes out as the SQLAlchemy exception ``Connection.execute`` would raise (an
``OperationalError`` for a lost server or a full disk), which the service tells apart from its
own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Table, bindparam, func, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import sqltypes
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.expression import Executable

from .common import dumps

__all__ = ["Column", "Prepared", "json_ids", "json_rows", "run_sql", "sent_together"]

#: a column of a batch of rows sent as one JSON array: its name (as the statement writes it)
#: and PostgreSQL type (``jsonb``: any JSON value)
Column = tuple[str, str]


def json_rows(columns: Sequence[Column], param: str = "rows") -> str:
    """The rows of a JSON array given in the parameter ``param``, each key read as its column's
    type, named ``u`` (PostgreSQL's ``json_to_recordset``): for a statement's FROM."""
    typed = ", ".join(f"{name} {kind}" for name, kind in columns)
    return f"json_to_recordset(%({param})s::json) AS u({typed})"


#: one statement for one dialect: its SQL, the parameter names in order, and what each
#: parameter's value goes through first (None: nothing)
_Compiled = tuple[str, list[str], list[Callable[[Any], Any] | None]]


class Prepared:
    """``statement`` compiled once per dialect; ``keys``: the parameters every row gives (for an
    INSERT, its columns)."""

    def __init__(self, statement: Executable, keys: Sequence[str] | None = None) -> None:
        self.statement = statement
        self.keys = list(keys) if keys is not None else None
        self._sql: dict[str, _Compiled] = {}
        #: (table, key column, its parameter, columns set) of an UPDATE by one key
        self._by_key: tuple[Table, str, str, list[str]] | None = None
        #: the table of a plain INSERT of ``keys`` (no VALUES, RETURNING or ON CONFLICT)
        self._into: Table | None = None
        if (
            type(statement) is Insert
            and self.keys
            and statement.select is None
            and not statement._values
            and not statement._multi_values
            and not statement._returning
            and isinstance(statement.table, Table)
        ):
            self._into = statement.table
        #: the one-statement form on PostgreSQL: SQL and the row keys it reads
        self._batch: tuple[str, list[str]] | None = None

    @classmethod
    def update(cls, table: Table, key: str, columns: Sequence[str], by: str = "b_id") -> Prepared:
        """UPDATE ``table`` SET ``columns`` WHERE ``key`` = the row's ``by``."""
        got = cls(
            update(table)
            .where(table.c[key] == bindparam(by))
            .values({c: bindparam(c) for c in columns})
        )
        got._by_key = (table, key, by, list(columns))
        return got

    def _compiled(self, conn: Connection) -> _Compiled:
        dialect = conn.dialect
        got = self._sql.get(dialect.name)
        if got is None:
            compiled = self.statement.compile(  # type: ignore[attr-defined]
                dialect=dialect, column_keys=self.keys, for_executemany=True
            )
            if compiled.positiontup is not None:  # SQLite's ?
                names = list(compiled.positiontup)
            else:  # psycopg's %(name)s
                names = list(dict.fromkeys(compiled.bind_names.values()))
            binds = {b.key: b for b in compiled.binds.values()}
            got = (str(compiled), names, [_adapter(binds[n].type, dialect) for n in names])
            self._sql[dialect.name] = got
        return got

    def run(self, conn: Connection, rows: list[dict[str, Any]]) -> int:
        """Runs the statement once per row in the caller's transaction; rows changed."""
        if not rows:
            return 0
        if conn.dialect.name not in ("sqlite", "postgresql"):
            return int(conn.execute(self.statement, rows).rowcount)
        if conn.dialect.name == "postgresql" and (self._into is not None or self._by_key):
            sql, names = self._batch or self._batch_sql(conn)
            params = {}
            if self._by_key is not None:  # the last row of a key, as one after the other
                by = self._by_key[2]
                last = {r[by]: r for r in rows}
                rows = list(last.values())
                params["keys"] = dumps(list(last))
            # a row of exactly the statement's keys goes as it is (no copy: the scores' rows,
            # a hundred a request); any other is cut to them, and a missing key is a KeyError
            wanted, n = frozenset(names), len(names)
            params["rows"] = dumps(
                [
                    r if len(r) == n and r.keys() >= wanted else {k: r[k] for k in names}
                    for r in rows
                ]
            )
            return int(run_sql(conn, sql, params, fetch=False))
        return int(self._cursor(conn, rows, many=True))

    def _batch_sql(self, conn: Connection) -> tuple[str, list[str]]:
        """The statement over a JSON array of rows (PostgreSQL)."""
        dialect = conn.dialect
        quote = dialect.identifier_preparer.quote
        if self._into is not None:
            table, names, cols = self._into, list(self.keys or ()), list(self.keys or ())
        else:
            assert self._by_key is not None
            table, key, by, cols = self._by_key
            names = [by, *cols]
        types = {by: table.c[key].type} if self._by_key else {}
        types.update({c: table.c[c].type for c in cols})
        rows = json_rows([(quote(n), types[n].compile(dialect=dialect)) for n in names])
        if self._into is not None:
            listed = ", ".join(quote(c) for c in cols)
            sql = f"INSERT INTO {quote(table.name)} ({listed}) SELECT {listed} FROM {rows}"
        else:
            sets = ", ".join(f"{quote(c)} = u.{quote(c)}" for c in cols)
            column = f"{quote(table.name)}.{quote(key)}"
            # the keys again, as a list the planner looks up in the key's index: joined to the
            # rows alone, it guesses a hundred rows and reads a small table whole
            keys = (
                f"ARRAY(SELECT CAST(k AS {types[by].compile(dialect=dialect)}) "
                "FROM json_array_elements_text(%(keys)s::json) AS k)"
            )
            sql = (
                f"UPDATE {quote(table.name)} SET {sets} FROM {rows} "
                f"WHERE {column} = ANY({keys}) AND {column} = u.{quote(by)}"
            )
        self._batch = (sql, names)
        return self._batch

    def fetch(self, conn: Connection, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """The rows of a query, as the driver gives them."""
        return self._cursor(conn, [params], many=False)  # type: ignore[no-any-return]

    def _cursor(self, conn: Connection, rows: list[dict[str, Any]], many: bool) -> Any:
        sql, names, adapters = self._compiled(conn)
        if conn.dialect.name == "sqlite":
            params: list[Any] = _tuples(rows, names)
        else:
            params = [_adapted(r, names, adapters) for r in rows]
        return _on_cursor(conn, sql, params, many)


def run_sql(conn: Connection, sql: str, params: Any = None, *, fetch: bool = True) -> Any:
    """A statement written for the connection's database, run on the driver's cursor in the
    caller's transaction: its rows (``fetch``), else the number of rows it changed."""
    return _on_cursor(conn, sql, [params], False, fetch)


@contextmanager
def sent_together(conn: Connection, *, commit: bool = False) -> Iterator[None]:
    """The statements run inside on the driver's cursor (``Prepared``, ``run_sql``) go to
    PostgreSQL together, in one round trip (psycopg's pipeline mode), and are waited for at the
    end, where a driver's error comes out as SQLAlchemy's. For writes whose answer no one reads
    (a statement run inside returns -1 as the number of rows it changed); a read on the driver's
    cursor inside waits for what was sent before it, but no statement through SQLAlchemy's
    ``Connection.execute`` may run inside (it would not wait for its rows). On SQLite, which
    has no round trips, nothing changes.

    ``commit``: they are the transaction's last statements, and its COMMIT goes with them, in
    the same round trip; the end of the caller's transaction then finds nothing left to commit.
    When one of them fails, PostgreSQL skips the COMMIT, and the error comes out here, with the
    transaction still to be rolled back as usual."""
    if conn.dialect.name != "postgresql":
        yield
        return
    dbapi_error = conn.dialect.loaded_dbapi.Error
    driver: Any = conn.connection.driver_connection
    try:
        with driver.pipeline():
            yield
            if commit:
                with driver.cursor() as cur:
                    cur.execute("COMMIT", prepare=False)
    except dbapi_error as e:
        raise DBAPIError.instance(None, None, e, dbapi_error) from e


def _on_cursor(
    conn: Connection, sql: str, params: list[Any], many: bool, fetch: bool = True
) -> Any:
    dbapi_error = conn.dialect.loaded_dbapi.Error
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        if many:
            cur.executemany(sql, params)
            return cur.rowcount
        cur.execute(sql, params[0])
        return cur.fetchall() if fetch else cur.rowcount
    except dbapi_error as e:
        # the error SQLAlchemy would raise (OperationalError for a full disk, …), which the
        # service tells apart from its own
        raise DBAPIError.instance(sql, None, e, dbapi_error) from e
    finally:
        cur.close()


def _adapter(type_: Any, dialect: Any) -> Callable[[Any], Any] | None:
    """What a parameter's value goes through before the driver (PostgreSQL): JSON is
    serialised here, as text for the statement's cast; anything else as SQLAlchemy would."""
    if dialect.name == "sqlite":
        return None
    impl = type_._unwrapped_dialect_impl(dialect)
    if isinstance(impl, sqltypes.JSON):
        return _json if impl.none_as_null else dumps
    return impl.bind_processor(dialect)  # type: ignore[no-any-return]


def _json(v: Any) -> str | None:
    # as the JSONB type with none_as_null: None is SQL NULL, anything else JSON text
    return None if v is None else dumps(v)


def _adapted(
    row: dict[str, Any], names: list[str], adapters: list[Callable[[Any], Any] | None]
) -> dict[str, Any]:
    return {n: row[n] if a is None else a(row[n]) for n, a in zip(names, adapters, strict=True)}


def json_ids(param: str) -> Any:
    """The values of a JSON array given as one parameter (SQLite's ``json_each``): for
    ``column.in_(select(json_ids("ids").c.value))``, a list of any length in one compiled
    statement."""
    return func.json_each(bindparam(param)).table_valued("value")


def _tuples(rows: list[dict[str, Any]], names: list[str]) -> list[tuple[Any, ...]]:
    """The rows' values in the statement's order (SQLite's ``?``)."""
    if len(names) < 2:  # itemgetter of one name gives the value, not a tuple
        return [tuple(r[n] for n in names) for r in rows]
    return list(map(itemgetter(*names), rows))
