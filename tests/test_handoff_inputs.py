"""What routing reads about a lead: traits plus the computed score, from JSON."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from leadscore.errors import InvalidRequestError
from leadscore.handoff import WorkingHours, lead_document, routing_lead
from leadscore.model import parse_model

from .handoff_helpers import us

MODEL = parse_model(
    "model: 1\nname: t\nfit:\n  rules:\n"
    "    - {name: Big, when: {field: company.employees, gte: 1000}, points: 40}\n"
    "engagement:\n  rules:\n"
    "    - {name: Demo, event: demo_request, points: 30, fast_track: true}\n"
    "mql: {threshold: 50}\n",
    "m.yaml",
)
AT = datetime(2026, 3, 3, 15, tzinfo=UTC)


def test_traits_alone_keep_what_they_carry():
    lead, score = lead_document({"country": "US", "score": 80}, None, AT)
    assert lead == {"country": "US", "score": 80} and score is None


def test_a_model_scores_the_traits_and_events():
    doc = {
        "traits": {"company": {"employees": 5000}, "score": 1},
        "events": [{"event": "demo_request", "timestamp": "2026-03-03T14:00:00Z"}],
    }
    lead, score = lead_document(doc, MODEL, AT)
    assert score is not None and score.mql
    assert lead == {
        "company": {"employees": 5000},
        "score": 70.0,
        "fit": 40.0,
        "engagement": 30.0,
        "grade": "",
        "fast_track": True,
    }
    # an event after the instant routed at does not count
    later = {**doc, "events": [{"event": "demo_request", "timestamp": "2026-03-03T16:00:00"}]}
    assert lead_document(later, MODEL, AT)[0]["fast_track"] is False


@pytest.mark.parametrize(
    "doc,message",
    [
        ([1], "the lead must be a JSON object"),
        ({"traits": {}, "events": {}}, "'events' must be a list"),
        ({"traits": {}, "events": [{"timestamp": "2026-01-01"}]}, "event #1 needs an 'event'"),
        ({"traits": {}, "events": [{"event": "x"}]}, "event #1 (x) needs a 'timestamp'"),
        (
            {"traits": {}, "events": [{"event": "x", "timestamp": "soon"}]},
            "event #1 (x): 'soon' is not an ISO 8601 timestamp",
        ),
    ],
)
def test_bad_lead_documents(doc, message):
    with pytest.raises(InvalidRequestError) as info:
        lead_document(doc, MODEL, AT)
    assert message in str(info.value)


def test_computed_values_win_over_traits_of_the_same_name():
    assert routing_lead({"grade": "x", "a": 1}) == {"grade": "x", "a": 1}


def test_working_hours_include_the_opening_and_exclude_the_close():
    h = WorkingHours("Europe/Paris", (0, 1, 2, 3, 4), 9 * 60, 18 * 60)
    assert h.contains(us(2026, 3, 3, 9, tz="Europe/Paris"))
    assert not h.contains(us(2026, 3, 3, 9, tz="Europe/Paris") - 1)
    assert h.contains(us(2026, 3, 3, 18, tz="Europe/Paris") - 1)
    assert not h.contains(us(2026, 3, 3, 18, tz="Europe/Paris"))
    assert not h.contains(us(2026, 3, 7, 12, tz="Europe/Paris"))  # a Saturday
    late = WorkingHours("Asia/Tokyo", (4,), 20 * 60, 24 * 60)
    assert late.contains(us(2026, 3, 6, 23, 59, tz="Asia/Tokyo"))
    assert not late.contains(us(2026, 3, 7, 0, tz="Asia/Tokyo"))
    assert h.describe() == "mon,tue,wed,thu,fri 09:00-18:00 Europe/Paris"
