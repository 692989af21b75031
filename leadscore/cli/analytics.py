"""Analytics commands: backtest (does the model work?) and learn (points from history)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Annotated

import typer

from ..analytics.stages import Labeling, parse_positive
from ..errors import ConfigError
from . import (
    AsOfOpt,
    EventColumnsOpt,
    EventsOpt,
    IdColumnOpt,
    LeadsOpt,
    ModelArg,
    SkipOpt,
    _load,
    app,
    err,
    input_columns,
    out,
    parse_as_of,
)

OutcomesOpt = Annotated[
    Path | None,
    typer.Option(
        "--outcomes", help="Outcomes: CSV, JSON Lines or Parquet with lead_id, outcome, at."
    ),
]
OutcomeColumnOpt = Annotated[
    str | None,
    typer.Option(
        "--outcome-column",
        help="A 0/1 or yes/no column of the leads file (no time) as the outcome.",
    ),
]
OutcomeDbOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="Read outcomes from the live service's stage history in this database.",
    ),
]
PositiveOpt = Annotated[
    str | None,
    typer.Option(
        "--positive", help="Stages that count as converted (default: sql,opportunity,customer,won)."
    ),
]
HorizonOpt = Annotated[
    float,
    typer.Option(
        "--horizon-days", help="A conversion counts only within this many days (0: no limit)."
    ),
]
StageMapOpt = Annotated[
    str | None,
    typer.Option("--stage-map", help="Your stage names mapped to ours: 'Closed Won=won,SAL=sql'."),
]
TargetOpt = Annotated[
    float | None,
    typer.Option(
        "--target-rate", help="Recommend the threshold whose MQLs convert at this rate (0.4)."
    ),
]
CapacityOpt = Annotated[
    str | None,
    typer.Option(
        "--capacity", help="Recommend the threshold sales can work: 200/week, 40/day, or a total."
    ),
]


def _labeling(positive: str | None, horizon: float) -> Labeling:

    return Labeling(parse_positive(positive), horizon if horizon > 0 else None)


@app.command()
def backtest(
    model: ModelArg = Path("leadscore.yaml"),
    leads: LeadsOpt = None,
    events: EventsOpt = None,
    id_column: IdColumnOpt = None,
    event_columns: EventColumnsOpt = None,
    outcomes: OutcomesOpt = None,
    outcome_column: OutcomeColumnOpt = None,
    database_url: OutcomeDbOpt = None,
    against: Annotated[
        Path | None, typer.Option("--against", help="Another model to compare side by side.")
    ] = None,
    as_of: AsOfOpt = None,
    decision_point: Annotated[
        str,
        typer.Option(
            "--decision-point",
            help="as-of: every lead at --as-of; created: each lead when it was created "
            "(created_at, else its first event).",
        ),
    ] = "as-of",
    replay: Annotated[
        bool,
        typer.Option(
            "--replay",
            help="Also replay each lead's events to find when it would have become an MQL.",
        ),
    ] = False,
    positive: PositiveOpt = None,
    horizon_days: HorizonOpt = 90.0,
    stage_map: StageMapOpt = None,
    target_rate: TargetOpt = None,
    capacity: CapacityOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, json or html.")] = "table",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report here.")
    ] = None,
    skip_bad_rows: SkipOpt = False,
) -> None:
    """Score leads as of the decision point and judge the model by what became of them."""
    from ..analytics import parse_stage_map
    from ..analytics.backtest import BacktestOptions, OutcomeSource, parse_capacity
    from ..analytics.backtest import backtest as run_backtest
    from ..analytics.report import print_report, to_json

    if fmt not in ("table", "json", "html"):
        raise ConfigError(f"--format {fmt!r} is not one of table, json, html")
    if decision_point not in ("as-of", "created"):
        raise ConfigError(f"--decision-point {decision_point!r} is not one of as-of, created")
    if target_rate is not None and not 0 < target_rate < 1:
        raise ConfigError("--target-rate is a conversion rate between 0 and 1, like 0.4")
    m = _load(model)
    other = _load(against) if against else None
    opts = BacktestOptions(
        as_of=parse_as_of(as_of),
        labeling=_labeling(positive, horizon_days),
        target_rate=target_rate,
        capacity=parse_capacity(capacity),
        replay=replay,
        when_created=decision_point == "created",
    )
    src = OutcomeSource(outcomes, outcome_column, database_url, parse_stage_map(stage_map))
    src.check()
    with err.status("Scoring and judging…", spinner="dots") if err.is_terminal else _null():
        result = run_backtest(
            m,
            leads,
            events,
            src,
            opts,
            against=other,
            skip_bad_rows=skip_bad_rows,
            columns=input_columns(id_column, event_columns),
        )
    if fmt == "json":
        text = to_json(result)
    elif fmt == "html":
        from ..analytics.html import render_html

        text = render_html(result)
    else:
        if output is not None:
            raise ConfigError("--format table is for the terminal; write files as json or html")
        print_report(out, result)
        return
    if output is None:
        print(text)
    else:
        output.write_text(text, encoding="utf-8")
        err.print(f"Wrote {output}.")


def _null() -> AbstractContextManager[None]:
    return nullcontext()


@app.command()
def learn(
    leads: LeadsOpt = None,
    events: EventsOpt = None,
    id_column: IdColumnOpt = None,
    event_columns: EventColumnsOpt = None,
    outcomes: OutcomesOpt = None,
    outcome_column: OutcomeColumnOpt = None,
    database_url: OutcomeDbOpt = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the learned model (YAML).")
    ] = Path("learned.yaml"),
    base: Annotated[
        Path | None,
        typer.Option("--base", help="Keep this model's rules and learn only their points."),
    ] = None,
    name: Annotated[str, typer.Option("--name", help="The learned model's name.")] = "learned",
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="A trait not to learn from (repeat, or comma-separate)."),
    ] = None,
    keep_leaky: Annotated[
        bool,
        typer.Option("--keep-leaky", help="Keep traits that predict the outcome almost perfectly."),
    ] = False,
    as_of: AsOfOpt = None,
    positive: PositiveOpt = None,
    horizon_days: HorizonOpt = 90.0,
    stage_map: StageMapOpt = None,
    target_rate: TargetOpt = None,
    capacity: CapacityOpt = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Random seed: the same seed, the same model.")
    ] = 42,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the output file.")] = False,
    skip_bad_rows: SkipOpt = False,
) -> None:
    """Learn a readable points model (YAML, commented) from leads and their outcomes."""
    from ..analytics import parse_stage_map
    from ..analytics.backtest import OutcomeSource, parse_capacity
    from ..analytics.learning import LearnOptions
    from ..analytics.learning import learn as run_learn

    if leads is None:
        raise ConfigError("give the leads file with --leads")
    if output.exists() and not force:
        raise ConfigError(f"{output} already exists; pass --force to overwrite it")
    if target_rate is not None and not 0 < target_rate < 1:
        raise ConfigError("--target-rate is a conversion rate between 0 and 1, like 0.4")
    excl = tuple(x.strip() for e in (exclude or []) for x in e.split(",") if x.strip())
    opts = LearnOptions(
        as_of=parse_as_of(as_of),
        labeling=_labeling(positive, horizon_days),
        name=name,
        exclude=excl,
        keep_leaky=keep_leaky,
        target_rate=target_rate,
        capacity=parse_capacity(capacity),
        seed=seed,
        outcome_column=outcome_column,
    )
    src = OutcomeSource(outcomes, outcome_column, database_url, parse_stage_map(stage_map))
    src.check()
    base_model = _load(base) if base else None
    with err.status("Learning…", spinner="dots") if err.is_terminal else _null():
        text, learned, notes = run_learn(
            leads,
            events,
            src,
            opts,
            base=base_model,
            skip_bad_rows=skip_bad_rows,
            columns=input_columns(id_column, event_columns),
        )
    output.write_text(text, encoding="utf-8")
    for note in notes:
        err.print(note, soft_wrap=True, markup=False)
    err.print(
        f"Wrote {output}: {len(learned.rules)} rules, threshold {learned.threshold:g}. "
        f"Cross-validated ROC AUC {learned.auc_points:.3f} with integer points "
        f"({learned.auc_weights:.3f} before rounding), from {learned.leads:,} leads "
        f"({learned.converted:,} converted).",
        soft_wrap=True,
        markup=False,
    )
