"""A seeded, realistic B2B lead data set, generated inside DuckDB (so a million leads take seconds).

Every random draw is a hash of (seed, lead, draw number), so the same seed gives the same data on
any machine and any number of threads. Leads have a hidden *intent*: high-intent leads come back
more often, read pricing pages and case studies and sometimes ask for a demo; low-intent leads
mostly open emails. Fit and intent are correlated a little, as in real funnels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

__all__ = ["DEMO_AS_OF", "DemoFiles", "generate"]

#: The demo's data ends here, and it is scored at this instant, so every run prints the same.
DEMO_AS_OF = datetime(2026, 6, 1)
SPAN_DAYS = 182

_FIRST = [
    "Ana",
    "Ben",
    "Chloe",
    "David",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kara",
    "Liam",
    "Maya",
    "Noah",
    "Olga",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Tara",
    "Umar",
    "Vera",
    "Wei",
    "Ximena",
    "Yusuf",
    "Zoe",
]
_LAST = [
    "Smith",
    "Garcia",
    "Müller",
    "Chen",
    "Kowalski",
    "Okafor",
    "Rossi",
    "Tanaka",
    "Dubois",
    "Novak",
    "Singh",
    "Johansson",
    "O'Brien",
    "Silva",
    "Cohen",
    "Nguyen",
    "Kim",
    "Larsen",
]
_TITLES = [  # (title, weight)
    ("VP Marketing", 4),
    ("Vice President, Sales", 3),
    ("Chief Revenue Officer", 2),
    ("Chief Marketing Officer", 2),
    ("Head of Growth", 4),
    ("Director of Demand Generation", 5),
    ("Director, Sales Operations", 4),
    ("Founder & CEO", 3),
    ("Marketing Manager", 10),
    ("Marketing Operations Manager", 7),
    ("Sales Team Lead", 4),
    ("Account Executive", 8),
    ("Sales Development Representative", 8),
    ("Marketing Coordinator", 8),
    ("Software Engineer", 7),
    ("Data Analyst", 5),
    ("Consultant", 4),
    ("Student", 3),
    ("Marketing Intern", 2),
    ("", 2),
]
_INDUSTRIES = [
    ("Software", 22),
    ("Financial Services", 12),
    ("Healthcare", 9),
    ("E-commerce", 9),
    ("Professional Services", 8),
    ("Manufacturing", 10),
    ("Education", 7),
    ("Government", 4),
    ("Media", 6),
    ("Retail", 8),
    ("Non-profit", 5),
]
_COUNTRIES = [
    ("US", 38),
    ("GB", 10),
    ("DE", 8),
    ("CA", 6),
    ("FR", 5),
    ("NL", 3),
    ("SE", 2),
    ("AU", 4),
    ("IN", 10),
    ("BR", 6),
    ("ES", 4),
    ("SG", 2),
    ("ZA", 2),
]
_TECH = [
    "salesforce",
    "hubspot",
    "marketo",
    "pardot",
    "eloqua",
    "zendesk",
    "snowflake",
    "segment",
    "intercom",
    "slack",
]
_COMPANY_A = [
    "Blue",
    "North",
    "Bright",
    "Iron",
    "Silver",
    "Quantum",
    "Rapid",
    "Green",
    "Summit",
    "Cedar",
    "Atlas",
    "Nova",
    "Harbor",
    "Vector",
    "Lumen",
    "Pioneer",
]
_COMPANY_B = [
    "Labs",
    "Systems",
    "Analytics",
    "Health",
    "Capital",
    "Logistics",
    "Works",
    "Cloud",
    "Retail",
    "Media",
    "Partners",
    "Robotics",
    "Foods",
    "Energy",
]
_FREEMAIL = ["gmail.com", "yahoo.com", "hotmail.com", "outlook.com"]
_PAGES = [  # (path, title, weight for low intent, weight for high intent)
    ("/", "Home", 30, 10),
    ("/blog/lead-scoring-101", "Lead scoring 101", 20, 6),
    ("/blog/mql-vs-sql", "MQL vs SQL", 14, 6),
    ("/product", "Product", 10, 12),
    ("/product/integrations", "Integrations", 5, 8),
    ("/pricing", "Pricing", 2, 20),
    ("/pricing/enterprise", "Enterprise pricing", 0.5, 8),
    ("/case-studies", "Customers", 1.5, 10),
    ("/case-studies/northwind", "How Northwind doubled SQLs", 2, 8),
    ("/docs", "Docs", 6, 6),
    ("/careers", "Careers", 5, 1),
]
_EVENTS = [  # (event, low-intent weight, high-intent weight)
    ("page", 55, 55),
    ("Email Opened", 30, 12),
    ("Email Clicked", 7, 8),
    ("Content Downloaded", 4, 9),
    ("Webinar Attended", 1.2, 4),
    ("Demo Requested", 0.01, 0.5),
    ("Contact Sales Requested", 0.005, 0.25),
    ("Trial Started", 0.3, 2),
]
_ASSETS = [
    "State of B2B Marketing 2026 (ebook)",
    "Lead scoring template (spreadsheet)",
    "ICP workbook (whitepaper)",
    "Benchmark report: MQL to SQL",
]


@dataclass(frozen=True)
class DemoFiles:
    leads: Path
    events: Path
    n_leads: int
    n_events: int
    outcomes: Path | None = None
    n_outcomes: int = 0


def _u(seed: int, key: str, draw: int) -> str:
    """SQL for a uniform draw in [0, 1) from a hash: same on every machine and thread count."""
    return f"(hash({seed}, {key}, {draw}) % 1000000007) / 1000000007.0"


def _draws(seed: int, key: str) -> Callable[[int], str]:
    """Draw number k for the row keyed by ``key``."""

    def draw(k: int) -> str:
        return _u(seed, key, k)

    return draw


def _pick(items: list[str], u: str) -> str:
    arr = "[" + ", ".join("'" + s.replace("'", "''") + "'" for s in items) + "]"
    return f"{arr}[1 + CAST(floor(({u}) * {len(items)}) AS BIGINT)]"


def _weighted(items: Sequence[tuple[str, float]], u: str) -> str:
    total = sum(w for _, w in items)
    parts, acc = [], 0.0
    for name, w in items[:-1]:
        acc += w / total
        parts.append(f"WHEN {u} < {acc!r} THEN '{name.replace(chr(39), chr(39) * 2)}'")
    last = items[-1][0].replace("'", "''")
    return "CASE " + " ".join(parts) + f" ELSE '{last}' END"


def _mix(items: Sequence[tuple[str, float, float]], u: str, hi: str) -> str:
    """A weighted pick whose weights move from the low- to the high-intent column with ``hi``."""
    lo_total = sum(a for _, a, _ in items)
    hi_total = sum(b for _, _, b in items)
    parts, acc_lo, acc_hi = [], 0.0, 0.0
    for name, a, b in items[:-1]:
        acc_lo += a / lo_total
        acc_hi += b / hi_total
        parts.append(
            f"WHEN {u} < {acc_lo!r} * (1 - {hi}) + {acc_hi!r} * {hi} "
            f"THEN '{name.replace(chr(39), chr(39) * 2)}'"
        )
    return "CASE " + " ".join(parts) + f" ELSE '{items[-1][0]}' END"


def leads_sql(n: int, seed: int) -> str:
    u = _draws(seed, "i")
    company = f"{_pick(_COMPANY_A, u(10))} || ' ' || {_pick(_COMPANY_B, u(11))}"
    domain = f"lower(replace({_pick(_COMPANY_A, u(10))} || {_pick(_COMPANY_B, u(11))}, ' ', '')) || '.com'"
    size = (
        f"CASE WHEN {u(12)} < 0.03 THEN 'n/a' WHEN {u(12)} < 0.06 THEN NULL ELSE "
        f"CAST(CAST(round(exp(1.6 + {u(13)} * 8.2)) AS BIGINT) AS VARCHAR) END"
    )
    first = _pick(_FIRST, u(1))
    last = _pick(_LAST, u(2))
    local = f"lower({first}) || '.' || lower(replace(replace({last}, '''', ''), 'ü', 'u'))"
    email = (
        f"CASE WHEN {u(3)} < 0.16 THEN {local} || '@' || {_pick(_FREEMAIL, u(4))} "
        f"WHEN {u(3)} < 0.19 THEN {local} || '@university.edu' "
        f"ELSE {local} || '@' || {domain} END"
    )
    tech = (
        "array_to_string(list_filter(["
        + ", ".join(
            f"CASE WHEN {u(20 + i)} < {0.35 if t in ('salesforce', 'hubspot') else 0.12} THEN '{t}' END"
            for i, t in enumerate(_TECH)
        )
        + "], x -> x IS NOT NULL), ';')"
    )
    return f"""
        SELECT 'L-' || lpad(CAST(i + 1 AS VARCHAR), {max(6, len(str(n)))}, '0') AS lead_id,
               {email} AS email,
               {first} AS first_name,
               {last} AS last_name,
               {_weighted(_TITLES, u(5))} AS title,
               {_weighted(_COUNTRIES, u(6))} AS country,
               {company} AS "company.name",
               {domain} AS "company.domain",
               {size} AS "company.employees",
               {_weighted(_INDUSTRIES, u(7))} AS "company.industry",
               {tech} AS "company.technologies"
        FROM range({n}) t(i)
    """


def events_sql(n: int, seed: int, per_lead: float, as_of: datetime) -> str:
    """Events for leads 0..n-1: about ``per_lead`` each on average, over six months."""
    ui = _draws(seed, "i")
    ue = _draws(seed, "i * 4096 + j")
    # intent in [0, 1): most leads are browsing, a few are in a buying cycle
    intent = f"pow({ui(30)}, 3.0)"
    # number of events: from 1 to about 3.2 x per_lead, more with intent (mean ~ per_lead)
    count = (
        f"1 + CAST(floor({ui(31)} * {per_lead * 0.9!r} + {intent} * {per_lead * 1.9!r}) AS BIGINT)"
    )
    recency = f"pow({ue(1)}, 1 + 2.5 * intent)"  # high intent: events bunch up near as_of
    ts = f"TIMESTAMP '{as_of:%Y-%m-%d %H:%M:%S}' - to_microseconds(CAST(({recency}) * {SPAN_DAYS * 86400 * 1_000_000} AS BIGINT))"
    page = f"list_extract([{', '.join(repr(p) for p, *_ in _PAGES)}], pi)"
    title = f"list_extract([{', '.join(repr(t) for _, t, *_ in _PAGES)}], pi)"
    page_pick = _mix(
        [(str(k + 1), lo, hi) for k, (_, _, lo, hi) in enumerate(_PAGES)], ue(3), "intent"
    )
    return f"""
        SELECT lead_id, event, ts,
               CASE WHEN event = 'page' THEN {{'path': {page}, 'url': 'https://www.example.com' || {page}, 'title': {title}, 'asset': NULL, 'campaign': NULL}}
                    WHEN event = 'Content Downloaded' THEN {{'path': NULL, 'url': NULL, 'title': NULL, 'asset': {_pick(_ASSETS, ue(4))}, 'campaign': NULL}}
                    WHEN event LIKE 'Email%' THEN {{'path': NULL, 'url': NULL, 'title': NULL, 'asset': NULL, 'campaign': {_pick(["Nurture 1", "Nurture 2", "Product update", "Webinar invite"], ue(5))}}}
                    ELSE {{'path': NULL, 'url': NULL, 'title': NULL, 'asset': NULL, 'campaign': NULL}} END AS properties
        FROM (
            SELECT i, lead_id, intent, j, {_mix(_EVENTS, ue(2), "intent")} AS event, {ts} AS ts,
                   CAST({page_pick} AS INTEGER) AS pi
            FROM (
                SELECT i, 'L-' || lpad(CAST(i + 1 AS VARCHAR), {max(6, len(str(n)))}, '0') AS lead_id,
                       {intent} AS intent, unnest(range({count})) AS j
                FROM range({n}) t(i)
            )
        )
    """


def outcomes_sql(n: int, seed: int, as_of: datetime) -> str:
    """What became of leads 0..n-1 after ``as_of``: ``lead_id, outcome, at``.

    Conversion follows the hidden intent that drives the events and the fit a starter model
    looks for (a company of 50 to 5,000 people, a work email), with noise, so a good model
    separates converters from the rest but not perfectly. Converted leads reach ``sql`` within
    60 days and a third of them ``won`` 20 to 60 days later; a share of the others are
    ``disqualified``; the rest have no outcome on record."""
    u = _draws(seed, "i")
    intent = f"pow({u(30)}, 3.0)"
    employees = f"exp(1.6 + {u(13)} * 8.2)"
    fits = f"({u(12)} >= 0.06 AND {employees} BETWEEN 50 AND 5000 AND {u(3)} >= 0.19)"
    p = f"(0.02 + 0.55 * {intent} * CASE WHEN {fits} THEN 1.0 ELSE 0.35 END + CASE WHEN {fits} THEN 0.06 ELSE 0.0 END)"
    day = 86400 * 1_000_000
    start = f"TIMESTAMP '{as_of:%Y-%m-%d %H:%M:%S}'"
    sql_at = f"{start} + to_microseconds(CAST(({u(41)} * 60 + 0.5) * {day} AS BIGINT))"
    won_at = f"{sql_at} + to_microseconds(CAST(({u(43)} * 40 + 20) * {day} AS BIGINT))"
    dq_at = f"{start} + to_microseconds(CAST(({u(44)} * 45 + 1) * {day} AS BIGINT))"
    width = max(6, len(str(n)))
    return f"""
        WITH l AS (
            SELECT 'L-' || lpad(CAST(i + 1 AS VARCHAR), {width}, '0') AS lead_id,
                   {u(40)} < {p} AS converted, {u(42)} < 0.33 AS won, {u(45)} < 0.25 AS dq,
                   {sql_at} AS sql_at, {won_at} AS won_at, {dq_at} AS dq_at
            FROM range({n}) t(i)
        )
        SELECT lead_id, outcome, strftime(t, '%Y-%m-%dT%H:%M:%SZ') AS "at" FROM (
            SELECT lead_id, 'sql' AS outcome, sql_at AS t FROM l WHERE converted
            UNION ALL SELECT lead_id, 'won', won_at FROM l WHERE converted AND won
            UNION ALL SELECT lead_id, 'disqualified', dq_at FROM l WHERE NOT converted AND dq
        )
        ORDER BY t, lead_id, outcome
    """


def generate(
    out_dir: Path,
    n_leads: int = 5000,
    *,
    seed: int = 42,
    events_per_lead: float = 20.0,
    as_of: datetime = DEMO_AS_OF,
    leads_format: str = "csv",
    events_format: str = "parquet",
    con: duckdb.DuckDBPyConnection | None = None,
    timestamptz: bool = False,
) -> DemoFiles:
    """Write ``leads.<fmt>``, ``events.<fmt>`` and ``outcomes.csv`` into ``out_dir``; returns their
    paths and sizes. ``timestamptz`` writes Parquet event times as ``TIMESTAMP WITH TIME ZONE``
    (the same instants, in UTC), as most exports hold them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    con = con or duckdb.connect()
    ext = {"csv": "csv", "jsonl": "jsonl", "parquet": "parquet"}
    copy_opts = {"csv": "FORMAT CSV, HEADER", "jsonl": "FORMAT JSON", "parquet": "FORMAT PARQUET"}
    leads = out_dir / f"leads.{ext[leads_format]}"
    events = out_dir / f"events.{ext[events_format]}"
    con.execute(f"COPY ({leads_sql(n_leads, seed)}) TO '{leads}' ({copy_opts[leads_format]})")
    ev = events_sql(n_leads, seed, events_per_lead, as_of)
    if events_format == "csv":
        ev = (
            "SELECT lead_id, event, strftime(ts, '%Y-%m-%dT%H:%M:%S.%fZ') AS timestamp, "
            f"CAST(to_json(properties) AS VARCHAR) AS properties FROM ({ev})"
        )
    elif events_format == "jsonl":
        ev = (
            "SELECT lead_id, event, strftime(ts, '%Y-%m-%dT%H:%M:%S.%fZ') AS timestamp, properties "
            f"FROM ({ev})"
        )
    elif timestamptz:
        ev = f"SELECT lead_id, event, timezone('UTC', ts) AS timestamp, properties FROM ({ev})"
    else:
        ev = f"SELECT lead_id, event, ts AS timestamp, properties FROM ({ev})"
    con.execute(f"COPY ({ev}) TO '{events}' ({copy_opts[events_format]})")
    reader = {"csv": "read_csv", "jsonl": "read_json", "parquet": "read_parquet"}[events_format]
    n_events = con.execute(f"SELECT count(*) FROM {reader}('{events}')").fetchone()
    outcomes = out_dir / "outcomes.csv"
    con.execute(f"COPY ({outcomes_sql(n_leads, seed, as_of)}) TO '{outcomes}' (FORMAT CSV, HEADER)")
    n_outcomes = con.execute(f"SELECT count(*) FROM read_csv('{outcomes}')").fetchone()
    return DemoFiles(
        leads,
        events,
        n_leads,
        int(n_events[0]) if n_events else 0,
        outcomes,
        int(n_outcomes[0]) if n_outcomes else 0,
    )
