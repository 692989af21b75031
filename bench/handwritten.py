"""The anchor of the batch benchmark: the starter model as one DuckDB query written by hand.

    python bench/handwritten.py --leads leads.parquet --events events.parquet \\
        --as-of 2026-06-01 --format csv|jsonl --output scores.csv

This is the query an analyst who knows DuckDB and the demo data writes once for
leadscore/templates/starter.yaml, to get the same records as ``leadscore score``: lead_id, fit,
engagement, score, grade, mql, fast_track and the ranked reasons, sorted by lead, written by
DuckDB. It knows its data: event names and page paths are compared as they are spelt in the
file, traits are read from their columns by name, the rules are written out one by one. It does
what leadscore does and nothing more: no checks of the input, no normalising of text beyond
lower-casing titles for the title patterns, no model file. The arithmetic is the model's own,
in the same order (decay per event, points times decay, summed per rule, capped, then fit plus
engagement), so the records are the same to the byte; bench/batch.py checks that they are.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def query(leads: str, events: str, as_of: datetime, fmt: str) -> str:
    """The SELECT that gives one record per lead, sorted by lead_id."""
    as_of = as_of.astimezone(UTC)
    start = as_of - timedelta(days=180)
    hi = _lit(as_of.isoformat(sep=" "))
    lo = _lit(start.isoformat(sep=" "))
    as_of_us = int(as_of.timestamp()) * 1_000_000
    reasons = "CAST(to_json(reasons) AS VARCHAR)" if fmt == "csv" else "reasons"
    return f"""
