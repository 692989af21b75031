"""`leadscore import` re-scores the leads whose traits it changes with the active model, as of
the import, exactly as a fresh re-score would; a lead that crosses the threshold becomes an
MQL, is routed, and is notified only with ``notify`` (``--notify``). On SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from leadscore.service.common import json_param, loads
from leadscore.service.events import events_of
from leadscore.store import schema as t
from tests.cli_helpers import ls
from tests.handoff_service_helpers import HandoffApi, handoff_api, iso
from tests.service_helpers import Api, ago, api_on, identify, page, track


def write(tmp: Path, name: str, text: str) -> Path:
    p = tmp / name
    p.write_text(text, encoding="utf-8")
    return p


def fresh_rescore(api: Any, lead: str, at: int) -> tuple[list[int], list[float], list[bool]]:
    """The active model's parts of the lead's stored traits and events at ``at``, from
    nothing (``Scorer.parts``)."""
    active = api.service.active
    with api.engine.connect() as conn:
        traits = loads(
            conn.execute(sa.select(t.leads.c.traits).where(t.leads.c.lead_id == lead)).scalar_one()
        )
        events = events_of(conn, None, lead, at)
    return active.scorer.parts(traits or {}, events, at)


def test_an_import_rescores_the_leads_whose_traits_it_changes(api: Api, tmp_path: Path) -> None:
    api.ok(
        identify("grows", {"title": "Head of Growth"}),
        identify("same", {"title": "Head of Growth"}),
        identify("gmail", {"title": "VP Sales"}),
        page("grows", "/pricing", timestamp=ago(9)),
        page("grows", "/", timestamp=ago(2)),
        track("same", "Webinar Attended", timestamp=ago(2)),
        page("same", "/pricing", timestamp=ago(1)),
        page("gmail", "/", timestamp=ago(20)),
    )
    before = {x: api.row(x) for x in ("grows", "same", "gmail")}
    api.clock.advance(days=3)  # the scores decay meanwhile: the import scores as of its time
    leads = write(
        tmp_path,
        "leads.csv",
        "lead_id,title,company.employees,email\n"
        "grows,Head of Growth,300,\n"
        "gmail,VP Sales,,vp@gmail.com\n"
        "new,Head of Growth,300,\n",
    )
    at_start = api.service.now_us()
    r = api.service.import_history(leads=leads, stages=None)
    at_end = api.service.now_us()
    assert api.service.active is not None
    assert (r.model_version, r.leads_rescored, r.new_mqls) == (api.service.active.version, 2, 0)
    assert (r.leads_added, r.leads_updated) == (1, 2)
    scorer = api.service.active.scorer
    for lead in ("grows", "gmail"):
        row = api.row(lead)
        assert at_start <= row.scored_at_us <= at_end
        held, sums, counted = fresh_rescore(api, lead, row.scored_at_us)
        parts = loads(row.rule_sums)
        # to the last bit: the same engine on the same events at the same instant
        assert (parts["h"], parts["s"], parts["c"]) == (held, sums, counted)
        fresh = scorer.finish(held, sums, counted)
        assert (row.fit, row.engagement, row.score, row.grade, bool(row.mql)) == (
            fresh.fit,
            fresh.engagement,
            fresh.score,
            fresh.grade,
            fresh.mql,
        )
        # the Python engine scoring from nothing agrees too (to rounding)
        assert abs(row.score - api.reference(lead).score) < 1e-9
        assert row.model_version == api.service.active.version
    assert api.row("grows").fit == 35 and before["grows"].fit == 20
    assert api.row("gmail").fit == 0 and before["gmail"].fit == 20
    # shown with the reasons of its new fit, not as a score left over from the old traits
    shown = api.lead("grows")
    assert shown["fit"] == 35
    assert any("Company size" in str(x) for x in shown["reasons"])
    # unchanged traits: its stored parts are kept as they were
    assert api.row("same").rule_sums == before["same"].rule_sums
    assert api.row("same").scored_at_us == before["same"].scored_at_us
    # a new lead with no events stays unscored until its first event, as before
    assert api.row("new").rule_sums is None


def test_a_new_lead_with_events_is_scored_by_the_import(api: Api, tmp_path: Path) -> None:
    """Events stored for a lead id no lead row has yet (anonymous events linked to it, say):
    the import that creates the lead scores them."""
    api.ok(track("other", "Webinar Attended", timestamp=ago(1)))
    with api.engine.begin() as conn:
        conn.execute(
            sa.update(t.events).where(t.events.c.lead_id == "other").values(lead_id="ghost")
        )
    leads = write(tmp_path, "leads.csv", "lead_id,title\nghost,Head of Growth\n")
    r = api.service.import_history(leads=leads, stages=None)
    assert (r.leads_added, r.leads_rescored) == (1, 1)
    row = api.row("ghost")
    assert (row.fit, row.engagement) == (20, api.reference("ghost").engagement)
    assert loads(row.rule_sums)["h"] == [0]


def test_without_a_model_an_import_drops_the_parts_of_the_leads_it_changes(
    service_db_url: str, tmp_path: Path
) -> None:
    with api_on(service_db_url, model="") as api:
        with api.engine.begin() as conn:
            dialect = conn.dialect.name
            conn.execute(  # a lead scored by a model no longer active
                sa.insert(t.leads).values(
                    lead_id="x",
                    traits=json_param({}, dialect),
                    rule_sums=json_param({"v": 1, "h": [], "s": [], "c": []}, dialect),
                    scored_at_us=1,
                    created_at_us=1,
                    updated_at_us=1,
                )
            )
        r = api.service.import_history(
            leads=write(tmp_path, "leads.csv", "lead_id,title\nx,VP\n"), stages=None
        )
        assert (r.model_version, r.leads_rescored, r.leads_updated) == (None, 0, 1)
        assert api.row("x").rule_sums is None


# ---------------------------------------------------------------------- crossing the threshold


def _near_mql(api: HandoffApi) -> None:
    """A lead 15 points short of the threshold (fit 20, engagement 22): a company of 2,000 in
    its traits makes it an MQL."""
    now = iso(api.clock.now())
    api.send(
        identify("near", {"title": "VP Sales", "email": "near@near.example", "country": "US"}),
        page("near", "/pricing", timestamp=now),
        page("near", "/pricing", timestamp=now),
    )
    assert api.lead("near")["stage"] == "lead"


LEADS_GROWN = "lead_id,company.employees\nnear,2000\n"


@pytest.mark.parametrize("notify", [False, True], ids=["quiet", "notify"])
def test_a_lead_the_import_rescores_past_the_threshold_becomes_an_mql(
    service_db_url: str, tmp_path: Path, notify: bool
) -> None:
    with handoff_api(service_db_url) as api:
        _near_mql(api)
        api.clock.advance(minutes=5)
        r = api.service.import_history(
            leads=write(tmp_path, "leads.csv", LEADS_GROWN), stages=None, notify=notify
        )
        assert (r.leads_rescored, r.new_mqls, r.notified) == (1, 1, notify)
        lead = api.lead("near")
        assert lead["stage"] == "mql" and lead["mql"] is True
        assert lead["mql_at"] == iso(api.clock.now())  # the instant of the import
        assert lead["owner"] in ("ann@acme.io", "raj@acme.io")  # routed: enterprise, US
        history = api.rows(t.stage_history, t.stage_history.c.lead_id == "near")
        assert [(h.stage, h.by) for h in history] == [("mql", "model")]
        (episode,) = api.rows(t.mql_episodes, t.mql_episodes.c.lead_id == "near")
        assert (episode.track, episode.owner, episode.mql_at_us) == (
            "threshold",
            lead["owner"],
            api.clock.us,
        )
        assert api.count(t.assignments, t.assignments.c.lead_id == "near") == 1
        if notify:  # as a live MQL: both notifications and the SLA clock
            assert [n["lead_id"] for n in api.outbox("lead.mql")] == ["near"]
            assert [n["owner"] for n in api.outbox("lead.assigned")] == [lead["owner"]]
            assert episode.sla_due_at_us is not None
        else:  # nothing sent, and no deadline that would breach and notify later
            assert api.count(t.outbox) == 0
            assert (episode.sla_name, episode.sla_due_at_us) == (None, None)
        # importing the same file again changes nothing: no second MQL
        again = api.service.import_history(
            leads=write(tmp_path, "leads.csv", LEADS_GROWN), stages=None, notify=notify
        )
        assert (again.leads_unchanged, again.leads_rescored, again.new_mqls) == (1, 0, 0)


@pytest.mark.parametrize("notify", [False, True], ids=["quiet", "notify"])
def test_a_lead_with_an_owner_in_the_file_keeps_it_when_it_becomes_an_mql(
    service_db_url: str, tmp_path: Path, notify: bool
) -> None:
    """The CRM says who owns the lead: the import's MQL is not routed away from them."""
    with handoff_api(service_db_url) as api:
        _near_mql(api)
        leads = "lead_id,company.employees,owner,team\nnear,2000,Lee@Acme.io,smb\n"
        r = api.service.import_history(
            leads=write(tmp_path, "leads.csv", leads), stages=None, notify=notify
        )
        assert r.new_mqls == 1
        lead = api.lead("near")
        assert (lead["stage"], lead["owner"], lead["team"]) == ("mql", "lee@acme.io", "smb")
        (episode,) = api.rows(t.mql_episodes, t.mql_episodes.c.lead_id == "near")
        assert (episode.owner, episode.team, episode.assigned_at_us) == ("lee@acme.io", "smb", None)
        assert api.count(t.assignments) == 0  # nobody was assigned: the lead was owned
        assert api.outbox("lead.assigned") == []
        if notify:
            (note,) = api.outbox("lead.mql")
            assert (note["owner"], note["team"]) == ("lee@acme.io", "smb")
            assert episode.sla_name == "Other MQLs within a business day"
        else:
            assert api.count(t.outbox) == 0 and episode.sla_due_at_us is None


