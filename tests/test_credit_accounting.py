"""Exposure, recovery and loss (issue 19, part 4) and the cash trap (part 5).

- For every loan of 1,000 random small markets: the exposure at default, the recoveries booked month by
  month, what is still held and the loss tie out (``model.metrics.loan_outcomes``).
- Fair spreads on a market whose answer is worked out by hand.
- Priority at default: BTC proceeds go to the BTC lender first; estate cash to the senior loan first.
- A borrower in breach pays no surplus cash out.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from scenario_builders import baseline_world_data, explicit_market, with_overrides

from core.ledger import BORROWER_KINDS, INSTRUMENTS, LoanBook
from experiments.named.credit_spreads import fair_spread
from model.cascade import _credit_recoveries, repossess
from model.metrics import cash_recovered, credit_cells, lender_losses, loan_outcomes
from model.model import GPUCreditModel
from model.operations import pay_out_surplus

REL = 1e-9


def check_loans(model: GPUCreditModel) -> tuple[int, int]:
    """The identities every loan satisfies; returns the number of defaulted loans checked and of
    recoveries that arrived after the month of their default."""
    loans = model.ledger.loans
    out = loan_outcomes(model)
    n = len(loans)
    ead, recovered, held = out["exposure_at_default"], out["recovered"], out["held"]
    scale = np.maximum(loans.original_principal, 1.0)
    defaulted = out["defaulted"]
    # a loan's principal is outstanding, repaid or its exposure at default
    np.testing.assert_allclose(loans.principal + loans.repaid + ead, loans.original_principal, rtol=1e-9)
    # a loan that has not defaulted has no exposure, recovery, cost or loss
    for column in ("exposure_at_default", "recovered", "held", "workout_cost", "loss", "book_loss"):
        assert np.all(out[column][~defaulted] == 0.0), column
    # the recoveries arrive over time: the log, month by month, adds up to the balance and its value
    months = np.concatenate([np.full(ids.size, m) for m, ids, _ in loans.recovery_log] or [np.zeros(0)])
    ids = np.concatenate([ids for _, ids, _ in loans.recovery_log] or [np.zeros(0, np.int64)])
    amounts = np.concatenate([a for _, _, a in loans.recovery_log] or [np.zeros(0)])
    assert np.all(defaulted[ids]), "a recovery on a loan that has not defaulted"
    # only a later clearing of a failed lender's estate revises a recovery down (pari passu)
    assert np.all((amounts >= 0.0) | (loans.instrument[ids] == INSTRUMENTS.index("interbank"))), (
        "a negative recovery"
    )
    assert np.all(months >= loans.default_month[ids]), "a recovery before the default"
    np.testing.assert_allclose(np.bincount(ids, weights=amounts, minlength=n), recovered, rtol=REL, atol=1e-6)
    rate = loans.default_rate[ids] / 12.0
    pv = amounts * (1.0 + rate) ** -(months - loans.default_month[ids])
    np.testing.assert_allclose(
        np.bincount(ids, weights=pv, minlength=n), loans.recovery_pv, rtol=REL, atol=1e-6
    )
    # a creditor never gets back more than the exposure (sale surpluses go to the owners)
    assert np.all(recovered + held <= ead + 1e-9 * scale), "recovered more than the claim"
    # the workout cost is the scenario's share of the exposure
    share = model.config.cascade.workout_cost_share
    np.testing.assert_allclose(loans.workout_cost, share * ead, rtol=REL)
    # loss: book (undiscounted) and economic (discounted at the loan rate) from the same flows
    np.testing.assert_allclose(
        out["book_loss"][defaulted],
        (ead + loans.workout_cost - recovered - held)[defaulted],
        rtol=REL,
        atol=1e-6,
    )
    month = model.state.world.month
    held_pv = held * (1.0 + loans.default_rate / 12.0) ** -(month - loans.default_month)
    economic = ead + loans.workout_cost - loans.recovery_pv - held_pv
    np.testing.assert_allclose(out["loss"][defaulted], economic[defaulted], rtol=REL, atol=1e-6)
    # discounting can only lower what came back; LGD (with costs) lies in [0, 1 + cost share]
    assert np.all(out["loss"] >= out["book_loss"] - 1e-9 * scale)
    lgd = out["loss"][defaulted & (ead > 0)] / ead[defaulted & (ead > 0)]
    assert np.all((lgd >= -1e-9) & (lgd <= 1.0 + share + 1e-9))
    # every creditor's loss is the sum of its loans' book losses; credit cells add up
    np.testing.assert_allclose(
        lender_losses(model).sum(), out["book_loss"].sum(), rtol=REL, atol=1e-6 * max(ead.sum(), 1.0)
    )
    borrower_loans = np.isin(model.ledger.kind[loans.debtor], np.array(BORROWER_KINDS))
    cells = credit_cells(model).values()
    in_cells = sum(c["exposure_at_default"] for c in cells)
    assert in_cells == pytest.approx(ead[borrower_loans].sum(), rel=1e-9, abs=1e-6)
    assert sum(c["loss"] for c in cells) == pytest.approx(
        out["loss"][borrower_loans].sum(), rel=1e-9, abs=1e-6
    )
    return int(defaulted.sum()), int((months > loans.default_month[ids]).sum())


def random_market(rng: np.random.Generator, base: dict) -> dict:
    """A small market drawn from ``rng``: 1-3 miners and neo-clouds, a few lenders, 4-9 months, high
    leverage, deflation and BTC volatility, the largest miner forced into default in a month drawn
    before the end (so every market has defaults and recoveries after them), a workout of 1-6 months."""
    data = copy.deepcopy(base)
    data["months"] = months = int(rng.integers(4, 10))
    data["shocks"] = [{"month": int(rng.integers(1, months)), "kind": "default_largest_miner"}]
    return with_overrides(
        data,
        {
            "generated.miners.count": int(rng.integers(1, 4)),
            "generated.neoclouds.count": int(rng.integers(1, 4)),
            "generated.banks": int(rng.integers(1, 3)),
            "generated.credit_funds": int(rng.integers(0, 2)),
            "generated.abs_trusts": int(rng.integers(0, 2)),
            "generated.bond_investors": int(rng.integers(0, 2)),
            "generated.topology": str(rng.choice(["core_periphery", "erdos_renyi", "scale_free"])),
            "world.rent.new_price_decline_per_year": float(rng.uniform(0.2, 0.9)),
            "world.btc.volatility_per_year": float(rng.uniform(0.3, 1.5)),
            "world.regime.stress_entry_per_month": float(rng.uniform(0.0, 0.4)),
            "generated.neoclouds.loan_to_cost": float(rng.uniform(0.5, 0.95)),
            "generated.miners.loan_to_cost": float(rng.uniform(0.5, 0.95)),
            "generated.miners.btc_loan_to_value": float(rng.uniform(0.0, 0.6)),
            "generated.neoclouds.ltv_max": float(rng.uniform(0.6, 1.5)),
            "generated.miners.ltv_max": float(rng.uniform(0.6, 1.2)),
            "buyers.hyperscaler.budget_per_month": float(rng.uniform(1e5, 1e8)),
            "cascade.interbank_recovery": str(rng.choice(["clearing", "zero"])),
            "cascade.workout_months": int(rng.integers(1, 7)),
            "cascade.workout_cost_share": float(rng.uniform(0.0, 0.1)),
        },
    )


def test_exposure_recoveries_and_loss_tie_out_for_every_loan_in_1000_random_markets() -> None:
    base = baseline_world_data()
    rng = np.random.default_rng(19)
    defaulted = markets_with_defaults = later = 0
    for _ in range(1000):
        data = random_market(rng, base)
        model = GPUCreditModel(data, seed=int(rng.integers(2**31)))
        model.run()
        checked, late = check_loans(model)
        defaulted += checked
        markets_with_defaults += checked > 0
        later += late
    # the identities were exercised: defaults in every market, recoveries arriving after them
    assert markets_with_defaults == 1000 and defaulted >= 2500 and later >= 500


# --- known answers ---------------------------------------------------------------------------------


def test_a_recovery_is_discounted_to_the_default_month_at_the_loan_rate() -> None:
    book = LoanBook(
        **{name: np.zeros(1, dtype=np.int64) for name in LoanBook.FIELDS_INT},
        **{name: np.zeros(1) for name in LoanBook.FIELDS_FLOAT if name != "spread"},
        spread=np.array([0.08]),
        active=np.ones(1, dtype=bool),
    )
    book.principal[0] = 1000.0
    cost = book.default(np.array([0]), month=2, base_rate=0.04, workout_cost_share=0.02)
    assert cost.tolist() == [20.0] and book.exposure_at_default[0] == 1000.0 and not book.active[0]
    book.recover(np.array([0, 0]), np.array([300.0, 100.0]), month=5)  # 3 months later, at 12 %/yr
    assert book.recovered[0] == 400.0
    assert book.recovery_pv[0] == pytest.approx(400.0 / 1.01**3, rel=1e-12)


def one_loan_market(**loan: object) -> GPUCreditModel:
    """A neo-cloud without GPUs or income, $1,000 of cash, one loan from a bank; it is forced into
    default at the end of month 4."""
    agents = [{"id": "nc", "type": "neocloud", "cash": 1000.0}, {"id": "bank", "type": "bank"}]
    loans = [{"creditor": "bank", "debtor": "nc", "collateral": "none", **loan}]
    data = explicit_market(
        agents,
        loans,
        overrides={
            "world.base_rate": 0.04,
            "world.base_rate_volatility": 0.0,
            "cascade.workout_cost_share": 0.02,
            "shocks": [{"month": 4, "kind": "default_agent", "agent": "nc"}],
        },
        months=6,
    )
    model = GPUCreditModel(data, seed=1)
    model.run()
    return model


def test_fair_spread_of_an_amortising_loan_is_worked_out_by_hand() -> None:
    """$1,200 over 12 months, linear, at 4 % + 8 % = 12 %/yr. It pays months 1-4 (interest on 1,200,
    1,100, 1,000 and 900 plus 100 of principal each) and defaults at the end of month 4 on 800.

    - balance at risk: (1,200 + 1,100 + 1,000 + 900) / 12 = 350 USD-years;
    - the estate's cash: 1,000 - 400 - 0.01 x 4,200 = 558, paid at once (discount factor 1);
    - workout cost 2 % x 800 = 16; loss = 800 + 16 - 558 = 258, LGD 258 / 800 = 32.25 %;
    - default intensity 800 / 350 per year; fair spread 258 / 350 = 7,371 bp (intensity x LGD)."""
    model = one_loan_market(principal=1200.0, spread=0.08, tenor_months=12, amortisation="linear")
    cell = credit_cells(model)["neocloud_term_loan"]
    assert cell["exposure_years"] == pytest.approx(350.0, rel=1e-12)
    assert cell["exposure_at_default"] == pytest.approx(800.0, rel=1e-12)
    assert cell["loss"] == pytest.approx(258.0, rel=1e-12)
    spread = fair_spread(
        np.array([cell["exposure_years"]]),
        np.array([cell["exposure_at_default"]]),
        np.array([cell["recovered"]]),
    )
    assert spread == pytest.approx(258.0 / 350.0, rel=1e-12)
    assert spread == pytest.approx((800.0 / 350.0) * (258.0 / 800.0), rel=1e-12)


def test_fair_spread_pools_loans_by_exposure_not_by_count() -> None:
    """Two runs: a loan of 100 at risk for 2 years that loses 10, and one of 1,000 at risk for 4 years
    that loses nothing: 10 / (200 + 4,000) per year, not the mean of the two loans' rates."""
    years, ead, recovered = np.array([200.0, 4000.0]), np.array([100.0, 0.0]), np.array([90.0, 0.0])
    assert fair_spread(years, ead, recovered) == pytest.approx(10.0 / 4200.0)
    assert np.isnan(fair_spread(np.zeros(2), ead, recovered))


