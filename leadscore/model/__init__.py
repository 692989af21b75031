"""The scoring-model language: parse, validate and hold a model (see docs/model.md)."""

from .loader import load_model, parse_model
from .schema import (
    All,
    Any,
    Condition,
    EngagementRule,
    FitRule,
    Grades,
    Leaf,
    Model,
    Not,
    Rule,
    leaves,
)
from .values import lookup, nest, norm_text, number_of, text_of

__all__ = [
    "All",
    "Any",
    "Condition",
    "EngagementRule",
    "FitRule",
    "Grades",
    "Leaf",
    "Model",
    "Not",
    "Rule",
    "leaves",
    "load_model",
    "lookup",
    "nest",
    "norm_text",
    "number_of",
    "parse_model",
    "text_of",
]
