"""Accounting identities and the cause tree hold at every step of random markets (property-based).

Hypothesis draws the market (sizes 1-30, topology, lender mix and concentration, rent deflation, BTC
volatility, buyers' depth, leverage, seed); each run is 24 months with the three shocks in between.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scenario_builders import generated_market

from core.ledger import BORROWER_KINDS, LENDER_KINDS, Cause
from model.model import GPUCreditModel

REL = 1e-6


class Books:
    """What the market started with, and the checks every later state must pass."""

    def __init__(self, model: GPUCreditModel) -> None:
        led = model.ledger
        self.model = model
        self.gpus = led.total_gpus() + led.gpus_scrapped + led.gpus_settled
        self.cash = float(led.cash.sum())
        self.defaulted = led.defaulted.copy()

    def check(self, when: str) -> None:
        led = self.model.ledger
        loans = led.loans
        where = f"{when} (month {self.model.state.world.month})"
        # GPUs are neither created nor destroyed except by scrapping at end of life (or leave the market
        # when a defaulted borrower's owners settle)
        np.testing.assert_allclose(
            led.total_gpus() + led.gpus_scrapped + led.gpus_settled,
            self.gpus,
            rtol=REL,
            atol=1e-6,
            err_msg=f"GPUs {where}",
        )
        # cash changes only by what enters or leaves the market
        scale = max(abs(self.cash), led.cash_in, led.cash_out, 1.0)
        expected = self.cash + led.cash_in - led.cash_out
        assert abs(led.cash.sum() - expected) <= REL * scale, f"cash {where}"
        # every loan's original principal is outstanding, repaid or written off
        np.testing.assert_allclose(
            loans.principal + loans.repaid + loans.exposure_at_default,
            loans.original_principal,
            rtol=REL,
            err_msg=f"principal identity {where}",
        )
        assert np.all(loans.recovered <= loans.exposure_at_default * (1 + REL) + 1e-6), (
            f"recovered > claim {where}"
        )
        # no negative holdings
        assert led.gpus.min(initial=0.0) >= -1e-9, f"negative GPUs {where}"
        assert led.lots.units.min(initial=0.0) >= -1e-9, f"negative lot {where}"
        assert led.btc.min(initial=0.0) >= -1e-9, f"negative BTC {where}"
        solvent = led.of_kind(*LENDER_KINDS) | (led.of_kind(*BORROWER_KINDS) & ~led.defaulted)
        assert led.cash[solvent].min(initial=0.0) >= -REL * scale, f"negative cash {where}"
        # defaults are permanent and form a tree: a cause, and a parent that failed no later
        assert not np.any(self.defaulted & ~led.defaulted), f"an agent came back from default {where}"
        self.defaulted = led.defaulted.copy()
        failed = np.flatnonzero(led.defaulted)
        assert np.all(led.default_cause[failed] != Cause.NONE), f"default without a cause {where}"
        for agent in failed:
            parent = led.default_parent[agent]
            if parent == -1:
                continue
            assert led.defaulted[parent], f"{agent}'s parent {parent} has not defaulted {where}"
            assert (led.default_month[parent], led.default_round[parent]) <= (
                led.default_month[agent],
                led.default_round[agent],
            ), f"{agent}'s parent {parent} defaulted after it {where}"


markets = st.fixed_dictionaries(
    {
        "miners": st.integers(1, 30),
        "neoclouds": st.integers(1, 30),
        "lenders": st.tuples(
            st.integers(0, 5), st.integers(0, 5), st.integers(0, 3), st.integers(0, 3)
        ).filter(lambda counts: sum(counts) > 0),
        "topology": st.sampled_from(["core_periphery", "erdos_renyi", "scale_free"]),
        "concentration": st.floats(0.0, 3.0),
        "rent_deflation": st.floats(0.0, 0.8),
        "btc_volatility": st.floats(0.0, 1.5),
    }
)
stresses = st.fixed_dictionaries(
    {
        "buyers.hyperscaler.budget_per_month": st.floats(1e5, 1e8),
        "buyers.tier2-cloud.budget_per_month": st.floats(1e5, 2e7),
        "generated.miners.loan_tenor_months": st.integers(3, 60),
        "generated.neoclouds.loan_tenor_months": st.integers(3, 60),
        "generated.neoclouds.amortisation": st.sampled_from(["linear", "annuity", "bullet"]),
        "generated.miners.ltv_max": st.floats(0.5, 1.2),
        "generated.neoclouds.loan_to_cost": st.floats(0.3, 0.9),
        "world.regime.stress_entry_per_month": st.floats(0.0, 0.3),
        "cascade.interbank_recovery": st.sampled_from(["clearing", "zero"]),
        "cascade.markets_open_in_stress": st.booleans(),
        "lenders.bank.sale_rule": st.sampled_from(["stock_share", "leverage_target"]),
        "lenders.credit_fund.sale_rule": st.sampled_from(["stock_share", "leverage_target"]),
        "lenders.bank.leverage_buffer": st.floats(0.03, 0.6),
        "lenders.bank.leverage_target": st.floats(0.05, 0.3),
    }
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(market=markets, stress=stresses, seed=st.integers(0, 2**32 - 1))
def test_accounting_and_cause_tree_hold_at_every_step(market: dict, stress: dict, seed: int) -> None:
    model = GPUCreditModel(generated_market(**market, overrides=stress), seed=seed, months=24)
    books = Books(model)
    books.check("at start")
    for month in range(1, 25):
        model.step()
        books.check("after step")
        if month == 6:
            model.default_largest_miner()
            books.check("after default_largest_miner")
        elif month == 10:
            model.crash_btc(0.6)
            books.check("after crash_btc")
        elif month == 14:
            model.launch_next_generation()
            books.check("after launch_next_generation")


def test_baseline_keeps_the_invariants_through_every_shock_at_once() -> None:
    """The calibrated market, all three shocks in the same month, then a year more."""
    model = GPUCreditModel(months=24)
    books = Books(model)
    for month in range(1, 25):
        model.step()
        books.check("after step")
        if month == 3:
            for shock in (model.default_largest_miner, model.crash_btc, model.launch_next_generation):
                shock()
                books.check(f"after {shock.__name__}")
    assert model.ledger.defaulted.any()  # the run exercised the cascade, not only quiet months
