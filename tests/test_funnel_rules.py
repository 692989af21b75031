"""The funnel's pure rules, without a database: the stage-history fold into MQL episodes and the
report's definitions."""

from __future__ import annotations

import numpy as np
import pytest

from leadscore.errors import InvalidRequestError
from leadscore.reports.episodes import Move, campaign_of, fold, source_of
from leadscore.reports.funnel import (
    Tally,
    band_of,
    parse_time,
    percentile,
    rate,
    reached,
    report,
    sla_outcome,
    summarise,
    tally,
)

D = 86_400_000_000  # a day in microseconds


def moves(*spec: str) -> list[Move]:
    """'mql@1' → Move('mql', 1 day); 'disqualified@3:bad fit' with a reason."""
    out = []
    for s in spec:
        stage, _, rest = s.partition("@")
        at, _, reason = rest.partition(":")
        out.append(Move(stage, int(at) * D, reason))
    return out


def shape(spec: list[str]) -> tuple[list[dict[str, object]], int]:
    eps, outside = fold(moves(*spec))
    return [
        {k: v for k, v in e.row().items() if v is not None and k != "track"} for e in eps
    ], outside


@pytest.mark.parametrize(
    ("history", "episodes", "outside"),
    [
        # the plain climb
        (
            ["mql@1", "sal@2", "sql@3", "opportunity@4", "customer@9"],
            [
                {
                    "mql_at_us": D,
                    "stage": "customer",
                    "sal_at_us": 2 * D,
                    "sql_at_us": 3 * D,
                    "opportunity_at_us": 4 * D,
                    "customer_at_us": 9 * D,
                }
            ],
            0,
        ),
        # straight to sql: only sql's time is set; the report counts it for sal too
        (["mql@1", "sql@2"], [{"mql_at_us": D, "stage": "sql", "sql_at_us": 2 * D}], 0),
        # the first time only: a second sal keeps the first's time, the stage is the latest
        (
            ["mql@1", "sal@2", "sql@3", "sal@4"],
            [{"mql_at_us": D, "stage": "sal", "sal_at_us": 2 * D, "sql_at_us": 3 * D}],
            0,
        ),
        # disqualified closes it with its reason
        (
            ["mql@1", "disqualified@2:bad fit"],
            [
                {
                    "mql_at_us": D,
                    "stage": "disqualified",
                    "closed_stage": "disqualified",
                    "closed_reason": "bad fit",
                    "closed_at_us": 2 * D,
                }
            ],
            0,
        ),
        # recycled and qualified again: two episodes
        (
            ["mql@1", "recycled@2:no budget", "mql@5", "sal@6"],
            [
                {
                    "mql_at_us": D,
                    "stage": "recycled",
                    "closed_stage": "recycled",
                    "closed_reason": "no budget",
                    "closed_at_us": 2 * D,
                },
                {"mql_at_us": 5 * D, "stage": "sal", "sal_at_us": 6 * D},
            ],
            0,
        ),
        # a second mql while one is open does not open another
        (["mql@1", "mql@2", "sal@3"], [{"mql_at_us": D, "stage": "sal", "sal_at_us": 3 * D}], 0),
        # moves before any mql, and after the episode ended, belong to no episode
        (
            ["lead@0", "sal@1", "mql@2", "customer@3", "sal@4"],
            [{"mql_at_us": 2 * D, "stage": "customer", "customer_at_us": 3 * D}],
            3,
        ),
        # rows come in any order: time decides
        (["sal@2", "mql@1"], [{"mql_at_us": D, "stage": "sal", "sal_at_us": 2 * D}], 0),
        # nothing at all
        ([], [], 0),
        # a customer can qualify again later: a new episode
        (
            ["mql@1", "customer@2", "mql@10"],
            [
                {"mql_at_us": D, "stage": "customer", "customer_at_us": 2 * D},
                {"mql_at_us": 10 * D, "stage": "mql"},
            ],
            0,
        ),
    ],
)
def test_fold(history: list[str], episodes: list[dict[str, object]], outside: int) -> None:
    assert shape(history) == (episodes, outside)


