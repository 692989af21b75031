"""Does the model work? Outcomes, backtests, calibration and points learned from history.

``metrics`` and ``stages`` are pure (arrays and values in, values out); ``outcomes`` and
``backtest`` read files and databases through DuckDB; ``report`` renders results; ``learn``
fits a readable model.
"""

from .backtest import BacktestOptions, OutcomeSource, backtest, parse_capacity
from .stages import Labeling, parse_positive, parse_stage_map

__all__ = [
    "BacktestOptions",
    "Labeling",
    "OutcomeSource",
    "backtest",
    "parse_capacity",
    "parse_positive",
    "parse_stage_map",
]
