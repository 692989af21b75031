"""The scoring query on Apache Spark: a local session or a cluster through Spark Connect.

Spark runs the same compiled model as every other engine (its adapter in dialects.py). Inputs are
either tables Spark already knows (``leads(lead_id, traits JSON text)``,
``events(lead_id, event, ts TIMESTAMP, properties JSON text)``) or the files ``leadscore score``
reads, read and checked exactly as the DuckDB batch reads them and handed to Spark as Arrow.
The scores come back as an Arrow table, so they are written by the same writer as every batch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import warnings
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlglot import exp

from ..errors import LeadscoreError
from ..model import Model, nest
from .compiler import score_sql
from .dialects import AsOf
from .sources import JsonTables

if TYPE_CHECKING:
    import pyarrow as pa

    from ..io import Inputs

__all__ = [
    "EVENTS_VIEW",
    "LEADS_VIEW",
    "SparkUnavailable",
    "inputs_to_spark",
    "java_major",
    "score_on_spark",
    "session",
]

_LOG4J = Path(__file__).with_name("spark-log4j2.properties").as_uri()

LEADS_VIEW = "leadscore_leads"
EVENTS_VIEW = "leadscore_events"


class SparkUnavailable(LeadscoreError):
    """Spark cannot be started or reached: no pyspark, no Java, an unreachable Connect URL."""


def _pyspark() -> Any:
    try:
        import pyspark.sql
    except ImportError:
        raise SparkUnavailable(
            "--engine spark needs PySpark; install it with: pip install 'leadscore[spark]'"
        ) from None
    return pyspark.sql


_JAVA_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')
_LEAST_JAVA = 17  # PySpark 4 (what the spark extra allows) runs on Java 17 and later


def java_major(printed: str) -> int | None:
    """The major version in what ``java -version`` prints ("1.8.0_381" is 8), if it says one."""
    found = _JAVA_VERSION.search(printed)
    if not found:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def _check_java() -> None:
    home = os.environ.get("JAVA_HOME")
    java: str | None
    if home:  # Spark's launcher runs $JAVA_HOME/bin/java whenever JAVA_HOME is set
        java = os.path.join(home, "bin", "java")
        if not os.access(java, os.X_OK):
            raise SparkUnavailable(
                f"JAVA_HOME is {home}, which holds no bin/java, and Spark starts the Java it "
                "names; point JAVA_HOME at a Java 17 or later install (on Debian/Ubuntu, for "
                "example /usr/lib/jvm/java-17-openjdk-amd64) or unset it to use the `java` on PATH"
            )
    else:
        java = shutil.which("java")
    if java is None:
        raise SparkUnavailable(
            "a local Spark session needs Java 17 or later, and none was found (no `java` on "
            "PATH, no JAVA_HOME); install it (Debian/Ubuntu: apt-get install "
            "openjdk-17-jre-headless) or run on a cluster with --spark-remote sc://HOST:15002"
        )
    major = _java_version(java)
    if major is not None and major < _LEAST_JAVA:
        raise SparkUnavailable(
            f"{java} is Java {major}; Spark needs Java 17 or later: install it (Debian/Ubuntu: "
            "apt-get install openjdk-17-jre-headless) and point JAVA_HOME at it, or run on a "
            "cluster with --spark-remote sc://HOST:15002"
        )


def _java_version(java: str) -> int | None:
    """What ``java -version`` says (about 0.1 s), or None where it says nothing readable:
    Spark then finds out for itself, and reports what it finds."""
    try:
        done = subprocess.run(
            [java, "-version"],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return java_major(done.stderr + done.stdout)


def _check_remote(url: str, timeout: float = 5.0) -> None:
    parts = urlsplit(url)
    if parts.scheme != "sc" or not parts.hostname:
        raise SparkUnavailable(
            f"--spark-remote {url!r} is not a Spark Connect URL; write it like sc://HOST:15002"
        )
    port = parts.port or 15002
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except OSError as e:
        raise SparkUnavailable(
            f"cannot reach the Spark Connect server at {parts.hostname}:{port} ({e.strerror or e}); "
            "check that it is running (sbin/start-connect-server.sh) and that the host and port "
            "are right"
        ) from None


def session(remote: str | None = None) -> Any:
    """A Spark session: Spark Connect at ``remote`` (sc://host:port), else a local one.

    The scoring query reads no time zone (instants travel as microseconds), so the session's
    own ``spark.sql.session.timeZone`` is left as the cluster has it; a local session uses UTC.
    """
    with warnings.catch_warnings():  # PySpark warns about the pandas version on import
        warnings.simplefilter("ignore", FutureWarning)
        sql = _pyspark()
    builder = sql.SparkSession.builder
    if remote:
        _check_remote(remote)
        builder = builder.remote(remote)
    else:
        _check_java()
        builder = (
            builder.master(os.environ.get("LEADSCORE_SPARK_MASTER", "local[2]"))
            .appName("leadscore")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "4")
            .config("spark.sql.session.timeZone", "UTC")
        )
        if " " not in _LOG4J:  # Java options are split at spaces
            builder = builder.config(
                "spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={_LOG4J}"
            )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            spark = builder.getOrCreate()
        if not remote:
            spark.sparkContext.setLogLevel("ERROR")
    except Exception as e:  # pyspark's errors differ between classic and Connect sessions
        where = f"the Spark Connect server at {remote}" if remote else "a local Spark session"
        raise SparkUnavailable(f"cannot start {where}: {_first_line(e)}") from None
    return spark


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _select_all(view: str, limit: int | None = None) -> str:
    query = exp.select(exp.Star()).from_(exp.to_identifier(view, quoted=True))
    return (query.limit(limit) if limit is not None else query).sql(dialect="duckdb")


def _leads_arrow(inputs: Inputs) -> pa.Table:
    """Leads as (lead_id, traits JSON text), traits nested as the Python engine reads them."""
    import pyarrow as pa

    from .duckdb import TRAITS_COLUMN

    cur = inputs.con.execute(_select_all(inputs.leads_view))
    cols = [d[0] for d in cur.description or ()]
    ids: list[str] = []
    traits: list[str] = []
    while rows := cur.fetchmany(10_000):
        for row in rows:
            data = dict(zip(cols, row, strict=True))
            ids.append(str(data.pop("lead_id")))
            raw = data.pop(TRAITS_COLUMN, None)
            if raw is not None:  # JSON Lines: the traits as written, then any other columns
                given = json.loads(raw) if isinstance(raw, str) else raw
                if isinstance(given, dict):
                    data = {**given, **{k: v for k, v in data.items() if k not in given}}
            traits.append(json.dumps(nest(data), default=_plain))
    return pa.table(
        {"lead_id": pa.array(ids, pa.string()), "traits": pa.array(traits, pa.string())}
    )


def _events_arrow(inputs: Inputs) -> pa.Table:
    """Events as (lead_id, event, ts_us, properties JSON text): integer microseconds, so no
    time zone (DuckDB's or Spark's session's) can shift an instant on the way."""
    from .duckdb import type_name

    view = inputs.events_view
    assert view is not None
    rel = inputs.con.sql(_select_all(view, limit=0))
    ptype = type_name(dict(zip(rel.columns, rel.types, strict=True))["properties"])
    props: exp.Expr = exp.column("properties")
    if ptype != "varchar":  # JSON text already; JSON as text; a STRUCT or MAP as JSON text
        value = props if ptype == "json" else exp.Anonymous(this="to_json", expressions=[props])
        props = exp.cast(value, "varchar")
    query = exp.select(
        exp.alias_(exp.cast(exp.column("lead_id"), "varchar"), "lead_id"),
        exp.alias_(exp.cast(exp.column("event"), "varchar"), "event"),
        exp.alias_(exp.Anonymous(this="epoch_us", expressions=[exp.column("ts")]), "ts_us"),
        exp.alias_(props, "properties"),
    ).from_(exp.to_identifier(view, quoted=True))
    cur = inputs.con.execute(query.sql(dialect="duckdb"))
    # DuckDB 1.4 renamed fetch_arrow_table (now deprecated) to to_arrow_table
    fetch = getattr(cur, "to_arrow_table", None) or cur.fetch_arrow_table
    table: pa.Table = fetch()
    return table


def inputs_to_spark(spark: Any, inputs: Inputs) -> JsonTables:
    """Hand the files' leads and events to Spark as temporary views; the source to score."""
    spark.createDataFrame(_leads_arrow(inputs)).createOrReplaceTempView(LEADS_VIEW)
    if inputs.events_view is not None:
        spark.createDataFrame(_events_arrow(inputs)).createOrReplaceTempView(EVENTS_VIEW)
    else:
        no_events(spark, ts="ts_us", ts_type="bigint")
    return JsonTables(leads=LEADS_VIEW, events=EVENTS_VIEW, ts_us="ts_us")


def no_events(spark: Any, *, ts: str = "ts", ts_type: str = "timestamp") -> None:
    """An empty events view, for leads scored without events."""

    def null(name: str, type_: str) -> exp.Expr:
        return exp.alias_(exp.cast(exp.Null(), type_), name)

    query = exp.select(
        null("lead_id", "string"),
        null("event", "string"),
        null(ts, ts_type),
        null("properties", "string"),
    ).where(exp.false())
    spark.sql(query.sql(dialect="spark")).createOrReplaceTempView(EVENTS_VIEW)


def count(spark: Any, table: exp.Expr) -> int:
    """Rows in a table, for the run's summary."""
    query = exp.select(exp.Count(this=exp.Star())).from_(table.copy()).sql(dialect="spark")
    try:
        return int(spark.sql(query).collect()[0][0])
    except Exception as e:
        raise SparkUnavailable(f"Spark cannot read the table: {_first_line(e)}") from None


def score_on_spark(
    spark: Any, model: Model, source: JsonTables, as_of: datetime | AsOf
) -> pa.Table:
    """Run the model on Spark; the records (the batch's columns) as an Arrow table."""
    query = score_sql(model, source, as_of, "spark")
    try:
        df = spark.sql(query)
        return df.toArrow()
    except Exception as e:  # an AnalysisException names the missing table or column
        raise SparkUnavailable(f"Spark could not run the scoring query: {_first_line(e)}") from None