# --- priority at default -------------------------------------------------------------------------


def test_btc_proceeds_go_to_the_btc_lender_first_and_cash_to_the_senior_loan() -> None:
    """A miner with BTC worth B, $1,000 of cash and no GPUs owes a BTC margin loan of 0.5 B (fund) and
    two unsecured loans of 2,000, senior (bank) and junior (bond investors). The BTC pays the margin loan
    in full, its surplus 0.5 B joins the cash, which pays the senior loan first."""
    agents = [
        {"id": "m", "type": "miner", "cash": 1000.0, "btc": 10.0},
        {"id": "bank", "type": "bank"},
        {"id": "fund", "type": "credit_fund"},
        {"id": "bonds", "type": "bond_investors"},
    ]
    model = GPUCreditModel(explicit_market(agents, []), seed=1)
    btc_value = 10.0 * model.state.world.btc_price
    model = GPUCreditModel(
        explicit_market(
            agents,
            [
                {
                    "creditor": "fund",
                    "debtor": "m",
                    "principal": 0.5 * btc_value,
                    "spread": 0.05,
                    "tenor_months": 12,
                    "collateral": "btc",
                    "instrument": "btc_margin",
                },
                {
                    "creditor": "bank",
                    "debtor": "m",
                    "principal": 2000.0 + 0.5 * btc_value,
                    "spread": 0.05,
                    "tenor_months": 12,
                    "collateral": "none",
                    "seniority": 1,
                },
                {
                    "creditor": "bonds",
                    "debtor": "m",
                    "principal": 2000.0,
                    "spread": 0.05,
                    "tenor_months": 12,
                    "collateral": "none",
                    "seniority": 2,
                    "instrument": "high_yield",
                },
            ],
        ),
        seed=1,
    )
    repossess(model.state, np.array([0]))
    recovered = model.ledger.loans.recovered
    assert recovered.tolist() == pytest.approx([0.5 * btc_value, 1000.0 + 0.5 * btc_value, 0.0], rel=1e-12)


