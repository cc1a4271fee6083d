"""The observed-data folder and its loader: the shipped files validate, and every kind of bad input is refused
with one ObservedDataError naming the file, the line and the field."""

from __future__ import annotations

import csv
import math
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from core.config import ConfigError
from core.observed import DEFAULT_DIR, FLAGS, ObservedDataError, load_observed

SERIES = "series,unit,description\nbtc_close_usd,USD,month-end close\nbase_rate,fraction per year,fed funds\n"
SOURCES = "source,title,publisher,url,accessed,what\nsrc_a,Title,Pub,https://example.org/a,2026-12-04,monthly closes\n"
MONTHLY_HEADER = "series,month,value,flag,source,note\n"
MONTHLY_ROWS = [
    "btc_close_usd,2021-01,33000.0,observed,src_a,",
    "btc_close_usd,2021-02,45000.0,observed,src_a,",
    "btc_close_usd,2021-03,58000.0,observed,src_a,",
    "btc_close_usd,2021-05,37000.0,observed,src_a,",
    "base_rate,2021-01,0.0009,observed,src_a,FEDFUNDS 0.09",
    "base_rate,2021-02,0.0,observed,src_a,",
]


def write_folder(
    tmp_path: Path, monthly_rows: list[str] | None = None, series: str = SERIES, sources: str = SOURCES
) -> Path:
    """A small valid folder (or one with the given rows) under tmp_path."""
    folder = tmp_path / "observed"
    folder.mkdir(parents=True)
    (folder / "series.csv").write_text(series, encoding="utf-8")
    (folder / "sources.csv").write_text(sources, encoding="utf-8")
    rows = MONTHLY_ROWS if monthly_rows is None else monthly_rows
    (folder / "monthly.csv").write_text(MONTHLY_HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    return folder


def with_row(row: str) -> list[str]:
    """The valid rows plus ``row`` appended; it lands on line len(MONTHLY_ROWS) + 2."""
    return [*MONTHLY_ROWS, row]


BAD_LINE = len(MONTHLY_ROWS) + 2


def expect_error(folder: Path, *fragments: str) -> str:
    with pytest.raises(ObservedDataError) as info:
        load_observed(folder)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert "\n" not in message
    return message


# --- the shipped data ---------------------------------------------------------------------------------


def test_shipped_data_loads_and_validates():
    data = load_observed()
    assert "btc_close_usd" in data.series_names
    assert "base_rate" in data.series_names
    for name in data.series_names:
        values = data.get(name)
        assert list(values.index) == sorted(values.index)
        assert np.isfinite(values.to_numpy()).all()
        assert set(data.flags(name)) <= set(FLAGS)
        assert data.unit(name)


def test_shipped_files_are_tidy():
    """Rows sorted by series then month, every source cited by some row or note, accessed date as briefed."""
    with (DEFAULT_DIR / "monthly.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    keys = [(r["series"], r["month"]) for r in rows]
    assert keys == sorted(keys)
    with (DEFAULT_DIR / "sources.csv").open(encoding="utf-8") as handle:
        sources = list(csv.DictReader(handle))
    cited = {r["source"] for r in rows}
    notes = " ".join(r["note"] for r in rows)
    for source in sources:
        assert source["accessed"] == "2026-12-04"
        assert source["source"] in cited or source["source"] in notes, source["source"]


def test_shipped_data_loads_fast():
    load_observed()
    start = time.perf_counter()
    load_observed()
    assert time.perf_counter() - start < 0.05


def test_shipped_btc_covers_2021_to_2025_and_the_2022_drawdown():
    data = load_observed()
    path = data.monthly_path("btc_close_usd", "2021-01", "2025-12")
    assert len(path) == 60
    btc = data.get("btc_close_usd")
    # month-end closes: Nov 2021 -> Nov 2022 is about -70 % (the -77 % often quoted is peak to trough, intramonth)
    drawdown = btc["2022-11"] / btc["2021-11"] - 1.0
    assert -0.80 < drawdown < -0.60
    assert btc["2021-11"] > 50_000 and btc["2022-11"] < 20_000


def test_shipped_base_rate_is_a_fraction_and_follows_the_2022_hikes():
    data = load_observed()
    rate = data.monthly_path("base_rate", "2021-01", "2025-12")
    assert len(rate) == 60
    assert rate.max() < 0.06 and rate.min() >= 0.0
    assert data.get("base_rate")["2021-06"] < 0.002 < 0.05 < data.get("base_rate")["2023-10"]


# --- accessors ----------------------------------------------------------------------------------------


def test_accessors_on_a_small_folder(tmp_path):
    data = load_observed(write_folder(tmp_path))
    assert data.series_names == ("btc_close_usd", "base_rate")
    assert data.unit("btc_close_usd") == "USD"
    assert data.months("btc_close_usd") == ["2021-01", "2021-02", "2021-03", "2021-05"]
    assert data.last_month("btc_close_usd") == "2021-05"
    assert data.source_of("btc_close_usd", "2021-02") == "src_a"
    assert list(data.window("btc_close_usd", "2021-02", "2021-04")) == [45000.0, 58000.0]
    assert data.get("base_rate")["2021-02"] == 0.0
    assert list(data.flags("btc_close_usd")) == ["observed"] * 4
    with pytest.raises(ObservedDataError, match="unknown series 'nope'"):
        data.get("nope")
    with pytest.raises(ObservedDataError, match="no value for 2021-04"):
        data.source_of("btc_close_usd", "2021-04")


def test_monthly_path_over_a_complete_range_returns_the_file_values(tmp_path):
    data = load_observed(write_folder(tmp_path))
    path = data.monthly_path("btc_close_usd", "2021-01", "2021-03")
    assert isinstance(path, np.ndarray)
    assert path.tolist() == [33000.0, 45000.0, 58000.0]


def test_monthly_path_over_a_gap_raises(tmp_path):
    data = load_observed(write_folder(tmp_path))
    with pytest.raises(ObservedDataError, match="2021-04"):
        data.monthly_path("btc_close_usd", "2021-01", "2021-05")
    with pytest.raises(ObservedDataError, match="after last"):
        data.monthly_path("btc_close_usd", "2021-03", "2021-01")
    with pytest.raises(ObservedDataError, match="not a month"):
        data.monthly_path("btc_close_usd", "2021-00", "2021-03")


def test_interpolated_row_with_a_note_is_accepted(tmp_path):
    rows = with_row(
        "btc_close_usd,2021-04,47000.0,interpolated,src_a,linear in log between 2021-03 and 2021-05"
    )
    data = load_observed(write_folder(tmp_path, rows))
    assert data.flags("btc_close_usd")["2021-04"] == "interpolated"
    assert len(data.monthly_path("btc_close_usd", "2021-01", "2021-05")) == 5


def test_error_is_a_config_error():
    assert issubclass(ObservedDataError, ConfigError)


# --- bad input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["series.csv", "sources.csv", "monthly.csv"])
def test_missing_file(tmp_path, name):
    folder = write_folder(tmp_path)
    (folder / name).unlink()
    expect_error(folder, name, "missing file")


def test_missing_folder(tmp_path):
    expect_error(tmp_path / "nowhere", "no such folder")


@pytest.mark.parametrize("name", ["series.csv", "sources.csv", "monthly.csv"])
def test_empty_file(tmp_path, name):
    folder = write_folder(tmp_path)
    (folder / name).write_text("", encoding="utf-8")
    expect_error(folder, name, "empty file")


@pytest.mark.parametrize("name", ["series.csv", "sources.csv", "monthly.csv"])
def test_bad_header(tmp_path, name):
    folder = write_folder(tmp_path)
    path = folder / name
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[0] = lines[0].replace(",", ";", 1)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    expect_error(folder, name, "line 1", "header")


def test_non_utf8_bytes(tmp_path):
    folder = write_folder(tmp_path)
    path = folder / "monthly.csv"
    path.write_bytes(path.read_bytes() + b"btc_close_usd,2021-06,1.0,observed,src_a,caf\xe9 latin-1\n")
    expect_error(folder, "monthly.csv", f"line {BAD_LINE}", "not valid UTF-8")


def test_non_utf8_bytes_in_the_catalogue(tmp_path):
    folder = write_folder(tmp_path)
    (folder / "series.csv").write_bytes(b"series,unit,description\nbtc_close_usd,\xff\xfe,x\n")
    expect_error(folder, "series.csv", "line 2", "not valid UTF-8")


@pytest.mark.parametrize("month", ["2023-13", "2023-00", "2023-1", "23-01", "2023/01", "", "3023-01"])
def test_bad_month(tmp_path, month):
    folder = write_folder(tmp_path, with_row(f"btc_close_usd,{month},1.0,observed,src_a,"))
    expect_error(folder, "monthly.csv", f"line {BAD_LINE}", f"month '{month}' is not a month (YYYY-MM")


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity"])
def test_non_finite_value(tmp_path, value):
    folder = write_folder(tmp_path, with_row(f"btc_close_usd,2021-06,{value},observed,src_a,"))
    expect_error(folder, "monthly.csv", f"line {BAD_LINE}", f"value '{value}' is not a finite number")


@pytest.mark.parametrize("value", ["", "abc", "1,0", "1_000", "0x10"])
def test_value_not_a_number(tmp_path, value):
    text = f'"{value}"' if "," in value else value
    folder = write_folder(tmp_path, with_row(f"btc_close_usd,2021-06,{text},observed,src_a,"))
    expect_error(folder, "monthly.csv", f"line {BAD_LINE}", "value", "is not a number")


@pytest.mark.parametrize("value", ["-1.0", "0", "0.0"])
def test_negative_or_zero_price(tmp_path, value):
    folder = write_folder(tmp_path, with_row(f"btc_close_usd,2021-06,{value},observed,src_a,"))
    expect_error(folder, "monthly.csv", f"line {BAD_LINE}", "must be > 0")


def test_rate_may_be_zero_or_slightly_negative_but_not_in_percent(tmp_path):
    data = load_observed(write_folder(tmp_path, with_row("base_rate,2021-03,-0.005,observed,src_a,")))
    assert math.isclose(data.get("base_rate")["2021-03"], -0.005)
    folder = write_folder(tmp_path / "b", with_row("base_rate,2021-03,4.33,observed,src_a,"))
    expect_error(folder, "monthly.csv", f"line {BAD_LINE}", "outside", "0.0433, not 4.33")


def test_unknown_flag(tmp_path):
    folder = write_folder(tmp_path, with_row("btc_close_usd,2021-06,1.0,guessed,src_a,"))
    expect_error(
        folder, "monthly.csv", f"line {BAD_LINE}", "flag 'guessed'", "observed, interpolated, estimated"
    )


@pytest.mark.parametrize("flag", ["interpolated", "estimated"])
def test_derived_row_without_a_note(tmp_path, flag):
    folder = write_folder(tmp_path, with_row(f"btc_close_usd,2021-04,47000.0,{flag},src_a,"))
    expect_error(folder, "monthly.csv", f"line {BAD_LINE}", "note is empty", flag)


def test_unknown_series(tmp_path):
    folder = write_folder(tmp_path, with_row("eth_close_usd,2021-06,1.0,observed,src_a,"))
    expect_error(folder, "monthly.csv", f"line {BAD_LINE}", "series 'eth_close_usd' is not in series.csv")


def test_unknown_source(tmp_path):
    folder = write_folder(tmp_path, with_row("btc_close_usd,2021-06,1.0,observed,memory,"))
    expect_error(folder, "monthly.csv", f"line {BAD_LINE}", "source 'memory' is not in sources.csv")


def test_duplicate_row(tmp_path):
    folder = write_folder(tmp_path, with_row("btc_close_usd,2021-02,46000.0,observed,src_a,"))
    expect_error(folder, "monthly.csv", f"line {BAD_LINE}", "duplicate", "2021-02", "first at line 3")


def test_wrong_field_count(tmp_path):
    folder = write_folder(tmp_path, with_row("btc_close_usd,2021-06,1.0,observed,src_a,a note, with a comma"))
    expect_error(folder, "monthly.csv", f"line {BAD_LINE}", "7 fields, expected 6")


def test_duplicate_series_in_catalogue(tmp_path):
    folder = write_folder(tmp_path, series=SERIES + "btc_close_usd,USD,again\n")
    expect_error(folder, "series.csv", "line 4", "listed twice")


def test_empty_unit_in_catalogue(tmp_path):
    folder = write_folder(tmp_path, series=SERIES + "hashprice_usd_per_ph_day,,x\n")
    expect_error(folder, "series.csv", "line 4", "unit is empty")


def test_bad_accessed_date_in_sources(tmp_path):
    folder = write_folder(tmp_path, sources=SOURCES + "src_b,T,P,https://x.org,2026-13-04,w\n")
    expect_error(folder, "sources.csv", "line 3", "accessed '2026-13-04' is not a date")


def test_duplicate_source(tmp_path):
    folder = write_folder(tmp_path, sources=SOURCES + "src_a,T,P,https://x.org,2026-12-04,w\n")
    expect_error(folder, "sources.csv", "line 3", "listed twice")


def test_shipped_folder_copy_with_one_bad_value_names_its_line(tmp_path):
    """The validation reaches real files too: corrupt one line of a copy of the shipped monthly.csv."""
    folder = tmp_path / "copy"
    shutil.copytree(DEFAULT_DIR, folder)
    path = folder / "monthly.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    target = next(i for i, line in enumerate(lines) if line.startswith("btc_close_usd,2022-11,"))
    parts = lines[target].split(",")
    parts[2] = "inf"
    lines[target] = ",".join(parts)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    expect_error(folder, "monthly.csv", f"line {target + 1}", "value 'inf'")
