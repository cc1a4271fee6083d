"""Experiment 10 (issue 18, part 2): the systemic-importance ranking on market_2026.

One cascade in the real network is checked by hand from the scenario's numbers; ``--scenario`` is
validated; ``--docs`` for one experiment keeps the other sections. The experiment's tiny end-to-end run
is in tests/test_experiments.py (with the other named experiments).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.config import ConfigError, read_scenario_data
from experiments.named import EXPERIMENTS, main, replace_sections
from experiments.named.systemic import TARGETS_PLACEHOLDER, engine_cascade, fill_design, targets
from model.metrics import lender_losses

MARKET = read_scenario_data("market_2026")


def agent_spec(agent_id: str) -> dict:
    return next(a for a in MARKET["explicit"]["agents"] if a["id"] == agent_id)


def loans_of(debtor: str) -> list[dict]:
    return [loan for loan in MARKET["explicit"]["loans"] if loan["debtor"] == debtor]


def test_terawulf_default_by_hand() -> None:
    """TeraWulf fails at the start. It has no GPU fleet (its AI site is leased to Fluidstack) and no
    BTC in the scenario, so its estate is its cash, $712.8M, paid by priority: the noteholders ($3.2B
    of 7.75 % senior secured notes, seniority 1) take all of it before the convert holders ($0.85B +
    $0.9B, seniority 2) get anything. Each creditor also pays the workout cost, 2 % of its exposure
    (``cascade.workout_cost_share``). The noteholders lose 3,200 + 64 - 712.8 = $2,551.2M, the
    convert holders 1,750 + 35 = $1,785.0M. Each group's equity is its book less its outside
    liabilities (bond investors' capital ratio 0.5: $1.6B and $0.875B), so both are wiped out and
    fail; they owe no other lender, so the cascade stops there: 2 further defaults."""
    cash = agent_spec("terawulf")["cash"]
    notes = sum(x["principal"] for x in loans_of("terawulf") if x["creditor"] == "terawulf-noteholders")
    converts = sum(
        x["principal"] for x in loans_of("terawulf") if x["creditor"] == "terawulf-convert-holders"
    )
    assert (cash, notes, converts) == (712_800_000, 3_200_000_000, 1_750_000_000)
    cost = MARKET["cascade"]["workout_cost_share"]
    assert cost == 0.02
    expected = {
        "terawulf-noteholders": notes * (1 + cost) - min(cash, notes),
        "terawulf-convert-holders": converts * (1 + cost) - max(cash - notes, 0),
    }
    assert expected["terawulf-noteholders"] == pytest.approx(2_551.2e6, rel=1e-6)
    assert expected["terawulf-convert-holders"] == pytest.approx(1_785.0e6, rel=1e-6)
    equity = {
        k: agent_spec(k)["external_liabilities"] for k in expected
    }  # capital ratio 0.5: equity = liabilities
    assert all(expected[k] > equity[k] for k in expected)

    for price_channel in (False, True):  # no GPUs change hands: the price channel cannot matter
        model = engine_cascade("market_2026", "terawulf", price_channel)
        defaulted = {model.names[i] for i in np.flatnonzero(model.ledger.defaulted)}
        assert defaulted == {"terawulf", *expected}
        losses = lender_losses(model)
        for lender, loss in expected.items():
            assert losses[model.names.index(lender)] == pytest.approx(loss, rel=1e-9)
            assert model.ledger.default_parent[model.names.index(lender)] == model.names.index("terawulf")
        others = [i for i, name in enumerate(model.names) if name not in expected]
        assert np.all(losses[others] == 0.0)


def test_fill_design_names_every_borrower_and_lender() -> None:
    text = Path("experiments/named/systemic_ranking.toml").read_text()
    assert TARGETS_PLACEHOLDER in text
    filled, _ = fill_design(text, None)
    who = targets("market_2026")
    assert len(who) == 31 and set(who["role"]) == {"borrower", "lender"}
    assert (who["role"] == "borrower").sum() == 11
    for agent in who["agent"]:
        assert f'"{agent}"' in filled
    assert who.set_index("agent").loc["coreweave", "name"] == "CoreWeave"
    assert 'scenario = "fire_sale_demo"' in fill_design(text, "fire_sale_demo")[0]
    _, patch = fill_design(text, None, EXPERIMENTS["systemic_ranking"].patch)
    assert patch["shocks"][0]["agent"] in set(who["agent"])


def test_scenario_option_is_validated() -> None:
    with pytest.raises(ConfigError, match="no_such_market"):
        fill_design(Path("experiments/named/systemic_ranking.toml").read_text(), "no_such_market")
    with pytest.raises(ConfigError, match="--scenario: experiment 'rent_deflation' .* takes no --scenario"):
        main(["rent_deflation", "--scenario", "market_2026"])
    with pytest.raises(ConfigError, match="not all"):
        main(["all", "--scenario", "market_2026"])


def test_replace_sections_keeps_the_other_experiments() -> None:
    page = "# Results\n\nhead\n\n## 1. One\n\nold one\n\n## 9. Nine\n\nold nine\n"
    ten = EXPERIMENTS["systemic_ranking"]
    out = replace_sections(page, [ten], ["## 10. Ten\n\nnew ten\n"])
    assert (
        out
        == "# Results\n\nhead\n\n## 1. One\n\nold one\n\n## 9. Nine\n\nold nine\n\n## 10. Ten\n\nnew ten\n"
    )
    again = replace_sections(out, [ten], ["## 10. Ten\n\nnewer\n"])
    assert again.count("## 10.") == 1 and "newer" in again and "old nine" in again


def test_names_table_names_every_agent_of_market_2026_and_nothing_else() -> None:
    from experiments.display_names import names_table

    ids = {a["id"] for a in MARKET["explicit"]["agents"]}
    table = names_table("market_2026")
    assert set(table) == ids
    assert len(set(table.values())) == len(table)  # no two agents share a name
