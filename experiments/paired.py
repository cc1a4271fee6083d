"""Paired differences between design points: replicate ``r`` runs on the same seed (and the same
posterior draw) at every point, and with one random stream per subsystem (``core.streams``) the
untouched subsystems draw the same numbers, so the difference of two points is measured run by run.
The interval is the 95 % normal-approximation interval of the mean paired difference (it is narrower
than the two arms' own intervals whenever the arms are positively correlated, as common random numbers
make them)."""

from __future__ import annotations

import math

import pandas as pd

Z95 = 1.959963984540054


def _numbers(series: pd.Series) -> pd.Series:
    """Numbers as floats (booleans as 0/1, anything else NaN)."""
    return pd.to_numeric(series, errors="coerce").astype(float)


def paired_difference(arm: pd.Series, base: pd.Series) -> tuple[float, float, float, int]:
    """Mean of ``arm - base`` over the replicates both have (indexed by replicate), its 95 % interval
    and the number of pairs (NaN where there is no pair)."""
    d = (_numbers(arm) - _numbers(base)).dropna()
    if d.empty:
        return math.nan, math.nan, math.nan, 0
    mean = float(d.mean())
    half = Z95 * float(d.std(ddof=1)) / math.sqrt(len(d)) if len(d) > 1 else 0.0
    return mean, mean - half, mean + half, len(d)


def arm(runs: pd.DataFrame, where: dict, metric: str, pair_on: tuple[str, ...] = ("replicate",)) -> pd.Series:
    """One arm of a comparison: ``metric`` of the runs whose columns equal ``where``, indexed by
    ``pair_on`` (the replicate; add a column such as a third parameter to pair within it)."""
    selected = runs
    for column, value in where.items():
        selected = selected[selected[column] == value]
    return selected.set_index(list(pair_on))[metric]


def paired_table(runs: pd.DataFrame, by: list[str], metrics: list[str], base: dict) -> pd.DataFrame:
    """For each group of ``by`` and each metric: the paired difference from the ``base`` group (its
    values of ``by``), matched on ``replicate``. Columns ``{metric}_diff``, ``_low``, ``_high``, ``_pairs``."""
    ok = runs[runs["status"] == "ok"] if "status" in runs else runs
    rows = []
    for key, group in ok.groupby(by, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key, strict=True))
        point = group.set_index("replicate")
        for m in metrics:
            mean, low, high, n = paired_difference(point[m], arm(ok, base, m))
            row.update({f"{m}_diff": mean, f"{m}_low": low, f"{m}_high": high, f"{m}_pairs": n})
        rows.append(row)
    return pd.DataFrame(rows)


def sweep_paired_differences(runs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Every design point against the first (point 0), paired by replicate: what a sweep reports."""
    numeric = [m for m in metrics if m in runs and pd.to_numeric(runs[m], errors="coerce").notna().any()]
    return paired_table(runs, ["point"], numeric, {"point": int(runs["point"].min())})
