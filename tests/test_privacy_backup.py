"""`leadscore backup` / `leadscore restore` on SQLite: a backup taken while a real `serve`
takes a load holds every event acknowledged before it began; a restore checks its file and
never replaces a database in use."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import threading
from pathlib import Path

import httpx
import sqlalchemy as sa

from leadscore.store import open_engine
from leadscore.store import schema as t
from tests.service_helpers import LEADSCORE, MODEL, Server, ago, cli, mid


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LEADSCORE, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )


def _message_ids(db_url: str) -> set[str]:
    engine = open_engine(db_url)
    try:
        with engine.connect() as conn:
            return set(conn.execute(sa.select(t.events.c.message_id)).scalars())
    finally:
        engine.dispose()


def test_a_backup_under_load_restores_every_acknowledged_event(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'leadscore.db'}"
    model = tmp_path / "leadscore.yaml"
    model.write_text(MODEL)
    server = Server(db_url, model, tmp_path / "server.log").start()
    key = cli("keys", "create", "--name", "load", "--database-url", db_url).strip()
    auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    going = threading.Event()
    failures: list[str] = []

    def load() -> None:
        n = 0
        with httpx.Client(base_url=server.base, headers=auth, timeout=30) as client:
            while not stop.is_set():
                msgs = [
                    {
                        "type": "page",
                        "userId": f"lead-{(n + i) % 40}",
                        "messageId": mid(),
                        "timestamp": ago(0.5),
                        "properties": {"path": "/pricing"},
                    }
                    for i in range(25)
                ]
                n += 1
                resp = client.post("/v1/batch", content=json.dumps({"batch": msgs}))
                if resp.status_code != 200:
                    failures.append(resp.text)
                    return
                with lock:
                    acked.extend(m["messageId"] for m in msgs)
                if n >= 20:
                    going.set()

    loader = threading.Thread(target=load)
    loader.start()
    backup = tmp_path / "backups" / "leadscore-backup.db"
    backup.parent.mkdir()
    try:
        assert going.wait(120), "the load did not get going"
        with lock:
            before = list(acked)
        out = _run("backup", str(backup), "--database-url", db_url)
        assert out.returncode == 0, out.stderr
        assert "Backed up to" in out.stderr
        with lock:
            during = len(acked) - len(before)
        # the database is in use: it cannot be replaced, even with --force
        busy = _run("restore", str(backup), "--force", "--database-url", db_url)
        assert busy.returncode == 1 and "is in use" in busy.stderr, busy.stderr
        # and without it, the answer is the same: --force would not help
        busy = _run("restore", str(backup), "--database-url", db_url)
        assert busy.returncode == 1 and "is in use" in busy.stderr, busy.stderr
        assert "--force" not in busy.stderr
    finally:
        stop.set()
        loader.join(60)
        server.stop()
    assert not failures, failures[:1]
    assert during > 0, "the load went on while the backup ran"
    assert not (backup.parent / (backup.name + ".partial")).exists()

    restored = f"sqlite:///{tmp_path / 'restored.db'}"
    out = _run("restore", str(backup), "--database-url", restored)
    assert out.returncode == 0, out.stderr
    stored = _message_ids(restored)
    missing = [m for m in before if m not in stored]
    assert missing == [], f"{len(missing)} events acknowledged before the backup are missing"
    # nothing but what was sent (every batch sent was acknowledged in the end)
    assert stored <= set(acked)
    engine = open_engine(restored)
    try:
        with engine.connect() as conn:
            leads = conn.execute(sa.select(sa.func.count()).select_from(t.leads)).scalar_one()
        assert leads == 40
    finally:
        engine.dispose()

    # an existing database is replaced only with --force, once nobody has it open
    refused = _run("restore", str(backup), "--database-url", db_url)
    assert refused.returncode == 1 and "pass --force" in refused.stderr, refused.stderr
    out = _run("restore", str(backup), "--force", "--database-url", db_url)
    assert out.returncode == 0, out.stderr
    assert _message_ids(db_url) == stored


def test_restore_checks_the_file_first(tmp_path: Path) -> None:
    target = f"sqlite:///{tmp_path / 'target.db'}"
    text = tmp_path / "notes.txt"
    text.write_text("not a database")
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE x (a)").connection.commit()
    db = tmp_path / "leadscore.db"
    open_engine(f"sqlite:///{db}").dispose()
    future = tmp_path / "future.db"
    cli("backup", str(future), "--database-url", f"sqlite:///{db}")
    with sqlite3.connect(future) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    for file, says in (
        (tmp_path / "missing.db", "no such file"),
        (text, "not a SQLite database"),
        (other, "not leadscore's"),
        (future, "migration '9999', which this version does not know"),
    ):
        out = _run("restore", str(file), "--database-url", target)
        assert out.returncode == 1, out.stderr
        assert out.stderr.startswith("Error: ") and says in out.stderr, out.stderr
    assert not (tmp_path / "target.db").exists()
    # a backup is never written over an existing file without --force
    out = _run("backup", str(future), "--database-url", f"sqlite:///{db}")
    assert out.returncode == 1 and "already exists" in out.stderr


def test_postgresql_is_pointed_to_pg_dump() -> None:
    out = _run("backup", "x.dump", "--database-url", "postgresql://u@127.0.0.1:1/db")
    assert out.returncode == 1
    assert "pg_dump" in out.stderr and "docs/operations.md" in out.stderr
    # restore too, before it looks at the file (a pg_dump file is not one it could read)
    out = _run("restore", "x.dump", "--database-url", "postgresql://u@127.0.0.1:1/db")
    assert out.returncode == 1
    assert "pg_restore" in out.stderr and "docs/operations.md" in out.stderr, out.stderr


def test_a_backup_to_a_place_it_cannot_write_is_an_error_not_a_bug(tmp_path: Path) -> None:
    db = tmp_path / "leadscore.db"
    open_engine(f"sqlite:///{db}").dispose()
    for dest, force, says in (
        (tmp_path / "no" / "such" / "dir.db", False, "there is no directory"),
        (tmp_path, True, "is a directory"),
    ):
        args = ["backup", str(dest), "--database-url", f"sqlite:///{db}"]
        out = _run(*args, *(["--force"] if force else []))
        assert out.returncode == 1, out.stderr
        assert out.stderr.startswith("Error: ") and says in out.stderr, out.stderr
        assert "Traceback" not in out.stderr and "bug" not in out.stderr
    assert not (tmp_path.parent / (tmp_path.name + ".partial")).exists()
    assert not (tmp_path / "no").exists()