WITH e AS (
    SELECT lead_id,
        sum(10 * d) FILTER (WHERE event = 'page' AND starts_with(properties.path, '/pricing')) AS pricing,
        sum(5 * d) FILTER (WHERE event = 'page' AND starts_with(properties.path, '/case-studies')) AS case_study,
        sum(2 * d) FILTER (WHERE event = 'page' AND starts_with(properties.path, '/product')) AS product,
        sum(8 * d) FILTER (WHERE event = 'Content Downloaded') AS download,
        sum(10 * d) FILTER (WHERE event = 'Webinar Attended') AS webinar,
        sum(3 * d) FILTER (WHERE event = 'Email Clicked') AS clicked,
        sum(1 * d) FILTER (WHERE event = 'Email Opened') AS opened,
        sum(45 * d) FILTER (WHERE event = 'Demo Requested') AS demo,
        sum(40 * d) FILTER (WHERE event = 'Contact Sales Requested') AS contact,
        bool_or(event IN ('Demo Requested', 'Contact Sales Requested')) AS fast_track
    FROM (
        SELECT lead_id, event, properties,
            pow(0.5, ({as_of_us} - epoch_us("timestamp")) / 1e6 / (30 * 86400e0)) AS d
        FROM read_parquet({_lit(events)})
        WHERE "timestamp" <= TIMESTAMPTZ {hi} AND "timestamp" >= TIMESTAMPTZ {lo}
          AND event IN ('page', 'Content Downloaded', 'Webinar Attended', 'Email Clicked',
                        'Email Opened', 'Demo Requested', 'Contact Sales Requested')
    )
    GROUP BY lead_id
),
f AS (
    SELECT lead_id,
        CASE WHEN try_cast("company.employees" AS DOUBLE) BETWEEN 200 AND 5000 THEN 15.0 ELSE 0.0 END AS f0,
        CASE WHEN try_cast("company.employees" AS DOUBLE) BETWEEN 50 AND 199 THEN 8.0 ELSE 0.0 END AS f1,
        CASE WHEN "company.industry" IN ('Software', 'Financial Services', 'Healthcare',
                  'E-commerce', 'Professional Services') THEN 10.0 ELSE 0.0 END AS f2,
        CASE WHEN regexp_matches(lower(title), '^vp|vp |vice president|chief|head of|director|founder')
             THEN 15.0 ELSE 0.0 END AS f3,
        CASE WHEN regexp_matches(lower(title), 'manager|team lead') THEN 8.0 ELSE 0.0 END AS f4,
        CASE WHEN country IN ('US', 'CA', 'GB', 'DE', 'FR', 'NL', 'SE', 'AU') THEN 5.0 ELSE 0.0 END AS f5,
        CASE WHEN regexp_matches("company.technologies", 'marketo|pardot|eloqua') THEN 10.0 ELSE 0.0 END AS f6,
        CASE WHEN ends_with(email, '@gmail.com') OR ends_with(email, '@yahoo.com')
                  OR ends_with(email, '@hotmail.com') OR ends_with(email, '@outlook.com')
             THEN -20.0 ELSE 0.0 END AS f7,
        CASE WHEN regexp_matches(lower(title), 'student|intern') OR ends_with(email, '.edu')
             THEN -30.0 ELSE 0.0 END AS f8
    FROM read_parquet({_lit(leads)})
),
r AS (
    SELECT f.*,
        least(coalesce(pricing, 0), 30) AS e0, least(coalesce(case_study, 0), 15) AS e1,
        least(coalesce(product, 0), 10) AS e2, least(coalesce(download, 0), 24) AS e3,
        least(coalesce(webinar, 0), 20) AS e4, least(coalesce(clicked, 0), 9) AS e5,
        least(coalesce(opened, 0), 5) AS e6, coalesce(demo, 0) AS e7, coalesce(contact, 0) AS e8,
        coalesce(e.fast_track, false) AS fast_track
    FROM f LEFT JOIN e USING (lead_id)
),
t AS (
    SELECT *,
        least(f0 + f1 + f2 + f3 + f4 + f5 + f6 + f7 + f8, 50) AS fit_,
        least(e0 + e1 + e2 + e3 + e4 + e5 + e6 + e7 + e8, 60) AS eng_
    FROM r
),
s AS (
    SELECT lead_id,
        round(fit_, 2) AS fit,
        round(eng_, 2) AS engagement,
        round(fit_ + eng_, 2) + 0.0 AS score,  -- a score of -0.001 is written 0.0, not -0.0
        CASE WHEN fit_ >= 40 THEN 'A' WHEN fit_ >= 25 THEN 'B' WHEN fit_ >= 10 THEN 'C' ELSE 'D' END
        || CASE WHEN eng_ >= 40 THEN '1' WHEN eng_ >= 20 THEN '2' WHEN eng_ >= 5 THEN '3' ELSE '4' END
            AS grade,
        (fit_ + eng_ >= 50 OR fast_track) AND fit_ >= 20 AS mql,
        fast_track,
        list_transform(
            list_sort(list_filter([
                {{'k': -abs(f0), 'o': 0, 'rule': 'Company size in ICP range', 'p': f0}},
                {{'k': -abs(f1), 'o': 1, 'rule': 'Mid-market company', 'p': f1}},
                {{'k': -abs(f2), 'o': 2, 'rule': 'Target industry', 'p': f2}},
                {{'k': -abs(f3), 'o': 3, 'rule': 'Senior title', 'p': f3}},
                {{'k': -abs(f4), 'o': 4, 'rule': 'Manager title', 'p': f4}},
                {{'k': -abs(f5), 'o': 5, 'rule': 'Core geography', 'p': f5}},
                {{'k': -abs(f6), 'o': 6, 'rule': 'Uses a competitor''s marketing automation', 'p': f6}},
                {{'k': -abs(f7), 'o': 7, 'rule': 'Personal email', 'p': f7}},
                {{'k': -abs(f8), 'o': 8, 'rule': 'Student or intern', 'p': f8}},
                {{'k': -abs(e0), 'o': 9, 'rule': 'Pricing page', 'p': e0}},
                {{'k': -abs(e1), 'o': 10, 'rule': 'Case study', 'p': e1}},
                {{'k': -abs(e2), 'o': 11, 'rule': 'Product pages', 'p': e2}},
                {{'k': -abs(e3), 'o': 12, 'rule': 'Content download', 'p': e3}},
                {{'k': -abs(e4), 'o': 13, 'rule': 'Webinar attended', 'p': e4}},
                {{'k': -abs(e5), 'o': 14, 'rule': 'Email clicked', 'p': e5}},
                {{'k': -abs(e6), 'o': 15, 'rule': 'Email opened', 'p': e6}},
                {{'k': -abs(e7), 'o': 16, 'rule': 'Demo request', 'p': e7}},
                {{'k': -abs(e8), 'o': 17, 'rule': 'Contact sales', 'p': e8}}
            ], x -> x.p <> 0)),
            x -> {{'rule': x.rule, 'points': round(x.p, 2)}}) AS reasons
    FROM t
)
SELECT lead_id, fit, engagement, score, grade, mql, fast_track, {reasons} AS reasons
FROM s ORDER BY lead_id
"""


def copy_sql(leads: str, events: str, as_of: datetime, fmt: str, output: str) -> str:
    """The whole statement: the query written by DuckDB as CSV (with a header) or JSON Lines."""
    opts = "FORMAT CSV, HEADER" if fmt == "csv" else "FORMAT JSON"
    return f"COPY ({query(leads, events, as_of, fmt)}) TO {_lit(output)} ({opts})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="The starter model as one hand-written DuckDB query.")
    p.add_argument("--leads", required=True)
    p.add_argument("--events", required=True)
    p.add_argument("--as-of", default="2026-06-01")
    p.add_argument("--format", choices=("csv", "jsonl"), default="jsonl")
    p.add_argument("--output", required=True)
    p.add_argument("--print", action="store_true", help="print the statement instead of running it")
    args = p.parse_args(argv)
    as_of = datetime.fromisoformat(args.as_of).replace(tzinfo=UTC)
    sql = copy_sql(args.leads, args.events, as_of, args.format, args.output)
    if args.print:
        print(sql)
        return 0
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    con.execute(sql)
    return 0


if __name__ == "__main__":
    sys.exit(main())