def test_a_lead_already_past_mql_in_its_history_is_rescored_but_not_qualified_again(
    service_db_url: str, tmp_path: Path
) -> None:
    """Leads worked in the old CRM (their history has an MQL) keep their stage and episodes."""
    with handoff_api(service_db_url) as api:
        _near_mql(api)
        stages = write(tmp_path, "stages.csv", "lead_id,stage,at\nnear,mql,2026-05-01\n")
        r = api.service.import_history(
            leads=write(tmp_path, "leads.csv", LEADS_GROWN), stages=stages
        )
        assert (r.leads_rescored, r.new_mqls) == (1, 0)
        assert api.lead("near")["stage"] == "mql"
        (episode,) = api.rows(t.mql_episodes, t.mql_episodes.c.lead_id == "near")
        assert episode.track == "import"
        assert api.count(t.assignments) == 0 and api.count(t.outbox) == 0


def test_the_command_says_how_many_leads_were_rescored(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    with api_on(url) as api:
        api.ok(
            identify("near", {"title": "VP Sales"}),
            page("near", "/pricing"),
            page("near", "/pricing"),
            identify("far", {"title": "VP Sales"}),
        )
    leads = write(tmp_path, "leads.csv", "lead_id,company.employees\nnear,2000\nfar,2000\n")
    proc = ls("import", "--leads", str(leads), "--database", url)
    said = " ".join(proc.stderr.split())
    assert "Re-scored 2 leads with model v1; 1 became an MQL (not notified: --notify" in said
    again = write(tmp_path, "again.csv", "lead_id,company.employees\nfar,3000\n")
    said = " ".join(ls("import", "--leads", str(again), "--database", url).stderr.split())
    assert "Re-scored 1 lead with model v1; 0 became MQLs." in said
    with api_on(url, model="") as api:
        assert api.row("near").stage == "mql" and api.row("far").stage == "lead"


def test_a_company_column_merges_into_the_stored_company_as_an_identify_does(
    api: Api, tmp_path: Path
) -> None:
    """``company.name`` in the file sets the company's name and keeps its other fields (its size
    here), as an identify with ``{"company": {"name": ...}}`` does: the re-score's fit is the
    one the live service would give the lead."""
    api.ok(
        identify("acme", {"title": "VP Sales", "company": {"employees": 300, "name": "Acme"}}),
        page("acme", "/pricing", timestamp=ago(1)),
        identify("live", {"title": "VP Sales", "company": {"employees": 300, "name": "Acme"}}),
        page("live", "/pricing", timestamp=ago(1)),
    )
    leads = write(tmp_path, "leads.csv", "lead_id,company.name\nacme,Acme Inc\n")
    r = api.service.import_history(leads=leads, stages=None)
    assert r.leads_rescored == 1
    api.ok(identify("live", {"company": {"name": "Acme Inc"}}))
    imported, live = api.row("acme"), api.row("live")
    assert loads(imported.traits) == loads(live.traits)
    assert loads(imported.traits)["company"] == {"employees": 300, "name": "Acme Inc"}
    assert imported.fit == live.fit == 35


def test_a_large_import_binds_few_values_per_statement_on_sqlite(tmp_path: Path) -> None:
    """SQLite before 3.32 binds at most 999 values in a statement: an import re-scoring (and
    routing) more leads than that at once reads their events and their companies' owners
    within it. The limit is set on this SQLite to what those versions have."""
    import sqlite3

    n = 1200
    with handoff_api(f"sqlite:///{tmp_path / 'limit.db'}") as api:
        now = api.clock.us
        with api.engine.begin() as conn:  # leads 15 points short of the threshold
            conn.execute(
                sa.insert(t.leads),
                [
                    {
                        "lead_id": f"l{i}",
                        "traits": json_param(
                            {"title": "VP Sales", "email": f"a@d{i}.example", "country": "US"},
                            "sqlite",
                        ),
                        "email_domain": f"d{i}.example",
                        "created_at_us": now,
                        "updated_at_us": now,
                    }
                    for i in range(n)
                ],
            )
            conn.execute(
                sa.insert(t.events),
                [
                    {
                        "message_id": f"m{i}-{k}",
                        "type": "page",
                        "lead_id": f"l{i}",
                        "event": "page",
                        "ts_us": now,
                        "received_at_us": now,
                        "properties": json_param({"path": "/pricing"}, "sqlite"),
                        "message": json_param({}, "sqlite"),
                    }
                    for i in range(n)
                    for k in range(2)
                ],
            )
        api.engine.dispose()
        sa.event.listen(
            api.engine,
            "connect",
            lambda c, _: c.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999),
        )
        lines = "lead_id,company.employees\n" + "".join(f"l{i},2000\n" for i in range(n))
        r = api.service.import_history(leads=write(tmp_path, "leads.csv", lines), stages=None)
        assert (r.leads_rescored, r.new_mqls) == (n, n)
        assert api.count(t.assignments) == n
        assert api.lead("l7")["stage"] == "mql"


def test_each_batch_reads_its_companies_owners_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An import of many batches routes each batch's new MQLs with its companies' account
    owners read in one statement, as the first batch does, not one look-up per lead."""
    from leadscore.service import imports

    monkeypatch.setattr(imports, "BATCH", 3)
    n = 9
    with handoff_api(f"sqlite:///{tmp_path / 'accounts.db'}") as api:
        now = iso(api.clock.now())
        for i in range(n):
            api.send(
                identify(f"l{i}", {"title": "VP Sales", "email": f"a@d{i}.example"}),
                page(f"l{i}", "/pricing", timestamp=now),
                page(f"l{i}", "/pricing", timestamp=now),
            )
        api.engine.dispose()
        seen: list[str] = []
        sa.event.listen(api.engine, "connect", lambda c, _: c.set_trace_callback(seen.append))
        lines = "lead_id,company.employees\n" + "".join(f"l{i},2000\n" for i in range(n))
        r = api.service.import_history(leads=write(tmp_path, "leads.csv", lines), stages=None)
        assert r.new_mqls == n
        lookups = [s for s in seen if "email_domain IN" in s or "email_domain =" in s]
        assert len(lookups) == n // 3  # one per batch
