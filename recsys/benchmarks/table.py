"""Result tables for benchmarks: the one formatter lives in :mod:`recsys.evaluation.table`."""

from recsys.evaluation.table import format_table

__all__ = ["format_table"]
