"""`leadscore import` and the funnel report on real databases (SQLite and PostgreSQL): files in,
rows stored, the report equal to the pure reference, the API and the command line."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from leadscore.errors import BadRowsError, InputError, InvalidRequestError
from leadscore.reports.funnel import GROUPS, report, tally
from leadscore.service.facade import Service
from leadscore.store import open_engine
from leadscore.store import schema as t
from tests.cli_helpers import ls
from tests.service_helpers import Api

D = 86_400_000_000
JAN = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z

#: a rep's email in any case is the same rep: stored lower-cased (lead a's owner, its sal move)
LEADS = """\
lead_id,email,source,utm_campaign,company.employees,owner,team
a,x@Acme.io,webinar,spring,500,Ann@Acme.IO,enterprise
b,y@b.com,ads,,,lee@acme.io,smb
c,z@c.com,,,,,
"""
STAGES = """\
lead_id,stage,at,by,reason
a,mql,2026-01-01T10:00:00Z,,
a,sal,2026-01-02,ANN@acme.io,
a,sql,2026-01-05,ann@acme.io,
a,customer,2026-02-01,crm,
b,mql,2026-01-03,,
b,disqualified,2026-01-04,lee@acme.io,bad fit
b,mql,2026-03-01,,
c,mql,2026-01-10,,
c,recycled,2026-01-20,,no budget
"""


def write(tmp: Path, name: str, text: str) -> Path:
    p = tmp / name
    p.write_text(text, encoding="utf-8")
    return p


def table(engine: sa.Engine, tbl: sa.Table, *order: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(tbl).order_by(*[tbl.c[o] for o in order])).mappings()
        return [{k: v for k, v in r.items() if k != "id"} for r in rows]


@pytest.fixture
def service(service_db_url: str) -> Any:
    engine = open_engine(service_db_url)
    yield Service(engine)
    engine.dispose()


def test_import_stores_leads_history_and_episodes(service: Service, tmp_path: Path) -> None:
    leads, stages = write(tmp_path, "leads.csv", LEADS), write(tmp_path, "stages.csv", STAGES)
    r = service.import_history(leads=leads, stages=stages)
    assert r.record() == {
        "leads_added": 3,
        "leads_updated": 0,
        "leads_unchanged": 0,
        "stage_rows_added": 9,
        "stage_rows_present": 0,
        "episodes": 4,
        "outside_episodes": 0,
        "skipped_rows": 0,
        "model_version": None,  # no model active: nothing re-scored
        "leads_rescored": 0,
        "new_mqls": 0,
        "notified": False,
    }
    stored = {row["lead_id"]: row for row in table(service.engine, t.leads, "lead_id")}
    a = stored["a"]
    traits = a["traits"] if isinstance(a["traits"], dict) else json.loads(a["traits"])
    assert traits == {
        "email": "x@Acme.io",
        "source": "webinar",
        "utm_campaign": "spring",
        "company": {"employees": "500"},
    }
    assert (a["owner"], a["team"], a["email_domain"], a["stage"]) == (
        "ann@acme.io",
        "enterprise",
        "acme.io",
        "customer",
    )
    assert a["mql_at_us"] == JAN + 10 * 3_600_000_000
    assert (stored["b"]["stage"], stored["b"]["mql_at_us"]) == ("mql", JAN + 59 * D)
    assert (stored["c"]["stage"], stored["c"]["owner"]) == ("recycled", None)
    history = table(service.engine, t.stage_history, "lead_id", "at_us")
    assert [(h["lead_id"], h["stage"], h["by"], h["reason"]) for h in history[:4]] == [
        ("a", "mql", "import", ""),
        ("a", "sal", "ann@acme.io", ""),
        ("a", "sql", "ann@acme.io", ""),
        ("a", "customer", "crm", ""),
    ]
    eps = table(service.engine, t.mql_episodes, "lead_id", "mql_at_us")
    assert [
        (e["lead_id"], e["stage"], e["source"], e["campaign"], e["owner"], e["closed_reason"])
        for e in eps
    ] == [
        ("a", "customer", "webinar", "spring", "ann@acme.io", None),
        ("b", "disqualified", "ads", None, None, "bad fit"),  # the owner: latest episode only
        ("b", "mql", "ads", None, "lee@acme.io", None),
        ("c", "recycled", None, None, None, "no budget"),
    ]
    assert {e["track"] for e in eps} == {"import"}
    assert eps[0]["customer_at_us"] == JAN + 31 * D

    # the same files again: nothing new
    again = service.import_history(leads=leads, stages=stages)
    assert (
        again.leads_added,
        again.stage_rows_added,
        again.stage_rows_present,
        again.episodes,
    ) == (
        0,
        0,
        9,
        0,
    )
    assert table(service.engine, t.mql_episodes, "lead_id", "mql_at_us") == eps
    assert len(table(service.engine, t.stage_history, "lead_id")) == 9


def test_a_new_row_rebuilds_the_episode_and_keeps_what_the_service_recorded(
    service: Service, tmp_path: Path
) -> None:
    service.import_history(
        leads=write(tmp_path, "leads.csv", LEADS), stages=write(tmp_path, "stages.csv", STAGES)
    )
    with service.engine.begin() as conn:  # as the live service would: assignment, touch, SLA
        conn.execute(
            sa.update(t.mql_episodes)
            .where(t.mql_episodes.c.lead_id == "b", t.mql_episodes.c.stage == "mql")
            .values(
                assigned_at_us=JAN + 59 * D + 1,
                first_touch_at_us=JAN + 59 * D + 2,
                sla_name="day",
                sla_due_at_us=JAN + 60 * D,
            )
        )
    more = write(
        tmp_path,
        "more.jsonl",
        "\n".join(
            json.dumps(x)
            for x in [
                {"lead_id": "b", "stage": "sql", "at": "2026-03-03T00:00:00Z", "by": "lee@acme.io"},
                {"lead_id": "b", "stage": "mql", "at": "2026-03-01"},  # stored already
            ]
        )
        + "\n",
    )
    r = service.import_history(leads=None, stages=more)
    assert (r.stage_rows_added, r.stage_rows_present, r.episodes, r.leads_updated) == (1, 1, 2, 1)
    eps = [e for e in table(service.engine, t.mql_episodes, "mql_at_us") if e["lead_id"] == "b"]
    assert [(e["stage"], e["closed_stage"]) for e in eps] == [
        ("disqualified", "disqualified"),
        ("sql", None),
    ]
    latest = eps[1]
    assert (
        latest["sql_at_us"],
        latest["first_touch_at_us"],
        latest["sla_name"],
        latest["owner"],
    ) == (
        JAN + 61 * D,
        JAN + 59 * D + 2,
        "day",
        "lee@acme.io",
    )
    stored = {row["lead_id"]: row for row in table(service.engine, t.leads, "lead_id")}
    assert stored["b"]["stage"] == "sql"


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        (
            "lead_id,stage,at\na,mql,2026-01-01\na,custmer,2026-01-02\n",
            "stages.csv:3: unknown stage \"custmer\": did you mean 'customer'? the stages are "
            "lead, mql, sal, sql, opportunity, customer, recycled, disqualified",
        ),
        (
            "lead_id,stage,at\na,mql,yesterday\n",
            'stages.csv:2: at "yesterday" is not an ISO 8601 timestamp',
        ),
        ("lead_id,stage,at\n,mql,2026-01-01\na,,2026-01-01\n", "stages.csv:2: no lead_id"),
        ("lead_id,stage,at\nzz,mql,2026-01-01\n", "stages.csv:2: lead_id 'zz' is in neither"),
        ("lead_id,stage,when\na,mql,2026-01-01\n", "stage rows need a 'at' column"),
    ],
)
def test_bad_stage_rows_name_file_and_line_and_store_nothing(
    service: Service, tmp_path: Path, stages: str, message: str
) -> None:
    leads = write(tmp_path, "leads.csv", LEADS)
    with pytest.raises(InputError) as e:
        service.import_history(leads=leads, stages=write(tmp_path, "stages.csv", stages))
    assert message in str(e.value)
    assert table(service.engine, t.leads, "lead_id") == []


def test_bad_rows_can_be_skipped(service: Service, tmp_path: Path) -> None:
    stages = write(tmp_path, "s.csv", "lead_id,stage,at\na,mql,2026-01-01\na,won,2026-01-02\n")
    with pytest.raises(BadRowsError):
        service.import_history(leads=write(tmp_path, "l.csv", LEADS), stages=stages)
    r = service.import_history(
        leads=write(tmp_path, "l.csv", LEADS), stages=stages, skip_bad_rows=True
    )
    assert (r.skipped_rows, r.stage_rows_added, r.episodes) == (1, 1, 1)


def random_episodes(n: int, seed: int) -> list[dict[str, Any]]:
    """Episodes as the live service and the import write them, with every column sometimes null."""
    rng = random.Random(seed)
    rows = []

    def maybe(p: float, v: Any) -> Any:
        return v if rng.random() < p else None

    for i in range(n):
        m = JAN + rng.randrange(60 * D)
        assigned = maybe(0.8, m + rng.randrange(600_000_000))
        touch = maybe(0.7, m + rng.randrange(2 * D))
        ladder: dict[str, Any] = {}
        at = m
        for s in ("sal", "sql", "opportunity", "customer"):
            at += rng.randrange(1, 5 * D)
            ladder[f"{s}_at_us"] = maybe(0.6, at)
        closed = rng.choice([None, None, "disqualified", "recycled"])
        if ladder["customer_at_us"] is not None:
            closed = None
        rows.append(
            {
                "lead_id": f"l{i}",
                "mql_at_us": m,
                "track": rng.choice(["fast_track", "threshold", "import"]),
                "grade": maybe(0.8, rng.choice(["A1", "B2", "C3", ""])),
                "score": maybe(0.9, rng.uniform(-5, 120)),
                "source": maybe(0.8, rng.choice(["ads", "webinar", "seo"])),
                "campaign": maybe(0.5, rng.choice(["spring", "fall"])),
                "owner": maybe(0.8, rng.choice(["ann@acme.io", "raj@acme.io", "lee@acme.io"])),
                "team": maybe(0.8, rng.choice(["enterprise", "smb"])),
                "assigned_at_us": assigned,
                "first_touch_at_us": touch,
                "sla_name": "s",
                "sla_due_at_us": maybe(0.8, m + rng.choice([300_000_000, D])),
                **ladder,
                "closed_stage": closed,
                "closed_reason": rng.choice(["bad fit", "no intent", "", "a, b"])
                if closed
                else None,
                "closed_at_us": m + D if closed else None,
                "stage": closed or "mql",
            }
        )
    return rows


def test_the_report_equals_the_pure_reference(service: Service) -> None:
    rows = random_episodes(400, seed=7)
    with service.engine.begin() as conn:
        conn.execute(sa.insert(t.mql_episodes), rows)
    now = JAN + 30 * D  # some SLAs still pending, some cohorts still open
    service.now_us = lambda: now  # type: ignore[method-assign]
    windows = [(None, None), (JAN + 10 * D, JAN + 40 * D), (JAN + 50 * D, JAN + 70 * D)]
    for start, end in windows:
        end_us = now if end is None else end
        chosen = [
            r
            for r in rows
            if (start is None or r["mql_at_us"] >= start) and r["mql_at_us"] < end_us
        ]
        for by in (None, *GROUPS):
            got = service.funnel(by=by, start_us=start, end_us=end)
            want = report(
                tally(chosen, by, now), by=by, start=got["from"], end=got["to"], as_of=got["as_of"]
            )
            assert got == want, (start, end, by)
    whole = service.funnel()
    assert whole["total"]["mqls"] == sum(r["mql_at_us"] < now for r in rows)


def test_report_rejects_what_it_cannot_do(service: Service) -> None:
    with pytest.raises(InvalidRequestError, match="cannot group by 'country'; use one of source"):
        service.funnel(by="country")
    with pytest.raises(InvalidRequestError, match="'from' must be before its 'to'"):
        service.funnel(start_us=JAN + D, end_us=JAN)


def test_report_over_the_api(service_db_url: str, tmp_path: Path) -> None:
    api = Api(service_db_url)
    try:
        api.service.import_history(
            leads=write(tmp_path, "leads.csv", LEADS), stages=write(tmp_path, "stages.csv", STAGES)
        )
        resp = api.get(
            "/api/reports/funnel", **{"from": "2026-01-01", "to": "2026-02-01", "by": "source"}
        )
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert (body["from"], body["to"], body["by"]) == (
            "2026-01-01T00:00:00Z",
            "2026-02-01T00:00:00Z",
            "source",
        )
        assert body["total"]["mqls"] == 3  # b's second MQL (March) is outside the window
        assert {g["key"]: g["mqls"] for g in body["groups"]} == {
            "webinar": 1,
            "ads": 1,
            "(none)": 1,
        }
        assert body["total"]["rejection_reasons"] == [{"reason": "bad fit", "count": 1}]
        assert body["total"]["conversion"]["mql_to_sql"] == pytest.approx(1 / 3)
        bad = api.get("/api/reports/funnel", by="country")
        assert bad.status_code == 422
        assert bad.json()["error"]["code"] == "invalid_request"
        assert (
            api.get("/api/reports/funnel", **{"from": "soon"})
            .json()["error"]["message"]
            .startswith("from 'soon' is not a date")
        )
        spec = api.client.get("/openapi.json").json()
        op = spec["paths"]["/api/reports/funnel"]["get"]
        assert {p["name"] for p in op["parameters"]} == {"from", "to", "by"}
        assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
            "/Funnel"
        )
        assert op["security"]
        anonymous = api.client.get("/api/reports/funnel")
        assert anonymous.status_code == 401
        assert set(anonymous.json()["error"]) == {"code", "message", "details"}
    finally:
        api.close()


def test_the_commands(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'ls.db'}"
    leads, stages = write(tmp_path, "leads.csv", LEADS), write(tmp_path, "stages.csv", STAGES)
    first = ls("import", "--leads", str(leads), "--stages", str(stages), "--database", db)
    assert (
        "3 leads added, 0 updated, 0 unchanged; 9 stage rows added (0 already stored); 4 MQL episodes"
        in first.stderr
    )
    again = ls("import", "--leads", str(leads), "--stages", str(stages), "--database", db)
    assert "0 stage rows added (9 already stored)" in again.stderr
    as_json = json.loads(
        ls("report", "funnel", "--database", db, "--to", "2027-01-01", "-f", "json").stdout
    )
    assert as_json["total"]["mqls"] == 4
    csv_out = ls(
        "report", "funnel", "--database", db, "--by", "source", "--to", "2027-01-01", "-f", "csv"
    ).stdout
    lines = csv_out.splitlines()
    assert lines[0].startswith("key,mqls,sal,sql,opportunity,customer,mql_to_sal,mql_to_sql")
    assert lines[1].startswith("all,4,1,1,1,1,0.25,0.25,1.0,1,1,1,")
    assert len(lines) == 5
    shown = ls("report", "funnel", "--database", db, "--by", "owner", "--to", "2027-01-01").stdout
    assert "Conversion" in shown and "ann@acme.io" in shown
    assert "MQL→SQL for all: 25.0%" not in shown  # 25% is inside the band
    assert "MQL→SQL for (none): 0.0%, below the usual 20%–60% band (1 still open)." not in shown
    assert "below the usual 20%–60% band" in shown
    bad = write(tmp_path, "bad.csv", "lead_id,stage,at\na,won,2026-01-01\n")
    proc = ls("import", "--stages", str(bad), "--database", db, ok=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: 1 row cannot be read:")
    assert f'{bad}:2: unknown stage "won": the stages are lead, mql' in proc.stderr
    wrong = ls("report", "funnel", "--database", db, "--by", "country", ok=False)
    assert (wrong.returncode, wrong.stderr.splitlines()[0]) == (
        1,
        "Error: cannot group by 'country'; use one of source, campaign, grade, band, owner, team, track",
    )


def test_jsonl_leads_and_parquet_stages(service: Service, tmp_path: Path) -> None:
    import duckdb

    leads = write(
        tmp_path,
        "leads.jsonl",
        json.dumps({"lead_id": "p1", "email": "a@Pq.io", "owner": "raj@acme.io", "utm_source": "g"})
        + "\n",
    )
    only = service.import_history(leads=leads, stages=None)
    assert (only.leads_added, only.episodes) == (1, 0)
    stages = tmp_path / "stages.parquet"
    duckdb.sql(
        "SELECT 'p1' AS lead_id, s AS stage, TIMESTAMP '2026-01-01 00:00:00' + to_days(d) AS at "
        "FROM (VALUES ('MQL', 0), ('sql', 2)) v(s, d)"
    ).write_parquet(str(stages))
    r = service.import_history(leads=None, stages=stages)
    assert (r.leads_updated, r.stage_rows_added, r.episodes) == (1, 2, 1)
    (ep,) = table(service.engine, t.mql_episodes, "lead_id")
    assert (ep["mql_at_us"], ep["sql_at_us"], ep["source"], ep["owner"]) == (
        JAN,
        JAN + 2 * D,
        "g",
        "raj@acme.io",
    )
