"""The scenario market_2026 (issue 18, part 1): built from the sources table, traceable, loadable, runnable."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from test_invariants import Books

from core.config import load_scenario
from model.model import GPUCreditModel

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "experiments" / "scenarios" / "market_2026.toml"


def _builder():
    spec = importlib.util.spec_from_file_location(
        "build_market_2026", ROOT / "scripts" / "build_market_2026.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_market_2026"] = module
    spec.loader.exec_module(module)
    return module


builder = _builder()


def test_the_script_rebuilds_the_committed_scenario_byte_for_byte() -> None:
    assert builder.build() == SCENARIO.read_text(), (
        "experiments/scenarios/market_2026.toml is not what scripts/build_market_2026.py builds from "
        "data/market_2026/sources.csv and baseline.toml: rebuild it"
    )


NUMBER = re.compile(r"^\s*[A-Za-z_]+\s*=\s*(-?[0-9][0-9.e+-]*|\{[^}]*\})\s*(#.*)?$")


def test_every_number_of_the_network_traces_to_rows_of_the_table() -> None:
    rows = builder.read_sources()
    baseline = tomllib.loads(builder.BASELINE.read_text())
    text = SCENARIO.read_text().splitlines()
    start = text.index("[[explicit.agents]]")
    checked = 0
    for line in text[start:]:
        match = NUMBER.match(line)
        if not match or (match.group(1).startswith("{") and not re.search(r"\d", match.group(1))):
            continue
        if line.lstrip().startswith("seniority"):
            continue  # a rank (1 secured, 2 unsecured) set by the instrument, not a figure
        comment = match.group(2) or ""
        assert comment.startswith("# rows: "), f"untraced number: {line!r}"
        for ref in comment.removeprefix("# rows: ").split(", "):
            if ref.startswith("baseline:"):
                builder._lookup(baseline, ref.removeprefix("baseline:"))  # raises if the path is unknown
            else:
                assert ref in rows, f"{line!r} names row '{ref}', which is not in sources.csv"
        checked += 1
    assert checked > 50


def test_the_world_is_the_baselines_and_the_network_is_explicit() -> None:
    market, baseline = load_scenario("market_2026"), load_scenario("baseline")
    for section in ("world", "tenants", "lenders", "abs_tranches", "buyers", "cascade", "history"):
        assert getattr(market, section) == getattr(baseline, section), section
    assert market.generated is None and market.explicit is not None
    ids = {a.id for a in market.explicit.agents}
    assert {"coreweave", "nebius", "lambda", "iren", "core-scientific", "terawulf"} <= ids


def test_coreweave_debt_in_the_scenario_matches_its_filings() -> None:
    """Hand check: the 2030/2031 notes and the converts at face value; DDTL 1.0 rolled forward from
    $1,782.5M (Jun 2025, maturity Mar 2028) to Jul 2026: 20 of 33 months left."""
    loans = [x for x in load_scenario("market_2026").explicit.loans if x.debtor == "coreweave"]
    by_face = {round(x.principal) for x in loans}
    assert {2_000_000_000, 1_750_000_000, 2_250_000_000} <= by_face
    ddtl1 = next(x for x in loans if x.spread == pytest.approx(0.15 - 0.036))
    assert ddtl1.principal == pytest.approx(1_782_500_000 * 20 / 33)
    assert ddtl1.tenor_months == 20


def test_the_scenario_runs_a_year_and_keeps_the_books() -> None:
    model = GPUCreditModel("market_2026", months=12)
    books = Books(model)
    for _ in range(12):
        model.step()
        books.check("after step")
    assert model.state.world.month == 12


def test_a_coreweave_default_writes_down_its_lenders_and_keeps_the_books() -> None:
    model = GPUCreditModel("market_2026", months=3)
    books = Books(model)
    model.step()
    coreweave = model.names.index("coreweave")
    model.default_agent(coreweave)
    books.check("after CoreWeave's default")
    loans = model.ledger.loans
    theirs = loans.debtor == coreweave
    assert model.ledger.defaulted[coreweave]
    assert not loans.active[theirs].any()
    assert loans.exposure_at_default[theirs].sum() > 0
    model.step()
    books.check("a month later")


def test_a_fluidstack_default_is_paid_by_googles_backstop() -> None:
    """Fluidstack (no debt in the scenario) fails after month 1; its hosting fee to TeraWulf, 360 MW x
    150 USD per kW-month = 54.0 M a month (its GB200 count is the MW over the GB200's kW, rounded), is
    then paid by Google: 54.0 M after month 2, 108.0 M after month 3, out of the 3.2 B cap; no one else
    fails, and the cash that enters from Google keeps the books."""
    model = GPUCreditModel("market_2026", months=3)
    books = Books(model)
    spec = next(a for a in model.config.explicit.agents if a.id == "fluidstack-lake-mariner")
    gb200 = model.state.world.generations.index("GB200")
    fee = spec.fleet["GB200"] * model.state.world.generations.power_kw[gb200] * 150.0
    assert fee == pytest.approx(54.0e6, rel=1e-5)
    assert model.config.world.power.hosting_per_kw_month == 150.0
    model.step()
    model.default_agent(model.names.index("fluidstack-lake-mariner"))
    assert model.ledger.defaulted.sum() == 1
    guarantees = model.ledger.guarantees
    for months in (1, 2):
        model.step()
        books.check(f"{months} months after Fluidstack's default")
        assert guarantees.paid[0] == pytest.approx(months * fee, rel=1e-9)
    assert guarantees.cap_left[0] == pytest.approx(3.2e9 - 2 * fee, rel=1e-9)


def test_a_beignet_default_by_hand() -> None:
    """Beignet (Meta Hyperion's lease SPV) fails at the start with no cash and no collateral in the
    model: its noteholders lose their notes plus the 2 % workout cost, Pimco 18,000 + 360 = 18,360 M,
    BlackRock 3,060 M, the others (27,300 - 18,000 - 3,000 = 6,300 M) 6,426 M; each holds only these
    notes with capital ratio 0.5, so all three fail, and no one else."""
    from experiments.named.systemic import engine_cascade
    from model.metrics import lender_losses

    model = engine_cascade("market_2026", "beignet-hyperion", price_channel=True)
    expected = {"pimco": 18_360e6, "blackrock": 3_060e6, "beignet-other-noteholders": 6_426e6}
    defaulted = {model.names[i] for i in np.flatnonzero(model.ledger.defaulted)}
    assert defaulted == {"beignet-hyperion", *expected}
    losses = lender_losses(model)
    for lender, loss in expected.items():
        assert losses[model.names.index(lender)] == pytest.approx(loss, rel=1e-9)
    assert losses.sum() == pytest.approx(sum(expected.values()), rel=1e-9)


# --- the loader's checks of the table ------------------------------------------------------------


def _table_with(tmp_path: Path, row_id: str, column: str, value: str) -> Path:
    import csv

    with builder.SOURCES.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        if row["id"] == row_id:
            row[column] = value
    path = tmp_path / "sources.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=builder.COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.mark.parametrize(
    ("row_id", "column", "value", "message"),
    [
        ("crwv-notes2030", "unit", "EUR", "unit 'EUR' unknown"),
        ("crwv-notes2030", "as_of", "2025-13", "as_of must be YYYY or YYYY-MM"),
        ("crwv-notes2030", "value", "two billion", "is not a number"),
        ("crwv-notes2030-coupon", "value", "9.25", "out of range for unit per_year"),
        ("crwv-notes2030-maturity", "value", "2030-6", "a month must be YYYY-MM"),
        ("crwv-ddtl3", "value", "2.6e9", "a value is given exactly when"),
        ("crwv-notes2030", "read_or_estimated", "guessed", "read_or_estimated must be one of"),
        ("crwv-notes2030", "source", "", "a source is required"),
        ("crwv-notes2031", "id", "crwv-notes2030", "id must be present and unique"),
    ],
)
def test_bad_rows_are_refused_with_the_row_named(
    tmp_path: Path, row_id: str, column: str, value: str, message: str
) -> None:
    with pytest.raises(builder.SourceError, match=re.escape(message)):
        builder.read_sources(_table_with(tmp_path, row_id, column, value))


def test_the_sum_check_catches_a_mistyped_balance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        builder, "SOURCES", _table_with(tmp_path, "crwv-ddtl2-balance", "value", "4953.967e7")
    )
    with pytest.raises(builder.SourceError, match="CoreWeave facilities at 2025-06 sum to"):
        builder.build()


def test_a_maturity_before_the_start_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        builder, "SOURCES", _table_with(tmp_path, "crwv-notes2031-maturity", "value", "2026-01")
    )
    with pytest.raises(builder.SourceError, match="is not after the start"):
        builder.build()


@pytest.mark.parametrize(
    ("row_id", "value", "message"),
    [
        ("meta-hyperion-pimco", "26e9", "Beignet's named holders hold"),
        ("apld-coreweave-live-mw", "600", "CoreWeave's hosts"),
        ("wulf-google-backstop", "-1", "out of range"),
    ],
)
def test_the_new_structures_sum_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, row_id: str, value: str, message: str
) -> None:
    monkeypatch.setattr(builder, "SOURCES", _table_with(tmp_path, row_id, "value", value))
    with pytest.raises(builder.SourceError, match=re.escape(message)):
        builder.build()


def test_a_guarantee_dated_after_the_start_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(builder, "SOURCES", _table_with(tmp_path, "wulf-google-backstop", "as_of", "2027-01"))
    with pytest.raises(builder.SourceError, match="a guarantee dated after the start"):
        builder.build()


def test_check_mode_reports_a_stale_scenario(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "market_2026.toml"
    shutil.copy(SCENARIO, stale)
    stale.write_text(stale.read_text().replace("cash = 1300000000", "cash = 1"))
    monkeypatch.setattr(builder, "OUTPUT", stale)
    monkeypatch.setattr(builder, "ROOT", tmp_path)
    assert builder.main(["--check"]) == 1
