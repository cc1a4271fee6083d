"""What every layer needs and the scenario schema, the observed data and the history mode share: the
project folder, the configuration error and month arithmetic (kept apart so those modules do not import
each other)."""

from __future__ import annotations

from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A scenario (or experiment) that cannot run; the message names the field and what is allowed."""


def month_index(month: str) -> int:
    """Months since year 0, so that differences between ``YYYY-MM`` strings are month counts."""
    year, mon = month.split("-")
    return int(year) * 12 + int(mon) - 1