def test_cash_recovered_counts_what_came_in_and_not_the_gpus_still_held() -> None:
    """A miner with $1,000 of cash and 10 H100 worth V each at the mark owes a bank 10 V + 5,000 on a
    rig loan. At default the bank takes the GPUs (10 V of the claim, at the mark) and the estate's cash:
    $1,000 in cash, 10 V + 1,000 with the GPUs held. A sale of 4 of them at V / 2 brings 2 V more in
    cash; the 6 still held count at the mark only in the recovery with held GPUs (month 0, no workout
    cost: nothing is discounted)."""
    agents = [
        {"id": "m", "type": "miner", "cash": 1000.0, "fleet": {"H100": 10}},
        {"id": "bank", "type": "bank"},
    ]

    def market(principal: float) -> GPUCreditModel:
        loan = {"creditor": "bank", "debtor": "m", "principal": principal, "spread": 0.05, "tenor_months": 36}
        return GPUCreditModel(explicit_market(agents, [loan]), seed=1)

    h100 = market(1.0).state.world.generations.index("H100")
    value = float(market(1.0).state.unit_values()[0, h100])  # the mark is 1 at the start
    model = market(10 * value + 5000.0)
    repossess(model.state, np.array([0]))
    ead = 10 * value + 5000.0
    assert model.ledger.loans.exposure_at_default[0] == pytest.approx(ead)
    assert cash_recovered(model)["miner_term_loan"] == pytest.approx(1000.0, rel=1e-12)
    assert credit_cells(model)["miner_term_loan"]["recovered"] == pytest.approx(1000.0 + 10 * value, rel=1e-9)

    lots = model.ledger.lots
    _credit_recoveries(model.ledger.loans, np.array([0]), np.array([4 * 0.5 * value]), 0)
    lots.units[0] -= 4.0
    assert cash_recovered(model)["miner_term_loan"] == pytest.approx(1000.0 + 2 * value, rel=1e-12)
    assert credit_cells(model)["miner_term_loan"]["recovered"] == pytest.approx(
        1000.0 + 2 * value + 6 * value, rel=1e-9
    )
    assert cash_recovered(model)["neocloud_term_loan"] == 0.0  # no neo-cloud defaulted


