"""Small parts every service module shares: time in microseconds, JSON for the store's columns,
and the one write transaction."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from ..store.db import WRITES
from . import locks

__all__ = ["POLL_S", "US", "Tx", "dumps", "iso", "json_param", "loads", "now_us"]

US = 1_000_000
#: how old the active model or routing version a read uses may be, in seconds (PostgreSQL)
POLL_S = 1.0


def now_us() -> int:
    return time.time_ns() // 1000


def iso(us: int | None) -> str | None:
    if us is None:
        return None
    return datetime.fromtimestamp(us / US, UTC).isoformat().replace("+00:00", "Z")


def dumps(v: Any) -> str:
    try:
        return orjson.dumps(v).decode()
    except TypeError:  # a value orjson does not know (e.g. a very large integer)
        return json.dumps(v, separators=(",", ":"), ensure_ascii=False, default=str)


def loads(v: Any) -> Any:
    if v is None or isinstance(v, dict | list):
        return v
    return orjson.loads(v)


def json_param(v: Any, dialect: str) -> Any:
    """A value for a JSON column: text on SQLite; on PostgreSQL the value itself, which the jsonb
    type serialises (text there would be stored as one jsonb string, invisible to the SQL engine)."""
    if v is None:
        return None
    return v if dialect == "postgresql" else dumps(v)


def _writes(engine: Engine) -> Engine:
    """The engine with the ``WRITES`` option, made once and kept on the engine (every write
    transaction begins on it; making it cost as much as the BEGIN)."""
    got: Engine | None = getattr(engine, _WRITING, None)
    if got is None:
        got = engine.execution_options(**{WRITES: True})
        setattr(engine, _WRITING, got)
    return got


_WRITING = "_leadscore_writing"


class Tx:
    """``with`` a write transaction.

    On SQLite one writer at a time: ``lock`` (the process's) and BEGIN IMMEDIATE (the file's);
    one serving process per SQLite file. On PostgreSQL no process lock (``lock`` is None):
    the transaction takes the writes lock (``locks.begin_write``; ``exclusive`` for what
    changes every lead) and then ``leads``' locks, so several processes can write at once;
    ``sync`` is told the active model and routing versions read under the writes lock.
    ``outcome`` is told how each write ended: None when it committed, else the database's
    error (not the caller's own exceptions)."""

    def __init__(
        self,
        engine: Engine,
        lock: threading.Lock | None,
        outcome: Callable[[BaseException | None], None] | None = None,
        *,
        exclusive: bool = False,
        leads: Iterable[str] = (),
        sync: Callable[[Connection, int | None, int | None], None] | None = None,
    ) -> None:
        self.engine = engine
        self.lock = lock
        self.outcome = outcome
        self.exclusive = exclusive
        self.leads = leads
        self.sync = sync
        #: (model, routing) active versions read under the writes lock (PostgreSQL)
        self.versions: tuple[int | None, int | None] | None = None
        self.ctx: Any = None

    def __enter__(self) -> Connection:
        if self.lock is not None:
            self.lock.acquire()
        try:
            # it reads before it writes: on SQLite it must take the write lock at BEGIN
            self.ctx = _writes(self.engine).begin()
            conn: Connection = self.ctx.__enter__()
        except BaseException as e:
            if self.lock is not None:
                self.lock.release()
            self._tell(e)
            raise
        if conn.dialect.name == "postgresql":
            try:
                self.versions = locks.begin_write(conn, self.exclusive)
                if self.sync is not None:
                    self.sync(conn, *self.versions)
                locks.lock_leads(conn, self.leads)
            except BaseException as e:
                self.__exit__(type(e), e, e.__traceback__)
                raise
        return conn

    def __exit__(self, *exc: Any) -> None:
        try:
            self.ctx.__exit__(*exc)
            self._tell(exc[1])
        except BaseException as e:  # the commit itself failed
            self._tell(e)
            raise
        finally:
            if self.lock is not None:
                self.lock.release()

    def _tell(self, error: BaseException | None) -> None:
        if self.outcome is None:
            return
        if error is None:
            self.outcome(None)
        elif isinstance(error, OperationalError) and not locks.deadlocked(error):
            # (a deadlock ends one transaction, which is tried again: the database is fine)
            self.outcome(error)
