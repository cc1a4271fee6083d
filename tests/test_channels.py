"""The common factor beyond BTC and rents, and the neo-clouds' channels to BTC (issue 16 part 3):
tenant defaults, buyers' budgets and lenders' funding load on the month's common factor without moving
their averages; a host miner's default disrupts the neo-cloud it hosts. Each is off at its default (the
golden references pin that), draws no random number of its own, and is checked here against numbers
computed by hand or against the sampling error of a known mean."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scenario_builders import explicit_market
from scipy.stats import norm

from agents import HardwareBuyer, Lender
from core.config import ConfigError, Policy, SecondaryMarket, load_scenario
from core.ledger import Cause, Kind
from model.model import GPUCreditModel
from model.operations import conditional_hazard, pay_debt_service

TENANT_LOADING = 0.45  # asset correlation 0.2, inside Basel's corporate range 0.12-0.24
HAZARDS = (0.0005, 0.005, 0.02)  # IG, sub-IG, sub-IG in stress (x 4) per month


@pytest.mark.parametrize("hazard", HAZARDS)
def test_tenant_default_probability_over_the_factor_is_the_unconditional_one(hazard) -> None:
    """Defaults drawn as the model draws them (one uniform against the conditional hazard at the
    month's factor), over 2 million months: the default rate is the configured hazard within four
    standard errors of a binomial share, sqrt(p (1 - p) / n)."""
    rng = np.random.default_rng(20261206)
    n = 2_000_000
    factor = rng.standard_normal(n)
    uniform = rng.random(n)
    defaults = uniform < conditional_hazard(np.full(n, hazard), TENANT_LOADING, factor)
    standard_error = math.sqrt(hazard * (1.0 - hazard) / n)
    assert abs(defaults.mean() - hazard) < 4.0 * standard_error
    # ... and exactly, by Gauss-Hermite quadrature of E_f[p(f)]
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    mean = (weights * conditional_hazard(np.full(nodes.size, hazard), TENANT_LOADING, nodes)).sum()
    assert mean / math.sqrt(2.0 * math.pi) == pytest.approx(hazard, rel=1e-9)
    # the defaults cluster in bad months: given f < -1 the rate is the one-factor formula's
    bad = factor < -1.0
    by_hand = norm.cdf((norm.ppf(hazard) - TENANT_LOADING * factor[bad]) / math.sqrt(1 - 0.45**2)).mean()
    assert defaults[bad].mean() > 2.0 * hazard
    assert defaults[bad].mean() == pytest.approx(by_hand, rel=8.0 / math.sqrt(hazard * bad.sum()))


def test_tenant_hazard_at_known_factors_by_hand() -> None:
    """p = 0.005, c = 0.45: at f = -2 the hazard is Phi((-2.57583 + 0.9) / 0.893029) = Phi(-1.87654)
    = 0.030289; at f = 0 it is Phi(-2.57583 / 0.893029) = Phi(-2.88438) = 0.0019610 (a good month of
    average size lowers it); hazards 0 and 1 stay 0 and 1."""
    p = np.array([0.005, 0.005, 0.0, 1.0])
    f = np.array([-2.0, 0.0, -3.0, 3.0])
    got = conditional_hazard(p, 0.45, f)
    assert got[0] == pytest.approx(0.030289, rel=1e-4)
    assert got[1] == pytest.approx(0.0019610, rel=1e-4)
    assert got[2:].tolist() == [0.0, 1.0]


# the four channels at their off values (the baseline has them on since session 11)
CHANNELS_OFF = {
    "tenants.factor_loading": 0.0,
    "secondary.budget_factor_loading": 0.0,
    "lenders.bank.funding_factor_loading": 0.0,
    "lenders.credit_fund.funding_factor_loading": 0.0,
    "host_failure.disruption_months": 0,
}


def baseline_run(seed: int, months: int, overrides: dict | None = None) -> GPUCreditModel:
    """The baseline without the channels, then ``overrides``."""
    model = GPUCreditModel(
        "baseline", seed=seed, months=months, overrides={**CHANNELS_OFF, **(overrides or {})}
    )
    model.run()
    return model


LOADINGS = {
    "tenants.factor_loading": TENANT_LOADING,
    "secondary.budget_factor_loading": 0.5,
    **{f"lenders.{kind}.funding_factor_loading": 0.5 for kind in ("bank", "credit_fund")},
    "host_failure.disruption_months": 3,
}


def test_loadings_leave_the_world_and_its_marginals_as_they_were() -> None:
    """The loadings read the factor the world already draws; they draw nothing, so BTC, rent, the
    regime and the factor itself are the same numbers, month by month, and only outcomes move."""
    off, on = baseline_run(4, 36), baseline_run(4, 36, LOADINGS)
    world = ["btc_price", "rent_per_h100_hour", "hashprice_per_ph_day", "base_rate", "stress"]
    a, b = off.metrics.steps_table(), on.metrics.steps_table()
    for column in world:
        assert a[column].tolist() == b[column].tolist(), column
    assert off.state.world.common_factor == on.state.world.common_factor


@pytest.mark.parametrize(
    "loading",
    [
        {"tenants.factor_loading": 0.0},
        {"secondary.budget_factor_loading": 0.0},
        {"lenders.bank.funding_factor_loading": 0.0, "lenders.credit_fund.funding_factor_loading": 0.0},
        {"host_failure.disruption_months": 0, "host_failure.revenue_lost": 0.5},
    ],
    ids=["tenants", "buyers", "lenders", "hosts"],
)
def test_each_channel_at_zero_is_the_model_without_it(loading) -> None:
    """Set explicitly to its off value, each switch gives the same run to the byte as the model without
    the channels (the host channel: any revenue loss over zero months)."""
    plain = baseline_run(16, 24)
    zero = GPUCreditModel("baseline", seed=16, months=24, overrides={**CHANNELS_OFF, **loading})
    zero.run()
    assert plain.metrics.steps_table().equals(zero.metrics.steps_table())
    assert plain.metrics.defaults_table().equals(zero.metrics.defaults_table())


def test_tenant_loading_moves_which_tenants_default() -> None:
    """The test above could not fail if the loading did nothing: with it on, the same seeds lose
    different tenants (seeds 1-4, 36 months)."""
    changed = 0
    for seed in range(1, 5):
        off = baseline_run(seed, 36)
        on = baseline_run(seed, 36, {"tenants.factor_loading": TENANT_LOADING})
        changed += int((off.ledger.tenant_alive != on.ledger.tenant_alive).sum())
    assert changed > 0


def test_buyers_budgets_move_with_the_factor_and_keep_their_mean() -> None:
    """Budget x exp(b f - b^2/2): at f = -1.5 and b = 0.5, 0.4169 of the calm budget; the buyer of last
    resort keeps its own; over many factors the mean multiplier is 1 within four standard errors."""
    model = GPUCreditModel("baseline", seed=1, months=1)
    world = model.state.world
    policy = Policy(buyer_of_last_resort_budget=1e9)
    buyers = [*model.buyers, HardwareBuyer(model, model.buyers[-1].index, "last-resort", None)]
    world.common_factor = -1.5
    fundamental = model.state.fundamental()

    def budgets(b: float) -> np.ndarray:
        rules = SecondaryMarket(budget_factor_loading=b)
        return HardwareBuyer.monthly_book(buyers, world, False, policy, fundamental, rules).budget

    plain, loaded = budgets(0.0), budgets(0.5)
    assert loaded[:-1] == pytest.approx(plain[:-1] * math.exp(-0.75 - 0.125), rel=1e-12)
    assert loaded[-1] == plain[-1] == 1e9
    rng = np.random.default_rng(7)
    factor = rng.standard_normal(1_000_000)
    multiplier = np.exp(0.5 * factor - 0.125)
    assert abs(multiplier.mean() - 1.0) < 4.0 * multiplier.std() / math.sqrt(factor.size)


def test_rollover_threshold_rises_in_a_bad_month_by_hand() -> None:
    """Thresholds 0.10 (bank), 0.15 (fund), 0 (trust), loading 0.2: at f = -2 they are 0.14, 0.21 and
    0; a good month (f = +1) leaves them as configured."""
    params = {
        "rollover_capital_ratio": np.array([0.10, 0.15, 0.0]),
        "funding_factor_loading": np.full(3, 0.2),
    }
    assert Lender.rollover_threshold(params, -2.0) == pytest.approx([0.14, 0.21, 0.0])
    assert Lender.rollover_threshold(params, 1.0).tolist() == [0.10, 0.15, 0.0]


@pytest.mark.parametrize(("factor", "refused"), [(1.0, False), (-0.5, False), (-2.0, True)])
def test_a_bank_refuses_to_roll_in_a_bad_month(factor, refused) -> None:
    """A bank at capital ratio 0.2 (1M loan, 0.8M outside liabilities) against a threshold of 0.10
    with loading 0.6: it needs 0.10 x (1 + 0.6 x max(-f, 0)): 0.10, 0.13, 0.22, so it refuses the 1M
    bullet only at f = -2, and the borrower, who cannot repay it, defaults."""
    agents = [
        {"id": "nc", "type": "neocloud", "fleet": {"H100": 10}, "cash": 10_000.0},
        {"id": "bank", "type": "bank", "external_liabilities": 0.8e6},
    ]
    loan = {"creditor": "bank", "debtor": "nc", "principal": 1e6, "tenor_months": 1}
    loans = [{**loan, "amortisation": "bullet", "collateral": "none", "spread": 0.05}]
    scenario = explicit_market(agents, loans, overrides={"lenders.bank.funding_factor_loading": 0.6})
    model = GPUCreditModel(scenario, seed=1)
    assert model.state.capital_ratio()[1] == pytest.approx(0.2, rel=1e-3)
    model.state.world.common_factor = factor
    failed = pay_debt_service(model.state, np.zeros(model.ledger.n_agents))
    assert (failed.agents.tolist() == [0]) is refused
    if refused:
        assert failed.cause.tolist() == [Cause.ROLLOVER_REFUSED]


REVENUE_LOST, DISRUPTION_MONTHS, HOST_DEFAULTS_IN = 0.6, 2, 2


def hosted_market(disruption_months: int) -> GPUCreditModel:
    """A debt-free neo-cloud with 1,000 H100 on spot, hosted by a miner that is forced into default
    in month 2; a bank so the market has a lender."""
    agents = [
        {"id": "host", "type": "miner", "cash": 1e6},
        {"id": "tenant", "type": "neocloud", "fleet": {"H100": 1000}, "cash": 1e9},
        {"id": "bank", "type": "bank"},
    ]
    overrides = {
        "host_failure.disruption_months": disruption_months,
        "host_failure.revenue_lost": REVENUE_LOST,
        "shocks": [{"month": HOST_DEFAULTS_IN, "kind": "default_agent", "agent": "host"}],
    }
    scenario = explicit_market(agents, hosting=[{"host": "host", "tenant": "tenant"}], overrides=overrides)
    return GPUCreditModel(scenario, seed=1, months=6)


def test_a_hosts_default_strands_its_tenants_revenue_for_the_disruption_months() -> None:
    """By hand: the tenant earns rent x 1 (H100-eq) x 730 h x utilisation x 1,000 GPUs less its power
    and hosting (paid to the host while it lives). The host defaults in month 2; in months 3 and 4 the
    tenant earns 40 % of its revenue and pays all its costs; from month 5 it earns in full again."""
    model = hosted_market(DISRUPTION_MONTHS)
    cfg = model.config.world
    h100 = next(g for g in cfg.generations if g.name == "H100")
    opex = (
        1000
        * h100.power_kw
        * (cfg.power.pue * cfg.power.price_per_kwh * 730 + cfg.power.hosting_per_kw_month)
    )
    host_cash = model.ledger.cash[0]
    for month in range(1, 7):
        model.step()
        revenue = model.state.world.rent_per_perf_hour * h100.performance * 730 * cfg.rent.utilisation * 1000
        struck = HOST_DEFAULTS_IN < month <= HOST_DEFAULTS_IN + DISRUPTION_MONTHS
        expected = revenue * (1.0 - REVENUE_LOST if struck else 1.0) - opex
        assert model.ledger.operating_cash_flow[1] == pytest.approx(expected, rel=1e-9), month
        if month == 1:  # the host earns the tenant's hosting fee while it lives
            fee = 1000 * h100.power_kw * cfg.power.hosting_per_kw_month
            assert model.ledger.operating_cash_flow[0] == pytest.approx(fee, rel=1e-9)
            assert model.ledger.cash[0] > host_cash
    assert model.ledger.defaulted[:3].tolist() == [True, False, False]
    # switched off, the host's default leaves the tenant's revenue alone
    plain = hosted_market(0)
    for _ in range(6):
        plain.step()
        revenue = plain.state.world.rent_per_perf_hour * h100.performance * 730 * cfg.rent.utilisation * 1000
        assert plain.ledger.operating_cash_flow[1] == pytest.approx(revenue - opex, rel=1e-9)


def test_a_neutralised_host_disrupts_nothing() -> None:
    """In a counterfactual run (``model.attribution``) a neutralised default costs nobody anything."""
    scenario = hosted_market(DISRUPTION_MONTHS).config
    model = GPUCreditModel(scenario, seed=1, months=6, neutralise=("host",))
    plain = GPUCreditModel(hosted_market(0).config, seed=1, months=6)
    for _ in range(6):
        model.step()
        plain.step()
        assert model.ledger.operating_cash_flow[1] == plain.ledger.operating_cash_flow[1]


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("tenants.factor_loading", 1.0, "less than 1"),
        ("secondary.budget_factor_loading", -0.1, "greater than or equal to 0"),
        ("lenders.bank.funding_factor_loading", 11.0, "less than or equal to 10"),
        ("host_failure.disruption_months", 61, "less than or equal to 60"),
        ("host_failure.revenue_lost", 1.5, "less than or equal to 1"),
    ],
)
def test_bad_channel_settings_are_refused_with_the_field_named(field, value, allowed) -> None:
    with pytest.raises(ConfigError) as error:
        load_scenario("baseline", {field: value})
    assert field in str(error.value) and allowed in str(error.value)


def test_the_generated_baseline_hosts_neoclouds_on_miners() -> None:
    """What the host channel acts on: the baseline's hosting share 0.3 of 12 miners, 4 hosted neo-clouds."""
    led = GPUCreditModel("baseline", seed=1, months=1).ledger
    assert led.hosting_tenant.size == 4 and np.unique(led.hosting_tenant).size == 4
    assert (led.kind[led.hosting_tenant] == Kind.NEOCLOUD).all()
    assert (led.kind[led.hosting_host] == Kind.MINER).all() and (led.hosting_share == 1.0).all()


def shared_lender_market(miner_defaults: bool) -> GPUCreditModel:
    """A bank lends 0.2M to a miner (an unsecured bullet; the miner has 5k of cash and nothing else) and 1M to a neo-cloud as a
    bullet maturing in month 2; outside liabilities 0.96M put its capital ratio at 0.2 (its rollover
    threshold is 0.10). The miner is forced into default in month 1, or not."""
    agents = [
        {"id": "miner", "type": "miner", "cash": 5_000.0},  # pays its interest for 3 months
        {"id": "nc", "type": "neocloud", "fleet": {"H100": 10}, "cash": 10_000.0},
        {"id": "bank", "type": "bank", "external_liabilities": 0.96e6},
    ]
    terms = {"creditor": "bank", "collateral": "none", "spread": 0.05}
    loans = [
        {**terms, "debtor": "miner", "principal": 0.2e6, "tenor_months": 24, "amortisation": "bullet"},
        {**terms, "debtor": "nc", "principal": 1e6, "tenor_months": 2, "amortisation": "bullet"},
    ]
    shocks = [{"month": 1, "kind": "default_agent", "agent": "miner"}] if miner_defaults else []
    return GPUCreditModel(explicit_market(agents, loans, overrides={"shocks": shocks}), seed=1, months=3)


def test_a_lenders_loss_on_a_miner_refuses_a_neoclouds_rollover() -> None:
    """The shared-lender channel, which needs no switch: the miner's default costs the bank its 0.2M
    loan, its capital ratio falls to about 0.04 (equity 0.04M of 1M), below 0.10, and in month 2 it
    refuses to roll the neo-cloud's bullet, which the neo-cloud cannot repay: it defaults with the
    refusal as cause and the miner, whose default stressed the bank, as parent. Without the miner's
    default the bank rolls the loan (and no one defaults)."""
    model = shared_lender_market(miner_defaults=True)
    model.run()
    d = model.metrics.defaults_table().set_index("name")
    assert d.loc["miner", "month"] == 1
    assert d.loc["nc", "month"] == 2 and d.loc["nc", "cause"] == "rollover_refused"
    assert d.loc["nc", "parent_name"] == "miner"
    # the bank was stressed, not failed, when it refused (else the parent would be the bank); the
    # neo-cloud's default then costs it the 1M and it fails in the same month's cascade
    assert d.loc["bank", "month"] == 2 and d.loc["bank", "parent_name"] == "nc"
    calm = shared_lender_market(miner_defaults=False)
    calm.run()
    assert calm.metrics.defaults_table().empty
