"""Display names of a scenario's agents, for figures and the visualiser.

The scenario schema has no display name (its ids are short and descriptive, e.g. ``coreweave``,
``ddtl4-5-syndicate``), so a scenario built from real data may ship ``data/SCENARIO/names.csv`` with
the columns ``id`` and ``name`` (market_2026 does). An id without a row keeps its id.
"""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@cache
def names_table(scenario_name: str) -> dict[str, str]:
    """id -> display name from ``data/SCENARIO/names.csv`` (empty when the scenario has none)."""
    path = ROOT / "data" / scenario_name / "names.csv"
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        return {row["id"]: row["name"] for row in csv.DictReader(handle)}


def display_names(scenario_name: str, ids: list[str]) -> list[str]:
    """Each id's display name, or the id itself when the scenario names none."""
    table = names_table(scenario_name)
    return [table.get(i, i) for i in ids]
