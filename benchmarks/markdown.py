"""Markdown tables for the ``report_*.py`` sections of RESULTS.md (one formatter, shared)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any


def fmt_value(value: Any) -> str:
    """``–`` for missing or non-finite numbers; floats to 3 decimals (1 decimal from 100 up); others as text."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]],
                   fmt: Callable[[Any], str] = fmt_value) -> str:
    """A GitHub markdown table: ``header`` [columns], ``rows`` [rows][columns] each cell through ``fmt``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows])
