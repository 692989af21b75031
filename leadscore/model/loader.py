"""Read a model file into a Model, collecting every problem with its line and column."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any as AnyT

import yaml

from ..errors import ModelError
from .conditions import parse_condition
from .schema import (
    EngagementRule,
    FitRule,
    Grades,
    Model,
)
from .values import norm_text
from .yamlnodes import (
    Ctx,
    compose_file,
    did_you_mean,
    kind_of,
    mapping_of,
    number_at,
    read_file,
    scalar_of,
    text_at,
    text_scalar,
    unique_name,
)

__all__ = ["MAX_POINTS", "load_model", "parse_model"]

#: The most points a rule may give or take (docs/model.md, "Points"): far beyond any real
#: model, and small enough that sums of many rules and events stay exact to the 1e-6 the
#: engines agree to, and never run past the float range (an infinite score has no record).
MAX_POINTS = 1_000_000

TOP_KEYS = (
    "model",
    "name",
    "description",
    "missing_values",
    "fit",
    "engagement",
    "mql",
    "grades",
)
FIT_KEYS = ("max", "rules")
ENGAGEMENT_KEYS = ("max", "half_life_days", "window_days", "rules")
FIT_RULE_KEYS = ("name", "when", "points", "description")
ENGAGEMENT_RULE_KEYS = (
    "name",
    "event",
    "trait",
    "at",
    "when",
    "points",
    "cap",
    "fast_track",
    "description",
)
MQL_KEYS = ("threshold", "min_fit")


def _field(ctx: Ctx, node: yaml.Node, what: str) -> str | None:
    """A field path such as ``TotalVisits`` or ``company.employees``."""
    text = text_at(ctx, node, what)
    if text is None:
        return None
    text = text.strip()
    if any(not p for p in text.split(".")):
        ctx.add(node, f"{what} {text!r} has an empty part between dots")
        return None
    return text


def _rules(
    ctx: Ctx, node: yaml.Node, section: str, build: Callable[[yaml.Node, int], AnyT]
) -> list[AnyT]:
    if not isinstance(node, yaml.SequenceNode):
        ctx.add(node, f"'{section}.rules' must be a list of rules, not {kind_of(node)}")
        return []
    out = []
    for item in node.value:
        rule = build(item, item.start_mark.line * 100000 + item.start_mark.column)
        if rule is not None:
            out.append(rule)
    return out


def _rule_head(
    ctx: Ctx, item: yaml.Node, allowed: tuple[str, ...], section: str, index: int
) -> tuple[dict[str, tuple[yaml.Node, yaml.Node]], str] | None:
    label = f"{section} rule #{index}"
    if isinstance(item, yaml.MappingNode):
        for k, v in item.value:
            if scalar_of(k) == "name" and isinstance(scalar_of(v), str):
                label = f"{section} rule '{scalar_of(v)}'"
    if section == "fit" and isinstance(item, yaml.MappingNode):
        for k, _v in item.value:
            if scalar_of(k) in ("fast_track", "cap", "event"):
                ctx.add(
                    k,
                    f"'{scalar_of(k)}' in {label} belongs to engagement rules only; "
                    "fit rules score traits, not events",
                )
        allowed_fit = (*allowed, "fast_track", "cap", "event")
        m = mapping_of(ctx, item, allowed_fit, label)
        if m is not None:
            for k in ("fast_track", "cap", "event"):
                m.pop(k, None)
    else:
        m = mapping_of(ctx, item, allowed, label)
    if m is None:
        return None
    for required in ("name", "points") + (("when",) if section == "fit" else ()):
        if required not in m:
            ctx.add(item, f"{label} has no '{required}'")
    if section == "engagement":
        if "event" not in m and "trait" not in m:
            ctx.add(
                item,
                f"{label} has no 'event' (the event it counts) or 'trait' (a count or amount "
                "on the lead)",
            )
        elif "event" in m and "trait" in m:
            ctx.add(
                m["trait"][0],
                f"{label} has both 'event' and 'trait'; a rule counts events or reads a "
                "trait, so split it in two",
            )
    return m, label


def parse_model(text: str, file: str = "<model>") -> Model:
    """Parse and validate a model; raise ModelError listing every problem."""
    ctx = Ctx(file=file, problems=[])
    root = compose_file(
        text, file, ModelError, "the model file is empty; `leadscore init` writes a starter model"
    )
    top = mapping_of(ctx, root, TOP_KEYS, "the model")
    if top is None:
        raise ModelError(ctx.problems)

    for required in ("model", "name"):
        if required not in top:
            ctx.add(
                root,
                f"the model has no '{required}'"
                + (" (the format version; write 'model: 1')" if required == "model" else ""),
            )
    if "model" in top:
        vnode = top["model"][1]
        v = scalar_of(vnode)
        if v != 1 or isinstance(v, bool):
            ctx.add(vnode, f"'model' must be 1 (the only format version), not {kind_of(vnode)}")
    name = text_at(ctx, top["name"][1], "'name'") if "name" in top else None
    description = ""
    if "description" in top:
        description = text_at(ctx, top["description"][1], "'description'") or ""

    missing_values: tuple[str, ...] = ()
    if "missing_values" in top:
        missing_values = _missing_values(ctx, top["missing_values"][1])

    rule_names: dict[str, yaml.Node] = {}

    def check_name(node: yaml.Node, label: str) -> str | None:
        return unique_name(ctx, node, label, rule_names)

    fit_rules: list[FitRule] = []
    fit_max = None
    if "fit" in top:
        fit = mapping_of(ctx, top["fit"][1], FIT_KEYS, "'fit'")
        if fit is not None:
            if "max" in fit:
                fit_max = number_at(ctx, fit["max"][1], "'fit.max'")
            counter = iter(range(1, 10**9))

            def build_fit(item: yaml.Node, order: int) -> FitRule | None:
                head = _rule_head(ctx, item, FIT_RULE_KEYS, "fit", next(counter))
                if head is None:
                    return None
                m, label = head
                nm = check_name(m["name"][1], label) if "name" in m else None
                when = parse_condition(ctx, m["when"][1], label) if "when" in m else None
                pts = _points(ctx, m["points"][1], label) if "points" in m else None
                if nm is None or when is None or pts is None:
                    return None
                return FitRule(nm, when, pts, order, item.start_mark.line + 1)

            fit_rules = _rules(ctx, fit["rules"][1], "fit", build_fit) if "rules" in fit else []

    eng_rules: list[EngagementRule] = []
    eng_max = half_life = window = None
    if "engagement" in top:
        eng = mapping_of(ctx, top["engagement"][1], ENGAGEMENT_KEYS, "'engagement'")
        if eng is not None:
            if "max" in eng:
                eng_max = number_at(ctx, eng["max"][1], "'engagement.max'")
            if "half_life_days" in eng:
                half_life = number_at(
                    ctx, eng["half_life_days"][1], "'engagement.half_life_days'", positive=True
                )
            if "window_days" in eng:
                window = number_at(
                    ctx, eng["window_days"][1], "'engagement.window_days'", positive=True
                )
            counter2 = iter(range(1, 10**9))

            def build_eng(item: yaml.Node, order: int) -> EngagementRule | None:
                head = _rule_head(ctx, item, ENGAGEMENT_RULE_KEYS, "engagement", next(counter2))
                if head is None:
                    return None
                m, label = head
                nm = check_name(m["name"][1], label) if "name" in m else None
                event = text_at(ctx, m["event"][1], f"'event' of {label}") if "event" in m else None
                trait = _field(ctx, m["trait"][1], f"'trait' of {label}") if "trait" in m else None
                at = _field(ctx, m["at"][1], f"'at' of {label}") if "at" in m else None
                bad_trait = ("trait" in m and trait is None) or ("at" in m and at is None)
                if "at" in m and "trait" not in m:
                    ctx.add(
                        m["at"][0],
                        f"'at' of {label} dates a trait rule; events carry their own time",
                    )
                    bad_trait = True
                if "when" in m and "trait" in m:
                    ctx.add(
                        m["when"][0],
                        f"'when' of {label}: a trait rule reads its trait alone; to score a lead's "
                        "traits by a condition, write a fit rule",
                    )
                    bad_trait = True
                if trait is not None and "event" not in m:
                    event = ""
                when = parse_condition(ctx, m["when"][1], label) if "when" in m else None
                bad_when = "when" in m and when is None
                pts = _points(ctx, m["points"][1], label) if "points" in m else None
                cap = None
                if "cap" in m:
                    cap = number_at(ctx, m["cap"][1], f"'cap' of {label}", positive=True)
                    if pts is not None and pts <= 0:
                        ctx.add(
                            m["cap"][0],
                            f"'cap' of {label} needs positive points; a cap limits what a rule "
                            f"adds, and this rule gives {pts:g}",
                        )
                        return None
                fast = False
                if "fast_track" in m:
                    fv = scalar_of(m["fast_track"][1])
                    if not isinstance(fv, bool):
                        ctx.add(
                            m["fast_track"][1], f"'fast_track' of {label} must be true or false"
                        )
                        return None
                    fast = fv
                if (
                    nm is None
                    or event is None
                    or bad_when
                    or bad_trait
                    or pts is None
                    or ("cap" in m and cap is None)
                ):
                    return None
                return EngagementRule(
                    nm,
                    event.strip(),
                    norm_text(event),
                    when,
                    pts,
                    cap,
                    fast,
                    order,
                    item.start_mark.line + 1,
                    trait,
                    at,
                )

            eng_rules = (
                _rules(ctx, eng["rules"][1], "engagement", build_eng) if "rules" in eng else []
            )

    threshold = min_fit = None
    if "mql" not in top:
        ctx.add(root, "the model has no 'mql' section; add 'mql: {threshold: 50}'")
    else:
        mql = mapping_of(ctx, top["mql"][1], MQL_KEYS, "'mql'")
        if mql is not None:
            if "threshold" not in mql:
                ctx.add(top["mql"][1], "'mql' has no 'threshold' (the score that makes an MQL)")
            else:
                threshold = number_at(ctx, mql["threshold"][1], "'mql.threshold'")
            if "min_fit" in mql:
                min_fit = number_at(ctx, mql["min_fit"][1], "'mql.min_fit'")

    grades = None
    if "grades" in top:
        grades = _grades(ctx, top["grades"][1])

    if ctx.problems:
        raise ModelError(sorted(ctx.problems, key=lambda p: (p.line, p.column)))
    assert name is not None and threshold is not None
    fit_rules.sort(key=lambda r: r.order)
    eng_rules.sort(key=lambda r: r.order)
    # renumber orders densely, in file order across both sections
    ordered: list[FitRule | EngagementRule] = sorted(
        [*fit_rules, *eng_rules], key=lambda r: r.order
    )
    rank = {id(r): i for i, r in enumerate(ordered)}
    fit_final = tuple(FitRule(r.name, r.when, r.points, rank[id(r)], r.line) for r in fit_rules)
    eng_final = tuple(replace(r, order=rank[id(r)]) for r in eng_rules)
    return Model(
        name=name.strip(),
        description=description,
        threshold=threshold,
        fit_rules=fit_final,
        engagement_rules=eng_final,
        fit_max=fit_max,
        engagement_max=eng_max,
        half_life_days=half_life,
        window_days=window,
        min_fit=min_fit,
        grades=grades,
        missing_values=missing_values,
        source=text,
        file=file,
        digest=hashlib.sha256(text.encode()).hexdigest()[:12],
    )


def _grades(ctx: Ctx, node: yaml.Node) -> Grades | None:
    g = mapping_of(ctx, node, ("fit", "engagement"), "'grades'")
    if g is None:
        return None
    out: dict[str, tuple[float, float, float]] = {}
    for part, keys in (("fit", ("A", "B", "C")), ("engagement", ("1", "2", "3"))):
        if part not in g:
            ctx.add(
                node,
                f"'grades' has no '{part}'; give both fit {{A, B, C}} and engagement {{1, 2, 3}}",
            )
            continue
        pnode = g[part][1]
        if not isinstance(pnode, yaml.MappingNode):
            ctx.add(pnode, f"'grades.{part}' must be a mapping such as {_example(part)}")
            continue
        values: dict[str, tuple[float, yaml.Node]] = {}
        for knode, vnode in pnode.value:
            k = str(knode.value)
            if k not in keys:
                ctx.add(knode, f"unknown key '{k}' in 'grades.{part}'{did_you_mean(k, keys)}")
                continue
            n = number_at(ctx, vnode, f"'grades.{part}.{k}'")
            if n is not None:
                values[k] = (n, vnode)
        missing = [k for k in keys if k not in values]
        if missing:
            if not any(p.line == pnode.start_mark.line + 1 for p in ctx.problems):
                ctx.add(
                    pnode, f"'grades.{part}' needs {', '.join(keys)}; missing {', '.join(missing)}"
                )
            continue
        a, b, c = (values[k][0] for k in keys)
        if not (a > b > c):
            ctx.add(
                pnode,
                f"'grades.{part}' thresholds must descend ({keys[0]} > {keys[1]} > {keys[2]}); "
                f"got {a:g}, {b:g}, {c:g}",
            )
            continue
        out[part] = (a, b, c)
    if len(out) != 2:
        return None
    return Grades(fit=out["fit"], engagement=out["engagement"])


def _missing_values(ctx: Ctx, node: yaml.Node) -> tuple[str, ...]:
    """``missing_values``: a list of placeholder values (text or numbers), compared as text."""
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        ctx.add(
            node,
            "'missing_values' must be a non-empty list of the values that mean \"not answered\", "
            f'such as [Select, N/A, "-"], not {kind_of(node)}',
        )
        return ()
    out: list[str] = []
    for item in node.value:
        v = text_scalar(item) if isinstance(item, yaml.ScalarNode) else None
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, int | float):
            v = item.value  # a number is compared as written: 0 means the text 0
        if not isinstance(v, str) or not v.strip():
            ctx.add(
                item, f"an item of 'missing_values' must be text or a number, not {kind_of(item)}"
            )
            continue
        key = norm_text(v)
        if key not in out:
            out.append(key)
    return tuple(out)


def _example(part: str) -> str:
    return "{A: 40, B: 25, C: 10}" if part == "fit" else "{1: 40, 2: 20, 3: 5}"


def load_model(path: str | Path) -> Model:
    text = read_file(path, ModelError, "`leadscore init` writes a starter model")
    return parse_model(text, str(path))


def _points(ctx: Ctx, node: yaml.Node, label: str) -> float | None:
    """A rule's points: a finite number of at most ``MAX_POINTS`` either way."""
    pts = number_at(ctx, node, f"'points' of {label}")
    if pts is not None and abs(pts) > MAX_POINTS:
        ctx.add(
            node,
            f"'points' of {label} is {node.value}; points must be between "
            f"-{MAX_POINTS:,} and {MAX_POINTS:,} (write the points on a smaller scale, "
            "and the threshold with them)",
        )
        return None
    return pts