# --- cash trap -------------------------------------------------------------------------------------


def test_a_borrower_in_breach_pays_no_surplus_out() -> None:
    agents = [{"id": f"nc{i}", "type": "neocloud", "cash": 10_000.0} for i in range(3)] + [
        {"id": "bank", "type": "bank"}
    ]
    model = GPUCreditModel(explicit_market(agents, []), seed=1)
    state, led = model.state, model.ledger
    led.cash_buffer_months[:3] = 2.0
    led.debt_service_due[:3] = 1000.0
    state.in_breach[1] = True  # flagged by last month's covenant tests
    led.dscr_breach_months[2] = 3  # a DSCR shortfall on record
    pay_out_surplus(state, np.zeros(0, dtype=np.int64))
    assert led.cash[:3].tolist() == [2000.0, 10_000.0, 10_000.0]


# --- lenders' capital ---------------------------------------------------------------------------


def test_lenders_paying_out_earnings_hold_their_capital_ratio_until_a_loss_lowers_it() -> None:
    """A bank earns interest on a performing loan: paying out its earnings keeps its capital ratio at
    its start; without the payout the retained interest lifts it. The borrower's default in month 4
    (10 GPUs and some cash against a $1M loan) then costs the bank most of the loan, and the ratio
    falls below the start and stays there."""
    agents = [
        {"id": "nc", "type": "neocloud", "cash": 2e5, "fleet": {"H100": 10}},
        {"id": "bank", "type": "bank", "cash": 1e5, "external_assets": 1e6, "external_liabilities": 1.2e6},
    ]
    loans = [{"creditor": "bank", "debtor": "nc", "principal": 1e6, "spread": 0.08, "tenor_months": 60}]
    ratios = {}
    for pays in (True, False):
        data = explicit_market(
            agents,
            loans,
            overrides={
                "lenders.bank.pays_out_earnings": pays,
                "shocks": [{"month": 4, "kind": "default_agent", "agent": "nc"}],
            },
            months=6,
        )
        model = GPUCreditModel(data, seed=1)
        bank = model.names.index("bank")
        start = model.state.capital_ratio()[bank]
        path = []
        for _ in range(6):
            model.step()
            path.append(model.state.capital_ratio()[bank])
        ratios[pays] = (start, path)
    start, path = ratios[True]
    assert 0.0 < start < 1.0
    assert path[:3] == pytest.approx([start] * 3, rel=1e-9)  # calm months: earnings paid out
    assert max(path[3:]) < start - 0.05  # the loss (the GPUs and cash cover a fraction of 1e6) stays
    start_off, path_off = ratios[False]
    assert start_off == start and path_off[2] > start + 1e-4  # retained interest lifts the ratio


