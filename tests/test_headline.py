"""The headline: one forced default cascades into further defaults only through the secondary price.

The market is ``experiments/scenarios/fire_sale_demo.toml``: a frozen world (no rent trend, cycle,
noise or stress), one lender, one large and three small neo-clouds, all holding H100s financed at 60 %
of fundamental value with an 80 % LTV covenant, and two thin brokers as the only buyers. In month 1 the
large neo-cloud is forced into default.
"""

from __future__ import annotations

import pytest

from model.ledger import Kind
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
