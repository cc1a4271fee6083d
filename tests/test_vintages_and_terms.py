"""Issue 22: GPUs age from their purchase, absent covenants are absent (not a large number), loans and
bonds mature on their own terms, and every lender parameter acts. Each test fails on the code before
the fix (commit 7dfba3f)."""

from __future__ import annotations

import numpy as np
import pytest
from scenario_builders import baseline_world_data, explicit_market, with_overrides
from test_mechanisms import H100, PINNED, one_borrower

from core.config import ConfigError, load_scenario
from core.ledger import INSTRUMENTS, Kind
from model.cascade import book_value
from model.cascade import test_and_cure as covenant_round  # aliased: pytest would collect test_*
from model.model import GPUCreditModel

BONDS = (INSTRUMENTS.index("high_yield"), INSTRUMENTS.index("convertible"))


# --- 1. physical life counts from the purchase --------------------------------------------------------


def two_fleets(months: int) -> GPUCreditModel:
    """Two debt-free neo-clouds with H100s of a 3-year life (the world starts 2025-01; H100 launched
    2022-09): one bought at launch (life ends 2025-09, month 8), one bought 2024-07 (ends 2027-07,
    month 30)."""
    agents = [
        {"id": "old", "type": "neocloud", "fleet": {"H100": 100}, "cash": 1e6},
        {"id": "young", "type": "neocloud", "fleet": {"H100": 100}, "cash": 1e6, "purchase_month": "2024-07"},
        {"id": "bank", "type": "bank", "cash": 1e6},
    ]
    overrides = {**PINNED}
    overrides["world.generations"] = [dict(g) for g in PINNED["world.generations"]]
    overrides["world.generations"][H100]["physical_life_years"] = 3
    return GPUCreditModel(explicit_market(agents, overrides=overrides, months=months), seed=1)


def test_each_fleet_is_scrapped_at_its_own_purchase_plus_life() -> None:
    model = two_fleets(months=12)
    for _ in range(7):
        model.step()
    assert model.ledger.gpus[:2, H100].tolist() == [100.0, 100.0]
    model.step()  # month 8: the units bought at launch reach the end of their life, the others do not
    assert model.ledger.gpus[:2, H100].tolist() == [0.0, 100.0]
    assert model.ledger.gpus_scrapped[H100] == 100.0
    # the generation is now valued on the units left in the market: 22 months of life, not none
    assert model.state.world.remaining_life()[H100] == 30 - 8
    assert model.state.fundamental()[H100] > 0


def test_a_younger_fleet_is_worth_more_as_collateral_and_on_the_books() -> None:
    """At the start the fleet bought at launch has 8 months of life left, the other 30: each is valued
    over its own life, and depreciated on the books from its own purchase (6 years straight-line)."""
    model = two_fleets(months=12)
    state = model.state
    table = state.world.values_by_life(state.world.expected_rent_path(), 0.10)
    assert state.unit_values()[0, H100] == pytest.approx(table[8, H100], rel=1e-12)
    assert state.unit_values()[1, H100] == pytest.approx(table[30, H100], rel=1e-12)
    collateral = state.collateral_value()
    assert collateral[:2] == pytest.approx([100 * table[8, H100], 100 * table[30, H100]], rel=1e-12)
    assert collateral[1] > collateral[0] > 0
    books = book_value(state, np.array([0, 1]))
    assert books == pytest.approx([100 * 30_000 * (1 - 28 / 72), 100 * 30_000 * (1 - 6 / 72)], rel=1e-12)


def test_a_fleet_cannot_be_bought_after_the_start() -> None:
    data = baseline_world_data()  # starts 2025-01
    with pytest.raises(ConfigError, match="generated.neoclouds.purchase_month"):
        load_scenario(with_overrides(data, {"generated.neoclouds.purchase_spread_months": 1}))


def test_generated_borrowers_differ_in_purchase_tenor_and_contract_end() -> None:
    model = GPUCreditModel("baseline", seed=1)
    led, cfg = model.ledger, model.config
    borrowers = np.flatnonzero(np.isin(led.kind, (Kind.MINER, Kind.NEOCLOUD)))
    neoclouds = np.flatnonzero(led.kind == Kind.NEOCLOUD)
    ends = led.end_of_life[borrowers, H100]
    assert np.unique(ends).size > 5  # purchases spread over months, not one date per class
    start = 2026 * 12 + 6
    first = {"miner": 2024 * 12 + 6, "neocloud": 2025 * 12}  # the windows' first months
    for kind, cls in (("miner", cfg.generated.miners), ("neocloud", cfg.generated.neoclouds)):
        mine = led.kind[borrowers] == Kind.MINER if kind == "miner" else led.kind[borrowers] == Kind.NEOCLOUD
        purchase = ends[mine] - 84 + start  # H100: a 7-year life
        assert purchase.min() >= first[kind]
        assert purchase.max() <= first[kind] + cls.purchase_spread_months
    assert np.unique(led.contract_end[neoclouds]).size > 5
    loans = led.loans
    term = np.flatnonzero((loans.instrument == INSTRUMENTS.index("term_loan")) & (loans.debtor < 32))
    assert np.unique(loans.rollover_tenor[term]).size > 1