def test_a_creditor_that_cannot_pay_the_workout_cost_owes_it_and_never_goes_below_zero_cash() -> None:
    """A failed lender's empty estate still 'pays' the workout costs of its defaulted loans: the part it
    cannot pay from cash or outside assets becomes an outside liability (found by the invariants property
    test: a failed bond-investor group went to -$0.26M of cash)."""
    from types import SimpleNamespace

    from model.cascade import pay_workout_costs

    led = SimpleNamespace(  # the ledger's columns the function reads and writes
        n_agents=3,
        cash=np.array([100.0, 30.0, 0.0]),
        external_assets=np.array([0.0, 50.0, 0.0]),
        external_liabilities=np.zeros(3),
        cash_in=0.0,
        cash_out=0.0,
        invalidate=lambda: None,
    )
    pay_workout_costs(led, np.array([0, 1, 2, 2]), np.array([40.0, 60.0, 10.0, 15.0]))
    assert led.cash.tolist() == [
        60.0,
        0.0,
        0.0,
    ]  # creditor 1 paid its 30 of cash and sold 30 of outside assets
    assert led.external_assets.tolist() == [0.0, 20.0, 0.0]
    assert led.external_liabilities.tolist() == [0.0, 0.0, 25.0]  # creditor 2 had nothing: it owes all
    assert led.cash_out == 100.0 and led.cash_in == 30.0
