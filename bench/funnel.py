"""Funnel report benchmark: the report over 1,000,000 leads with full stage history.

    python bench/funnel.py [--database sqlite|postgres|both] [--leads 1000000] [--repeat 3]
    python bench/funnel.py --import 100000 [--database …]

For each database it generates the leads, their MQL episodes (owner, team, assignment, first
touch, SLA, stages reached, disqualifications with reasons, recycles, open ones) and the stage
history those episodes stand for, straight into the tables with INSERT … SELECT (the data are a
function of the row number, so every run and both databases hold the same rows). Then it times
``Service.funnel`` — the one aggregate query over ``mql_episodes`` and the figures computed from
it — for the whole cohort and grouped by source and by owner, and checks that both databases
gave the same report. The goal: under 3 s on each. Results go to stdout and bench/results/.
With ``--import N`` it times ``leadscore import`` instead: N leads and their stage history
(about 2.4 rows a lead) from CSV files into an empty database, then the same files again; then,
with 5 events stored for each lead, a file changing every lead's traits with no model active
and again with the starter model active, which re-scores every lead (their ratio is printed).

On SQLite the query runs in this process, so its CPU time is printed beside the wall time: on
a machine shared with other work the wall time says more about the neighbours than the query.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from leadscore.service.facade import Service  # noqa: E402
from leadscore.store import open_engine  # noqa: E402

US = 1_000_000
DAY = 86_400
BASE = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()) * US
REASONS = ("bad fit", "no intent", "wrong contact", "duplicate", "competitor", "student")

# h: a spread of 0..999 from the row number; everything else follows from it and from i
EPISODES = f"""
INSERT INTO mql_episodes (lead_id, mql_at_us, track, grade, score, source, campaign, owner, team,
  assigned_at_us, first_touch_at_us, sla_name, sla_due_at_us, sla_breached_at_us,
  sal_at_us, sql_at_us, opportunity_at_us, customer_at_us, closed_stage, closed_reason,
  closed_at_us, stage)
SELECT 'lead-' || i, m, CASE WHEN h < 100 THEN 'fast_track' ELSE 'threshold' END,
  CASE h % 4 WHEN 0 THEN 'A1' WHEN 1 THEN 'B2' WHEN 2 THEN 'C3' ELSE 'D4' END, (h % 100) * 1.0,
  'source-' || (i % 8), 'campaign-' || (i * 31 % 50), 'rep' || (i * 13 % 40) || '@acme.io',
  'team-' || (i % 3),
  m + (i * 17 % 600) * {US},
  CASE WHEN h < 900 THEN m + (i * 17 % 600) * {US} + (i * 101 % 7200) * {US} END,
  CASE WHEN h < 100 THEN 'fast' ELSE 'day' END,
  m + CASE WHEN h < 100 THEN 300000000 ELSE 86400000000 END,
  CASE WHEN h >= 900 OR (h < 100 AND (i * 17 % 600) + (i * 101 % 7200) > 300)
       THEN m + CASE WHEN h < 100 THEN 300000000 ELSE 86400000000 END END,
  CASE WHEN h < 600 THEN m + 2 * {DAY * US} END,
  CASE WHEN h < 300 THEN m + 5 * {DAY * US} END,
  CASE WHEN h < 150 THEN m + 12 * {DAY * US} END,
  CASE WHEN h < 60 THEN m + (20 + i % 30) * {DAY * US} END,
  CASE WHEN h >= 300 AND h < 700 THEN 'disqualified' WHEN h >= 700 AND h < 800 THEN 'recycled' END,
  CASE WHEN h >= 300 AND h < 700 THEN
    CASE i % 6 {" ".join(f"WHEN {k} THEN '{r}'" for k, r in enumerate(REASONS))} END
    WHEN h >= 700 AND h < 800 THEN 'no budget' END,
  CASE WHEN h >= 300 AND h < 800 THEN m + 9 * {DAY * US} END,
  CASE WHEN h < 60 THEN 'customer' WHEN h < 150 THEN 'opportunity' WHEN h < 300 THEN 'sql'
       WHEN h < 700 THEN 'disqualified' WHEN h < 800 THEN 'recycled' ELSE 'mql' END
FROM (SELECT i, i * 2654435761 % 1000 AS h, {BASE} + (i * 7919 % {365 * DAY}) * {US} AS m
      FROM {{series}}) s
