"""The batch benchmark: ``leadscore score`` against a hand-written DuckDB query, DuckDB's floor
and a pandas implementation.

    python bench/batch.py [--leads 1000000] [--events-per-lead 20] [--dir /tmp/leadscore-bench]
                          [--repeat 3] [--formats csv,jsonl] [--no-pandas] [--no-engine]
                          [--naive-timestamps] [--pandas-leads N] [--baseline CHECKOUT]
                          [--no-plan-cache]

1. Generates the seeded demo data set as Parquet with leadscore.demo (about 20 events per lead,
   event times as TIMESTAMP WITH TIME ZONE unless ``--naive-timestamps``), or reuses it when
   ``--dir`` already holds one made with the same parameters and generator.
2. Times, for each output format (CSV and JSON Lines), each program a separate process,
   interleaved (A, H, B for CSV, A, H, B for JSON Lines, C, then again) so that noise on a
   shared machine falls on all of them alike:
     A  ``leadscore score <starter model> … --format csv|jsonl --output …`` end to end;
     H  the anchor: the starter model as one DuckDB query written by hand (bench/handwritten.py),
        the same records written by DuckDB;
     B  the floor: DuckDB alone reading every event and writing one aggregate row per lead;
     C  the same model in plain pandas (bench/pandas_model.py), JSON Lines;
     A0 with ``--baseline CHECKOUT``: ``leadscore score`` of another checkout (a worktree of
        main), right before A, so that a change is measured against what it changes.
   A (and A0) find the compiled query in a plan cache of their own, filled by one untimed run,
   as every run of a nightly job after its first does (``--no-plan-cache``: compiled every run).
   Wall and CPU time per run, and the peak resident memory of each child on its own
   (``os.wait4``).
3. Checks that the anchor writes the same records as leadscore (byte for byte, or numbers at
   most a last-digit rounding apart) and that pandas and leadscore agree on a seeded sample of
   leads (scores to 1e-6, every decision exactly); stops with an error when they do not.
4. Times the pure Python engine, ``Scorer.score``, on one lead with 100 and 1,000 events.
5. Prints a table and writes everything to ``<dir>/results.json``.

docs/benchmarks.md explains what is measured, why, and the figures of a full run.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import hashlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
import timeit
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

HERE = Path(__file__).resolve().parent
# this checkout's leadscore, the one the timed programs run (not another installed copy)
sys.path.insert(0, str(HERE.parent))

import leadscore  # noqa: E402
import leadscore.demo  # noqa: E402
from leadscore.demo import generate  # noqa: E402
from leadscore.engine import Event, Scorer  # noqa: E402
from leadscore.model import load_model  # noqa: E402

AS_OF = "2026-06-01"
TARGET_A_OVER_H = 1.3  # leadscore at most 1.3x the hand-written query (bench/handwritten.py)
TARGET_A_OVER_B = 4.0  # and so about 4x the bare DuckDB scan
TARGET_C_OVER_A = 10.0  # pandas at least 10x slower than leadscore, per lead
TARGET_A_RSS_GB = 2.0
KEYS = ["lead_id", "fit", "engagement", "score", "grade", "mql", "fast_track", "reasons"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ data


def _generator_digest() -> str:
    """Data made by another version of the generator is not reused."""
    return hashlib.sha256(Path(leadscore.demo.__file__).read_bytes()).hexdigest()[:16]


def ensure_data(
    d: Path, n_leads: int, per_lead: float, seed: int, timestamptz: bool = True
) -> dict[str, Any]:
    """The leads and events files in ``d``: reused when made with the same parameters."""
    manifest = d / "dataset.json"
    want = {
        "leads": n_leads,
        "events_per_lead": per_lead,
        "seed": seed,
        "timestamptz": timestamptz,
        "generator": _generator_digest(),
    }
    leads, events = d / "leads.parquet", d / "events.parquet"
    if manifest.exists() and leads.exists() and events.exists():
        have: dict[str, Any] = json.loads(manifest.read_text())
        if {k: have.get(k) for k in want} == want:
            log(f"Reusing the data set in {d} ({have['n_events']:,} events).")
            return have
    d.mkdir(parents=True, exist_ok=True)
    manifest.unlink(missing_ok=True)  # an interrupted run must not leave a valid-looking cache
    log(f"Generating {n_leads:,} leads and about {int(n_leads * per_lead):,} events in {d} …")
    t = time.perf_counter()
    files = generate(
        d,
        n_leads,
        seed=seed,
        events_per_lead=per_lead,
        leads_format="parquet",
        events_format="parquet",
        timestamptz=timestamptz,
    )
    have = {
        **want,
        "n_events": files.n_events,
        "generated_s": round(time.perf_counter() - t, 1),
        "leads_bytes": leads.stat().st_size,
        "events_bytes": events.stat().st_size,
    }
    manifest.write_text(json.dumps(have, indent=2) + "\n")
    log(f"  {files.n_events:,} events in {have['generated_s']} s.")
    return have


def ensure_subset(d: Path, n: int) -> tuple[Path, Path, int]:
    """The first ``n`` leads and all their events, for pandas when the full set is too big."""
    sub = d / f"first-{n}"
    leads, events, manifest = sub / "leads.parquet", sub / "events.parquet", sub / "subset.json"
    source = json.loads((d / "dataset.json").read_text())
    if manifest.exists() and json.loads(manifest.read_text()).get("source") == source:
        return leads, events, json.loads(manifest.read_text())["n_events"]
    sub.mkdir(exist_ok=True)
    manifest.unlink(missing_ok=True)
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT * FROM read_parquet('{d / 'leads.parquet'}') ORDER BY lead_id LIMIT {n}) "
        f"TO '{leads}' (FORMAT PARQUET)"
    )
    con.execute(
        f"COPY (SELECT e.* FROM read_parquet('{d / 'events.parquet'}') e "
        f"SEMI JOIN read_parquet('{leads}') l ON e.lead_id = l.lead_id) TO '{events}' (FORMAT PARQUET)"
    )
    row = con.execute(f"SELECT count(*) FROM read_parquet('{events}')").fetchone()
    n_events = int(row[0]) if row else 0
    manifest.write_text(json.dumps({"source": source, "n_events": n_events}) + "\n")
    return leads, events, n_events


# ------------------------------------------------------------------ running one program


def _child_env(checkout: Path = HERE.parent, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of each timed program: the checkout's leadscore first on the path (this
    one, or the baseline's)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(checkout), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


@dataclass
class Program:
    key: str
    label: str
    cmd: list[str]
    output: Path
    leads: int
    events: int
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=_child_env)
    cwd: Path = HERE.parent  # python -m puts the working directory first on the path

    def run(self, log_dir: Path, *, record: bool = True) -> None:
        self.output.unlink(missing_ok=True)
        err_path = log_dir / f"{self.key}.stderr"
        with err_path.open("wb") as err:
            t = time.perf_counter()
            p = subprocess.Popen(
                self.cmd, stdout=subprocess.DEVNULL, stderr=err, env=self.env, cwd=self.cwd
            )
            # wait4 gives this one child's own resource use (RUSAGE_CHILDREN would mix them)
            _, status, ru = os.wait4(p.pid, 0)
            wall = time.perf_counter() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            sys.exit(
                f"{self.label} failed with exit code {p.returncode}:\n  {' '.join(self.cmd)}\n"
                + err_path.read_text(errors="replace")[-3000:]
            )
        if not record:
            return
        self.walls.append(wall)
        self.cpus.append(ru.ru_utime + ru.ru_stime)
        self.rss_mb.append(ru.ru_maxrss / 1024)  # Linux reports KiB

    @property
    def median(self) -> float:
        return statistics.median(self.walls)

    @property
    def us_per_lead(self) -> float:
        return self.median / self.leads * 1e6

    def summary(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "command": self.cmd,
            "leads": self.leads,
            "events": self.events,
            "wall_s": [round(w, 3) for w in self.walls],
            "median_wall_s": round(self.median, 3),
            "min_wall_s": round(min(self.walls), 3),
            "median_cpu_s": round(statistics.median(self.cpus), 3),
            "cpu_s": [round(c, 3) for c in self.cpus],
            "peak_rss_mb": [round(r, 1) for r in self.rss_mb],
            "max_peak_rss_mb": round(max(self.rss_mb), 1),
            "us_per_lead": round(self.us_per_lead, 3),
        }


# ------------------------------------------------------------------ agreement check


def _records(path: Path, ids: set[str]) -> tuple[dict[str, dict[str, Any]], int]:
    """The records of ``ids`` in a JSON Lines file, and how many records it has."""
    prefix = '{"lead_id":"'
    found: dict[str, dict[str, Any]] = {}
    n = 0
    with path.open(encoding="utf-8") as f:
        for line in f:
            n += 1
            if line.startswith(prefix):
                lead = line[len(prefix) : line.index('"', len(prefix))]
                if lead not in ids:
                    continue
            rec = json.loads(line)
            if rec["lead_id"] in ids:
                found[rec["lead_id"]] = rec
    return found, n


def _differences(a: dict[str, Any], b: dict[str, Any], tolerance: float = 1e-6) -> list[str]:
    out = []
    if list(a) != KEYS or list(b) != KEYS:
        out.append(f"keys {list(a)} vs {list(b)}")
    for k in ("fit", "engagement", "score"):
        if abs(a[k] - b[k]) > tolerance:
            out.append(f"{k} {a[k]} vs {b[k]}")
    for k in ("grade", "mql", "fast_track"):
        if a[k] != b[k]:
            out.append(f"{k} {a[k]!r} vs {b[k]!r}")
    ra, rb = a["reasons"], b["reasons"]
    if [r["rule"] for r in ra] != [r["rule"] for r in rb] or any(
        abs(x["points"] - y["points"]) > tolerance for x, y in zip(ra, rb, strict=True)
    ):
        out.append(f"reasons {ra} vs {rb}")
    return out


def check_agreement(
    leadscore_out: Path, pandas_out: Path, n_leads: int, pandas_leads: int, sample: int, seed: int
) -> dict[str, Any]:
    """Compare a seeded sample of the leads both scored; exit with the differences if any."""
    width = max(6, len(str(n_leads)))
    rng = random.Random(seed)
    ids = {
        f"L-{i + 1:0{width}d}" for i in rng.sample(range(pandas_leads), min(sample, pandas_leads))
    }
    ours, n_ours = _records(leadscore_out, ids)
    theirs, n_theirs = _records(pandas_out, ids)
    problems = []
    if n_ours != n_leads:
        problems.append(f"leadscore wrote {n_ours:,} records for {n_leads:,} leads")
    if n_theirs != pandas_leads:
        problems.append(f"pandas wrote {n_theirs:,} records for {pandas_leads:,} leads")
    for lead in sorted(ids):
        if lead not in ours or lead not in theirs:
            problems.append(f"{lead}: missing from {'leadscore' if lead not in ours else 'pandas'}")
            continue
        diff = _differences(ours[lead], theirs[lead])
        if diff:
            problems.append(f"{lead}: " + "; ".join(diff) + " (leadscore vs pandas)")
    if problems:
        shown = "\n  ".join(problems[:10])
        sys.exit(
            f"FAILED: pandas and leadscore disagree ({len(problems)} problems in a sample of "
            f"{len(ids):,} leads):\n  {shown}"
        )
    mql = sum(1 for r in ours.values() if r["mql"])
    log(f"Agreement: pandas == leadscore on {len(ids):,} sampled leads ({mql} of them MQLs).")
    return {"sampled_leads": len(ids), "mql_in_sample": mql, "agree": True}


# ------------------------------------------------------------------ the Python engine


def engine_per_lead(model_path: Path, seed: int) -> dict[str, Any]:
    """Microseconds for ``Scorer(model).score`` on one lead with 100 and 1,000 events."""
    model = load_model(model_path)
    scorer = Scorer(model)
    as_of = datetime(2026, 6, 1, tzinfo=UTC)
    traits = {
        "email": "maya.chen@northlabs.com",
        "title": "Director of Demand Generation",
        "country": "US",
        "company": {
            "name": "North Labs",
            "employees": "850",
            "industry": "Software",
            "technologies": "salesforce;marketo",
        },
    }
    # every event name the model knows, pages that do and do not match its rules, and one
    # event the model ignores, weighted roughly as in the demo data
    page_paths = ["/", "/blog/lead-scoring-101", "/pricing", "/pricing/enterprise", "/product",
                  "/product/integrations", "/case-studies/northwind", "/docs"]  # fmt: skip
    names = sorted({r.event for r in model.engagement_rules if r.event_key != "page"})
    kinds = [("page", 55.0)] + [(n, 30.0 / len(names)) for n in names] + [("Trial Started", 2.0)]
    rng = random.Random(seed)

    def events(n: int) -> list[Event]:
        out = []
        for _ in range(n):
            (name,) = rng.choices([k for k, _ in kinds], weights=[w for _, w in kinds])
            props: dict[str, Any] = {}
            if name == "page":
                path = rng.choice(page_paths)
                props = {"path": path, "url": "https://www.example.com" + path}
            ts = as_of - timedelta(seconds=rng.uniform(0, 200 * 86400))  # some beyond the window
            out.append(Event(name, ts, props))
        return out

    result: dict[str, Any] = {}
    for n in (100, 1000):
        evs = events(n)
        scorer.score(traits, evs, as_of)
        timer = timeit.Timer(functools.partial(scorer.score, traits, evs, as_of))
        number, _ = timer.autorange()  # enough calls for 0.2 s
        number = max(number, 10)
        runs = [t / number * 1e6 for t in timer.repeat(repeat=7, number=number)]
        result[f"{n}_events"] = {
            "median_us": round(statistics.median(runs), 1),
            "min_us": round(min(runs), 1),
            "calls_per_repeat": number,
            "repeats": len(runs),
        }
        log(
            f"Python engine, {n:,} events: {statistics.median(runs):,.1f} µs per lead (median of 7)."
        )
    return result


# ------------------------------------------------------------------ report


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "leadscore": leadscore.__version__,
        "duckdb": duckdb.__version__,
    }
    for mod in ("pandas", "pyarrow", "numpy"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = None
    try:
        cpu = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(
            ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if ln.startswith("model name")
        )
        mem = Path("/proc/meminfo").read_text().split()
        info["memory_gb"] = round(int(mem[mem.index("MemTotal:") + 1]) / 1024**2, 1)
    except (OSError, StopIteration, ValueError):
        pass
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        info["commit"] = subprocess.run(
            ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    return info


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _leadscore_cmd(model: Path, leads: Path, events: Path, fmt: str, output: Path) -> list[str]:
    # python -m with the repository first on the path: the leadscore of this checkout, and its
    # start-up counted as a user's shell pays it
    return [sys.executable, "-m", "leadscore", "score", str(model), "--leads", str(leads),
            "--events", str(events), "--as-of", AS_OF, "--format", fmt, "--output", str(output),
            "--quiet"]  # fmt: skip


def _anchor_cmd(leads: Path, events: Path, fmt: str, output: Path) -> list[str]:
    return [sys.executable, str(HERE / "handwritten.py"), "--leads", str(leads), "--events",
            str(events), "--as-of", AS_OF, "--format", fmt, "--output", str(output)]  # fmt: skip


def _floor_sql(events: Path, fmt: str, output: Path) -> str:
    opts = "FORMAT CSV, HEADER" if fmt == "csv" else "FORMAT JSON"
    return (
        f"COPY (SELECT lead_id, count(*), sum(epoch(timestamp)) FROM read_parquet('{events}') "
        f"GROUP BY lead_id) TO '{output}' ({opts})"
    )


def check_anchor(leadscore_out: Path, anchor_out: Path, fmt: str) -> dict[str, Any]:
    """The hand-written query must write the records leadscore writes: byte for byte, or
    (floating-point sums added in another order) with numbers at most 0.01 apart."""
    if leadscore_out.read_bytes() == anchor_out.read_bytes():
        log(f"Anchor ({fmt}): the hand-written query's output is byte-identical to leadscore's.")
        return {"identical": True, "lines_differing": 0}
    ours = leadscore_out.read_text(encoding="utf-8").splitlines()
    theirs = anchor_out.read_text(encoding="utf-8").splitlines()
    if len(ours) != len(theirs):
        sys.exit(
            f"FAILED: leadscore wrote {len(ours):,} lines, the hand-written query {len(theirs):,}"
        )
    differing = [(a, b) for a, b in zip(ours, theirs, strict=True) if a != b]
    if fmt == "csv":
        rows = list(csv.reader(a for a, _ in differing)), list(csv.reader(b for _, b in differing))
        pairs = [
            (dict(zip(KEYS, x, strict=True)), dict(zip(KEYS, y, strict=True)))
            for x, y in zip(*rows, strict=True)
        ]
        for x, y in pairs:
            for rec in (x, y):
                for k in ("fit", "engagement", "score"):
                    rec[k] = float(rec[k])
                rec["reasons"] = json.loads(rec["reasons"])
    else:
        pairs = [(json.loads(a), json.loads(b)) for a, b in differing]
    problems = [
        f"{x['lead_id']}: " + "; ".join(diff)
        for x, y in pairs
        if (diff := _differences(x, y, tolerance=0.0100001))
    ]
    if problems:
        shown = "\n  ".join(problems[:10])
        sys.exit(
            f"FAILED: the hand-written query and leadscore disagree ({fmt}, {len(problems)} "
            f"records):\n  {shown}"
        )
    log(
        f"Anchor ({fmt}): {len(differing):,} of {len(ours):,} lines differ by a last-digit "
        "rounding of floating-point sums; every decision is the same."
    )
    return {"identical": False, "lines_differing": len(differing)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="The batch benchmark (docs/benchmarks.md).")
    p.add_argument(
        "--leads", type=int, default=1_000_000, help="leads to generate (default 1,000,000)"
    )
    p.add_argument(
        "--events-per-lead", type=float, default=20.0, help="average events per lead (default 20)"
    )
    p.add_argument(
        "--dir", type=Path, default=Path("/tmp/leadscore-bench"), help="data, outputs, results.json"
    )
    p.add_argument("--repeat", type=int, default=3, help="timed runs of each program (default 3)")
    p.add_argument("--seed", type=int, default=42, help="seed of the data set (default 42)")
    p.add_argument(
        "--formats",
        default="csv,jsonl",
        help="output formats timed, comma-separated (default csv,jsonl)",
    )
    p.add_argument(
        "--naive-timestamps",
        action="store_true",
        help="write event times as TIMESTAMP (default: TIMESTAMP WITH TIME ZONE, as exports do)",
    )
    p.add_argument("--no-pandas", action="store_true", help="leave out the pandas program")
    p.add_argument("--no-engine", action="store_true", help="leave out the Python engine timing")
    p.add_argument(
        "--pandas-leads",
        type=int,
        default=None,
        help="run pandas on the first N leads only, and compare per lead (default: all leads)",
    )
    p.add_argument(
        "--sample", type=int, default=1000, help="leads compared between pandas and leadscore"
    )
    p.add_argument(
        "--model", type=Path, default=None, help="the model (default: the starter model)"
    )
    p.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="another checkout of leadscore (a git worktree of main, say) whose `leadscore score` "
        "is timed too, interleaved, right before this one's; its records must be the same bytes",
    )
    p.add_argument(
        "--no-plan-cache",
        action="store_true",
        help="compile the query in every run (LEADSCORE_NO_CACHE=1); by default the timed runs "
        "find it in a plan cache of their own in --dir, filled by one untimed run, as every "
        "run after a model's first does",
    )
    args = p.parse_args(argv)
    if args.leads < 1 or args.repeat < 1:
        p.error("--leads and --repeat must be at least 1")
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    if not formats or any(f not in ("csv", "jsonl") for f in formats):
        p.error("--formats takes csv, jsonl or both")
    pandas_leads = min(args.pandas_leads or args.leads, args.leads)
    with_pandas = not args.no_pandas

    d: Path = args.dir.resolve()
    data = ensure_data(
        d, args.leads, args.events_per_lead, args.seed, timestamptz=not args.naive_timestamps
    )
    leads, events = d / "leads.parquet", d / "events.parquet"
    out = d / "out"
    out.mkdir(exist_ok=True)
    model = args.model or Path(str(resources.files("leadscore").joinpath("templates/starter.yaml")))
    # the hand-written query is the starter model's; with another model there is no anchor
    with_anchor = args.model is None
    if pandas_leads < args.leads:
        p_leads, p_events, p_n_events = ensure_subset(d, pandas_leads)
    else:
        p_leads, p_events, p_n_events = leads, events, data["n_events"]

    n, ev = args.leads, data["n_events"]
    # the plan cache of the timed runs (leadscore.sql.cache): a directory of their own, emptied
    plan_cache = d / "plan-cache"
    shutil.rmtree(plan_cache, ignore_errors=True)
    cache_env = {"XDG_CACHE_HOME": str(plan_cache)}
    if args.no_plan_cache:
        cache_env["LEADSCORE_NO_CACHE"] = "1"
    baseline: Path | None = args.baseline.resolve() if args.baseline else None
    if baseline is not None and not (baseline / "leadscore" / "__init__.py").exists():
        p.error(f"--baseline {baseline}: no leadscore checkout there")
    baselines: dict[str, Program] = {}
    scored: dict[str, Program] = {}
    anchors: dict[str, Program] = {}
    floors: dict[str, Program] = {}
    programs: list[Program] = []
    for fmt in formats:
        tag = fmt.upper()
        if baseline is not None:
            baselines[fmt] = Program(
                f"A0-{fmt}",
                f"baseline leadscore ({tag})",
                _leadscore_cmd(model, leads, events, fmt, out / f"baseline.{fmt}"),
                out / f"baseline.{fmt}",
                n,
                ev,
                env=_child_env(baseline, cache_env),
                cwd=baseline,
            )
            programs.append(baselines[fmt])
        scored[fmt] = Program(
            f"A-{fmt}",
            f"leadscore score ({tag})",
            _leadscore_cmd(model, leads, events, fmt, out / f"scores.{fmt}"),
            out / f"scores.{fmt}",
            n,
            ev,
            env=_child_env(extra=cache_env),
        )
        programs.append(scored[fmt])
        if with_anchor:
            anchors[fmt] = Program(
                f"H-{fmt}",
                f"hand-written query ({tag})",
                _anchor_cmd(leads, events, fmt, out / f"handwritten.{fmt}"),
                out / f"handwritten.{fmt}",
                n,
                ev,
            )
            programs.append(anchors[fmt])
        floor_out = out / f"floor.{fmt}"
        floor_sql = _floor_sql(events, fmt, floor_out)
        floors[fmt] = Program(
            f"B-{fmt}",
            f"DuckDB floor ({tag})",
            [sys.executable, "-c", f"import duckdb; duckdb.sql({floor_sql!r})"],
            floor_out,
            n,
            ev,
        )
        programs.append(floors[fmt])
    pandas_prog = None
    if with_pandas:
        pandas_prog = Program(
            "C",
            "pandas" + (f" (first {pandas_leads:,} leads)" if pandas_leads < args.leads else ""),
            [
                sys.executable,
                str(HERE / "pandas_model.py"),
                str(model),
                "--leads",
                str(p_leads),
                "--events",
                str(p_events),
                "--as-of",
                AS_OF,
                "--output",
                str(out / "pandas.jsonl"),
            ],
            out / "pandas.jsonl",
            pandas_leads,
            p_n_events,
        )
        programs.append(pandas_prog)

    # one untimed run of the floor reads the events file into the page cache, so the first
    # timed run of A is not the only one to read it from disk
    floors[formats[0]].run(out, record=False)
    # an installed leadscore has its bytecode compiled at install time; this checkout's is
    # compiled once here, or each run would compile every module again where the environment
    # says PYTHONDONTWRITEBYTECODE (the standard library and DuckDB come compiled already)
    for checkout in [HERE.parent] + ([baseline] if baseline is not None else []):
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(checkout / "leadscore")],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    if not args.no_plan_cache:
        # the query compiled once, as by the first run of a nightly job: the timed runs find it
        for prog in [scored[formats[0]], *([baselines[formats[0]]] if baselines else [])]:
            log(f"Untimed run of {prog.key} (fills the plan cache) …")
            prog.run(out, record=False)

    agreement: dict[str, Any] = {}
    anchor_check: dict[str, Any] = {}
    for rep in range(args.repeat):
        for prog in programs:
            log(f"Run {rep + 1}/{args.repeat}: {prog.key} {prog.label} …")
            prog.run(out)
            log(
                f"  {prog.walls[-1]:.2f} s wall, {prog.cpus[-1]:.1f} s CPU, peak RSS {prog.rss_mb[-1]:,.0f} MB"
            )
        if rep == 0:  # stop before spending more time on programs that do not agree
            for fmt, base in baselines.items():
                if base.output.read_bytes() != scored[fmt].output.read_bytes():
                    sys.exit(f"FAILED: the baseline's {fmt} records differ from this checkout's")
                log(f"Baseline ({fmt}): the same bytes as this checkout's records.")
            for fmt, anchor in anchors.items():
                anchor_check[fmt] = check_anchor(scored[fmt].output, anchor.output, fmt)
            if pandas_prog is not None and "jsonl" in scored:
                agreement = check_agreement(
                    scored["jsonl"].output,
                    pandas_prog.output,
                    args.leads,
                    pandas_leads,
                    args.sample,
                    args.seed,
                )

    engine = {} if args.no_engine else engine_per_lead(model, args.seed)

    def ratio(a: Program, b: Program) -> dict[str, float]:
        return {
            "median_wall": round(a.median / b.median, 2),
            "min_wall": round(min(a.walls) / min(b.walls), 2),
            "median_cpu": round(statistics.median(a.cpus) / statistics.median(b.cpus), 2),
        }

    ratios: dict[str, Any] = {}
    for fmt in formats:
        a, b = scored[fmt], floors[fmt]
        r: dict[str, Any] = {"a_over_floor": ratio(a, b)}
        r["a_over_floor"]["target_max"] = TARGET_A_OVER_B
        if fmt in anchors:
            h = anchors[fmt]
            r["a_over_anchor"] = ratio(a, h)
            r["a_over_anchor"]["target_max"] = TARGET_A_OVER_H
            r["a_over_anchor"]["met"] = a.median / h.median <= TARGET_A_OVER_H
            r["anchor_over_floor"] = ratio(h, b)
            if fmt in baselines:
                r["baseline_over_anchor"] = ratio(baselines[fmt], h)
        if fmt in baselines:
            r["a_over_baseline"] = ratio(a, baselines[fmt])
        r["a_peak_rss_gb"] = round(max(a.rss_mb) / 1024, 2)
        ratios[fmt] = r
    c_over_a = None
    if pandas_prog is not None:
        a0 = scored["jsonl"] if "jsonl" in scored else scored[formats[0]]
        c_over_a = pandas_prog.us_per_lead / a0.us_per_lead
        ratios["c_over_a_per_lead"] = {
            "value": round(c_over_a, 2),
            "target_min": TARGET_C_OVER_A,
            "met": c_over_a >= TARGET_C_OVER_A,
            "pandas_on_fraction": pandas_leads < args.leads,
        }
    a_rss_gb = max(max(a.rss_mb) for a in scored.values()) / 1024
    results = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "parameters": {
            "leads": args.leads,
            "events_per_lead": args.events_per_lead,
            "events": data["n_events"],
            "timestamptz": not args.naive_timestamps,
            "seed": args.seed,
            "repeat": args.repeat,
            "formats": formats,
            "as_of": AS_OF,
            "model": str(model),
            "pandas_leads": pandas_leads if with_pandas else None,
            "pandas_events": p_n_events if with_pandas else None,
            "dir": str(d),
            "baseline": str(baseline) if baseline is not None else None,
            "plan_cache": "off" if args.no_plan_cache else "filled by an untimed run",
        },
        "programs": {prog.key: prog.summary() for prog in programs},
        "ratios": ratios,
        "a_peak_rss_gb": {"value": round(a_rss_gb, 2), "target_max": TARGET_A_RSS_GB, "met": a_rss_gb < TARGET_A_RSS_GB},
        "anchor_check": anchor_check,
        "agreement": agreement,
        "python_engine_us_per_lead": engine,
    }  # fmt: skip
    (d / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    ts_kind = "TIMESTAMP" if args.naive_timestamps else "TIMESTAMP WITH TIME ZONE"
    print(
        f"\n{args.leads:,} leads, {data['n_events']:,} events ({ts_kind}), {args.repeat} "
        f"interleaved run{'s' if args.repeat > 1 else ''} of each\n"
    )
    print(
        f"{'':38} {'median s':>8} {'min s':>7} {'CPU s':>7} {'peak RSS':>10} {'µs/lead':>8}  runs (s)"
    )
    for prog in programs:
        runs = ", ".join(f"{w:.1f}" for w in prog.walls)
        print(
            f"{prog.key:7} {prog.label:30} {prog.median:8.2f} {min(prog.walls):7.2f} "
            f"{statistics.median(prog.cpus):7.1f} {max(prog.rss_mb):7,.0f} MB "
            f"{prog.us_per_lead:8.2f}  {runs}"
        )
    if with_pandas and pandas_leads < args.leads:
        print(
            f"\nNOTE: pandas ran on the first {pandas_leads:,} of {args.leads:,} leads "
            f"({p_n_events:,} events); C/A compares time per lead."
        )
    print()
    for fmt in formats:
        r = ratios[fmt]
        if "a_over_anchor" in r:
            ah = r["a_over_anchor"]
            print(
                f"{fmt:5} A/H = {ah['median_wall']:5.2f}x  target <= {TARGET_A_OVER_H:g}x  "
                f"{_verdict(ah['met'])}   (fastest runs {ah['min_wall']:.2f}x, CPU {ah['median_cpu']:.2f}x)"
            )
        ab = r["a_over_floor"]
        print(
            f"{fmt:5} A/B = {ab['median_wall']:5.2f}x  about <= {TARGET_A_OVER_B:g}x   "
            f"{_verdict(ab['median_wall'] <= TARGET_A_OVER_B)}   (fastest runs {ab['min_wall']:.2f}x, "
            f"CPU {ab['median_cpu']:.2f}x)"
        )
        if "baseline_over_anchor" in r:
            bh = r["baseline_over_anchor"]
            print(
                f"{fmt:5} A0/H = {bh['median_wall']:5.2f}x  (baseline; fastest runs "
                f"{bh['min_wall']:.2f}x, CPU {bh['median_cpu']:.2f}x)"
            )
        if "a_over_baseline" in r:
            ab0 = r["a_over_baseline"]
            print(
                f"{fmt:5} A/A0 = {ab0['median_wall']:5.2f}x  (fastest runs {ab0['min_wall']:.2f}x, "
                f"CPU {ab0['median_cpu']:.2f}x)"
            )
        if "anchor_over_floor" in r:
            hb = r["anchor_over_floor"]
            print(
                f"{fmt:5} H/B = {hb['median_wall']:5.2f}x   (fastest runs {hb['min_wall']:.2f}x, CPU "
                f"{hb['median_cpu']:.2f}x)"
            )
    if c_over_a is not None:
        print(
            f"C/A  = {c_over_a:5.2f}x   target >= {TARGET_C_OVER_A:g}x  {_verdict(c_over_a >= TARGET_C_OVER_A)}"
            + ("   (per lead)" if pandas_leads < args.leads else "")
        )
    print(
        f"A peak RSS = {a_rss_gb:.2f} GB   target < {TARGET_A_RSS_GB:g} GB   "
        f"{_verdict(a_rss_gb < TARGET_A_RSS_GB)}"
    )
    if engine:
        e100, e1000 = engine["100_events"], engine["1000_events"]
        print(
            f"Python engine, one lead: {e100['median_us']:,.1f} µs with 100 events, "
            f"{e1000['median_us']:,.1f} µs with 1,000 events (median; fastest "
            f"{e100['min_us']:,.1f} and {e1000['min_us']:,.1f} µs)"
        )
    print(f"\nResults: {d / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
