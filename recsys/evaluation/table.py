"""Markdown result tables, printed at the end of every run and benchmark (the one formatter)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _cell(value: Any, floatfmt: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return format(value, floatfmt)
    return str(value)


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, floatfmt: str = ".4f") -> str:
    """Render rows (dicts) as a GitHub-flavoured markdown table; missing cells print as ``-``.

    >>> print(format_table([{"model": "pop", "hr@10": 0.04}, {"model": "bpr", "hr@10": 0.0912}]))
    | model | hr@10  |
    |-------|--------|
    | pop   | 0.0400 |
    | bpr   | 0.0912 |
    """
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    cells = [[_cell(row.get(column), floatfmt) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    numeric = [all(isinstance(row.get(column), (int, float)) or row.get(column) is None for row in rows) for column in columns]

    def line(values: Sequence[str]) -> str:
        padded = [v.rjust(w) if num and v != c else v.ljust(w) for v, w, num, c in zip(values, widths, numeric, columns)]
        return "| " + " | ".join(padded) + " |"

    header = "| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([header, rule, *(line(values) for values in cells)])
