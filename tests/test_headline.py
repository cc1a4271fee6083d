"""The headline: one forced default cascades into further defaults only through the secondary price.

The market is ``experiments/scenarios/fire_sale_demo.toml``: a frozen world (no rent trend, cycle,
noise or stress), one lender, one large and three small neo-clouds, all holding H100s financed at 60 %
of fundamental value with an 80 % LTV covenant, and two thin brokers as the only buyers. In month 1 the
large neo-cloud is forced into default.
"""

from __future__ import annotations

import pytest

from core.ledger import Kind
from model.attribution import fire_sale_amplification, price_channel_twin
from model.metrics import run_summary
from model.model import GPUCreditModel

DEEP_BUYERS = {"buyers.broker.budget_per_month": 1e11, "buyers.broker.capacity_gpus_per_month": 1e7}


def run_demo(**overrides) -> GPUCreditModel:
    model = GPUCreditModel("fire_sale_demo", overrides=overrides)
    model.run()
    return model


def test_one_default_cascades_through_the_price():
    model = run_demo()
    defaults = model.metrics.defaults_table()
    assert list(defaults["name"]) == ["big", "small-1", "small-2", "small-3"]
    root, *others = defaults.itertuples()
    assert root.cause == "shock" and root.parent == -1
    # at least two further defaults, each caused by the LTV covenant at the fire-sale price, all
    # attributed to the forced default: the cascade is a tree rooted at "big"
    assert len(others) >= 2
    assert all(d.cause == "covenant_ltv" and d.parent_name == "big" for d in others)
    gens = model.metrics.generations_table()
    h100 = gens[(gens["generation"] == "H100") & (gens["month"] == 1)].iloc[0]
    assert h100["price_to_fundamental"] < 0.8 * 0.6 / 0.8  # the mark fell below the covenant level


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"cascade.price_channel": False}, id="price-channel-off"),
        pytest.param(DEEP_BUYERS, id="deep-buyers"),
    ],
)
def test_no_further_default_without_the_price_channel(overrides):
    model = run_demo(**overrides)
    defaults = model.metrics.defaults_table()
    assert list(defaults["name"]) == ["big"]
    # the forced default itself still happened and its GPUs were repossessed or sold
    assert model.ledger.gpus[model.names.index("big")].sum() == 0
    assert (model.ledger.kind[model.ledger.defaulted] == Kind.NEOCLOUD).all()


def test_deep_buyers_keep_the_price_near_fundamental():
    thin = run_demo().metrics.generations_table()
    deep = run_demo(**DEEP_BUYERS).metrics.generations_table()
    ratio = {
        name: g[(g["generation"] == "H100") & (g["month"] == 1)]["price_to_fundamental"].iloc[0]
        for name, g in (("thin", thin), ("deep", deep))
    }
    assert ratio["deep"] > 0.95 > 0.5 > ratio["thin"]


def test_fire_sale_amplification_is_four_in_the_demo():
    """By hand: the forced default of "big" happens with or without the price channel (1 default off);
    with it, each of the three small neo-clouds (debt 60 % of fundamental, LTV covenant 80 %) breaches
    because the month-1 mark is below 0.6 / 0.8 = 0.75 of fundamental: 4 defaults on, 4 / 1 = 4.0. The
    measure is the same whichever of the two runs it starts from."""
    model = run_demo()
    twin = price_channel_twin(model)
    assert twin.config.cascade.price_channel is False
    mark = model.metrics.generations_table().query("generation == 'H100' and month == 1")[
        "price_to_fundamental"
    ]
    assert float(mark.iloc[0]) < 0.6 / 0.8
    expected = {"defaults_price_channel_on": 4, "defaults_price_channel_off": 1, "ratio": 4.0}
    assert fire_sale_amplification(model, twin) == expected
    assert fire_sale_amplification(twin, price_channel_twin(twin)) == expected
    channels = model.metrics.defaults_table()["channel"].tolist()
    assert channels == ["shock", "collateral_mark", "collateral_mark", "collateral_mark"]
    summary = run_summary(model)
    assert summary["defaults_by_channel"] == {
        "shock": 1,
        "cash_flow": 0,
        "collateral_mark": 3,
        "margin_call": 0,
        "rollover_refusal": 0,
        "counterparty_loss": 0,
    }


def test_the_price_channel_twin_draws_the_same_world():
    """Common random numbers: in a noisy version of the demo (rent shocks, regime switches) the run
    without the price channel has fewer defaults but the same BTC, rents and regime month by month:
    switching the channel does not shift the random stream (the world draws five normals a month and
    tenants one uniform per agent, whatever the cascade does)."""
    noisy = {
        "world.rent.shock_volatility": 0.02,
        "world.regime.stress_entry_per_month": 0.2,
        "world.regime.stress_exit_per_month": 0.3,
    }
    model = run_demo(**noisy)
    twin = price_channel_twin(model)
    assert model.ledger.defaulted.sum() > twin.ledger.defaulted.sum()
    world = ["btc_price", "rent_per_h100_hour", "stress"]
    on, off = model.metrics.steps_table()[world], twin.metrics.steps_table()[world]
    assert on["stress"].any() and on["stress"].nunique() == 2
    assert on.equals(off)


def test_no_default_without_the_channel_leaves_the_ratio_undefined():
    model = GPUCreditModel("fire_sale_demo", months=1, overrides={"shocks": []})
    model.run()
    assert fire_sale_amplification(model, price_channel_twin(model)) == {
        "defaults_price_channel_on": 0,
        "defaults_price_channel_off": 0,
        "ratio": None,
    }
