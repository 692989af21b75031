"""``leadscore score --engine spark``: the same records as DuckDB, from files or Spark tables,
and a clear message when Spark cannot start or be reached."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from leadscore.batch import run_engine
from leadscore.demo import generate
from leadscore.model import parse_model
from leadscore.sql import JsonTables, score_sql

from .parity_strategies import AS_OF
from .test_cli import ls
from .test_parity import assert_same, load_spark, python_scores, sql_rows
from .test_sql_strings import NASTY, nasty_data, nasty_model

AT = "2026-06-01T00:00:00Z"


@pytest.fixture(scope="module")
def spark():
    from leadscore.sql.spark import session

    s = session()
    s.conf.set("spark.sql.session.timeZone", "America/New_York")
    return s


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("spark")
    ls("init", cwd=d)
    generate(d, 150, seed=11)
    return d


def test_cli_spark_writes_the_records_duckdb_writes(project):
    """A local session, CSV out (Spark Connect below writes JSON Lines)."""
    args = ["score", "--leads", "leads.csv", "--events", "events.parquet", "--as-of", AT]
    ls(*args, "-f", "csv", "-o", "duck.csv", cwd=project)
    proc = ls(*args, "--engine", "spark", "-f", "csv", "-o", "spark.csv", cwd=project)
    assert "Scored 150 leads" in proc.stderr
    duck = (project / "duck.csv").read_bytes()
    assert duck.startswith(b"lead_id,fit,engagement,score,grade,mql,fast_track,reasons")
    assert (project / "spark.csv").read_bytes() == duck


def test_spark_tables_by_name(spark):
    """--leads-table/--events-table: tables Spark already has, with a TIMESTAMP event time."""
    model = parse_model(nasty_model(), "quoting.yaml")
    data = nasty_data()
    load_spark(spark, data)
    spark.sql("CREATE OR REPLACE TEMP VIEW crm_leads AS SELECT * FROM leads")
    spark.sql("CREATE OR REPLACE TEMP VIEW crm_events AS SELECT * FROM events")
    batch = run_engine(
        "spark", model, None, None, AS_OF, leads_table="crm_leads", events_table="crm_events"
    )
    assert batch.inputs.events == sum(len(evs) for _, _, evs in data)
    rows = batch.con.execute(
        "SELECT lead_id, fit, engagement, score, grade, mql, fast_track, reasons "
        "FROM leadscore_spark_scores"
    )
    got = {r[0]: r for r in rows.fetchall()}
    expected = python_scores(model, data)
    assert got.keys() == expected.keys()
    for lead_id, e in expected.items():
        g = got[lead_id]
        assert abs(g[3] - e["score"]) <= 0.005 + 1e-9, lead_id
        assert g[5] == e["mql"] and [r["rule"] for r in g[7]] == [r for r, _ in e["reasons"]]
    assert got["L-none"][7] == []


def test_spark_keeps_every_string(spark):
    model = parse_model(nasty_model(), "quoting.yaml")
    data = nasty_data()
    load_spark(spark, data)
    df = spark.sql(score_sql(model, JsonTables(ts="ts"), AS_OF, "spark", detail=True))
    got = sql_rows([r.asDict(recursive=True) for r in df.collect()], None)
    assert_same(python_scores(model, data), got, "spark")
    assert {r for lead in got.values() for r, _ in lead["reasons"]} >= set(NASTY)


def test_spark_as_of_now_keeps_decaying(spark):
    """The default of `leadscore sql`: Spark's current time, to the microsecond of the query."""
    from leadscore.sql import AsOf

    model = parse_model(nasty_model(), "quoting.yaml")
    now = datetime.now(UTC)
    data = [
        (i, t, [(n, now - (AS_OF - ts) - timedelta(seconds=2), p) for n, ts, p in evs])
        for i, t, evs in nasty_data()
    ]
    load_spark(spark, data)
    before = datetime.now(UTC)
    df = spark.sql(score_sql(model, JsonTables(ts="ts"), AsOf.now(), "spark", detail=True))
    got = sql_rows([r.asDict(recursive=True) for r in df.collect()], None)
    expected = python_scores(model, data, before)
    for lead_id, e in expected.items():
        assert abs(got[lead_id]["score"] - e["score"]) < 0.01, lead_id


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_spark_connect_is_a_clear_error(project):
    port = _free_port()
    proc = ls(
        "score",
        "--leads",
        "leads.csv",
        "--engine",
        "spark",
        "--spark-remote",
        f"sc://127.0.0.1:{port}",
        cwd=project,
        ok=False,
    )
    assert proc.returncode == 1
    assert f"Error: cannot reach the Spark Connect server at 127.0.0.1:{port}" in proc.stderr
    bad = ls(
        "score",
        "--leads",
        "leads.csv",
        "--engine",
        "spark",
        "--spark-remote",
        "http://x",
        cwd=project,
        ok=False,
    )
    assert "is not a Spark Connect URL; write it like sc://HOST:15002" in bad.stderr


