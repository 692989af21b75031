"""SLA deadlines: durations, working hours in the team's time zone (DST included), breaches."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.handoff import (
    SlaClock,
    WorkingHours,
    add_working_time,
    breached_at,
    format_duration,
    is_breached,
    parse_duration,
    parse_routing,
    sla_for,
)
from leadscore.handoff.hours import parse_days, parse_hours

from .handoff_helpers import ISSUE_EXAMPLE, local, us

R = parse_routing(ISSUE_EXAMPLE, "routing.yaml")
H = 3_600_000_000
NY = WorkingHours("America/New_York", (0, 1, 2, 3, 4), 9 * 60, 18 * 60)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("30s", 30_000_000),
        ("5m", 300_000_000),
        ("24h", 24 * H),
        ("2d", 48 * H),
        ("1h30m", 90 * 60_000_000),
        (" 5M ", 300_000_000),
        ("5", None),
        ("1w", None),
        ("1.5h", None),
        ("m", None),
        ("", None),
    ],
)
def test_durations(text, expected):
    assert parse_duration(text) == expected


def test_durations_are_written_back_shortest():
    assert format_duration(90 * 60_000_000) == "1h30m"
    assert format_duration(26 * H) == "1d2h"
    assert format_duration(0) == "0s"


def test_days_and_hours():
    assert parse_days("mon-fri") == (0, 1, 2, 3, 4)
    assert parse_days("fri-mon") == (0, 4, 5, 6)
    assert parse_days("mon,wed , sun") == (0, 2, 6)
    assert parse_days("Mon-Wed,sat") == (0, 1, 2, 5)
    assert "not a day" in str(parse_days("mon-fry"))
    assert parse_hours("09:00-18:00") == (540, 1080)
    assert parse_hours("9:30 - 24:00") == (570, 1440)
    assert "cross midnight" in str(parse_hours("22:00-06:00"))
    assert "not a time of day" in str(parse_hours("09:00-25:00"))
    assert "not a time like" in str(parse_hours("9-5"))


def test_demo_within_5_minutes_runs_on_the_clock_any_time():
    sat_night = us(2026, 3, 7, 23, 58, tz="America/New_York")
    clock = sla_for(R, {"fast_track": True}, sat_night, "enterprise")
    assert clock == SlaClock(
        "Demo within 5 minutes",
        sat_night,
        sat_night + 300_000_000,
        "lee@acme.io",
        None,
        300_000_000,
    )


def test_a_business_day_sla_counts_only_working_hours_of_the_team():
    # Friday 17:00 in New York: 1 hour on Friday, 9 on Monday, 9 on Tuesday, 5 on Wednesday
    friday = us(2026, 2, 27, 17, tz="America/New_York")
    clock = sla_for(R, {"fast_track": False}, friday, "enterprise")
    assert clock is not None and clock.name == "Other MQLs within a business day"
    due = local(clock.due_at_us)
    assert (due.year, due.month, due.day, due.hour, due.minute) == (2026, 3, 4, 14, 0)
    assert clock.escalate_to is None and clock.working_hours == NY


def test_a_team_without_hours_runs_the_clock_straight_through():
    friday = us(2026, 2, 27, 17, tz="America/New_York")
    clock = sla_for(R, {}, friday, "smb")
    assert clock is not None and clock.due_at_us == friday + 24 * H
    assert sla_for(R, {}, friday, None) == clock


def test_the_files_working_hours_apply_to_teams_without_their_own():
    r = parse_routing(
        ISSUE_EXAMPLE
        + 'working_hours: {timezone: Europe/Paris, days: mon-fri, hours: "09:00-17:00"}\n',
        "r.yaml",
    )
    sunday = us(2026, 3, 1, 12, tz="Europe/Paris")
    clock = sla_for(r, {}, sunday, "smb")
    assert clock is not None
    due = local(clock.due_at_us, "Europe/Paris")
    # 8 working hours a day: Monday 8, Tuesday 8, Wednesday 8 -> Wednesday 17:00
    assert (due.day, due.hour) == (4, 17)


def test_no_sla_matches():
    r = parse_routing(
        "routing: 1\nname: x\nfallback: a@x.io\nsla:\n"
        "  - {name: Hot, when: {field: grade, equals: A1}, first_touch_within: 1h}\n",
        "r.yaml",
    )
    assert sla_for(r, {"grade": "B2"}, 0, None) is None
    assert sla_for(r, {"grade": "a1"}, 0, None) == SlaClock("Hot", 0, H, None, None, H)


def test_the_clock_is_correct_across_a_daylight_saving_change():
    always = WorkingHours("America/New_York", tuple(range(7)), 0, 1440)
    # clocks go forward at 02:00 on 8 March 2026: four real hours from 23:00 end at 04:00
    start = us(2026, 3, 7, 23, tz="America/New_York")
    due = local(add_working_time(start, 4 * H, always))
    assert (due.day, due.hour) == (8, 4)
    # and back at 02:00 on 1 November: four real hours from 23:00 end at 02:00 (EST)
    start = us(2026, 10, 31, 23, tz="America/New_York")
    due = local(add_working_time(start, 4 * H, always))
    assert (due.day, due.hour, due.utcoffset()) == (1, 2, timedelta(hours=-5))


def test_working_hours_across_a_daylight_saving_weekend_keep_local_times():
    # Friday 17:00 EST before the change; 2 working hours end Monday 10:00 EDT
    friday = us(2026, 3, 6, 17, tz="America/New_York")
    due = local(add_working_time(friday, 2 * H, NY))
    assert (due.day, due.hour, due.utcoffset()) == (9, 10, timedelta(hours=-4))


def test_breaches():
    clock = SlaClock("x", 0, 100, None, None)
    assert breached_at(clock, None, 100) is None  # not past the due time yet
    assert breached_at(clock, None, 101) == 100  # the breach is dated at the due time
    assert breached_at(clock, 100, 10_000) is None  # a touch at the due time meets it
    assert breached_at(clock, 50, 10_000) is None  # logged late, dated in time: no breach
    assert breached_at(clock, 101, 10_000) == 100
    assert is_breached(clock, None, 101) and not is_breached(clock, 1, 101)


HOURS = st.builds(
    lambda tz, days, start, length: WorkingHours(tz, days, start, min(1440, start + length)),
    st.sampled_from(
        ["America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]
    ),
    st.sets(st.integers(0, 6), min_size=1).map(lambda s: tuple(sorted(s))),
    st.integers(0, 1410),
    st.integers(30, 1440),
)
INSTANTS = st.integers(us(2025, 1, 1), us(2028, 1, 1))
DURATIONS = st.integers(1, 200 * H)


@settings(max_examples=300, deadline=None)
@given(hours=HOURS, start=INSTANTS, duration=DURATIONS)
def test_deadlines_fall_in_working_hours_and_never_before_the_naive_deadline(
    hours, start, duration
):
    due = add_working_time(start, duration, hours)
    assert due >= start + duration
    # inside an opening, or exactly at its end
    assert hours.contains(due) or hours.contains(due - 1)
    assert add_working_time(start, duration, None) == start + duration


@settings(max_examples=200, deadline=None)
@given(hours=HOURS, start=INSTANTS, a=DURATIONS, b=DURATIONS)
def test_working_time_adds_up(hours, start, a, b):
    # a clock run for a, then for b, ends where one run for a + b does
    assert add_working_time(add_working_time(start, a, hours), b, hours) == add_working_time(
        start, a + b, hours
    )
