"""``leadscore import``: existing leads and their stage history into the service's database —
how a team moves in from a CRM (docs/funnel.md#import).

Files are read and checked by DuckDB (leadscore.io) before anything is written; then, in one
write transaction, leads are inserted (or their traits merged), stage rows added, and each
lead's MQL episodes rebuilt by the pure fold (``reports.episodes.fold``), in batches.

A lead whose traits the import changes is re-scored by the active model in the same transaction,
as of the import (``import_rescore``), and may become an MQL.

Importing is idempotent by ``(lead_id, stage, at)``: a stage row already stored is not stored
again, and a lead none of whose rows is new keeps its episodes as they are. A lead with new rows
has its episodes rebuilt from its whole stored history; what the history does not decide (owner,
assignment, first touch, SLA, score…) is carried over from the episode with the same MQL time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb
import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from ..engine.segment import merge_identify
from ..errors import BadRowsError, ConfigError, InputError
from ..handoff import rep_key
from ..io import connect
from ..io.files import SHOW_BAD_ROWS, open_files
from ..io.stages import open_stages
from ..model.values import nest
from ..reports.episodes import STAGES, Move, campaign_of, fold, source_of
from ..sql.duckdb import TRAITS_COLUMN
from ..store import schema as t
from .accounts import email_domain
from .common import Tx, dumps, json_param, loads
from .import_rescore import ImportScoring, Lead, Rescorer
from .prepared import Prepared

__all__ = ["ImportResult", "ImportScoring", "import_history"]

BATCH = 5_000
#: leads-file columns that are the lead's own fields, not traits
_FIELDS = ("owner", "team")
#: episode columns the stage history decides; the others are carried over on a rebuild
_FOLDED = {
    "mql_at_us",
    "track",
    "stage",
    "sal_at_us",
    "sql_at_us",
    "opportunity_at_us",
    "customer_at_us",
    "closed_stage",
    "closed_reason",
    "closed_at_us",
}


@dataclass
class ImportResult:
    leads_added: int = 0
    leads_updated: int = 0
    leads_unchanged: int = 0  # already stored as the file has them, with no new stage rows
    stage_rows_added: int = 0
    stage_rows_present: int = 0  # already stored (or repeated in the file): not stored again
    episodes: int = 0  # episodes written (new or rebuilt)
    outside_episodes: int = 0  # stage rows (new ones' leads) that belong to no MQL episode
    skipped_rows: int = 0  # bad rows skipped with skip_bad_rows
    #: the active model's version, when one is active (leads are re-scored only then)
    model_version: int | None = None
    leads_rescored: int = 0  # leads whose traits changed, re-scored by the active model
    new_mqls: int = 0  # of those, the ones that became MQLs
    notified: bool = False  # whether the new MQLs' notifications were queued (``--notify``)

    def record(self) -> dict[str, Any]:
        return asdict(self)


def _chunks(items: list[str], n: int = 500) -> Iterator[list[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _traits(cols: list[str], row: tuple[Any, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(traits, the lead's own fields) of a leads_view row."""
    data = {c: v for c, v in zip(cols, row, strict=True) if v is not None}
    raw = data.pop(TRAITS_COLUMN, None)
    if raw is not None:  # JSON Lines: the traits as written, then any other columns
        given = json.loads(raw) if isinstance(raw, str) else raw
        if isinstance(given, dict):
            data = {**given, **{k: v for k, v in data.items() if k not in given}}
    data.pop("lead_id", None)
    fields = {k: data.pop(k) for k in _FIELDS if k in data}
    fields = {k: str(v) for k, v in fields.items() if v is not None and str(v).strip()}
    if "owner" in fields:
        fields["owner"] = rep_key(fields["owner"])
    return nest(data), fields


#: (lead_id, traits or None when the lead is only in the database, its own fields, its moves
#: from the file in time order as (stage, at_us, by, reason))
_Item = tuple[str, dict[str, Any] | None, dict[str, Any], list[tuple[Any, Any, Any, Any]]]


