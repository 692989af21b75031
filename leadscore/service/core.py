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
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
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
    try:
        return orjson.dumps(v).decode()
    except TypeError:  # a value orjson does not know (e.g. a very large integer)
        return json.dumps(v, separators=(",", ":"), ensure_ascii=False, default=str)


def _loads(v: Any) -> Any:
    if v is None or isinstance(v, dict | list):
        return v
    return orjson.loads(v)


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
        self._ctx = threading.local()  # per-request working state of ingest()
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
        self._ctx.hooks, self._ctx.traits = None, {}
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
            values = _score_values(score, held, sums, counted, active.version, at, self.dialect)
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
                        "message": m.encoded
                        if m.encoded is not None and self.dialect != "postgresql"
                        else _json_param(m.raw, self.dialect),
                    }
                )
            inserted = self._insert_events(conn, rows)
            res.accepted = len(inserted)
            res.duplicates = len(rows) - len(inserted)
            fresh = []
            for m, r in zip(msgs, rows, strict=True):
                if m.message_id in inserted:  # new, and the first copy within this request
                    inserted.discard(m.message_id)
                    fresh.append((m, r["lead_id"]))
            touched: dict[str, list[int]] = {}  # lead -> timestamps of the messages that touched it
            self._ctx.parts = {}
            self._ctx.relinked = set()
            self._ctx.hooks = None
            arrived: dict[str, list[Message]] = {}  # lead -> its new scored events
            needed = {lead for _, lead in fresh if lead} | {
                m.user_id for m, _ in fresh if m.user_id
            }
            leads = self._load_leads(conn, needed, at)
            changed_traits: set[str] = set()
            self._ctx.changed = changed_traits
            self._ctx.traits = {k: v[0] for k, v in leads.items()}
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
                traits = leads[lead][0]
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
                if m.event is not None:
                    arrived.setdefault(lead, []).append(m)
            if changed_traits:
                conn.execute(
                    _UPDATE_TRAITS,
                    [
                        {
                            "b_id": x,
                            "traits": _json_param(leads[x][0], self.dialect),
                            "updated_at_us": at,
                        }
                        for x in changed_traits
                    ],
                )
            missing = [x for x in touched if x not in leads]
            if missing:  # linked through identities only
                leads.update(self._load_leads(conn, set(missing), at))
            # leads whose stored parts can simply be carried forward; the rest are re-scored
            # from all their events
            quick = {
                lead
                for lead in touched
                if lead not in self._ctx.relinked
                and self._can_advance(active, lead, arrived.get(lead, []), at)
            }
            full = sorted(set(touched) - quick)
            events: dict[str, list[Event]] = {}
            if full:
                earliest = min(min(touched[x]) for x in full)
                events = self._events_for(conn, active, full, min(earliest, at))
            updates = []
            for lead in sorted(touched):
                traits, stage = leads[lead]
                got = None
                if lead in quick:
                    got = self._advance(
                        conn, active, lead, traits, stage, arrived.get(lead, []), touched[lead], at
                    )
                if got is not None:
                    values, qualified = got
                else:
                    if lead not in events:  # a late event may have qualified it: full history
                        since = min(min(touched[lead]), at)
                        events.update(self._events_for(conn, active, [lead], since))
                    values, qualified = self._rescore(
                        conn, active, lead, traits, stage, events.get(lead, []), touched[lead], at
                    )
                values["b_id"] = lead
                updates.append(values)
                if qualified:
                    res.new_mqls.append(lead)
            if updates:
                conn.execute(_UPDATE_SCORES, updates)
            res.leads = sorted(touched)
        return res

    def _load_leads(
        self, conn: Connection, ids: set[str], at: int
    ) -> dict[str, tuple[dict[str, Any], str]]:
        """Traits and stage of these leads; the ones not seen before are created."""
        out: dict[str, tuple[dict[str, Any], str]] = {}
        if not ids:
            return out
        for lead, traits, stage, parts, scored_at, rescore_at in conn.execute(
            _SELECT_LEADS, {"ids": sorted(ids)}
        ):
            out[lead] = (dict(_loads(traits) or {}), stage)
            if parts is not None and scored_at is not None:
                self._ctx.parts[lead] = (_loads(parts), scored_at, rescore_at)
        new = [x for x in ids if x not in out]
        if new:
            conn.execute(
                sa.insert(t.leads),
                [
                    {
                        "lead_id": x,
                        "traits": _json_param({}, self.dialect),
                        "created_at_us": at,
                        "updated_at_us": at,
                    }
                    for x in new
                ],
            )
            for x in new:
                out[x] = ({}, "lead")
        return out

    def _events_for(
        self, conn: Connection, active: ActiveModel, ids: list[str], at: int
    ) -> dict[str, list[Event]]:
        """Every scored event of these leads that can count at ``at`` or later, in one query
        (the engine applies the window itself)."""
        if not ids:
            return {}
        since = -(2**62)
        if active.model.window_days is not None:
            since = at - round(active.model.window_days * 86400 * US)
        out: dict[str, list[Event]] = {}
        # straight to the driver: this is the hot read of the ingest path
        mark = "?" if self.dialect == "sqlite" else "%s"
        sql = (
            "SELECT lead_id, event, ts_us, properties FROM events WHERE lead_id IN ("
            + ", ".join([mark] * len(ids))
            + f") AND event IS NOT NULL AND ts_us >= {mark}"
        )
        if self.dialect == "postgresql":
            sql = sql.replace("properties FROM", "properties::text FROM")
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cur.execute(sql, (*ids, since))
            for lead, name, ts_us, props in cur.fetchall():
                out.setdefault(lead, []).append(_event(name, ts_us, props))
        finally:
            cur.close()
        return out

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
            self._ctx.relinked.add(lead)

    def _events_of(self, conn: Connection, active: ActiveModel, lead: str, at: int) -> list[Event]:
        return self._events_for(conn, active, [lead], at).get(lead, [])

    def _can_advance(self, active: ActiveModel, lead: str, new: list[Message], at: int) -> bool:
        """True when the lead's stored parts are exact and none of its new events is in the
        future. Events older than the parts (late ones) are added decayed to the parts' time."""
        got = self._ctx.parts.get(lead)
        if got is None:
            return False
        parts, _scored_at, rescore_at = got
        if parts.get("v") != active.version or (rescore_at is not None and at >= rescore_at):
            return False
        return all(m.ts_us <= at for m in new)

    def _advance(
        self,
        conn: Connection,
        active: ActiveModel,
        lead: str,
        traits: dict[str, Any],
        stage: str,
        new: list[Message],
        times: list[int],
        at: int,
    ) -> tuple[dict[str, Any], bool] | None:
        """Carry the stored parts forward: decay them to each new event's time, add its points,
        and decide MQL at that instant. Exact up to floating-point rounding. None when a late
        event may have made the lead an MQL at an earlier instant: only its whole history can
        tell when, so the caller re-scores it from its events."""
        parts, scored_at, rescore_at = self._ctx.parts[lead]
        scorer = active.scorer
        model = active.model
        held = parts["h"] if lead not in self._ctx.changed else scorer.fit_held(traits)
        sums = [float(x) for x in parts["s"]]
        counted = [bool(x) for x in parts["c"]]
        half_s = model.half_life_days * 86400.0 if model.half_life_days is not None else None
        window_us = round(model.window_days * 86400 * US) if model.window_days is not None else None
        clock = scored_at
        qualified = stage == "mql"
        became = False
        late_events = False

        def decay_to(ts: int) -> None:
            nonlocal clock, sums
            if half_s is not None and ts > clock:
                f = 0.5 ** (((ts - clock) / 1e6) / half_s)
                sums = [x * f for x in sums]
            clock = max(clock, ts)

        # an identify or group call may have changed fit: decide at its time too
        steps: list[tuple[int, list[float], list[bool]]] = []
        for ts, ev in sorted(
            [(m.ts_us, m) for m in new] + [(x, None) for x in times if x >= scored_at],
            key=lambda p: (p[0], p[1] is None),
        ):
            decay_to(ts)
            if ev is not None:
                assert ev.event is not None
                if window_us is not None and ev.ts_us < at - window_us:
                    continue  # already outside the window: it never counts
                e = _event(ev.event, ev.ts_us, ev.properties or {})
                hits = scorer.matches(e)
                late = 1.0
                if ev.ts_us < clock:
                    late_events = True
                    if half_s is not None:
                        late = 0.5 ** (((clock - ev.ts_us) / 1e6) / half_s)
                for i, pts in hits:
                    sums[i] += pts * late
                    counted[i] = True
                if window_us is not None and hits:
                    expiry = ev.ts_us + window_us + 1
                    rescore_at = expiry if rescore_at is None else min(rescore_at, expiry)
            if not qualified:
                steps.append((ts, list(sums), list(counted)))
        decay_to(at)
        score = scorer.finish(held, sums, counted)
        if (
            late_events
            and not qualified
            and (score.mql or _may_have_qualified(active, score, min(m.ts_us for m in new), at))
        ):
            return None
        if (
            not qualified
            and steps
            and (score.mql or _may_have_qualified(active, score, steps[0][0], at))
        ):
            # the first step at which it qualified: that event's time is mql_at
            for ts, st_sums, st_counted in steps:
                s = scorer.finish(held, st_sums, st_counted)
                if s.mql:
                    self._qualify(conn, lead, ts, _mql_reason(model, s), active.version, s)
                    qualified = became = True
                    break
        if not qualified and score.mql:
            self._qualify(conn, lead, max(times), _mql_reason(model, score), active.version, score)
            became = True
        values = _score_values(score, held, sums, counted, active.version, at, self.dialect)
        values["rescore_at_us"] = rescore_at
        values["updated_at_us"] = at
        return values, became

    def _rescore(
        self,
        conn: Connection,
        active: ActiveModel,
        lead: str,
        traits: dict[str, Any],
        stage: str,
        events: list[Event],
        times: list[int],
        at: int,
    ) -> tuple[dict[str, Any], bool]:
        """A lead's new score from its events; qualify it if it crossed. Returns the row values
        and whether it became an MQL."""
        scorer = active.scorer
        held = scorer.fit_held(traits)
        sums, counted = scorer.engage(events, at)
        score = scorer.finish(held, sums, counted)
        values = _score_values(score, held, sums, counted, active.version, at, self.dialect)
        values["rescore_at_us"] = _rescore_at(active, events, at)
        values["updated_at_us"] = at
        if stage == "mql":
            return values, False
        # the first of this call's messages, by its own time, at which the lead qualifies;
        # skipped when even undecayed points could not reach the threshold
        if score.mql or _could_qualify(active, traits, events, held):
            for ts in sorted(set(times)):
                s = score if ts >= at else scorer.finish(held, *scorer.engage(events, ts))
                if s.mql:
                    self._qualify(conn, lead, ts, _mql_reason(active.model, s), active.version, s)
                    return values, True
        if score.mql:
            self._qualify(
                conn, lead, max(times), _mql_reason(active.model, score), active.version, score
            )
            return values, True
        return values, False

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
        targets = getattr(self._ctx, "hooks", None)
        if targets is None:
            hooks = conn.execute(
                sa.select(t.webhooks.c.id, t.webhooks.c.events).where(t.webhooks.c.active)
            ).all()
            targets = self._ctx.hooks = [h.id for h in hooks if "lead.mql" in h.events.split(",")]
        if not targets:
            return
        traits = getattr(self._ctx, "traits", {}).get(lead)
        if traits is None:
            traits = _loads(
                conn.execute(
                    sa.select(t.leads.c.traits).where(t.leads.c.lead_id == lead)
                ).scalar_one()
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

# statements built once: the ingest path runs them for every request
_SELECT_LEADS = sa.select(
    t.leads.c.lead_id,
    t.leads.c.traits,
    t.leads.c.stage,
    t.leads.c.rule_sums,
    t.leads.c.scored_at_us,
    t.leads.c.rescore_at_us,
).where(t.leads.c.lead_id.in_(sa.bindparam("ids", expanding=True)))
_SELECT_EVENTS = sa.select(
    t.events.c.lead_id, t.events.c.event, t.events.c.ts_us, t.events.c.properties
).where(
    t.events.c.lead_id.in_(sa.bindparam("ids", expanding=True)),
    t.events.c.event.is_not(None),
    t.events.c.ts_us >= sa.bindparam("since"),
)
_UPDATE_TRAITS = (
    sa.update(t.leads)
    .where(t.leads.c.lead_id == sa.bindparam("b_id"))
    .values(traits=sa.bindparam("traits"), updated_at_us=sa.bindparam("updated_at_us"))
)
_SCORE_COLUMNS = (
    "fit",
    "engagement",
    "score",
    "grade",
    "mql",
    "fast_track",
    "rule_sums",
    "scored_at_us",
    "model_version",
    "rescore_at_us",
    "updated_at_us",
)
_UPDATE_SCORES = (
    sa.update(t.leads)
    .where(t.leads.c.lead_id == sa.bindparam("b_id"))
    .values({c: sa.bindparam(c) for c in _SCORE_COLUMNS})
)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _StoredEvent(Event):
    """An event read back from the store: its properties are parsed only if a rule reads them."""

    __slots__ = ("_raw",)
    _raw: Any

    @property
    def properties(self) -> Any:  # type: ignore[override]
        raw = self._raw
        if not isinstance(raw, dict):
            raw = self._raw = _loads(raw) or {}
        return raw


def _event(name: str, ts_us: int, props: Any) -> Event:
    """An Event from a stored row, without re-parsing its timestamp."""
    ev = _StoredEvent.__new__(_StoredEvent)
    ev.name = name
    ev.key = name.strip(" \t\n\r\f\v").lower()
    ev.ts_us = ts_us
    ev.timestamp = _EPOCH + timedelta(microseconds=ts_us)
    ev._raw = props
    return ev


def _may_have_qualified(active: ActiveModel, now: LeadScore, since: int, at: int) -> bool:
    """Whether a lead that is not an MQL at ``at`` may have been one at some instant since
    ``since``: engagement then was at most engagement now undone by the decay in between
    (with no negative engagement rules, the only thing that lowers a score over time)."""
    m = active.model
    if any(r.points < 0 for r in m.engagement_rules):
        return True
    if m.min_fit is not None and now.fit < m.min_fit:
        return False
    undo = 1.0
    if m.half_life_days is not None:
        undo = 2.0 ** (((at - since) / 1e6) / (m.half_life_days * 86400.0))
    return now.fit + now.engagement * undo >= m.threshold


def _could_qualify(
    active: ActiveModel, traits: dict[str, Any], events: list[Event], held: list[int]
) -> bool:
    """Whether the lead could be an MQL at some earlier instant: decay only lowers points, so
    undecayed, capped points that fall short of the threshold (with no fast-track event) rule
    it out without scoring at every instant."""
    m = active.model
    fit = sum(m.fit_rules[i].points for i in held)
    if m.fit_max is not None:
        fit = min(fit, m.fit_max)
    if m.min_fit is not None and fit < m.min_fit:
        return False
    keys = {ev.key for ev in events}
    if any(r.fast_track and r.event_key in keys for r in m.engagement_rules):
        return True
    best = 0.0
    for r in m.engagement_rules:
        if r.event_key in keys and r.points > 0:
            n = sum(1 for ev in events if ev.key == r.event_key)
            best += min(r.points * n, r.cap) if r.cap is not None else r.points * n
    if m.engagement_max is not None:
        best = min(best, m.engagement_max)
    return fit + best >= m.threshold


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
    score: LeadScore,
    held: list[int],
    sums: list[float],
    counted: list[bool],
    version: int,
    at: int,
    dialect: str,
) -> dict[str, Any]:
    return {
        "fit": score.fit,
        "engagement": score.engagement,
        "score": score.score,
        "grade": score.grade,
        "mql": score.mql,
        "fast_track": score.fast_track,
        "rule_sums": _json_param({"v": version, "h": held, "s": sums, "c": counted}, dialect),
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
