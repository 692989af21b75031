"""The funnel's pure rules: a lead's stage history folded into MQL episodes (``episodes``) and
the report's definitions — conversion rates, SLA outcomes, percentiles (``funnel``). No
database or web import (an import-linter contract), so tests call them with plain values."""
