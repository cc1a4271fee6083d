"""Observed monthly data: the history a run can be replayed against or calibrated to.

The data live in ``data/observed/`` as three CSV files (see ``data/observed/README.md``):

* ``series.csv``   ``series,unit,description``: the catalogue, one row per series;
* ``sources.csv``  ``source,title,publisher,url,accessed,what``: where every value was read;
* ``monthly.csv``  ``series,month,value,flag,source,note``: tidy rows, one per (series, month).

:func:`load_observed` validates all three before anything uses them, because a silently wrong history
(a percent read as a fraction, a duplicated month, a value with no source) would contaminate every result
built on it. Every problem raises :class:`ObservedDataError` with one message that names the file, the
line, the field and what is allowed, e.g. ``data/observed/monthly.csv line 14: month '2023-13' is not a
month (YYYY-MM)``.

Value rules: every value must be a finite number. Prices, rents, hashrates and spreads must be > 0 (a zero
or negative price is a data-entry error, and the model takes logs of them). Only the series in
:data:`SIGNED_SERIES` may be zero or negative: interest rates, which were ~0 in 2021 and are negative in
some currencies; they must lie in [-0.05, 0.5] so that a rate typed in percent (4.33 for 4.33 %) is caught.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from core.common import ConfigError, month_index

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "data" / "observed"

FLAGS = ("observed", "interpolated", "estimated")
"""``observed``: read in the source; ``interpolated``: filled between observed neighbours (the note says how);
``estimated``: arithmetic on read figures (the note gives the derivation)."""

NOTE_REQUIRED = frozenset({"interpolated", "estimated"})

SIGNED_SERIES = frozenset({"base_rate"})
"""Series whose values may be zero or negative (interest rates); every other series must be > 0."""

RATE_BOUNDS = (-0.05, 0.5)
"""Allowed range of a signed (rate) series, as a fraction per year."""

HEADERS = {
    "series.csv": ("series", "unit", "description"),
    "sources.csv": ("source", "title", "publisher", "url", "accessed", "what"),
    "monthly.csv": ("series", "month", "value", "flag", "source", "note"),
}

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(nan|inf|infinity)$", re.IGNORECASE)


class ObservedDataError(ConfigError):
    """The observed-data folder cannot be used; the message names the file, line and field."""


def month_from_index(index: int) -> str:
    """Inverse of :func:`core.config.month_index`: months since year 0 back to ``YYYY-MM``."""
    year, mon = divmod(index, 12)
    return f"{year:04d}-{mon + 1:02d}"


def check_month(text: str, where: str, field: str = "month") -> str:
    """Return ``text`` if it is a real month ``YYYY-MM``; raise naming ``where`` otherwise."""
    match = _MONTH.match(text)
    if not match or not 1 <= int(match.group(2)) <= 12 or not 1900 <= int(match.group(1)) <= 2200:
        raise ObservedDataError(f"{where}: {field} '{text}' is not a month (YYYY-MM, years 1900-2200)")
    return text


def _read_rows(path: Path) -> list[tuple[int, list[str]]]:
    """The data rows of one CSV file with their line numbers, after checking encoding and header."""
    name = path.name
    if not path.is_file():
        raise ObservedDataError(f"{path}: missing file (the folder needs {', '.join(HEADERS)})")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ObservedDataError(
            f"{path} line {line}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8"
        ) from None
    if not text.strip():
        raise ObservedDataError(f"{path}: empty file (expected the header {','.join(HEADERS[name])})")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    expected = HEADERS[name]
    rows: list[tuple[int, list[str]]] = []
    try:
        header = next(reader)
        if tuple(h.strip() for h in header) != expected:
            raise ObservedDataError(
                f"{path} line 1: header '{','.join(header)}' is not the expected '{','.join(expected)}'"
            )
        for record in reader:
            if not record or all(not cell.strip() for cell in record):
                continue  # blank line
            if len(record) != len(expected):
                raise ObservedDataError(
                    f"{path} line {reader.line_num}: {len(record)} fields, expected {len(expected)} "
                    f"({','.join(expected)}); quote fields that contain commas"
                )
            rows.append((reader.line_num, [cell.strip() for cell in record]))
    except csv.Error as exc:
        raise ObservedDataError(f"{path} line {reader.line_num}: not valid CSV ({exc})") from None
    return rows


def _read_catalogue(path: Path) -> dict[str, tuple[str, str]]:
    """``series.csv``: name -> (unit, description)."""
    catalogue: dict[str, tuple[str, str]] = {}
    for line, (name, unit, description) in _read_rows(path):
        where = f"{path} line {line}"
        if not _NAME.match(name):
            raise ObservedDataError(f"{where}: series '{name}' is not a snake_case name ([a-z][a-z0-9_]*)")
        if name in catalogue:
            raise ObservedDataError(f"{where}: series '{name}' is listed twice")
        if not unit:
            raise ObservedDataError(f"{where}: unit is empty (give the unit, e.g. USD)")
        if not description:
            raise ObservedDataError(f"{where}: description is empty")
        catalogue[name] = (unit, description)
    return catalogue


def _read_sources(path: Path) -> dict[str, dict[str, str]]:
    """``sources.csv``: id -> its row as a dict."""
    sources: dict[str, dict[str, str]] = {}
    for line, cells in _read_rows(path):
        where = f"{path} line {line}"
        row = dict(zip(HEADERS["sources.csv"], cells, strict=True))
        source = row["source"]
        if not _NAME.match(source):
            raise ObservedDataError(f"{where}: source '{source}' is not a snake_case id ([a-z][a-z0-9_]*)")
        if source in sources:
            raise ObservedDataError(f"{where}: source '{source}' is listed twice")
        for field in ("title", "url", "what"):
            if not row[field]:
                raise ObservedDataError(f"{where}: {field} is empty (every source says where and what)")
        accessed = row["accessed"]
        try:
            if not _DATE.match(accessed):
                raise ValueError
            date.fromisoformat(accessed)
        except ValueError:
            raise ObservedDataError(f"{where}: accessed '{accessed}' is not a date (YYYY-MM-DD)") from None
        sources[source] = row
    return sources


def _parse_value(text: str, series: str, where: str) -> float:
    """A finite float obeying the sign rule of ``series``."""
    if not _NUMBER.match(text):
        raise ObservedDataError(f"{where}: value '{text}' is not a number")
    value = float(text)
    if not math.isfinite(value):
        raise ObservedDataError(f"{where}: value '{text}' is not a finite number (no nan or inf)")
    if series in SIGNED_SERIES:
        low, high = RATE_BOUNDS
        if not low <= value <= high:
            raise ObservedDataError(
                f"{where}: value {text} of rate series '{series}' is outside [{low}, {high}] "
                "(a fraction per year: 0.0433, not 4.33)"
            )
    elif value <= 0.0:
        raise ObservedDataError(
            f"{where}: value {text} of series '{series}' must be > 0 (prices, rents, rates)"
        )
    return value


@dataclass(frozen=True)
class _Series:
    months: tuple[str, ...]
    values: np.ndarray
    flags: tuple[str, ...]
    sources: tuple[str, ...]
    notes: tuple[str, ...]


class ObservedData:
    """Validated observed series, read-only; every accessor returns data sorted by month."""

    def __init__(
        self,
        catalogue: dict[str, tuple[str, str]],
        sources: dict[str, dict[str, str]],
        series: dict[str, _Series],
        folder: Path,
    ) -> None:
        self._catalogue = catalogue
        self._sources = sources
        self._series = series
        self.folder = folder

    # --- the catalogue --------------------------------------------------------------------------------

    @property
    def series_names(self) -> tuple[str, ...]:
        """Every series in the catalogue, in catalogue order."""
        return tuple(self._catalogue)

    def _entry(self, name: str) -> _Series:
        if name not in self._catalogue:
            raise ObservedDataError(f"unknown series '{name}'; known: {', '.join(self._catalogue)}")
        return self._series[name]

    def unit(self, name: str) -> str:
        """The unit of ``name`` as written in ``series.csv``."""
        self._entry(name)
        return self._catalogue[name][0]

    def description(self, name: str) -> str:
        """What ``name`` measures (``series.csv``)."""
        self._entry(name)
        return self._catalogue[name][1]

    def source_info(self, source: str) -> dict[str, str]:
        """The ``sources.csv`` row of ``source`` (title, publisher, url, accessed, what)."""
        if source not in self._sources:
            raise ObservedDataError(f"unknown source '{source}'")
        return dict(self._sources[source])

    # --- the values -----------------------------------------------------------------------------------

    def get(self, name: str) -> pd.Series:
        """All values of ``name`` as floats indexed by month string (sorted); a copy."""
        entry = self._entry(name)
        return pd.Series(
            entry.values.copy(), index=pd.Index(entry.months, name="month"), name=name, dtype=float
        )

    def flags(self, name: str) -> pd.Series:
        """The flag (observed / interpolated / estimated) of every value of ``name``, indexed by month."""
        entry = self._entry(name)
        return pd.Series(
            list(entry.flags), index=pd.Index(entry.months, name="month"), name=name, dtype=object
        )

    def notes(self, name: str) -> pd.Series:
        """The note of every value of ``name``, indexed by month."""
        entry = self._entry(name)
        return pd.Series(
            list(entry.notes), index=pd.Index(entry.months, name="month"), name=name, dtype=object
        )

    def months(self, name: str) -> list[str]:
        """The months that have a value for ``name``, sorted."""
        return list(self._entry(name).months)

    def first_month(self, name: str) -> str:
        """The earliest month with a value for ``name``."""
        entry = self._entry(name)
        if not entry.months:
            raise ObservedDataError(f"series '{name}' has no values")
        return entry.months[0]

    def last_month(self, name: str) -> str:
        """The latest month with a value for ``name``."""
        entry = self._entry(name)
        if not entry.months:
            raise ObservedDataError(f"series '{name}' has no values")
        return entry.months[-1]

    def window(self, name: str, first: str, last: str) -> pd.Series:
        """The values of ``name`` from ``first`` to ``last`` inclusive (months without a value are absent)."""
        first, last = self._range(first, last)
        series = self.get(name)
        return series[(series.index >= first) & (series.index <= last)]

    def source_of(self, name: str, month: str) -> str:
        """The source id of the value of ``name`` in ``month``."""
        entry = self._entry(name)
        check_month(month, f"source_of('{name}')")
        try:
            return entry.sources[entry.months.index(month)]
        except ValueError:
            raise ObservedDataError(f"series '{name}' has no value for {month}") from None

    def monthly_path(self, name: str, first: str, last: str) -> np.ndarray:
        """The values of ``name`` for every month from ``first`` to ``last`` inclusive, as an array.

        History mode needs a complete path: a missing month raises (naming the gaps) instead of being
        filled silently. Fill gaps in ``monthly.csv`` with flagged ``interpolated`` rows if that is wanted.
        """
        first, last = self._range(first, last)
        entry = self._entry(name)
        by_month = dict(zip(entry.months, entry.values, strict=True))
        wanted = [month_from_index(i) for i in range(month_index(first), month_index(last) + 1)]
        missing = [m for m in wanted if m not in by_month]
        if missing:
            shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
            raise ObservedDataError(
                f"series '{name}' has no value for {len(missing)} of the {len(wanted)} months "
                f"{first}..{last}: {shown}"
            )
        return np.array([by_month[m] for m in wanted], dtype=float)

    @staticmethod
    def _range(first: str, last: str) -> tuple[str, str]:
        check_month(first, "range", "first")
        check_month(last, "range", "last")
        if first > last:
            raise ObservedDataError(f"range: first {first} is after last {last}")
        return first, last


def load_observed(folder: Path | str = DEFAULT_DIR) -> ObservedData:
    """Read and validate ``series.csv``, ``sources.csv`` and ``monthly.csv`` from ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ObservedDataError(f"{folder}: no such folder (expected {', '.join(HEADERS)} inside)")
    catalogue = _read_catalogue(folder / "series.csv")
    sources = _read_sources(folder / "sources.csv")
    path = folder / "monthly.csv"
    collected: dict[str, list[tuple[str, float, str, str, str]]] = {name: [] for name in catalogue}
    seen: dict[tuple[str, str], int] = {}
    for line, (series, month, value_text, flag, source, note) in _read_rows(path):
        where = f"{path} line {line}"
        if series not in catalogue:
            raise ObservedDataError(f"{where}: series '{series}' is not in series.csv")
        check_month(month, where)
        value = _parse_value(value_text, series, where)
        if flag not in FLAGS:
            raise ObservedDataError(f"{where}: flag '{flag}' is not one of {', '.join(FLAGS)}")
        if source not in sources:
            raise ObservedDataError(f"{where}: source '{source}' is not in sources.csv")
        if flag in NOTE_REQUIRED and not note:
            raise ObservedDataError(
                f"{where}: note is empty; a row flagged '{flag}' must say how it was derived"
            )
        key = (series, month)
        if key in seen:
            raise ObservedDataError(
                f"{where}: duplicate row for series '{series}' month {month} (first at line {seen[key]})"
            )
        seen[key] = line
        collected[series].append((month, value, flag, source, note))
    series_data: dict[str, _Series] = {}
    for name, items in collected.items():
        items.sort(key=lambda item: item[0])
        series_data[name] = _Series(
            months=tuple(i[0] for i in items),
            values=np.array([i[1] for i in items], dtype=float),
            flags=tuple(i[2] for i in items),
            sources=tuple(i[3] for i in items),
            notes=tuple(i[4] for i in items),
        )
    return ObservedData(catalogue, sources, series_data, folder)
