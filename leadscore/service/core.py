"""The live service's logic, independent of HTTP: ingest messages, keep scores current, hand MQLs
over through a durable outbox, manage model versions. One database transaction per call, so an
acknowledged call is stored whole and a failed one leaves nothing behind.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from ..engine import Event, LeadScore, Scorer, round2
from ..errors import LeadscoreError
from ..model import Model, parse_model
from ..store import schema as t
from ..store.db import WRITES
from .messages import Message

__all__ = ["IngestResult", "NoModelError", "Service", "now_us"]

US = 1_000_000


def now_us() -> int:
    return time.time_ns() // 1000


def iso(us: int | None) -> str | None:
    if us is None:
        return None
    return datetime.fromtimestamp(us / US, UTC).isoformat().replace("+00:00", "Z")


def _dumps(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False, default=str)


def _loads(v: Any) -> Any:
    if v is None or isinstance(v, dict | list):
        return v
    return json.loads(v)


class NoModelError(LeadscoreError):
    pass


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    leads: list[str] = field(default_factory=list)
    new_mqls: list[str] = field(default_factory=list)


@dataclass
class ActiveModel:
    version: int
    model: Model
    scorer: Scorer
    event_keys: frozenset[str]


class Service:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        # one writer at a time, as SQLite has it anyway: an activation re-scoring every lead
        # must not interleave with an ingest updating some of them
        self._write_lock = threading.Lock()
        self._active: ActiveModel | None = None
        self._load_active()

    # ------------------------------------------------------------------ models

    def _load_active(self) -> None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.models).where(t.models.c.active)).first()
        if row is None:
            self._active = None
            return
        model = parse_model(row.source, f"model v{row.version}")
        self._active = _active(row.version, model)

    @property
    def active(self) -> ActiveModel:
        if self._active is None:
            raise NoModelError("no model is active; start with --model FILE or PUT /api/models")
        return self._active

    def add_model(
        self, source: str, by: str, file: str = "<request>", activate: bool = True
    ) -> dict[str, Any]:
        """Validate (raises ModelError with every problem), store as a new version, activate."""
        model = parse_model(source, file)
        at = now_us()
        with self._tx() as conn:
            version = conn.execute(
                sa.insert(t.models)
                .values(name=model.name, source=source, created_at_us=at, created_by=by)
                .returning(t.models.c.version)
            ).scalar_one()
        result: dict[str, Any] = {"version": version, "name": model.name, "active": False}
        if activate:
            result.update(self.activate(version, by))
        return result

    def ensure_model(self, source: str, file: str, by: str) -> dict[str, Any]:
        """At start with --model: activate this model unless the active one has the same text."""
        if self._active is not None:
            with self.engine.connect() as conn:
                current = conn.execute(
                    sa.select(t.models.c.source).where(t.models.c.version == self._active.version)
                ).scalar_one()
            if current == source:
                parse_model(source, file)
                return {"version": self._active.version, "unchanged": True}
        return self.add_model(source, by, file)

    def activate(self, version: int, by: str) -> dict[str, Any]:
        """Make a version active and re-score every lead with the SQL engine, in one transaction."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.models).where(t.models.c.version == version)).first()
        if row is None:
            raise LeadscoreError(f"there is no model version {version}")
        model = parse_model(row.source, f"model v{version}")
        active = _active(version, model)
        previous = self._active
        try:
            with self._tx() as conn:
                at = now_us()
                conn.execute(sa.update(t.models).where(t.models.c.active).values(active=False))
                conn.execute(
                    sa.update(t.models)
                    .where(t.models.c.version == version)
                    .values(active=True, activated_at_us=at, activated_by=by)
                )
                n, new_mqls = self._rescore_all(conn, active, at)
                conn.execute(
                    sa.insert(t.model_activations).values(
                        version=version, at_us=at, by=by, leads_rescored=n, new_mqls=len(new_mqls)
                    )
                )
                self._active = active  # before the write lock passes to the next ingest
        except BaseException:
            self._active = previous
            raise
        return {"version": version, "active": True, "leads_rescored": n, "new_mqls": len(new_mqls)}

    def _rescore_all(self, conn: Connection, active: ActiveModel, at: int) -> tuple[int, list[str]]:
        """Every lead re-scored by the compiled SQL model on this database."""
        from ..sql import JsonTables, score_sql

        model = active.model
        source = JsonTables(
            leads="leads",
            traits="traits",
            events="events",
            properties="properties",
            ts_us="ts_us",
            jsonb=self.dialect == "postgresql",
        )
        dialect = "postgres" if self.dialect == "postgresql" else "sqlite"
        as_of = datetime.fromtimestamp(at / US, UTC)
        query = score_sql(model, source, as_of, dialect, detail=True)
        n_fit, n_eng = len(model.fit_rules), len(model.engagement_rules)
        rows = conn.exec_driver_sql(query).mappings().all()
        new_mqls: list[str] = []
        stages: dict[str, str] = {
            r.lead_id: r.stage for r in conn.execute(sa.select(t.leads.c.lead_id, t.leads.c.stage))
        }
        due = _rescore_times(conn, active, at)
        for r in rows:
            held = [i for i in range(n_fit) if r[f"f{i}"] != 0]
            sums = [float(r[f"s{i}"]) for i in range(n_eng)]
            counted = _counted_from_sql(model, r, n_eng)
            score = active.scorer.finish(held, sums, counted)
            values = _score_values(score, held, sums, counted, active.version, at)
            values["rescore_at_us"] = due.get(r["lead_id"])
            if stages.get(r["lead_id"]) != "mql" and score.mql:
                reason = _mql_reason(model, score) + f" (model v{active.version} activated)"
                self._qualify(conn, r["lead_id"], at, reason, active.version, score)
                new_mqls.append(r["lead_id"])
            conn.execute(
                sa.update(t.leads).where(t.leads.c.lead_id == r["lead_id"]).values(**values)
            )
        return len(rows), new_mqls

    def models(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.models).order_by(t.models.c.version.desc())).all()
            acts = conn.execute(
                sa.select(t.model_activations).order_by(t.model_activations.c.id)
            ).all()
        history: dict[int, list[dict[str, Any]]] = {}
        for a in acts:
            history.setdefault(a.version, []).append(
                {
                    "at": iso(a.at_us),
                    "by": a.by,
                    "leads_rescored": a.leads_rescored,
                    "new_mqls": a.new_mqls,
                }
            )
        return [
            {
                "version": r.version,
                "name": r.name,
                "active": r.active,
                "created_at": iso(r.created_at_us),
                "created_by": r.created_by,
                "activations": history.get(r.version, []),
                "source": r.source,
            }
            for r in rows
        ]

    # ------------------------------------------------------------------ ingest

    def _tx(self) -> Any:
        return _Tx(self.engine, self._write_lock)

    def ingest(
        self, messages: list[tuple[int, Message]], received_us: int | None = None
    ) -> IngestResult:
        """Store valid messages (each with its index in the request) and update every lead they touch."""
        active = self.active
        at = received_us or now_us()
        res = IngestResult()
        if not messages:
            return res
        with self._tx() as conn:
            active = self.active  # under the write lock: an activation may just have committed
            msgs = [m for _, m in messages]
            links = _identities(conn, {m.anonymous_id for m in msgs if m.anonymous_id})
            rows = []
            for m in msgs:
                lead = m.user_id or (links.get(m.anonymous_id) if m.anonymous_id else None)
                rows.append(
                    {
                        "message_id": m.message_id,
                        "type": m.type,
                        "lead_id": lead,
                        "anonymous_id": m.anonymous_id,
                        "event": m.event,
                        "ts_us": m.ts_us,
                        "received_at_us": at,
                        "properties": _json_param(m.properties, self.dialect),
                        "message": _json_param(m.raw, self.dialect),
                    }
                )
            inserted = self._insert_events(conn, rows)
            res.accepted = len(inserted)
            res.duplicates = len(rows) - len(inserted)
            fresh = [
                (m, r["lead_id"])
                for m, r in zip(msgs, rows, strict=True)
                if m.message_id in inserted
            ]
            touched: dict[str, list[int]] = {}  # lead -> timestamps of the messages that touched it
            traits_cache: dict[str, dict[str, Any]] = {}
            changed_traits: set[str] = set()
            for m, lead in sorted(fresh, key=lambda x: x[0].ts_us):
                if m.type == "alias":
                    assert m.user_id is not None and m.previous_id is not None
                    self._link(conn, m.previous_id, m.user_id, at, touched, m.ts_us)
                    links.setdefault(m.previous_id, m.user_id)
                    lead = m.user_id
                if lead is None and m.anonymous_id:
                    lead = links.get(m.anonymous_id)  # linked by an earlier message of this call
                if lead is None:
                    continue
                if m.type == "identify" and m.anonymous_id and m.user_id:
                    self._link(conn, m.anonymous_id, m.user_id, at, touched, m.ts_us)
                    links.setdefault(m.anonymous_id, m.user_id)
                traits = traits_cache.get(lead)
                if traits is None:
                    traits = traits_cache[lead] = self._lead_traits(conn, lead, at)
                if m.type == "identify" and m.traits:
                    _merge_identify(traits, m.traits)
                    changed_traits.add(lead)
                elif m.type == "group":
                    company = traits.get("company")
                    if not isinstance(company, dict):
                        company = {} if company is None else {"name": company}
                        traits["company"] = company
                    company.update(m.traits or {})
                    if m.group_id:
                        company["id"] = m.group_id
                    changed_traits.add(lead)
                touched.setdefault(lead, []).append(m.ts_us)
            for lead in changed_traits:
                conn.execute(
                    sa.update(t.leads)
                    .where(t.leads.c.lead_id == lead)
                    .values(traits=_json_param(traits_cache[lead], self.dialect), updated_at_us=at)
                )
            for lead in sorted(touched):
                if self._update_lead(conn, active, lead, touched[lead], at):
                    res.new_mqls.append(lead)
            res.leads = sorted(touched)
        return res

    def _insert_events(self, conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
        # the same messageId twice in one request: the first one counts
        seen: set[str] = set()
        unique = []
        for r in rows:
            if r["message_id"] not in seen:
                seen.add(r["message_id"])
                unique.append(r)
        stmt = insert(t.events).on_conflict_do_nothing(index_elements=["message_id"])
        got = conn.execute(stmt.returning(t.events.c.message_id), unique).scalars().all()
        return set(got)

    def _link(
        self,
        conn: Connection,
        anon: str,
        lead: str,
        at: int,
        touched: dict[str, list[int]],
        ts: int,
    ) -> None:
        """Link an anonymous id to a lead; its earlier events join the lead."""
        existing = conn.execute(
            sa.select(t.identities.c.lead_id).where(t.identities.c.anonymous_id == anon)
        ).scalar_one_or_none()
        if existing is None:
            conn.execute(
                sa.insert(t.identities).values(anonymous_id=anon, lead_id=lead, linked_at_us=at)
            )
        elif existing != lead:
            return  # first link wins: an anonymous id belongs to one lead
        moved = conn.execute(
            sa.update(t.events)
            .where(t.events.c.anonymous_id == anon, t.events.c.lead_id.is_(None))
            .values(lead_id=lead)
        ).rowcount
        if moved:
            touched.setdefault(lead, []).append(ts)

    def _lead_traits(self, conn: Connection, lead: str, at: int) -> dict[str, Any]:
        row = conn.execute(sa.select(t.leads.c.traits).where(t.leads.c.lead_id == lead)).first()
        if row is not None:
            return dict(_loads(row.traits) or {})
        conn.execute(
            sa.insert(t.leads).values(
                lead_id=lead,
                traits=_json_param({}, self.dialect),
                created_at_us=at,
                updated_at_us=at,
            )
        )
        return {}

    def _events_of(self, conn: Connection, active: ActiveModel, lead: str, at: int) -> list[Event]:
        model = active.model
        q = sa.select(t.events.c.event, t.events.c.ts_us, t.events.c.properties).where(
            t.events.c.lead_id == lead, t.events.c.event.is_not(None)
        )
        if model.window_days is not None:
            q = q.where(t.events.c.ts_us >= at - round(model.window_days * 86400 * US))
        out = []
        for name, ts_us, props in conn.execute(q):
            ev = Event.__new__(Event)
            ev.name = name
            ev.key = name.strip(" \t\n\r\f\v").lower()
            ev.ts_us = ts_us
            ev.timestamp = datetime.fromtimestamp(ts_us // US, UTC).replace(microsecond=ts_us % US)
            ev.properties = _loads(props) or {}
            out.append(ev)
        return out

    def _update_lead(
        self, conn: Connection, active: ActiveModel, lead: str, times: list[int], at: int
    ) -> bool:
        """Re-score one lead from its stored events; qualify it if it crossed. True if it did."""
        row = conn.execute(
            sa.select(t.leads.c.traits, t.leads.c.stage).where(t.leads.c.lead_id == lead)
        ).first()
        assert row is not None
        traits = _loads(row.traits) or {}
        events = self._events_of(conn, active, lead, at)
        scorer = active.scorer
        held, sums, counted = scorer.parts(traits, events, at)
        score = scorer.finish(held, sums, counted)
        values = _score_values(score, held, sums, counted, active.version, at)
        values["rescore_at_us"] = _rescore_at(active, events, at)
        qualified = False
        if row.stage != "mql":
            # the first of this call's messages, by its own time, at which the lead qualifies
            for ts in sorted(set(times)):
                s = score if ts >= at else scorer.finish(*scorer.parts(traits, events, ts))
                if s.mql:
                    self._qualify(conn, lead, ts, _mql_reason(active.model, s), active.version, s)
                    qualified = True
                    break
            if not qualified and score.mql:
                self._qualify(
                    conn, lead, max(times), _mql_reason(active.model, score), active.version, score
                )
                qualified = True
        values["updated_at_us"] = at
        conn.execute(sa.update(t.leads).where(t.leads.c.lead_id == lead).values(**values))
        return qualified

    def _qualify(
        self, conn: Connection, lead: str, at_us: int, reason: str, version: int, score: LeadScore
    ) -> None:
        """Stage mql (sticky), history, and a lead.mql notification per subscribed webhook."""
        conn.execute(
            sa.update(t.leads)
            .where(t.leads.c.lead_id == lead)
            .values(stage="mql", mql_at_us=at_us, mql_reason=reason)
        )
        conn.execute(
            sa.insert(t.stage_history).values(
                lead_id=lead, stage="mql", at_us=at_us, reason=reason, model_version=version
            )
        )
        hooks = conn.execute(
            sa.select(t.webhooks.c.id, t.webhooks.c.events).where(t.webhooks.c.active)
        ).all()
        targets = [h.id for h in hooks if "lead.mql" in h.events.split(",")]
        if not targets:
            return
        traits = _loads(
            conn.execute(sa.select(t.leads.c.traits).where(t.leads.c.lead_id == lead)).scalar_one()
        )
        payload = _dumps(
            {
                "type": "lead.mql",
                "lead_id": lead,
                "mql_at": iso(at_us),
                "reason": reason,
                "model_version": version,
                "score": score.record(lead),
                "traits": traits,
            }
        )
        created = now_us()
        conn.execute(
            sa.insert(t.outbox),
            [
                {
                    "webhook_id": h,
                    "event": "lead.mql",
                    "payload": payload,
                    "created_at_us": created,
                    "next_attempt_us": created,
                }
                for h in targets
            ],
        )

    # ------------------------------------------------------------------ reads

    def current(self, row: Any, at: int) -> LeadScore | None:
        """The lead's score now: its stored parts decayed to ``at`` (no write needed)."""
        active = self._active
        if active is None or row.rule_sums is None:
            return None
        parts = _loads(row.rule_sums)
        if parts.get("v") != active.version:
            return None
        if row.rescore_at_us is not None and at >= row.rescore_at_us:
            with self.engine.connect() as conn:
                traits = _loads(row.traits) or {}
                events = self._events_of(conn, active, row.lead_id, at)
            return active.scorer.finish(*active.scorer.parts(traits, events, at))
        sums = parts["s"]
        half = active.model.half_life_days
        if half is not None and row.scored_at_us is not None and at > row.scored_at_us:
            factor = 0.5 ** (((at - row.scored_at_us) / 1e6) / (half * 86400.0))
            sums = [s * factor for s in sums]
        return active.scorer.finish(parts["h"], sums, parts["c"])

    def lead_view(self, row: Any, at: int, *, full: bool = False) -> dict[str, Any]:
        score = self.current(row, at)
        traits = _loads(row.traits) or {}
        out: dict[str, Any] = {
            "lead_id": row.lead_id,
            "stage": row.stage,
            "mql_at": iso(row.mql_at_us),
            "mql_reason": row.mql_reason,
        }
        if score is not None:
            rec = score.record(row.lead_id)
            rec.pop("lead_id")
            out.update(rec)
        else:
            out.update(
                fit=round2(row.fit),
                engagement=round2(row.engagement),
                score=round2(row.score),
                grade=row.grade,
                mql=bool(row.mql),
                fast_track=bool(row.fast_track),
                reasons=[],
            )
        out["scored_at"] = iso(at)
        out["updated_at"] = iso(row.updated_at_us)
        if full:
            out["traits"] = {k: v for k, v in traits.items() if k != "company"}
            out["company"] = traits.get("company") or {}
        else:
            out["email"] = traits.get("email")
            out["name"] = (
                traits.get("name")
                or " ".join(
                    str(x)
                    for x in (
                        traits.get("first_name") or traits.get("firstName"),
                        traits.get("last_name") or traits.get("lastName"),
                    )
                    if x
                )
                or None
            )
            company = traits.get("company")
            out["company"] = company.get("name") if isinstance(company, dict) else company
        return out


# ---------------------------------------------------------------------- helpers


class _Tx:
    """``with`` a write transaction; on SQLite one writer at a time (BEGIN IMMEDIATE)."""

    def __init__(self, engine: Engine, lock: threading.Lock | None) -> None:
        self.engine = engine
        self.lock = lock
        self.ctx: Any = None

    def __enter__(self) -> Connection:
        if self.lock is not None:
            self.lock.acquire()
        try:
            # it reads before it writes: on SQLite it must take the write lock at BEGIN
            self.ctx = self.engine.execution_options(**{WRITES: True}).begin()
            return self.ctx.__enter__()  # type: ignore[no-any-return]
        except BaseException:
            if self.lock is not None:
                self.lock.release()
            raise

    def __exit__(self, *exc: Any) -> None:
        try:
            self.ctx.__exit__(*exc)
        finally:
            if self.lock is not None:
                self.lock.release()


def _active(version: int, model: Model) -> ActiveModel:
    return ActiveModel(
        version, model, Scorer(model), frozenset(r.event_key for r in model.engagement_rules)
    )


def _json_param(v: Any, dialect: str) -> Any:
    """A value for a JSON column: text on SQLite; on PostgreSQL the value itself, which the jsonb
    type serialises (text there would be stored as one jsonb string, invisible to the SQL engine)."""
    if v is None:
        return None
    return v if dialect == "postgresql" else _dumps(v)


def _identities(conn: Connection, anon_ids: set[str | None]) -> dict[str, str]:
    ids = [a for a in anon_ids if a]
    if not ids:
        return {}
    rows = conn.execute(
        sa.select(t.identities.c.anonymous_id, t.identities.c.lead_id).where(
            t.identities.c.anonymous_id.in_(ids)
        )
    ).all()
    return {a: lead for a, lead in rows}


def _merge_identify(traits: dict[str, Any], new: dict[str, Any]) -> None:
    for k, v in new.items():
        if k == "company" and isinstance(v, dict) and isinstance(traits.get("company"), dict):
            traits["company"].update(v)
        else:
            traits[k] = v


def _score_values(
    score: LeadScore, held: list[int], sums: list[float], counted: list[bool], version: int, at: int
) -> dict[str, Any]:
    return {
        "fit": score.fit,
        "engagement": score.engagement,
        "score": score.score,
        "grade": score.grade,
        "mql": score.mql,
        "fast_track": score.fast_track,
        "rule_sums": _dumps({"v": version, "h": held, "s": sums, "c": counted}),
        "scored_at_us": at,
        "model_version": version,
    }


def _rescore_times(conn: Connection, active: ActiveModel, at: int) -> dict[str, int]:
    """Per lead, when parts scored at ``at`` by this model stop being exact (``_rescore_at``)."""
    window = active.model.window_days
    q = sa.select(t.events.c.lead_id, t.events.c.event, t.events.c.ts_us).where(
        t.events.c.lead_id.is_not(None), t.events.c.event.is_not(None)
    )
    if window is None:
        q = q.where(t.events.c.ts_us > at)
    else:
        q = q.where(t.events.c.ts_us >= at - round(window * 86400 * US))
    events: dict[str, list[Event]] = {}
    for lead, name, ts_us in conn.execute(q):
        when = datetime.fromtimestamp(ts_us // US, UTC).replace(microsecond=ts_us % US)
        events.setdefault(lead, []).append(Event(name, when))
    due = {lead: _rescore_at(active, evs, at) for lead, evs in events.items()}
    return {lead: when for lead, when in due.items() if when is not None}


def _rescore_at(active: ActiveModel, events: Iterable[Event], at: int) -> int | None:
    """When the stored parts stop being exact: an event leaves the window, or a future one lands."""
    window = active.model.window_days
    keys = active.event_keys
    soonest: int | None = None
    for ev in events:
        if ev.key not in keys:
            continue
        if ev.ts_us > at:
            when = ev.ts_us
        elif window is not None:
            when = ev.ts_us + round(window * 86400 * US) + 1
        else:
            continue
        soonest = when if soonest is None else min(soonest, when)
    return soonest


def _mql_reason(model: Model, score: LeadScore) -> str:
    fast_rules = {r.name for r in model.engagement_rules if r.fast_track}
    if score.fast_track and score.score < model.threshold:
        for r in score.reasons:
            if r.rule in fast_rules:
                return f"fast track: {r.rule}"
        return "fast track"
    return f"score {round2(score.score):g} reached threshold {model.threshold:g}"


def _counted_from_sql(model: Model, row: Any, n: int) -> list[bool]:
    """A rule counted when its decayed sum is non-zero (points are never zero with a cap)."""
    return [float(row[f"s{i}"]) != 0 for i in range(n)]
