"""Locks that let several service processes write to one PostgreSQL database.

Every lock here is a PostgreSQL transaction-scoped advisory lock: it ends with its transaction,
and so with the connection of a process that dies holding it (the server ends the dead
connection's transaction). Nothing here waits on a lock that a dead process could leave behind.

- **Writes** (``begin_write``): every write transaction takes one lock in shared mode; what
  changes every lead at once (activating a model or a routing, importing history) takes it
  exclusive, so it never interleaves with an ingest.
- **Leads** (``lock_ingest``, ``lock_leads``): a write that changes a lead holds that lead's
  lock, taken for all its leads at once in key order (no two writers wait on each other in a
  circle). Two processes ingesting events of one lead take turns on that lead only. An ingest
  also locks each anonymous id it carries, so a link from an anonymous id to a lead and an
  event of that anonymous id never pass each other. An ingest whose messages all carry a
  userId stores its events before it takes the leads' locks (``ingest.ingest``): it reads
  nothing of a lead before the lead's lock, and waits for another request's messageId only
  while it holds no lead.
- **The handoff** (``lock_handoff``): routing reads the round robin and the reps' open MQLs and
  then changes them; it holds one lock while it does, so two processes never give the same
  rep the same turn or go past a cap together.

Keys are PostgreSQL's 64-bit text hash (``hashtextextended``) of a namespaced name, computed by
the server, so every process derives the same key. On SQLite, which has one writer at a time,
the lock functions do nothing (``Tx`` calls ``begin_write`` on PostgreSQL only)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import Connection

__all__ = [
    "begin_write",
    "deadlocked",
    "ingest_locks",
    "lock_handoff",
    "lock_ingest",
    "lock_leads",
    "taken",
    "try_lock_leads",
]

#: the names of the fixed locks (hashed like a lead's)
_WRITES = "leadscore:writes"
_HANDOFF = "leadscore:handoff"
#: held names of the connection's current transaction, in ``Connection.info``
_HELD = "leadscore_locks"

_KEY = "hashtextextended(x, 0)"
#: a list of names given as one JSON array parameter (psycopg writes a Python list as an
#: array element by element, in Python)
_IDS = "json_array_elements_text(%%(%s)s::json)"


def _postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _held(conn: Connection) -> set[str]:
    """The names locked in this transaction (a pooled connection's info outlives it)."""
    txn = conn.get_transaction()
    got = conn.info.get(_HELD)
    if got is None or got[0] is not txn:
        got = conn.info[_HELD] = (txn, set())
    held: set[str] = got[1]
    return held


def begin_write(conn: Connection, exclusive: bool = False) -> tuple[int | None, int | None]:
    """The writes lock (shared, or ``exclusive``); then, read after it is granted, the active
    model version and the active routing version. PostgreSQL only; one round trip.

    Both are the function ``leadscore_begin_write`` (migration 0009): PostgreSQL keeps the plans
    of its statements for the connection's life, where the same SQL sent as text was parsed and
    planned anew by every transaction; each of its statements reads with a snapshot taken as it
    starts, so the versions read after the lock is granted see what an activation committed
    before it."""
    sql = f"SELECT * FROM leadscore_begin_write({'true' if exclusive else 'false'})"
    from psycopg.pq import TransactionStatus  # PostgreSQL's driver: an optional dependency

    driver: Any = conn.connection.driver_connection
    if (
        driver.pgconn.transaction_status == TransactionStatus.IDLE
        and not driver.autocommit
        # the plain BEGIN psycopg would send: no isolation level or access mode of its own
        and driver.isolation_level is None
        and driver.read_only is None
        and driver.deferrable is None
    ):
        model, routing = _begin_with(conn, sql)
    else:
        ((model, routing),) = _run(conn, sql, None)
    _held(conn).add(_WRITES)
    return model, routing


def _begin_with(conn: Connection, sql: str) -> tuple[int | None, int | None]:
    """``BEGIN`` and ``sql`` (a statement that returns one row of two integers) in one
    simple query, on a connection with no transaction open: one round trip where psycopg
    would send its BEGIN first and wait for it. The transaction stays open after it, as any
    other the driver began (its commit and rollback do not ask who began it)."""
    from psycopg import errors, generators
    from psycopg.pq import ExecStatus

    driver: Any = conn.connection.driver_connection
    pgconn = driver.pgconn
    dbapi_error = conn.dialect.loaded_dbapi.Error
    try:
        with driver.lock:
            pgconn.send_query(f"BEGIN; {sql}".encode())
            results = driver.wait(generators.execute(pgconn))
        for res in results:
            if res.status == ExecStatus.FATAL_ERROR:
                raise errors.error_from_result(res, encoding=driver.info.encoding)
    except dbapi_error as e:
        raise sa.exc.DBAPIError.instance(sql, None, e, dbapi_error) from e
    last = results[-1]
    return tuple(  # type: ignore[return-value]
        None if (v := last.get_value(0, i)) is None else int(v) for i in range(2)
    )


def lock_ingest(
    conn: Connection, leads: Iterable[str | None], anonymous: Iterable[str | None]
) -> None:
    """Before an ingest reads anything: lock the leads named by userId, the anonymous ids, and
    the leads those anonymous ids are linked to now, all in one statement, in key order. A link
    made between this read and the lock is found by the ingest's own read of the links, after
    the lock; ``lock_leads`` then takes the lead it names."""
    if not _postgres(conn):
        return
    statement = ingest_locks(leads, anonymous)
    if statement is not None:
        _take(conn, *statement)


def ingest_locks(
    leads: Iterable[str | None], anonymous: Iterable[str | None]
) -> tuple[str, dict[str, object]] | None:
    """``lock_ingest``'s statement and its parameters (None: nothing to lock), for a caller
    that sends it together with others; its rows go to ``taken``."""
    ids = sorted({x for x in leads if x})
    anon = sorted({x for x in anonymous if x})
    if not ids and not anon:
        return None
    return _INGEST_LOCKS, {"leads": _json(ids), "anon": _json(anon)}


_INGEST_LOCKS = (
    f"SELECT x, pg_advisory_xact_lock(k) FROM (SELECT x, {_KEY} AS k FROM ("
    f"SELECT 'lead:' || v FROM {_IDS % 'leads'} AS v "
    f"UNION SELECT 'anon:' || v FROM {_IDS % 'anon'} AS v "
    "UNION SELECT 'lead:' || lead_id FROM identities "
    f"WHERE anonymous_id = ANY(ARRAY(SELECT {_IDS % 'anon'}))"
    ") AS names(x)) AS keyed ORDER BY k, x"
)


def taken(conn: Connection, rows: Iterable[tuple[str, Any]]) -> None:
    """The rows of an ``ingest_locks`` statement sent by the caller: the locks it holds now."""
    _held(conn).update(x for x, _ in rows)


def lock_leads(conn: Connection, leads: Iterable[str | None]) -> None:
    """Lock these leads (those this transaction does not hold yet), in key order."""
    if not _postgres(conn):
        return
    held = _held(conn)
    names = sorted({f"lead:{x}" for x in leads if x} - held)
    if not names:
        return
    sql = (
        f"SELECT x, pg_advisory_xact_lock(k) FROM (SELECT x, {_KEY} AS k "
        f"FROM {_IDS % 'names'} AS x) AS keyed ORDER BY k, x"
    )
    _take(conn, sql, {"names": _json(names)})


def try_lock_leads(conn: Connection, leads: Iterable[str]) -> set[str]:
    """Lock these leads if no one else holds them, without waiting: the ones now held. For a
    caller that holds row locks already and must not wait for a lead (it skips the others)."""
    leads = sorted({x for x in leads if x})
    if not _postgres(conn) or not leads:
        return set(leads)
    held = _held(conn)
    rows = _run(
        conn,
        f"SELECT x, pg_try_advisory_xact_lock(k) FROM (SELECT x, {_KEY} AS k "
        f"FROM {_IDS % 'names'} AS x) AS keyed ORDER BY k, x",
        {"names": _json([f"lead:{x}" for x in leads])},
    )
    got = {x for x, ok in rows if ok}
    held.update(got)
    return {x.removeprefix("lead:") for x in got}


def lock_handoff(conn: Connection) -> None:
    """The handoff's lock, taken before routing reads the round robin and the open MQLs."""
    if not _postgres(conn) or _HANDOFF in _held(conn):
        return
    _run(conn, f"SELECT pg_advisory_xact_lock(hashtextextended('{_HANDOFF}', 0))", None)
    _held(conn).add(_HANDOFF)


def deadlocked(error: BaseException) -> bool:
    """Whether PostgreSQL ended this transaction to break a deadlock (it is safe to retry)."""
    return getattr(getattr(error, "orig", None), "sqlstate", None) == "40P01"


def _json(names: list[str]) -> str:
    return orjson.dumps(names).decode()


def _take(conn: Connection, sql: str, params: dict[str, object]) -> None:
    _held(conn).update(x for x, _ in _run(conn, sql, params))


def _run(conn: Connection, sql: str, params: dict[str, object] | None) -> list[Any]:
    """Straight to the driver (these run on every write); the statement's rows. The driver's
    errors come out as SQLAlchemy's, as from ``conn.execute``: a lost
    server is an OperationalError (503 unavailable), a deadlock one that ``deadlocked`` knows."""
    dbapi_error = conn.dialect.loaded_dbapi.Error
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cur.execute(sql, params)
        return list(cur.fetchall())
    except dbapi_error as e:
        raise sa.exc.DBAPIError.instance(sql, params, e, dbapi_error) from e
    finally:
        cur.close()