# --- 3. bonds mature on their own terms -------------------------------------------------------------


def test_bonds_mature_at_drawn_terms_not_all_at_one_month() -> None:
    larger = {"generated.miners.count": 60, "generated.neoclouds.count": 100}
    model = GPUCreditModel("baseline", seed=1, overrides=larger)
    loans, cfg = model.ledger.loans, model.config
    bonds = np.flatnonzero(np.isin(loans.instrument, BONDS))
    assert bonds.size >= 10
    remaining = loans.tenor[bonds]  # months left at the start
    assert np.unique(remaining).size > 1
    assert remaining.max() > model.months  # some bonds outlive the run
    for kind, cls in ((Kind.MINER, cfg.generated.miners), (Kind.NEOCLOUD, cfg.generated.neoclouds)):
        theirs = bonds[model.ledger.kind[loans.debtor[bonds]] == kind]
        issued = loans.rollover_tenor[theirs]  # the tenor at issue
        assert issued.min() >= cls.bond_tenor_months
        assert issued.max() <= cls.bond_tenor_months + cls.bond_tenor_spread_months


# --- 2. a covenant that is absent is absent --------------------------------------------------------


def test_a_loan_without_an_ltv_covenant_is_never_in_ltv_breach() -> None:
    """Collateral at a tenth of the debt: far past what the old sentinel (LTV 5) allowed."""
    probe = one_borrower({"principal": 1.0})
    value = float(probe.state.collateral_value()[0])
    model = one_borrower({"principal": 10 * value})
    assert np.isinf(model.ledger.loans.ltv_max[0])
    failures, offers = covenant_round(model.state, test_dscr=False)
    assert failures.agents.size == 0 and len(offers) == 0
    assert not model.state.in_breach[0]


def test_no_covenant_is_spelled_none_and_a_wrong_spelling_names_the_field() -> None:
    data = baseline_world_data()
    assert (
        load_scenario(
            with_overrides(data, {"generated.neoclouds.ltv_max": "none"})
        ).generated.neoclouds.ltv_max
        is None
    )
    del data["generated"]["miners"]["ltv_max"]
    assert load_scenario(data).generated.miners.ltv_max is None
    with pytest.raises(ConfigError, match="generated.miners.ltv_max"):
        load_scenario(with_overrides(baseline_world_data(), {"generated.miners.ltv_max": "never"}))


def test_the_2022_rig_loans_carry_no_ltv_covenant_and_none_defaults_on_ltv() -> None:
    model = GPUCreditModel("miners_2022")
    assert np.isinf(model.ledger.loans.ltv_max).all()
    model.run()
    from core.ledger import Cause

    assert not (model.ledger.default_cause == Cause.COVENANT_LTV).any()


# --- 4. every lender parameter acts ------------------------------------------------------------------


def test_the_dead_minimum_capital_ratio_is_rejected_by_name() -> None:
    data = baseline_world_data()
    data["lenders"]["bank"]["min_capital_ratio"] = 0.08
    with pytest.raises(ConfigError, match=r"lenders.bank.min_capital_ratio: unknown parameter"):
        load_scenario(data)


def test_a_lender_below_its_rollover_ratio_is_flagged_in_breach() -> None:
    """Equity 9 % of assets: above the old 8 % minimum, below the 10 % rollover threshold, so stressed
    (it refuses rollovers and sells in a hurry) and flagged."""
    agents = [
        {"id": "nc", "type": "neocloud", "fleet": {"H100": 10}, "cash": 1e6},
        {"id": "bank", "type": "bank", "cash": 1e6, "external_liabilities": 0.91e6},
        {"id": "fund", "type": "credit_fund", "cash": 1e6},
    ]
    model = GPUCreditModel(explicit_market(agents, overrides=PINNED), seed=1)
    model.step()
    assert model.in_breach[1] and not model.in_breach[2]