def test_fold_keeps_the_given_order_at_one_instant() -> None:
    eps, outside = fold([Move("mql", 5), Move("sal", 5)])
    assert (len(eps), eps[0].stage, eps[0].reached, outside) == (1, "sal", {"sal": 5}, 0)
    eps, outside = fold([Move("sal", 5), Move("mql", 5)])
    assert (len(eps), eps[0].stage, outside) == (1, "mql", 1)


def test_fold_marks_the_track() -> None:
    eps, _ = fold(moves("mql@1"), track="threshold")
    assert eps[0].row()["track"] == "threshold"
    assert fold(moves("mql@1"))[0][0].row()["track"] == "import"


@pytest.mark.parametrize(
    ("traits", "source", "campaign"),
    [
        ({"source": "webinar", "utm_source": "g", "campaign": "spring"}, "webinar", "spring"),
        ({"utm_source": "google", "utm_campaign": "brand"}, "google", "brand"),
        ({"context": {"campaign": {"source": "news", "name": "q3"}}}, "news", "q3"),
        ({"source": "  ", "utm_source": "ads"}, "ads", None),
        ({"campaign": {"name": "nested"}}, None, "nested"),
        ({}, None, None),
    ],
)
def test_source_and_campaign(
    traits: dict[str, object], source: str | None, campaign: str | None
) -> None:
    assert (source_of(traits), campaign_of(traits)) == (source, campaign)


