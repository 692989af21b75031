"""The token bucket's decisions, without a server: what it admits over time, when a refused
request is told to come back, one bucket per caller, a bounded number of callers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.service.ratelimit import (
    Bucket,
    Limiter,
    Rate,
    Settings,
    retry_after_header,
    take,
)

rates = st.builds(
    Rate,
    per_s=st.floats(min_value=0.01, max_value=10_000, allow_nan=False),
    burst=st.floats(min_value=1, max_value=50_000, allow_nan=False),
)
#: (seconds since the previous request, its cost); a negative step is a clock going back
steps = st.lists(
    st.tuples(
        st.floats(min_value=-5, max_value=30, allow_nan=False),
        st.floats(min_value=0, max_value=100_000, allow_nan=False),
    ),
    min_size=1,
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(rate=rates, steps=steps)
def test_never_admits_more_than_rate_times_time_plus_burst(
    rate: Rate, steps: list[tuple[float, float]]
) -> None:
    now, admitted = 1000.0, 0.0
    bucket = None
    for i, (dt, cost) in enumerate(steps):
        now = now + dt
        decision = take(rate, bucket, now, cost)
        if bucket is None:
            start = decision.bucket.at  # the first request: the span starts here
        bucket = decision.bucket
        if decision.admitted:
            admitted += min(cost, rate.burst)
        # the clock the bucket counts by never goes back, so neither does the bound's
        elapsed = bucket.at - start
        assert admitted <= rate.per_s * elapsed + rate.burst + 1e-6 * (1 + admitted), i
        assert 0 <= bucket.tokens <= rate.burst + 1e-9


@settings(max_examples=300, deadline=None)
@given(rate=rates, steps=steps, cost=st.floats(min_value=0, max_value=100_000))
def test_a_refused_request_is_admitted_after_the_wait_it_was_told(
    rate: Rate, steps: list[tuple[float, float]], cost: float
) -> None:
    now, bucket = 0.0, None
    for dt, c in steps:
        now += abs(dt)
        bucket = take(rate, bucket, now, c).bucket
    refused = take(rate, bucket, now, cost)
    if refused.admitted:
        return
    assert refused.retry_after_s > 0
    later = take(rate, refused.bucket, now + refused.retry_after_s * (1 + 1e-9) + 1e-9, cost)
    assert later.admitted


def test_a_new_caller_has_a_full_bucket_and_a_batch_larger_than_it_costs_the_burst() -> None:
    rate = Rate(per_s=10, burst=100)
    first = take(rate, None, 0.0, 100)
    assert first.admitted and first.bucket.tokens == 0
    refused = take(rate, first.bucket, 1.0, 20)  # 10 tokens back after a second
    assert not refused.admitted and refused.retry_after_s == pytest.approx(1.0)
    # 5,000 events never fit a bucket of 100: they pass once it is full, and empty it
    assert not take(rate, refused.bucket, 5.0, 5_000).admitted
    full = take(rate, refused.bucket, 11.0, 5_000)
    assert full.admitted and full.bucket.tokens == 0


def test_a_clock_that_goes_back_adds_nothing() -> None:
    rate = Rate(per_s=10, burst=100)
    spent = take(rate, None, 50.0, 100).bucket
    back = take(rate, spent, 10.0, 1)
    assert not back.admitted and back.bucket == Bucket(0.0, 50.0)


def test_no_limit_admits_everything() -> None:
    rate = Rate(per_s=0, burst=1)
    assert all(take(rate, None, float(i), 1e9).admitted for i in range(10))
    limiter = Limiter(rate)
    assert all(limiter.take("k", 1e9).admitted for _ in range(10)) and len(limiter) == 0


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"per_s": -1, "burst": 10}, "0 or more"),
        ({"per_s": float("inf"), "burst": 10}, "0 or more"),
        ({"per_s": 5, "burst": 0.5}, "at least 1"),
    ],
)
def test_a_rate_that_cannot_work_is_refused(kwargs: dict[str, float], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Rate(**kwargs)


def test_settings_refuse_a_negative_cap() -> None:
    with pytest.raises(ValueError, match="ingest_inflight"):
        Settings(ingest_inflight=-1)


@pytest.mark.parametrize(
    ("seconds", "header"), [(0.0, "1"), (0.01, "1"), (1.0, "1"), (1.2, "2"), (59.5, "60")]
)
def test_retry_after_is_whole_seconds_and_at_least_one(seconds: float, header: str) -> None:
    assert retry_after_header(seconds) == header


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_one_callers_empty_bucket_does_not_touch_anothers() -> None:
    clock = Clock()
    limiter = Limiter(Rate(per_s=1, burst=3), clock)
    assert [limiter.take("noisy").admitted for _ in range(5)] == [True] * 3 + [False] * 2
    assert [limiter.take("quiet").admitted for _ in range(3)] == [True] * 3
    assert not limiter.ready("noisy").admitted
    clock.now = 1.0
    assert limiter.ready("noisy").admitted  # ready charges nothing …
    assert limiter.ready("noisy").admitted
    assert limiter.take("noisy").admitted  # … take does
    assert not limiter.take("noisy").admitted


def test_the_callers_remembered_are_bounded_and_the_least_recent_is_forgotten() -> None:
    clock = Clock()
    limiter = Limiter(Rate(per_s=1, burst=1), clock, max_keys=100)
    for i in range(1_000):
        limiter.take(f"address-{i}")
    assert len(limiter) == 100
    assert not limiter.take("address-999").admitted  # remembered: still empty
    assert limiter.take("address-0").admitted  # forgotten: starts again, full
