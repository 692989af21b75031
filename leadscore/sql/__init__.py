"""The scoring model as one SQL query: compiled once to a sqlglot tree, rendered per dialect."""

from .compiler import DIALECTS, compile_score, score_sql
from .dialects import AsOf
from .sources import ColumnTables, JsonTables, Source

__all__ = ["DIALECTS", "AsOf", "ColumnTables", "JsonTables", "Source", "compile_score", "score_sql"]