"""

HISTORY = [
    ("mql", "mql_at_us", "''", "'model'"),
    ("sal", "sal_at_us", "''", "owner"),
    ("sql", "sql_at_us", "''", "owner"),
    ("opportunity", "opportunity_at_us", "''", "owner"),
    ("customer", "customer_at_us", "''", "'crm'"),
    ("disqualified", "closed_at_us", "closed_reason", "owner"),
    ("recycled", "closed_at_us", "closed_reason", "owner"),
]


def series(dialect: str, n: int) -> str:
    if dialect == "postgresql":
        return f"generate_series(CAST(1 AS BIGINT), {n}) AS g(i)"
    return (
        f"(WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {n}) "
        "SELECT i FROM c)"
    )


def generate(engine: sa.Engine, n: int) -> dict[str, int]:
    with engine.begin() as conn:
        conn.execute(sa.text(EPISODES.format(series=series(engine.dialect.name, n))))
        for stage, col, reason, by in HISTORY:
            cond = f"{col} IS NOT NULL"
            if stage in ("disqualified", "recycled"):
                cond += f" AND closed_stage = '{stage}'"
            conn.exec_driver_sql(
                'INSERT INTO stage_history (lead_id, stage, at_us, reason, "by") '
                f"SELECT lead_id, '{stage}', {col}, {reason}, {by} FROM mql_episodes WHERE {cond}"
            )
        conn.exec_driver_sql(
            "INSERT INTO leads (lead_id, traits, stage, mql_at_us, created_at_us, updated_at_us, "
            "owner, team, assigned_at_us) SELECT lead_id, '{}', stage, mql_at_us, mql_at_us, "
            "mql_at_us, owner, team, assigned_at_us FROM mql_episodes"
        )
        counts = {
            table: conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one()
            for table in ("leads", "stage_history", "mql_episodes")
        }
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    else:
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
    return counts


def run(url: str, n: int, repeat: int) -> tuple[dict[str, object], dict[str, object]]:
    engine = open_engine(url)
    t0 = time.perf_counter()
    counts = generate(engine, n)
    made = time.perf_counter() - t0
    print(f"  generated {counts} in {made:.1f} s", flush=True)
    service = Service(engine)
    end = BASE + 400 * DAY * US  # fixed, so both databases report the same as-of figures
    service.now_us = lambda: end  # type: ignore[method-assign]
    times: dict[str, object] = {}
    reports: dict[str, object] = {}
    for by in (None, "source", "owner"):
        runs, cpu = [], []
        for _ in range(repeat):
            t, c = time.perf_counter(), time.process_time()
            reports[str(by)] = service.funnel(by=by)
            runs.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        times[str(by)] = {
            "median_s": statistics.median(runs),
            "runs_s": runs,
            "cpu_s": cpu,
            "load_avg": os.getloadavg()[0],
        }
        print(
            f"  report by {by!s:7} median {statistics.median(runs):.2f} s wall; "
            f"this process's CPU {[round(x, 2) for x in cpu]} s; load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    engine.dispose()
    return {"counts": counts, "generate_s": made, "report": times}, reports


def import_files(n: int, work: Path) -> tuple[Path, Path]:
    """A leads file and a stages file as a CRM export would give them: ~2.4 stage rows a lead."""
    import csv

    leads, stages = work / "leads.csv", work / "stages.csv"
    with leads.open("w", newline="") as lf, stages.open("w", newline="") as sf:
        lw, sw = csv.writer(lf), csv.writer(sf)
        lw.writerow(["lead_id", "email", "source", "utm_campaign", "company.employees", "owner"])
        sw.writerow(["lead_id", "stage", "at", "by", "reason"])
        for i in range(1, n + 1):
            h = i * 2654435761 % 1000
            lead = f"lead-{i}"
            owner = f"rep{i * 13 % 40}@acme.io"
            lw.writerow(
                [lead, f"p{i}@c{i % 5000}.com", f"source-{i % 8}", f"c{i % 50}", i % 3000, owner]
            )
            m = BASE + (i * 7919 % (365 * DAY)) * US
            sw.writerow([lead, "mql", _iso(m), "", ""])
            for stage, limit, days in (("sal", 600, 2), ("sql", 300, 5), ("customer", 60, 20)):
                if h < limit:
                    sw.writerow([lead, stage, _iso(m + days * DAY * US), owner, ""])
            if 300 <= h < 700:
                sw.writerow([lead, "disqualified", _iso(m + 9 * DAY * US), owner, REASONS[i % 6]])
    return leads, stages


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / US, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


#: page views and track events of every lead, as the starter model reads them (5 a lead);
#: SERIES, NOW and JSONTYPE are put in by ``run_import``
EVENTS = (
    "INSERT INTO events (message_id, type, lead_id, event, ts_us, received_at_us, properties, "
    "message) SELECT 'm-' || i || '-' || k, CASE WHEN k < 3 THEN 'page' ELSE 'track' END, "
    "'lead-' || i, CASE k WHEN 0 THEN 'page' WHEN 1 THEN 'page' WHEN 2 THEN 'page' "
    "WHEN 3 THEN 'Webinar Attended' ELSE 'Email Clicked' END, "
    f"NOW - ((i * 7919 + k * 104729) % {60 * DAY}) * {US}, NOW, "
    """CAST(CASE k WHEN 0 THEN '{"path": "/pricing"}' WHEN 1 THEN '{"path": "/product"}' """
    "ELSE '{}' END AS JSONTYPE), CAST('{}' AS JSONTYPE) FROM SERIES CROSS JOIN (SELECT 0 AS k UNION ALL SELECT 1 "
    "UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4) ks"
)


def changed_leads(n: int, work: Path, shift: int) -> Path:
    """The leads file again with every lead's job title and company size changed."""
    import csv

    path = work / f"leads-{shift}.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["lead_id", "title", "company.employees"])
        for i in range(1, n + 1):
            title = ("VP Marketing", "Analyst", "Head of Growth")[(i + shift) % 3]
            w.writerow([f"lead-{i}", title, (i * 37 + shift * 1000) % 3000])
    return path


def run_import(url: str, n: int, work: Path) -> dict[str, object]:
    leads, stages = import_files(n, work)
    engine = open_engine(url)
    t = time.perf_counter()
    r = Service(engine).import_history(leads=leads, stages=stages)
    first = time.perf_counter() - t
    t = time.perf_counter()
    again = Service(engine).import_history(leads=leads, stages=stages)
    second = time.perf_counter() - t
    print(
        f"  import of {n} leads: {first:.1f} s ({n / first:,.0f} leads/s; {r.record()}); "
        f"the same files again: {second:.1f} s, {again.stage_rows_added} rows added",
        flush=True,
    )
    # every lead's traits changed, each lead with 5 events: without a model (nothing to
    # re-score), then with the starter model active (every lead re-scored)
    now = int(time.time()) * US
    with engine.begin() as conn:
        pg = engine.dialect.name == "postgresql"
        sql = EVENTS.replace("SERIES", series(engine.dialect.name, n)).replace("NOW", str(now))
        sql = sql.replace("JSONTYPE", "jsonb" if pg else "TEXT")
        conn.exec_driver_sql(sql.replace("%", "%%") if pg else sql)
    t = time.perf_counter()
    Service(engine).import_history(leads=changed_leads(n, work, 1), stages=None)
    plain_s = time.perf_counter() - t
    service = Service(engine)
    service.add_model((ROOT / "leadscore" / "templates" / "starter.yaml").read_text(), "bench")
    t = time.perf_counter()
    scored = service.import_history(leads=changed_leads(n, work, 2), stages=None)
    scored_s = time.perf_counter() - t
    engine.dispose()
    print(
        f"  traits of {n} leads changed: {plain_s:.1f} s without a model, {scored_s:.1f} s "
        f"re-scoring {scored.leads_rescored} ({scored.new_mqls} new MQLs) with one: "
        f"{scored_s / plain_s:.2f}x",
        flush=True,
    )
    return {
        "first_s": first,
        "again_s": second,
        "result": r.record(),
        "changed_s": plain_s,
        "changed_rescored_s": scored_s,
        "rescored": scored.record(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--leads", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--import",
        dest="import_leads",
        type=int,
        default=0,
        help="instead: time `leadscore import` of this many leads with their stage history",
    )
    args = ap.parse_args()
    results: dict[str, object] = {}
    reports: dict[str, object] = {}
    pg = None
    kinds = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    try:
        for kind in kinds:
            print(kind, flush=True)
            with tempfile.TemporaryDirectory(prefix="leadscore-bench-") as tmp:
                if kind == "sqlite":
                    url = f"sqlite:///{tmp}/funnel.db"
                else:
                    from leadscore.testing.postgres import PostgresServer

                    pg = pg or PostgresServer().start()
                    url = pg.create_database()
                if args.import_leads:
                    results[kind] = run_import(url, args.import_leads, Path(tmp))
                    continue
                results[kind], reports[kind] = run(url, args.leads, args.repeat)
    finally:
        if pg is not None:
            pg.stop()
    if len(reports) == 2:
        same = reports["sqlite"] == reports["postgres"]
        results["same_report"] = same
        print(f"same report on SQLite and PostgreSQL: {same}")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (out / f"funnel-{stamp}.json").write_text(
        json.dumps({"args": vars(args), "results": results}, indent=2)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
