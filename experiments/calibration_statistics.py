"""Statistics of one simulated run, the quantities a calibration compares with observations.

A statistic is a registered function of a run's monthly records (``model.metrics.steps``: one dict per
month with ``"date"`` = the calendar month ``YYYY-MM`` and the monthly series such as ``rent_index``,
``btc_price``, ``defaults_miner``) and of validated arguments. To add one, write its argument model (a
:class:`core.config.Strict` subclass) and decorate the function with ``@statistic("name", Args)``.
A statistic returns a float; NaN means "not computable for this run" (the particle is then rejected).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from core.config import Month, Strict


class Steps(list):
    """A run's monthly records (a list of dicts), with its end-of-run summary (``model.metrics.run_summary``,
    flattened as in sweeps: ``credit_miner_term_loan_recovered``, ``price_peak_to_trough_ASIC``, ...) for
    the statistics that read it; empty for simulators without one."""

    summary: dict[str, float]

    def __init__(self, rows: list[dict[str, Any]], summary: dict[str, Any] | None = None) -> None:
        super().__init__(rows)
        self.summary = summary or {}


@dataclass(frozen=True)
class Statistic:
    name: str
    args: type[Strict]
    fn: Callable[[Steps, Any], float]
    doc: str


STATISTICS: dict[str, Statistic] = {}


def statistic(name: str, args: type[Strict]) -> Callable:
    def register(fn: Callable[[Steps, Any], float]) -> Callable[[Steps, Any], float]:
        STATISTICS[name] = Statistic(name, args, fn, (fn.__doc__ or "").strip().splitlines()[0])
        return fn

    return register


# --- argument models ---------------------------------------------------------------------------


class Window(Strict):
    """A monthly series over the months first..last (inclusive; default: the whole run)."""

    series: str = Field(description="a monthly column of the run, e.g. rent_index")
    first: Month | None = None
    last: Month | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.first and self.last and self.first > self.last:
            raise ValueError(f"first ({self.first}) is after last ({self.last})")
        return self

    def months(self) -> list[str]:
        return [m for m in (self.first, self.last) if m]


class At(Strict):
    series: str
    month: Month

    def months(self) -> list[str]:
        return [self.month]


class Ratio(Strict):
    """value at month b / value at month a"""

    series: str
    a: Month
    b: Month

    def months(self) -> list[str]:
        return [self.a, self.b]


class Final(Strict):
    series: str

    def months(self) -> list[str]:
        return []


class DefaultsBy(Strict):
    kinds: list[str] = Field(min_length=1, description="agent kinds, e.g. ['miner', 'neocloud']")
    month: Month | None = Field(default=None, description="count by this month (default: the end)")

    @property
    def series(self) -> list[str]:
        return [f"defaults_{k}" for k in self.kinds]

    def months(self) -> list[str]:
        return [self.month] if self.month else []


class SummaryValue(Strict):
    metric: str = Field(description="a run-summary metric, e.g. price_peak_to_trough_ASIC")

    @property
    def series(self) -> list[str]:
        return []

    @property
    def metrics(self) -> list[str]:
        return [self.metric]

    def months(self) -> list[str]:
        return []


class SummaryRatio(Strict):
    numerator: str = Field(description="a run-summary metric, e.g. credit_miner_term_loan_recovered")
    denominator: str = Field(
        description="a run-summary metric, e.g. credit_miner_term_loan_exposure_at_default"
    )

    @property
    def series(self) -> list[str]:
        return []

    @property
    def metrics(self) -> list[str]:
        return [self.numerator, self.denominator]

    def months(self) -> list[str]:
        return []


# --- helpers -------------------------------------------------------------------------------------


def _values(steps: Steps, series: str, first: str | None = None, last: str | None = None) -> np.ndarray:
    return np.array(
        [
            float(row[series])
            for row in steps
            if (first is None or row["date"] >= first) and (last is None or row["date"] <= last)
        ],
        dtype=float,
    )


def _at(steps: Steps, series: str, month: str) -> float:
    for row in steps:  # the last record of that month (a month has one row)
        if row["date"] == month:
            return float(row[series])
    return math.nan


# --- the statistics ------------------------------------------------------------------------------


@statistic("series_mean", Window)
def series_mean(steps: Steps, a: Window) -> float:
    """Mean of a series over first..last."""
    x = _values(steps, a.series, a.first, a.last)
    return float(x.mean()) if x.size else math.nan


@statistic("series_max", Window)
def series_max(steps: Steps, a: Window) -> float:
    """Largest value of a series over first..last."""
    x = _values(steps, a.series, a.first, a.last)
    return float(x.max()) if x.size else math.nan


@statistic("series_min", Window)
def series_min(steps: Steps, a: Window) -> float:
    """Smallest value of a series over first..last."""
    x = _values(steps, a.series, a.first, a.last)
    return float(x.min()) if x.size else math.nan


@statistic("series_sd", Window)
def series_sd(steps: Steps, a: Window) -> float:
    """Sample standard deviation of a series over first..last."""
    x = _values(steps, a.series, a.first, a.last)
    return float(x.std(ddof=1)) if x.size > 1 else math.nan


@statistic("series_autocorr", Window)
def series_autocorr(steps: Steps, a: Window) -> float:
    """Lag-1 autocorrelation of a series over first..last."""
    x = _values(steps, a.series, a.first, a.last)
    if x.size < 3:
        return math.nan
    d = x - x.mean()
    denom = float(d @ d)
    return float(d[1:] @ d[:-1]) / denom if denom > 0 else 0.0


@statistic("series_value_at", At)
def series_value_at(steps: Steps, a: At) -> float:
    """Value of a series in one month."""
    return _at(steps, a.series, a.month)


@statistic("series_ratio", Ratio)
def series_ratio(steps: Steps, a: Ratio) -> float:
    """Value of a series at month b divided by its value at month a."""
    start, end = _at(steps, a.series, a.a), _at(steps, a.series, a.b)
    return end / start if start not in (0.0,) and math.isfinite(start) else math.nan


@statistic("series_max_drawdown", Window)
def series_max_drawdown(steps: Steps, a: Window) -> float:
    """Largest fall from a running peak, as a fraction of the peak (0..1), over first..last."""
    x = _values(steps, a.series, a.first, a.last)
    if not x.size or np.any(x <= 0):
        return math.nan
    return float(np.max(1.0 - x / np.maximum.accumulate(x)))


@statistic("series_log_return_sd", Window)
def series_log_return_sd(steps: Steps, a: Window) -> float:
    """Annualised volatility: sd of monthly log changes x sqrt(12), over first..last."""
    x = _values(steps, a.series, a.first, a.last)
    if x.size < 3 or np.any(x <= 0):
        return math.nan
    return float(np.diff(np.log(x)).std(ddof=1) * math.sqrt(12.0))


@statistic("final_value", Final)
def final_value(steps: Steps, a: Final) -> float:
    """Value of a series in the last month of the run."""
    return float(steps[-1][a.series]) if steps else math.nan


@statistic("defaults_by", DefaultsBy)
def defaults_by(steps: Steps, a: DefaultsBy) -> float:
    """Number of agents of the given kinds that have defaulted by a month (default: the end)."""
    row = steps[-1] if a.month is None else next((r for r in steps if r["date"] == a.month), None)
    if row is None:
        return math.nan
    return float(sum(row[f"defaults_{k}"] for k in a.kinds))


def series_of(args: Strict) -> list[str]:
    """The monthly columns a statistic's arguments read."""
    series = args.series
    return list(series) if isinstance(series, list) else [series]


@statistic("summary_value", SummaryValue)
def summary_value(steps: Steps, a: SummaryValue) -> float:
    """A metric of the run's summary (e.g. the price's peak-to-trough fall of a generation)."""
    value = getattr(steps, "summary", {}).get(a.metric)
    return float(value) if value is not None else math.nan


@statistic("summary_ratio", SummaryRatio)
def summary_ratio(steps: Steps, a: SummaryRatio) -> float:
    """numerator / denominator of the run's summary (e.g. recovered / written-off principal); NaN if 0."""
    summary = getattr(steps, "summary", {})
    top, bottom = summary.get(a.numerator), summary.get(a.denominator)
    if top is None or not bottom:
        return math.nan
    return float(top) / float(bottom)
