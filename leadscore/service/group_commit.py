"""Group commit: calls that arrive while another is being written are written together, in one
transaction, by one writer, and each is answered only once that transaction has committed.

SQLite takes one writer at a time, and each commit waits for the disk (``synchronous=FULL``:
the WAL is flushed before the commit returns). Calls that queue behind a writer would each pay
for their own commit; here the first waiting call becomes the next writer and takes every call
queued by then (up to ``max_calls``), so one flush covers them all. No call waits for others to
arrive: a call that finds the writer idle is written at once, alone. A writer may also take the
calls that queued while it wrote, before it commits (``join``): they then share its commit
instead of waiting for it and paying for one of their own.

The writing itself is the caller's (``write``): it gets the group and must give every call its
outcome, a result or an exception (``Call.result`` / ``Call.error``); one call's failure need not
fail the others. An exception out of ``write`` itself means its transaction did not commit:
it becomes every call's outcome, results included, as nothing of the group was stored.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["Call", "GroupCommit"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(eq=False)
class Call(Generic[T, R]):
    """One caller's work and, once its group is written, its outcome."""

    work: T
    result: R | None = None
    error: BaseException | None = None
    done: bool = field(default=False, repr=False)


class GroupCommit(Generic[T, R]):
    """Runs ``write`` on groups of calls, one group at a time (see the module's docstring)."""

    def __init__(self, write: Callable[[list[Call[T, R]]], None], max_calls: int = 16) -> None:
        self._write = write
        self.max_calls = max_calls
        self._cond = threading.Condition()
        self._queue: list[Call[T, R]] = []
        self._writing = False
        #: how many groups were written and how many calls they held (for tests and tuning)
        self.groups = 0
        self.calls = 0

    def pending(self) -> int:
        """Calls waiting for a writer."""
        with self._cond:
            return len(self._queue)

    def submit(self, work: T) -> R:
        """Writes ``work`` (with whatever else is waiting) and returns its result once committed;
        raises its error."""
        call: Call[T, R] = Call(work)
        cond = self._cond
        with cond:
            self._queue.append(call)
            while True:
                while not call.done and self._writing:
                    cond.wait()
                if call.done:
                    break
                # the writer is idle and this call is not written: write what is queued
                self._writing = True
                group = self._queue[: self.max_calls]
                del self._queue[: self.max_calls]
                cond.release()
                try:
                    self._run(group)
                finally:
                    cond.acquire()
                    self._writing = False
                    for c in group:
                        c.done = True
                    cond.notify_all()
        if call.error is not None:
            raise call.error
        return call.result  # type: ignore[return-value]

    def join(self, group: list[Call[T, R]]) -> list[Call[T, R]]:
        """For a writer that has written ``group`` and not yet committed: the calls queued
        meanwhile, taken into ``group`` (up to ``max_calls`` in all) to be written in the same
        transaction. Their outcome is the writer's to give, as for the rest of ``group``; an
        exception out of ``write`` becomes theirs too. Empty when none is waiting."""
        with self._cond:
            room = self.max_calls - len(group)
            if room <= 0 or not self._queue:
                return []
            more = self._queue[:room]
            del self._queue[:room]
            group.extend(more)
            self.calls += len(more)
        return more

    def _run(self, group: list[Call[T, R]]) -> None:
        self.groups += 1
        self.calls += len(group)  # (and ``join`` counts the calls it adds)
        try:
            self._write(group)
        except BaseException as e:  # nothing of the group was committed
            for c in group:
                c.result, c.error = None, e
            return
        for c in group:
            if c.error is None and c.result is None:
                c.error = RuntimeError("the group's writer gave this call no outcome")
