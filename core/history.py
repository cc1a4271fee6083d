"""History mode: observed monthly series drive the world, then the processes continue from them.

A scenario with a ``[history]`` section (``core.config.History``) names the observed series that drive
its world and the last month they drive it. This module reads them from ``data/observed`` and writes
them into the scenario as the processes' start values and ``path`` lists, so a run, its manifest and
its replay all see the same numbers: the resolved config records every observed value that drove it.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.common import PROJECT_DIR, ConfigError, month_index
from core.observed import ObservedData, load_observed, month_from_index

if TYPE_CHECKING:
    from core.config import Scenario

# history field -> (section of the raw scenario, start-value key, path key)
DRIVEN = {
    "btc": (("world", "btc"), "initial_price", "path"),
    "base_rate": (("world",), "base_rate", "base_rate_path"),
    "rent": (("world", "rent"), "h100_rent_per_hour", "path"),
    "hashprice": (("world", "btc"), None, "hashprice_path"),  # sets the hashrate from month 1 on
}


def observed_data(folder: str) -> ObservedData:
    """The validated data folder, read once per process while its files are unchanged: every model built
    from a history scenario (a calibration builds thousands) resolves its paths again."""
    path = PROJECT_DIR / folder
    stamps = tuple(
        (name, (path / name).stat().st_mtime_ns if (path / name).is_file() else None)
        for name in ("series.csv", "sources.csv", "monthly.csv")
    )
    return _read_observed(str(path), stamps)


@lru_cache(maxsize=4)
def _read_observed(path: str, stamps: tuple) -> ObservedData:
    return load_observed(Path(path))


def last_complete_month(data: ObservedData, series: list[str], start: str) -> str:
    """The last month up to which every series covers start .. month without a gap."""
    last = None
    for name in series:
        months = set(data.months(name))
        if start not in months:
            raise ConfigError(
                f"history.{name}: the series has no value for the start month {start} "
                f"(it covers {data.first_month(name)} .. {data.last_month(name)} with gaps)"
            )
        index = month_index(start)
        while month_from_index(index + 1) in months:
            index += 1
        last = index if last is None else min(last, index)
    return month_from_index(last)


def observed_until(scenario: Scenario, data: ObservedData | None = None) -> str:
    """The month the history runs to, with 'latest' resolved against the data."""
    history = scenario.history
    if history.until != "latest":
        return history.until
    data = data or observed_data(history.folder)
    driven = [getattr(history, field) for field in DRIVEN if getattr(history, field)]
    return last_complete_month(data, driven, scenario.world.start)


def with_observed_paths(raw: dict[str, Any], scenario: Scenario) -> dict[str, Any]:
    """The raw scenario with the driven processes' start values and paths taken from the data."""
    history = scenario.history
    data = observed_data(history.folder)
    start = scenario.world.start
    for field in DRIVEN:
        name = getattr(history, field)
        if name and name not in data.series_names:
            known = ", ".join(data.series_names)
            raise ConfigError(f"history.{field}: no series '{name}' in {history.folder} (known: {known})")
    until = observed_until(scenario, data)
    if month_index(until) < month_index(start):
        raise ConfigError(f"history.until: {until} is before world.start {start}")
    out = copy.deepcopy(raw)
    out["history"] = {**raw["history"], "until": until}
    for field, (section, start_key, path_key) in DRIVEN.items():
        name = getattr(history, field)
        if not name:
            continue
        node = out
        for key in section:
            node = node[key]
        values = data.monthly_path(name, start, until)  # raises, naming the gap, if a month is missing
        if start_key is not None:
            node[start_key] = float(values[0])
        if until != start:  # a history of the start month alone sets the start state, not the paths
            node[path_key] = [float(v) for v in values[1:]]
    return out
