"""The pieces every report table is made of: a target row, number formatting, a table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Target:
    key: str
    title: str
    measured: str  # what the ratio is made of, with figures
    value: float  # the measured ratio (or figure)
    bound: float
    higher_is_better: bool
    unit: str = "x"
    issue: int = 7  # the issue whose target this is: the report has a table per issue

    @property
    def status(self) -> str:
        if self.value is None or math.isnan(self.value):
            return "n/a"
        ok = self.value >= self.bound if self.higher_is_better else self.value <= self.bound
        return "PASS" if ok else "MISS"

    @property
    def target_text(self) -> str:
        sign = "≥" if self.higher_is_better else "≤"
        return f"{sign} {self.bound:g}{'' if self.unit == 'x' else ' '}{self.unit}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["value"] = None if self.value is None or math.isnan(self.value) else self.value
        data["status"] = self.status
        data["target"] = self.target_text
        return data


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return [
        line(header),
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
        *(line(r) for r in rows),
    ]
