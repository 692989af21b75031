"""Does the model work? Outcomes, backtests, calibration and points learned from history.

``metrics``, ``stages`` and ``learn`` are pure (arrays and values in, values out);
``outcomes``, ``backtest``, ``replay`` and ``learning`` read files and databases through
DuckDB; ``report`` and ``html`` render results. The facades are
``leadscore.analytics.backtest.backtest`` and ``leadscore.analytics.learning.learn``; this
package imports nothing heavy itself, so the CLI starts fast.
"""

from .stages import Labeling, parse_positive, parse_stage_map

__all__ = ["Labeling", "parse_positive", "parse_stage_map"]
