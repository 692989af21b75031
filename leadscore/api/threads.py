"""The threads that ingest requests' work runs on, off the event loop: checking the key in the
database, checking the messages, storing and scoring them (``ingest.py``).

A pool of its own (``concurrent.futures``, threads named ``leadscore-ingest``), handed work
with ``loop.run_in_executor``: one wake-up of a pool thread and one of the loop (the answer,
with ``call_soon_threadsafe``) per request, and less bookkeeping around them than Starlette's
``run_in_threadpool`` (anyio's capacity limiter and cancel scope). The pool takes as many
threads as anyio's default (40); the ingest requests in flight are capped below that by
default (``limits.Shed``, ``--ingest-inflight``); with no cap, or one above 40, the requests
past 40 wait in the pool's queue, as they waited for Starlette's threads before. The reads and the admin API keep Starlette's threadpool, so ingest cannot
take all its threads.

The work runs in a copy of the request's context (its ``logs.REQUEST_ID`` included), as
``run_in_threadpool`` runs it. A request cancelled while its work runs does not stop the work
(a thread cannot be stopped), and is not answered: nothing is acknowledged that was not stored.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["MAX_THREADS", "hand_off"]

R = TypeVar("R")

#: threads of the pool at most (anyio's default, which Starlette's threadpool has)
MAX_THREADS = 40

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(MAX_THREADS, thread_name_prefix="leadscore-ingest")
    return _pool


async def hand_off(func: Callable[..., R], *args: Any) -> R:
    """``func(*args)`` on a thread of the pool, in a copy of the current context; its result,
    or its exception raised here."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor(), contextvars.copy_context().run, func, *args)