class _Importer:
    def __init__(
        self,
        conn: Connection,
        now_us: int,
        fresh: bool,
        rescorer: Rescorer | None = None,
        events: bool = True,
    ) -> None:
        self.conn = conn
        self.dialect = conn.dialect.name
        self.now_us = now_us
        self.fresh = fresh  # nothing stored yet: no look-ups needed
        self.result = ImportResult()
        self.rescorer = rescorer
        self.events = events  # whether any lead has events (a new lead may have some)

    def batch(self, items: list[_Item]) -> None:
        """Store one batch of leads with their moves and episodes."""
        ids = [i[0] for i in items]
        stored_leads: dict[str, Any] = {}
        stored_moves: dict[str, list[Move]] = {}
        stored_eps: dict[str, list[Any]] = {}
        if not self.fresh:
            c = self.conn
            for part in _chunks(ids):
                for r in c.execute(
                    sa.select(
                        t.leads.c.lead_id,
                        t.leads.c.traits,
                        t.leads.c.owner,
                        t.leads.c.team,
                        t.leads.c.stage,
                        t.leads.c.rule_sums.is_not(None).label("scored"),
                    ).where(t.leads.c.lead_id.in_(part))
                ):
                    stored_leads[r.lead_id] = r
                h = t.stage_history.c
                for r in c.execute(
                    sa.select(h.lead_id, h.stage, h.at_us, h.reason, h.by)
                    .where(h.lead_id.in_(part))
                    .order_by(h.lead_id, h.at_us, h.id)
                ):
                    stored_moves.setdefault(r.lead_id, []).append(
                        Move(r.stage, r.at_us, r.reason, r.by)
                    )
                for r in c.execute(
                    sa.select(t.mql_episodes).where(t.mql_episodes.c.lead_id.in_(part))
                ):
                    stored_eps.setdefault(r.lead_id, []).append(r)
        new_leads: list[dict[str, Any]] = []
        upd_leads: list[dict[str, Any]] = []
        history: list[dict[str, Any]] = []
        episodes: list[dict[str, Any]] = []
        rebuilt: list[str] = []
        rescore: dict[str, Lead] = {}  # leads whose traits change
        for lead_id, traits, fields, raw_moves in items:
            old = stored_leads.get(lead_id)
            before_traits = (loads(old.traits) or {}) if old is not None else {}
            merged = dict(before_traits)
            if traits is not None:  # as an identify merges them: a company's other fields kept
                merge_identify(merged, traits)
            owner = fields.get("owner") or (old.owner if old is not None else None)
            team = fields.get("team") or (old.team if old is not None else None)
            before = stored_moves.get(lead_id, [])
            seen = {(m.stage, m.at_us) for m in before}
            new: list[Move] = []
            for stage, at_us, by, reason in raw_moves:
                if (stage, at_us) in seen:
                    self.result.stage_rows_present += 1
                    continue
                seen.add((stage, at_us))
                new.append(Move(stage, at_us, reason or "", rep_key(by) if by else "import"))
            moves = sorted(before + new, key=lambda m: m.at_us)
            lead_row: dict[str, Any] = {"lead_id": lead_id, "updated_at_us": self.now_us}
            if traits is not None or old is None:
                lead_row["traits"] = json_param(merged, self.dialect)
                lead_row["email_domain"] = email_domain(merged)
            if fields:
                lead_row.update(owner=owner, team=team)
            if new:
                eps, outside = fold(moves)
                self.result.outside_episodes += outside
                self.result.stage_rows_added += len(new)
                history.extend(
                    {
                        "lead_id": lead_id,
                        "stage": m.stage,
                        "at_us": m.at_us,
                        "reason": m.reason,
                        "by": m.by,
                        "received_at_us": self.now_us,
                    }
                    for m in new
                )
                lead_row["stage"] = moves[-1].stage
                lead_row["mql_at_us"] = eps[-1].mql_at_us if eps else None
                carried = {e.mql_at_us: e for e in stored_eps.get(lead_id, [])}
                if lead_id in stored_eps:
                    rebuilt.append(lead_id)
                source, campaign = source_of(merged), campaign_of(merged)
                for i, ep in enumerate(eps):
                    row: dict[str, Any] = {
                        "lead_id": lead_id,
                        "grade": None,
                        "score": None,
                        "source": source,
                        "campaign": campaign,
                        "owner": owner if i == len(eps) - 1 else None,
                        "team": team if i == len(eps) - 1 else None,
                        "assigned_at_us": None,
                        "first_touch_at_us": None,
                        "sla_name": None,
                        "sla_due_at_us": None,
                        "sla_breached_at_us": None,
                        "sla_notified_at_us": None,
                        "escalated_to": None,
                        **ep.row(),
                    }
                    prev = carried.get(ep.mql_at_us)
                    if prev is not None:
                        row["track"] = prev.track
                        for k, v in prev._mapping.items():
                            if k not in _FOLDED and k != "id" and v is not None:
                                row[k] = v
                    episodes.append(row)
                self.result.episodes += len(eps)
            if traits is not None and merged != before_traits and (old is not None or self.events):
                stage = lead_row.get("stage") or (old.stage if old is not None else "lead")
                scored = bool(old is not None and old.scored)
                rescore[lead_id] = Lead(merged, stage, scored, owner, team)
            if old is None:
                lead_row.setdefault("stage", "lead")
                lead_row.setdefault("owner", owner)
                lead_row.setdefault("team", team)
                lead_row["created_at_us"] = self.now_us
                new_leads.append(lead_row)
                self.result.leads_added += 1
            elif (
                not new
                and (owner, team) == (old.owner, old.team)
                and (traits is None or merged == before_traits)
            ):
                self.result.leads_unchanged += 1
            else:
                if traits is not None and self.rescorer is None:
                    # the stored parts' fit is of the old traits: the next ingest scores the
                    # lead from its history, its fit from these traits (with a model active,
                    # the lead is re-scored below)
                    lead_row["rule_sums"] = None
                upd_leads.append(lead_row)
                self.result.leads_updated += 1
        c = self.conn
        if new_leads:
            keys = ("stage", "mql_at_us", "owner", "team", "traits", "email_domain")
            _insert(c, t.leads, [{**dict.fromkeys(keys), **r} for r in new_leads])
        # re-imports only: each lead sets its own columns, the leads setting the same ones at once
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for u in upd_leads:
            row = {k: v for k, v in u.items() if k != "lead_id"}
            row["b_id"] = u["lead_id"]
            by_columns.setdefault(tuple(sorted(k for k in row if k != "b_id")), []).append(row)
        for columns, rows in by_columns.items():
            _lead_update(columns).run(c, rows)
        for part in _chunks(rebuilt):
            c.execute(sa.delete(t.mql_episodes).where(t.mql_episodes.c.lead_id.in_(part)))
        _insert(c, t.stage_history, history)
        _insert(c, t.mql_episodes, episodes)
        if self.rescorer is not None:  # after the history: the handoff reads a recycled one's
            self.rescorer.batch(rescore)