def _score_on_local_spark(project: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`leadscore score --engine spark` in its own process with ``env``; it must fail cleanly."""
    proc = subprocess.run(
        [sys.executable, "-m", "leadscore", "score", "--leads", "leads.csv", "--engine", "spark"],
        capture_output=True,
        text=True,
        cwd=project,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_missing_java_is_a_clear_error(project, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(Path(sys.executable).parent)  # python, no java
    proc = _score_on_local_spark(project, env)
    assert "Error: a local Spark session needs Java 17 or later" in proc.stderr
    assert "apt-get install openjdk-17-jre-headless" in proc.stderr


def test_java_home_that_holds_no_java_is_named(project, tmp_path):
    """Spark starts the JAVA_HOME it is given even when `java` is on PATH: say that one is wrong."""
    proc = _score_on_local_spark(project, dict(os.environ, JAVA_HOME=str(tmp_path / "no-jdk")))
    assert f"Error: JAVA_HOME is {tmp_path / 'no-jdk'}, which holds no bin/java" in proc.stderr
    assert "spark-class" not in proc.stderr  # stopped before Spark's own launcher ran


@pytest.mark.parametrize(
    ("printed", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_381"\nJava(TM) SE Runtime Environment', 8),
        ('openjdk version "11.0.2" 2019-01-15', 11),
        ('Picked up JAVA_TOOL_OPTIONS: -Xmx1g\nopenjdk version "25.0.3" 2026-04-21 LTS', 25),
        ("something else entirely", None),
    ],
)
def test_java_major_version_from_what_java_version_prints(printed, major):
    from leadscore.sql.spark import java_major

    assert java_major(printed) == major


def test_a_java_older_than_17_is_named_with_its_version(project, tmp_path):
    """PySpark 4 runs on Java 17 or later; an older one fails deep in the JVM's start."""
    home = tmp_path / "jdk-11"
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"  # prints what Java 11 prints for -version, as Java does: stderr
    java.write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    java.chmod(0o755)
    proc = _score_on_local_spark(project, dict(os.environ, JAVA_HOME=str(home)))
    assert f"Error: {java} is Java 11; Spark needs Java 17 or later" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--leads-table", "crm.leads"], "name Spark tables: add --engine spark"),
        (["--engine", "spark", "--leads-table", "t", "--leads", "leads.csv"], "not both"),
        (["--engine", "spark", "--events-table", "t"], "--events-table needs --leads-table"),
        (["--spark-remote", "sc://h:1", "--leads", "leads.csv"], "is for --engine spark"),
        (["--engine", "flink", "--leads", "leads.csv"], "--engine 'flink' is not one of"),
    ],
)
def test_engine_options_that_cannot_work_together(project, args, message):
    proc = ls("score", *args, cwd=project, ok=False)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def connect_server(tmp_path_factory: pytest.TempPathFactory):
    """A real Spark Connect server (spark-submit of PySpark's SparkConnectServer) on a free port."""
    import time

    import pyspark

    port = _free_port()
    log = tmp_path_factory.mktemp("connect") / "server.log"
    submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                str(submit),
                "--class",
                "org.apache.spark.sql.connect.service.SparkConnectServer",
                "--master",
                "local[2]",
                "--conf",
                f"spark.connect.grpc.binding.port={port}",
                "--conf",
                "spark.ui.enabled=false",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        for _ in range(240):  # ready when it listens; the JVM takes a while to start
            if proc.poll() is not None:
                pytest.fail(f"the Spark Connect server exited: {log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"the Spark Connect server did not listen: {log.read_text()[-2000:]}")
        yield f"sc://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_cli_spark_connect_writes_the_records_duckdb_writes(project, connect_server):
    args = ["score", "--leads", "leads.csv", "--events", "events.parquet", "--as-of", AT]
    ls(*args, "-o", "duck-connect.jsonl", cwd=project)
    proc = ls(
        *args, "--engine", "spark", "--spark-remote", connect_server, "-o", "sc.jsonl", cwd=project
    )
    assert "Scored 150 leads" in proc.stderr
    duck = (project / "duck-connect.jsonl").read_bytes()
    assert duck and (project / "sc.jsonl").read_bytes() == duck
    first = json.loads(duck.splitlines()[0])
    assert list(first) == [
        *("lead_id", "fit", "engagement", "score", "grade", "mql", "fast_track", "reasons")
    ]


def test_spark_as_of_parameter(spark):
    """`leadscore sql --dialect spark --as-of param`: bound with spark.sql(query, args=…)."""
    from leadscore.sql import AsOf

    model = parse_model(nasty_model(), "quoting.yaml")
    data = nasty_data()
    load_spark(spark, data)
    query = score_sql(model, JsonTables(ts="ts"), AsOf.parameter(), "spark", detail=True)
    at = AS_OF + timedelta(days=3, microseconds=5)
    df = spark.sql(query, args={"as_of": at})
    got = sql_rows([r.asDict(recursive=True) for r in df.collect()], None)
    assert_same(python_scores(model, data, at), got, "spark, as_of param")


def test_spark_without_events_scores_fit_alone(project, spark, tmp_path):
    """Leads and no events, from a file and from a table: fit alone, as DuckDB scores it."""
    from leadscore.model import load_model

    model = load_model(project / "leadscore.yaml")
    when = datetime(2026, 6, 1, tzinfo=UTC)
    texts = []
    for engine in ("duckdb", "spark"):
        out = tmp_path / f"{engine}.jsonl"
        run_engine(engine, model, project / "leads.csv", None, when).write("jsonl", None, out)
        texts.append(out.read_bytes())
    assert texts[0] and texts[0] == texts[1]
    data = nasty_data()
    load_spark(spark, data)
    spark.sql("CREATE OR REPLACE TEMP VIEW crm_leads_only AS SELECT * FROM leads")
    quoting = parse_model(nasty_model(), "quoting.yaml")
    batch = run_engine("spark", quoting, None, None, AS_OF, leads_table="crm_leads_only")
    got = dict(
        batch.con.execute("SELECT lead_id, engagement FROM leadscore_spark_scores").fetchall()
    )
    assert got.keys() == {i for i, _, _ in data} and set(got.values()) == {0.0}
