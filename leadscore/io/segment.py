"""Segment-spec messages (identify / group / track / page / alias as JSON Lines) as leads and events.

- ``userId`` is the lead. A message with only an ``anonymousId`` joins the lead that an identify or
  alias call in the same file links to that anonymous id; otherwise it is counted, not scored.
- identify traits are the lead's traits (later calls overwrite earlier keys, in timestamp order);
  group traits are its company traits (``company.*``), and ``groupId`` is ``company.id``.
- track calls are events named by ``event``; page calls are events named ``page`` whose
  properties carry ``path``, ``url``, ``title`` (and ``name``, the page's name).
- The time is ``timestamp``, else ``originalTimestamp``, ``sentAt`` or ``receivedAt``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import duckdb

from .files import _TS_TEXT, SHOW_BAD_ROWS, Inputs, _Bad, _leads_source, _lines_sql

__all__ = ["open_segment"]

_TYPES = ("identify", "group", "track", "page", "screen", "alias")


def open_segment(
    con: duckdb.DuckDBPyConnection, path: Path, inputs: Inputs, skip_bad_rows: bool
) -> None:
    ts_text = (
        "coalesce(json_extract_string(d, '$.timestamp'), json_extract_string(d, '$.originalTimestamp'), "
        "json_extract_string(d, '$.sentAt'), json_extract_string(d, '$.receivedAt'))"
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE seg_src AS SELECT __line, d, "
        "lower(json_extract_string(d, '$.type')) AS type, "
        "nullif(trim(json_extract_string(d, '$.userId')), '') AS user_id, "
        "nullif(trim(json_extract_string(d, '$.anonymousId')), '') AS anon_id, "
        "nullif(trim(json_extract_string(d, '$.previousId')), '') AS previous_id, "
        f"{_TS_TEXT.format(c=ts_text)} AS ts, {ts_text} AS __ts_text, "
        "CASE WHEN d IS NULL THEN 'not valid JSON' WHEN json_type(d) <> 'OBJECT' THEN 'not a JSON object' END AS __bad0 "
        "FROM (SELECT __line, CASE WHEN json_valid(j) THEN CAST(j AS JSON) END AS d FROM ("
        + _lines_sql(path)
        + ") WHERE nullif(trim(j), '') IS NOT NULL)"
    )
    types = ", ".join(f"'{t}'" for t in _TYPES)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE seg_ids AS "
        "SELECT anon_id, arg_max(user_id, ts) AS user_id FROM seg_src "
        "WHERE __bad0 IS NULL AND anon_id IS NOT NULL AND user_id IS NOT NULL GROUP BY anon_id "
        "UNION ALL SELECT previous_id, arg_max(user_id, ts) FROM seg_src "
        "WHERE type = 'alias' AND previous_id IS NOT NULL AND user_id IS NOT NULL GROUP BY previous_id"
    )
    con.execute(
        "CREATE OR REPLACE TEMP VIEW seg AS SELECT s.*, coalesce(s.user_id, i.linked) AS lead_id, "
        "coalesce(__bad0, CASE WHEN type IS NULL THEN 'no type' "
        f"WHEN type NOT IN ({types}) THEN 'unknown type ' || to_json(type) "
        "WHEN s.user_id IS NULL AND anon_id IS NULL THEN 'neither userId nor anonymousId' "
        "WHEN type = 'track' AND nullif(trim(json_extract_string(d, '$.event')), '') IS NULL "
        "THEN 'a track call without an event name' "
        "WHEN ts IS NULL AND __ts_text IS NOT NULL THEN 'timestamp ' || to_json(__ts_text) || "
        "' is not an ISO 8601 timestamp' END) AS __bad "
        "FROM seg_src s LEFT JOIN (SELECT anon_id AS link_id, any_value(user_id) AS linked FROM seg_ids GROUP BY anon_id) i "
        "ON s.user_id IS NULL AND s.anon_id = i.link_id"
    )
    bad = _Bad(path)
    rows = con.execute(
        f"SELECT __line, __bad FROM seg WHERE __bad IS NOT NULL ORDER BY __line LIMIT {SHOW_BAD_ROWS}"
    ).fetchall()
    n_bad = con.execute("SELECT count(*) FROM seg WHERE __bad IS NOT NULL").fetchone()
    bad.add([(int(a), str(b)) for a, b in rows], int(n_bad[0]) if n_bad else 0)
    bad.settle(inputs, skip_bad_rows)

    # Leads: every identified id, with identify traits and group traits merged in time order.
    leads: dict[str, dict[str, Any]] = {}
    cur = con.execute(
        "SELECT lead_id, type, json_extract(d, '$.traits'), json_extract_string(d, '$.groupId') "
        "FROM seg WHERE __bad IS NULL AND lead_id IS NOT NULL ORDER BY ts NULLS FIRST, __line"
    )
    while batch := cur.fetchmany(10_000):
        for lead_id, kind, traits, group_id in batch:
            lead = leads.setdefault(lead_id, {"lead_id": lead_id})
            data = json.loads(traits) if traits else None
            if kind == "identify" and isinstance(data, dict):
                lead.update(
                    {k: v for k, v in data.items() if k != "company" or not isinstance(v, dict)}
                )
                if isinstance(data.get("company"), dict):
                    lead.setdefault("company", {}).update(data["company"])
            elif kind == "group":
                company = lead.setdefault("company", {})
                if not isinstance(company, dict):
                    company = lead["company"] = {"name": company}
                if isinstance(data, dict):
                    company.update(data)
                if group_id:
                    company["id"] = group_id
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as tmp:
        for lead in leads.values():
            tmp.write(json.dumps(lead, ensure_ascii=False, default=str) + "\n")
        tmp_path = Path(tmp.name)
    try:
        _leads_source(con, tmp_path, "jsonl", _Bad(tmp_path))
    finally:
        tmp_path.unlink(missing_ok=True)
    con.execute(
        "CREATE OR REPLACE TEMP VIEW leads_view AS SELECT * EXCLUDE (__bad, __line, __text) FROM leads_src"
    )
    inputs.leads = len(leads)

    events = (
        "SELECT lead_id, CASE WHEN type = 'track' THEN json_extract_string(d, '$.event') "
        "WHEN type = 'page' THEN 'page' ELSE 'screen' END AS event, "
        "coalesce(ts, CAST(now() AS TIMESTAMP)) AS ts, "
        "CASE WHEN type IN ('page', 'screen') AND json_extract_string(d, '$.name') IS NOT NULL "
        "THEN json_merge_patch(json_object('name', json_extract_string(d, '$.name')), "
        "coalesce(json_extract(d, '$.properties'), '{}')) ELSE json_extract(d, '$.properties') END "
        "AS properties FROM seg WHERE __bad IS NULL AND type IN ('track', 'page', 'screen')"
    )
    con.execute(f"CREATE OR REPLACE TEMP VIEW events_view AS {events} AND lead_id IS NOT NULL")
    counts = con.execute(
        "SELECT count(*) FILTER (WHERE lead_id IS NOT NULL), count(*) FILTER (WHERE lead_id IS NULL) "
        "FROM seg WHERE __bad IS NULL AND type IN ('track', 'page', 'screen')"
    ).fetchone()
    assert counts is not None
    inputs.events, inputs.anonymous_events = int(counts[0]), int(counts[1])
    inputs.events_view = "events_view"