def test_percentile_interpolates_between_ranks_as_percentile_cont() -> None:
    assert percentile([], 50) is None
    assert percentile([7], 90) == 7
    assert percentile([1, 2, 3, 4], 50) == 2.5
    values = np.sort(np.random.default_rng(3).integers(0, 10**9, 1001))
    for q in (0, 10, 50, 90, 99, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_rate_and_bands() -> None:
    assert rate(1, 4) == 0.25
    assert rate(3, 0) is None
    assert [band_of(s) for s in (None, -3, 0, 9.99, 10, 55, 90, 140)] == [
        None,
        "<0",
        "0–9",
        "0–9",
        "10–19",
        "50–59",
        "90+",
        "90+",
    ]


@pytest.mark.parametrize(
    ("due", "touch", "now", "outcome"),
    [
        (None, 5, 10, None),
        (10, 10, 20, "met"),  # at the due time is in time
        (10, 3, 5, "met"),
        (10, 11, 20, "breached"),  # late
        (10, None, 11, "breached"),  # never, and the time has passed
        (10, None, 10, "pending"),  # not yet past
        (10, 12, 11, "breached"),  # a touch dated after the due time is late whenever it came
    ],
)
def test_sla_outcome(due: int | None, touch: int | None, now: int, outcome: str | None) -> None:
    assert sla_outcome(due, touch, now) == outcome


def test_reaching_a_later_stage_counts_for_the_earlier_ones() -> None:
    row = {"sql_at_us": 5}
    assert [reached(row, s) for s in ("sal", "sql", "opportunity", "customer")] == [
        True,
        True,
        False,
        False,
    ]


def _episode(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {"mql_at_us": 0, "track": "import", "stage": "mql"}
    return {**base, **kw}


def test_tally_and_summary() -> None:
    h = 3_600_000_000
    rows = [
        _episode(
            source="ads",
            sql_at_us=2 * D,
            customer_at_us=10 * D,
            assigned_at_us=60_000_000,
            first_touch_at_us=h,
            sla_due_at_us=2 * h,
        ),
        _episode(
            source="ads",
            closed_stage="disqualified",
            closed_reason="bad fit",
            assigned_at_us=120_000_000,
            first_touch_at_us=60_000_000,
            sla_due_at_us=h,
        ),
        _episode(
            source="ads", closed_stage="disqualified", closed_reason="bad fit", sla_due_at_us=h
        ),
        _episode(source="ads", closed_stage="recycled", closed_reason="no budget"),
        _episode(source=None, sal_at_us=D, sla_due_at_us=100 * D),
    ]
    groups = tally(rows, "source", now_us=10 * D)
    assert set(groups) == {"ads", "(none)"}
    ads = summarise("ads", groups["ads"])
    assert ads["mqls"] == 4
    assert ads["reached"] == {"sal": 1, "sql": 1, "opportunity": 1, "customer": 1}
    assert ads["conversion"] == {"mql_to_sal": 0.25, "mql_to_sql": 0.25, "sql_to_customer": 1.0}
    assert ads["mql_to_sql_note"] is None
    assert ads["outcome"] == {"customer": 1, "disqualified": 2, "recycled": 1, "open": 0}
    assert ads["sla"] == {"met": 2, "breached": 1, "pending": 0, "compliance": 2 / 3}
    assert ads["times"]["first_touch"] == {"n": 2, "median_s": 1830.0, "p90_s": 3246.0}
    assert ads["times"]["routing"] == {"n": 2, "median_s": 90.0, "p90_s": 114.0}
    # a touch before the assignment counts as at once for the rep
    assert ads["times"]["rep"] == {"n": 2, "median_s": 1770.0, "p90_s": 3186.0}
    assert ads["times"]["close"] == {"n": 1, "median_s": 864_000.0, "p90_s": 864_000.0}
    assert ads["rejection_reasons"] == [{"reason": "bad fit", "count": 2}]
    assert ads["recycled_reasons"] == [{"reason": "no budget", "count": 1}]
    none = summarise("(none)", groups["(none)"])
    assert none["outcome"]["open"] == 1
    assert none["sla"] == {"met": 0, "breached": 0, "pending": 1, "compliance": None}
    assert none["mql_to_sql_note"] == "below the usual 20%–60% band (1 still open)"


def test_report_adds_the_groups_up() -> None:
    rows = [_episode(source=s, sql_at_us=1 if i % 2 else None) for i, s in enumerate("aabbb")]
    whole = report(tally(rows, "source", 0), by="source", start=None, end="x", as_of="x")
    assert [g["key"] for g in whole["groups"]] == ["b", "a"]
    assert whole["total"]["mqls"] == 5
    assert whole["total"]["reached"]["sql"] == 2
    alone = report(tally(rows, None, 0), by=None, start=None, end="x", as_of="x")
    assert alone["groups"] == []
    assert alone["total"] == whole["total"]
    assert whole["sql_band"] == [0.2, 0.6]
    empty = report({}, by=None, start=None, end=None, as_of=None)
    assert empty["total"]["mqls"] == 0 and empty["total"]["conversion"]["mql_to_sql"] is None
    assert Tally().mqls == 0


def test_parse_time() -> None:
    assert parse_time(None, "from") is None
    assert parse_time("1970-01-02", "from") == D
    assert parse_time("1970-01-01T01:00:00+01:00", "to") == 0
    assert parse_time("1970-01-01T00:00:01Z", "to") == 1_000_000
    with pytest.raises(InvalidRequestError, match=r"from 'soon' is not a date or timestamp"):
        parse_time("soon", "from")


def test_times_are_numpys_percentiles_of_every_duration() -> None:
    rng = np.random.default_rng(11)
    for n in (1, 2, 3, 10, 1001):
        chunks = [rng.integers(0, 10**12, n), list(rng.integers(0, 10**12, 7))]
        t = Tally()
        t.durations["routing"] = chunks
        got = summarise("x", t)["times"]["routing"]
        every = np.concatenate([np.asarray(c) for c in chunks])
        assert got["n"] == n + 7
        assert got["median_s"] == pytest.approx(round(float(np.percentile(every, 50)) / 1e6, 3))
        assert got["p90_s"] == pytest.approx(round(float(np.percentile(every, 90)) / 1e6, 3))
