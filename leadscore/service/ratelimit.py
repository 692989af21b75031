"""How much each caller may send: token buckets. Pure: the standard library only.

A bucket holds up to ``burst`` tokens and gains ``per_s`` tokens a second. A request costing
``cost`` tokens is admitted when the bucket holds that many, and takes them; otherwise it is
refused with the time until it would be admitted (what an HTTP ``Retry-After`` says). Over
any span of ``t`` seconds a bucket admits at most ``per_s × t + burst`` tokens' worth.

A request may cost more than the whole bucket (a batch of more events than the burst); it is
charged the burst instead, so it can pass once the bucket is full and not be refused for ever.

``take`` decides; ``Limiter`` keeps one bucket per caller (a write key, an API token, a client
address), at most ``max_keys`` of them, forgetting the least recently seen first (a forgotten
caller starts again with a full bucket, as a new one would).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_API",
    "DEFAULT_INGEST",
    "Bucket",
    "Decision",
    "Limiter",
    "Rate",
    "Settings",
    "retry_after_header",
    "take",
]


@dataclass(frozen=True)
class Rate:
    """``per_s`` tokens a second, up to ``burst`` at once; ``per_s == 0`` means no limit."""

    per_s: float
    burst: float

    def __post_init__(self) -> None:
        if not (self.per_s >= 0 and math.isfinite(self.per_s)):
            raise ValueError(f"a rate is a number of tokens a second, 0 or more; not {self.per_s}")
        if self.per_s and not (self.burst >= 1 and math.isfinite(self.burst)):
            raise ValueError(f"a burst is at least 1; not {self.burst}")

    @property
    def unlimited(self) -> bool:
        return self.per_s == 0


@dataclass(frozen=True)
class Bucket:
    """``tokens`` left, as counted at ``at`` (seconds on a clock that only moves forward)."""

    tokens: float
    at: float


@dataclass(frozen=True)
class Decision:
    """Whether a request was admitted, the bucket after it, and when a refused request would
    be admitted (seconds from now; 0 when admitted)."""

    admitted: bool
    bucket: Bucket
    retry_after_s: float = 0.0


def take(rate: Rate, bucket: Bucket | None, now: float, cost: float = 1.0) -> Decision:
    """Admit a request of ``cost`` tokens at ``now`` from ``bucket`` (None: a new caller, whose
    bucket is full), or refuse it saying how long to wait. A clock that goes back adds nothing."""
    if rate.unlimited:
        return Decision(True, bucket or Bucket(0.0, now))
    if bucket is None:
        tokens, at = rate.burst, now
    else:
        at = max(now, bucket.at)
        tokens = min(rate.burst, bucket.tokens + (at - bucket.at) * rate.per_s)
    need = min(max(cost, 0.0), rate.burst)
    if tokens >= need:
        return Decision(True, Bucket(tokens - need, at))
    # never a wait of 0 for a refusal: a tiny shortfall over a fast rate rounds to 0.0
    return Decision(False, Bucket(tokens, at), max((need - tokens) / rate.per_s, 1e-9))


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` in whole seconds, at least 1: the Segment client reads an integer and
    treats 0 (or a fraction) as no advice at all."""
    return str(max(1, math.ceil(seconds)))


#: per write key: events a second, and how many may come at once (a client flushing a backlog)
DEFAULT_INGEST = Rate(per_s=1000.0, burst=10_000.0)
#: per API token (or client address, for requests without a valid token): requests a second
DEFAULT_API = Rate(per_s=100.0, burst=200.0)


@dataclass(frozen=True)
class Settings:
    """What `leadscore serve` limits. ``ingest``: events per write key; ``api``: requests per
    API token or client address; ``ingest_inflight`` / ``api_inflight``: requests being
    answered at once before more are shed with a 503 (0: no cap)."""

    ingest: Rate = DEFAULT_INGEST
    api: Rate = DEFAULT_API
    ingest_inflight: int = 16
    api_inflight: int = 16
    #: callers remembered per limiter (each bucket is a few dozen bytes)
    max_keys: int = 10_000

    def __post_init__(self) -> None:
        for name in ("ingest_inflight", "api_inflight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} is 0 (no cap) or more; not {getattr(self, name)}")
        if self.max_keys < 1:
            raise ValueError(f"max_keys is at least 1; not {self.max_keys}")


@dataclass
class Limiter:
    """One bucket per caller under one ``rate``; safe to call from several threads."""

    rate: Rate
    clock: Callable[[], float] = time.monotonic
    max_keys: int = 10_000
    _buckets: OrderedDict[Hashable, Bucket] = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self, key: Hashable, cost: float = 1.0) -> Decision:
        """Charge ``key`` ``cost`` tokens if it has them."""
        if self.rate.unlimited:
            return Decision(True, Bucket(0.0, 0.0))
        with self._lock:
            decision = take(self.rate, self._buckets.get(key), self.clock(), cost)
            self._buckets[key] = decision.bucket
            self._buckets.move_to_end(key)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return decision

    def ready(self, key: Hashable) -> Decision:
        """Whether ``key`` has a token left, charging nothing (a cheap refusal before the
        request's body is read)."""
        if self.rate.unlimited:
            return Decision(True, Bucket(0.0, 0.0))
        with self._lock:
            return take(self.rate, self._buckets.get(key), self.clock(), 1.0)

    def __len__(self) -> int:
        return len(self._buckets)
