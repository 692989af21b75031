"""Reading a YAML file as nodes that keep their line and column, and collecting problems.

Shared by every file format leadscore reads (the scoring model, the routing file): each
problem names FILE:LINE:COLUMN, unknown keys get a "did you mean", and every problem is
collected before anything is raised.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any as AnyT

import yaml
from yaml.constructor import SafeConstructor

from ..errors import ModelError, Problem
from .values import number_of

__all__ = [
    "Ctx",
    "compose_file",
    "did_you_mean",
    "kind_of",
    "mapping_of",
    "number_at",
    "read_file",
    "scalar_of",
    "text_at",
    "text_scalar",
]

# YAML 1.1 reads these plain words as booleans; in a condition they are almost always text
# (`in: [NO, SE]` means Norway and Sweden), so conditions keep the words as written.
_YAML11_BOOL_WORDS = {"yes", "no", "on", "off", "y", "n"}
_SAFE = SafeConstructor()
_CODE_LIKE = re.compile(r"^[+-]?(0[0-9_]|0[xXoObB]|.*[:_])")


@dataclass
class Ctx:
    file: str
    problems: list[Problem]

    def add(self, node: yaml.Node, message: str) -> None:
        m = node.start_mark
        self.problems.append(Problem(self.file, m.line + 1, m.column + 1, message))


def scalar_of(node: yaml.Node) -> AnyT:
    if isinstance(node, yaml.ScalarNode):
        try:
            return _SAFE.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError:
            # a tag no safe loader reads (a ``<<`` merge key, ``!foo``): the text as written,
            # which the checks then name at its place
            return node.value
    return None


def text_scalar(node: yaml.ScalarNode) -> AnyT:
    """A scalar inside a condition: yes/no/on/off stay words, not booleans. (A plain scalar
    has no style: None from PyYAML's Python parser, "" from libyaml.)"""
    value = scalar_of(node)
    if isinstance(value, bool) and not node.style and node.value.lower() in _YAML11_BOOL_WORDS:
        return node.value
    # YAML 1.1 also reads 02134 as an octal number and 10:30 as 630: codes such as postal
    # codes, phone prefixes and times stay text, as written
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and not node.style
        and _CODE_LIKE.match(node.value)
    ):
        return node.value
    return value


def kind_of(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    v = scalar_of(node)
    if v is None:
        return "nothing (null)"
    if isinstance(v, bool):
        return f"the boolean {node.value!r}"
    if isinstance(v, int | float):
        return f"the number {node.value}"
    return f"the text {node.value!r}"


def did_you_mean(key: str, allowed: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return f" — did you mean '{close[0]}'?"
    return f" (expected one of: {', '.join(allowed)})"


def mapping_of(
    ctx: Ctx, node: yaml.Node, allowed: tuple[str, ...], where: str
) -> dict[str, tuple[yaml.Node, yaml.Node]] | None:
    """The keys of a mapping node; unknown and repeated keys are reported."""
    if not isinstance(node, yaml.MappingNode):
        ctx.add(node, f"{where} must be a mapping, not {kind_of(node)}")
        return None
    out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for knode, vnode in node.value:
        key = scalar_of(knode)
        if not isinstance(key, str):
            ctx.add(knode, f"keys in {where} must be words, not {kind_of(knode)}")
            continue
        if key in out:
            ctx.add(knode, f"'{key}' is given twice in {where}; keep one")
            continue
        if key not in allowed:
            ctx.add(knode, f"unknown key '{key}' in {where}{did_you_mean(key, allowed)}")
            continue
        out[key] = (knode, vnode)
    return out


def number_at(
    ctx: Ctx, node: yaml.Node, what: str, *, positive: bool = False, text_ok: bool = False
) -> float | None:
    v = scalar_of(node)
    if text_ok and isinstance(v, str):
        n = number_of(v)
        if n is not None:
            v = n
    if isinstance(v, bool) or not isinstance(v, int | float):
        ctx.add(node, f"{what} must be a number, not {kind_of(node)}")
        return None
    f = float(v)
    if not math.isfinite(f):
        ctx.add(node, f"{what} must be a finite number, not {node.value}")
        return None
    if positive and f <= 0:
        ctx.add(node, f"{what} must be greater than 0, not {node.value}")
        return None
    return f


def text_at(ctx: Ctx, node: yaml.Node, what: str) -> str | None:
    v = scalar_of(node)
    if isinstance(v, int | float) and not isinstance(v, bool):
        v = node.value  # a number written as a name or event is meant as text
    if not isinstance(v, str) or not v.strip():
        ctx.add(node, f"{what} must be non-empty text, not {kind_of(node)}")
        return None
    return v


def unique_name(ctx: Ctx, node: yaml.Node, label: str, names: dict[str, yaml.Node]) -> str | None:
    """A rule's name, stripped, when no earlier rule in ``names`` has it (case-insensitively)."""
    nm = text_at(ctx, node, f"the name of {label}")
    if nm is None:
        return None
    nm = nm.strip()
    key = nm.lower()
    if key in names:
        first = names[key].start_mark.line + 1
        ctx.add(
            node, f"rule name '{nm}' is already used on line {first}; rule names must be unique"
        )
        return None
    names[key] = node
    return nm


def compose_file(text: str, file: str, error: type[ModelError], empty_message: str) -> yaml.Node:
    """The YAML text as a node tree; invalid or empty YAML raises ``error`` with its place.

    libyaml (the C parser PyYAML ships) composes a valid file in a tenth of the time and gives the
    same nodes, tags and places; invalid YAML is composed again by the Python parser, whose
    messages say what is wrong. libyaml takes a tab where the Python parser does not (``key:\tvalue``,
    one after a value): a file with a tab is composed by the Python parser alone, so a file is valid
    or not whether libyaml is installed or not."""
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None and "\t" not in text:
        try:
            root = yaml.compose(text, Loader=fast)
        except (yaml.YAMLError, UnicodeError):  # libyaml cannot encode a lone surrogate
            pass
        else:
            if root is None:
                raise error([Problem(file, 1, 1, empty_message)])
            return root
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise error(
            [Problem(file, line, col, f"this is not valid YAML: {e.problem or e.context}")]
        ) from None
    except yaml.YAMLError as e:
        raise error([Problem(file, 1, 1, f"this is not valid YAML: {e}")]) from None
    if root is None:
        raise error([Problem(file, 1, 1, empty_message)])
    return root


def read_file(path: str | Path, error: type[ModelError], missing_hint: str) -> str:
    """A file's UTF-8 text; a missing or unreadable file raises ``error`` naming it."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error([Problem(str(path), 1, 1, f"no such file; {missing_hint}")]) from None
    except UnicodeDecodeError as e:
        raise error(
            [Problem(str(path), 1, 1, f"the file is not UTF-8 text ({e.reason})")]
        ) from None
    except OSError as e:
        raise error([Problem(str(path), 1, 1, f"cannot read the file: {e.strerror}")]) from None