_LEAD_UPDATES: dict[tuple[str, ...], Prepared] = {}


def _lead_update(columns: tuple[str, ...]) -> Prepared:
    """UPDATE leads SET these columns for one lead (its id as ``b_id``), built once per set."""
    got = _LEAD_UPDATES.get(columns)
    if got is None:
        got = _LEAD_UPDATES[columns] = Prepared.update(t.leads, "lead_id", columns)
    return got


def _copy_value(v: Any) -> Any:
    return dumps(v) if isinstance(v, dict | list) else v


def _insert(conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Many rows (each with the same keys) at once, past SQLAlchemy's per-row work: COPY on
    PostgreSQL, one prepared INSERT run over every row on SQLite. In the caller's transaction."""
    if not rows:
        return
    cols = list(rows[0])
    names = ", ".join(f'"{c}"' for c in cols)
    if conn.dialect.name == "postgresql":
        raw: Any = conn.connection.driver_connection
        with raw.cursor() as cur, cur.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
            for r in rows:
                # JSON (the traits) as its text: COPY reads jsonb from text
                copy.write_row([_copy_value(r[c]) for c in cols])
        return
    marks = ", ".join("?" for _ in cols)
    conn.exec_driver_sql(
        f"INSERT INTO {table.name} ({names}) VALUES ({marks})",
        [tuple(r[c] for c in cols) for r in rows],
    )


def _unknown_leads(
    con: duckdb.DuckDBPyConnection, engine_conn: Connection, has_leads: bool, stages: Path
) -> None:
    """Stage rows of a lead in neither the leads file nor the database: FILE:LINE each."""
    where = "NOT IN (SELECT lead_id FROM leads_view)" if has_leads else "IS NOT NULL"
    ids = [
        r[0]
        for r in con.execute(
            f"SELECT DISTINCT lead_id FROM stages_view WHERE lead_id {where}"
        ).fetchall()
    ]
    if not ids:
        return
    known: set[str] = set()
    for part in _chunks(ids):
        known.update(
            engine_conn.execute(
                sa.select(t.leads.c.lead_id).where(t.leads.c.lead_id.in_(part))
            ).scalars()
        )
    unknown = sorted(set(ids) - known)
    if not unknown:
        return
    con.execute("CREATE OR REPLACE TEMP TABLE unknown_ids (lead_id VARCHAR)")
    con.executemany("INSERT INTO unknown_ids VALUES (?)", [(u,) for u in unknown])
    total = con.execute(
        "SELECT count(*) FROM stages_view WHERE lead_id IN (SELECT lead_id FROM unknown_ids)"
    ).fetchone()
    rows = con.execute(
        "SELECT __line, lead_id FROM stages_view WHERE lead_id IN (SELECT lead_id FROM unknown_ids) "
        f"ORDER BY __line LIMIT {SHOW_BAD_ROWS}"
    ).fetchall()
    where_from = "the leads file nor the database" if has_leads else "the database"
    raise BadRowsError(
        str(stages),
        [
            (
                int(line),
                f"lead_id {lid!r} is in neither {where_from}; add the lead to the leads file",
            )
            for line, lid in rows
        ],
        int(total[0]) if total else len(rows),
    )


def import_history(
    engine: Engine,
    tx: Callable[[], Tx],
    now_us: int,
    *,
    leads: Path | None,
    stages: Path | None,
    skip_bad_rows: bool = False,
    scoring: ImportScoring | None = None,
) -> ImportResult:
    """Check both files whole, then store leads, stage rows and MQL episodes in one transaction;
    with ``scoring``, re-score the leads whose traits changed with the active model, if any."""
    if leads is None and stages is None:
        raise ConfigError(
            "give the leads with --leads FILE, their stage history with --stages FILE, or both"
        )
    con = connect()
    skipped = 0
    if leads is not None:
        inputs = open_files(con, leads, skip_bad_rows=skip_bad_rows)
        skipped += sum(inputs.skipped.values())
    if stages is not None:
        skipped += open_stages(con, stages, STAGES, skip_bad_rows=skip_bad_rows)
        n = con.execute("SELECT count(*) FROM stages_view").fetchone()
        if not n or not n[0]:
            raise InputError("has no stage rows that can be read", file=str(stages))
    else:
        con.execute(
            "CREATE OR REPLACE TEMP VIEW stages_view AS SELECT 0 AS __line, "
            "CAST(NULL AS VARCHAR) AS lead_id, '' AS stage, 0::BIGINT AS at_us, "
            "CAST(NULL AS VARCHAR) AS \"by\", '' AS reason WHERE false"
        )
    txn = tx()
    with txn as conn:
        fresh = not any(
            conn.execute(sa.select(sa.literal(1)).select_from(tbl).limit(1)).first()
            for tbl in (t.leads, t.stage_history, t.mql_episodes)
        )
        if stages is not None:
            _unknown_leads(con, conn, leads is not None, stages)
        rescorer = None
        if scoring is not None and leads is not None:
            rescorer = Rescorer.start(conn, scoring, txn.versions, now_us)
        any_events = rescorer is not None and bool(
            conn.execute(
                sa.select(sa.literal(1))
                .select_from(t.events)
                .where(t.events.c.lead_id.is_not(None))
                .limit(1)
            ).first()
        )
        imp = _Importer(conn, now_us, fresh, rescorer, any_events)

        def moves(where: str = "") -> str:
            return (
                'SELECT lead_id, list((stage, at_us, "by", reason) ORDER BY at_us, __line) '
                f"AS moves FROM stages_view {where} GROUP BY lead_id"
            )

        queries = []
        if leads is not None:
            queries.append(
                (
                    True,
                    "SELECT l.*, s.moves AS __moves FROM leads_view l "
                    f"LEFT JOIN ({moves()}) s USING (lead_id)",
                )
            )
            # stage rows of leads only in the database: picked out before grouping
            queries.append(
                (
                    False,
                    "SELECT lead_id, moves AS __moves FROM ("
                    + moves("WHERE lead_id NOT IN (SELECT lead_id FROM leads_view)")
                    + ")",
                )
            )
        else:
            queries.append((False, f"SELECT lead_id, moves AS __moves FROM ({moves()})"))
        for with_traits, sql in queries:
            cur = con.execute(sql)
            cols = [d[0] for d in cur.description or ()]
            while rows := cur.fetchmany(BATCH):
                items: list[_Item] = []
                for row in rows:
                    lead_id = str(row[0])
                    raw = row[-1] or []
                    moves_ = [
                        (m[0], m[1], m[2], m[3])
                        if isinstance(m, tuple)
                        else (m["stage"], m["at_us"], m["by"], m["reason"])
                        for m in raw
                    ]
                    if with_traits:
                        traits, fields = _traits(cols[:-1], row[:-1])
                        items.append((lead_id, traits, fields, moves_))
                    else:
                        items.append((lead_id, None, {}, moves_))
                imp.batch(items)
        imp.result.skipped_rows = skipped
        if rescorer is not None:
            imp.result.model_version = rescorer.active.version
            imp.result.leads_rescored = rescorer.rescored
            imp.result.new_mqls = len(rescorer.new_mqls)
            imp.result.notified = scoring is not None and scoring.notify
        return imp.result
