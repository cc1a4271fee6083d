"""Small, seeded versions of the validation reductions (the full-size runs are `run.py validate`)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from agents import Lender
from core.secondary import BuyerBook, Offers, clear_impact, impact_price
from experiments.validation import debtrank as dr
from experiments.validation import eisenberg_noe as en
from experiments.validation import fire_sales as fs
from experiments.validation import gai_kapadia as gk
from experiments.validation import leverage_fire_sale as lfs
from experiments.validation import main
from experiments.validation.common import binomial_gap, perturbed
from model.model import GPUCreditModel

pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered in multiply:RuntimeWarning")


def test_eisenberg_noe_four_bank_example_through_the_model():
    recovery, failed = en.engine_recovery(en.FOUR_BANK)
    for bank, ref in en.FOUR_BANK["recovery"].items():
        assert recovery[bank] == pytest.approx(ref, abs=1e-9)
    assert [b for b in sorted(failed) if failed[b]] == ["A", "B"]


def test_eisenberg_noe_properties_on_random_networks():
    worst = en.properties(draws=10, n=20, seed=3)
    assert worst["defaults"] > 1  # the networks are stressed enough for clearing to matter
    for key in (
        "fd_vs_fp",
        "above_pbar",
        "below_zero",
        "non_monotone",
        "not_fixed_point",
        "least_above_greatest",
    ):
        assert worst[key] <= 1e-9, key


def test_gai_kapadia_fast_path_equals_the_full_model_draw_for_draw():
    rng = np.random.default_rng(11)
    for tie in (True, False):
        engine = gk.GKEngine(tie)
        for z in (1.5, 4.0, 5.0):
            draw = gk.draw_network(150, z, rng)
            model = GPUCreditModel(gk.scenario_for(draw, tie))
            model.default_agent(draw.shocked)
            np.testing.assert_array_equal(model.ledger.defaulted[: draw.n], engine.defaults(draw))


def test_engine_session_loan_book_equals_the_models():
    """Column by column, the session's interbank book is the one the model builds from the scenario, for
    a draw after a larger and a smaller one (its shared columns are reused and sliced); the terms it
    shares across draws are read-only, the balances the book's own."""
    rng = np.random.default_rng(5)
    engine = gk.GKEngine(True)
    for z in (6.0, 1.0, 3.0):
        draw = gk.draw_network(60, z, rng)
        principal, *_ = gk.balance_sheet(draw)
        book = engine.session.interbank_book(draw.creditor, draw.debtor, principal)
    expected = GPUCreditModel(gk.scenario_for(draw, True)).ledger.loans
    for name in (*book.FIELDS_INT, *book.FIELDS_FLOAT, "active", "original_principal", "rollover_tenor"):
        np.testing.assert_array_equal(getattr(book, name), getattr(expected, name), err_msg=name)
    for name in book.BALANCES:
        assert getattr(book, name).flags.writeable, name
    with pytest.raises(ValueError, match="read-only"):
        book.ltv_max[0] = 1.0


def test_gai_kapadia_tie_is_exact_a_loss_equal_to_capital():
    """Bank 0 lends to 5 banks (20 % of assets split 5 ways = capital exactly): one borrower's default
    wipes out its capital, so it fails under the tie rule and survives without it."""
    creditor = np.zeros(5, dtype=np.int64)
    debtor = np.arange(1, 6, dtype=np.int64)
    draw = gk.Draw(6, creditor, debtor, shocked=3)
    assert gk.GKEngine(True).defaults(draw).tolist() == [True, False, False, True, False, False]
    assert gk.GKEngine(False).defaults(draw).tolist() == [False, False, False, True, False, False]


def test_gai_kapadia_frequency_inside_and_outside_the_analytic_window():
    """n = 300, 60 draws: z = 0.5 is below the window (no giant component), z = 3.5 inside, z = 11 above."""
    curve = gk.simulate((0.5, 3.5, 11.0), n=300, draws=60, seed=5, default_at_zero_equity=True)
    lo, hi = gk.analytic_window(True)
    assert lo < 3.5 < hi and lo > 0.5 and hi < 11.0
    se = math.sqrt(0.25 / 60)
    assert curve.frequency[0] <= 1 / 60  # at most a fluke
    assert curve.frequency[1] > 3 * se  # well away from zero
    assert curve.frequency[2] <= 1 / 60
    assert curve.extent[1] > 0.5  # contagion, when it happens, is widespread


def test_analytic_window_matches_the_generating_function_condition():
    for tie in (True, False):
        lo, hi = gk.analytic_window(tie)
        assert gk.analytic_g(lo, tie) == pytest.approx(1.0, abs=1e-9)
        assert gk.analytic_g(hi, tie) == pytest.approx(1.0, abs=1e-9)
        assert gk.analytic_g(0.5 * (lo + hi), tie) > 1.0
    assert gk.analytic_window(True)[1] > gk.analytic_window(False)[1]  # the tie rule widens the window


def test_benchmark_kernel_agrees_with_engine():
    rng = np.random.default_rng(2)
    engine = gk.GKEngine(False)
    for z in (2.0, 4.5, 6.0):
        draw = gk.draw_network(200, z, rng)
        principal, _, _, unit = gk.balance_sheet(draw)
        expected = gk.kernel_defaults(
            draw.n, draw.creditor, draw.debtor, principal, unit, draw.shocked, False
        )
        np.testing.assert_array_equal(engine.defaults(draw), expected)


def test_exponential_clearing_price_and_reserves():
    """Selling 10 % of the outstanding units lowers the price by 10 % (alpha = 1.0536); an offer whose
    reserve the post-sale price would breach is not taken, and the taken set does not depend on order."""
    book = BuyerBook(np.ones((1, 1)), np.ones(1), np.ones((1, 1), bool), np.ones(1), np.ones(1))
    offers = Offers(
        np.zeros(2, np.int64),
        np.array([5.0, 5.0]),
        np.zeros(2),
        np.array([0, 1]),
        np.array([0, 1]),
        np.array([0, 1]),
    )
    res = clear_impact(offers, book, 1, np.array([100.0]), np.array([100.0]), fs.ALPHA)
    assert res.price[0] == pytest.approx(100.0 * math.exp(-fs.ALPHA * 0.10))
    assert res.price[0] == pytest.approx(90.0, rel=1e-4)
    assert res.bought.sum() == pytest.approx(10.0)
    high = Offers(
        np.zeros(2, np.int64),
        np.array([5.0, 5.0]),
        np.array([0.0, 94.0]),
        np.array([0, 1]),
        np.array([0, 1]),
        np.array([0, 1]),
    )
    res = clear_impact(high, book, 1, np.array([100.0]), np.array([100.0]), fs.ALPHA)
    assert res.filled.tolist() == [5.0, 0.0]  # after 5 % sold the price is 94.87 >= 94; after 10 % it is 90
    flipped = Offers(
        *(getattr(high, f)[::-1] for f in ("generation", "units", "reserve", "seller", "lot", "source"))
    )
    res2 = clear_impact(flipped, book, 1, np.array([100.0]), np.array([100.0]), fs.ALPHA)
    assert res2.filled.tolist() == [0.0, 5.0]


def test_fire_sales_low_leverage_is_safe_and_high_leverage_spreads():
    rng = np.random.default_rng(4)
    engine = fs.FireSaleEngine(120, 120, seed=4)
    nets = [(fs.draw_holdings(120, 120, 3.0, rng), int(rng.integers(120))) for _ in range(8)]
    low = [engine.defaults(h, 3.0, s).mean() for h, s in nets]
    high = [engine.defaults(h, 30.0, s).mean() for h, s in nets]
    assert max(low) <= 1 / 120  # only the shocked bank
    assert np.mean(np.array(high) >= fs.CONTAGION_SHARE) >= 0.5


def test_fire_sale_units_are_conserved_and_marks_follow_the_impact_rule():
    """Units only move from failed banks' lots to the market's buyer; each asset's mark ends at
    exp(-alpha x), x the share of its units sold, however many rounds the sales took."""
    engine = fs.FireSaleEngine(60, 20, seed=1)
    holds = fs.draw_holdings(60, 20, 3.0, np.random.default_rng(1))
    before = holds.sum(axis=0)
    state = engine.cascade(holds, 25.0, int(np.flatnonzero(holds.any(axis=1))[0]))
    led = state.ledger
    assert led.defaulted[:60].sum() >= 2
    degree = np.maximum(holds.sum(axis=1), 1)[:, None]
    units_per_holding = fs.BANK_ASSETS / degree / engine.session.fundamental[None, :]
    expected_total = (holds * units_per_holding).sum(axis=0)
    np.testing.assert_allclose(led.total_gpus(), expected_total, rtol=1e-12)
    sold_share = led.gpus[61] / expected_total
    assert sold_share.max() > 0 and np.all(before > 0)
    np.testing.assert_allclose(state.marks.ratio, np.exp(-fs.ALPHA * sold_share), rtol=1e-9)


def test_debtrank_identities():
    assert dr.check_linear(n=20, seed=3) <= 1e-10
    mismatches, failures = dr.check_threshold_vs_gai_kapadia(draws=6, n=120, seed=8)
    assert failures > 6  # some cascades happened
    assert mismatches == 0


def test_debtrank_of_the_baseline_market():
    model = GPUCreditModel("baseline")
    ranks = dr.debtrank_of(model)
    ok = ~np.isnan(ranks)
    assert ok.sum() > 10
    assert np.all((ranks[ok] >= 0) & (ranks[ok] <= 1))
    assert np.nanmax(ranks) > 0  # someone's default hurts others


def test_validate_command_exit_codes(tmp_path, capsys):
    assert main(["eisenberg_noe", "--quick", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "eisenberg_noe.png").is_file()
    assert "eisenberg_noe" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["no_such_model"])


# --- leverage targeting (Cont & Schaanning 2017) on the EBA 2018 banks ------------------------------


def test_leverage_target_plan_by_hand():
    """Equity 4, assets 100 (4 %): below the 4.5 % buffer, it shrinks to 4 / 0.05 = 80 assets, paying
    15 from its cash and selling 5 of holdings; at 2.5 % it fails; at 6 % it does nothing."""
    fails, from_cash, to_sell = Lender.leverage_target_plan(
        np.array([4.0, 2.5, 6.0]), np.full(3, 100.0), np.full(3, 15.0), 0.03, 0.045, 0.05
    )
    assert fails.tolist() == [False, True, False]
    assert from_cash.tolist() == pytest.approx([15.0, 0.0, 0.0])
    assert to_sell.tolist() == pytest.approx([5.0, 0.0, 0.0])


def test_impact_price_forms():
    """5 % of the stock sold at a 5 % impact: both forms give 0.95; at 10 % sold, linear 0.90,
    exponential 0.95^2; linear is floored at zero."""
    impact = np.full(3, 0.05)
    sold = np.array([0.05, 0.10, 2.0])
    assert impact_price(np.ones(3), sold, impact, "linear").tolist() == pytest.approx([0.95, 0.90, 0.0])
    assert impact_price(np.ones(3), sold, impact, "exponential")[:2].tolist() == pytest.approx(
        [0.95, 0.95**2]
    )
    with pytest.raises(ValueError, match="linear"):
        impact_price(np.ones(1), np.zeros(1), np.zeros(1), "cubic")


def test_leverage_fire_sale_reproduces_the_inet_reference(tmp_path):
    """All three experiments within tolerance of the numbers from running the INET code, the JSON
    written, and every perturbed engine answer rejected."""
    report = lfs.run(out=tmp_path)
    assert report.ok, report.table()
    data = json.loads((tmp_path / "leverage_fire_sale.json").read_text())
    assert set(data["experiments"]) == {"price_impact", "initial_shock", "leverage_targeting"}
    for res in data["experiments"].values():
        assert len(res["x"]) == len(res["engine"]["eose"]) == len(res["reference"]["sold"]) == 21
        for wrong in lfs.mutations(res["engine"]).values():
            assert not lfs.within(lfs.compare(wrong, res["reference"]))
    assert (tmp_path / "leverage_fire_sale.png").exists()


# --- checks that can fail: each reduction's check passes the engine and rejects perturbed answers -----


def test_gai_kapadia_check_passes_the_engine_and_rejects_perturbed_frequencies():
    """n = 300, 100 draws per z on a 0.5 grid: the engine's frequencies are within 4 s.e. of the
    independent kernel's on other draws; halved, scaled by 1.5, shifted one grid step either way or
    divided by 10 (the old check's blind spot), they are not."""
    z = tuple(np.arange(0.5, 10.01, 0.5))
    engine = gk.simulate(z, n=300, draws=100, seed=21, default_at_zero_equity=True)
    kernel = gk.simulate(z, n=300, draws=100, seed=22, default_at_zero_equity=True, kernel=True)
    assert gk.frequency_check(engine, kernel)[0] <= 1.0
    wrong = {**perturbed(engine.frequency), "/10": engine.frequency / 10}
    for label, freq in wrong.items():
        assert gk.frequency_check(engine, kernel, freq)[0] > 1.0, label


def test_fire_sale_kernel_equals_the_engine_draw_for_draw():
    rng = np.random.default_rng(4)
    engine = fs.FireSaleEngine(80, 80)
    for k in range(24):
        holds = fs.draw_holdings(80, 80, (1.0, 3.0, 8.0)[k % 3], rng)
        shocked, leverage = int(rng.integers(80)), (6.0, 12.0, 24.0, 40.0)[k % 4]
        np.testing.assert_array_equal(
            engine.defaults(holds, leverage, shocked), fs.kernel_defaults(holds, leverage, shocked)
        )


def test_fire_sales_check_rejects_perturbed_surfaces():
    """N = M = 100, 40 draws per cell: the engine's surface passes against the kernel's on other draws;
    scaled or shifted one leverage step, it fails."""
    levs, mus = [4.0, 8.0, 16.0, 32.0, 64.0], [1.0, 2.0, 4.0, 8.0, 16.0]
    engine = fs.phase_diagram(100, 100, levs, mus, draws=40, seed=31)
    kernel = fs.phase_diagram(100, 100, levs, mus, draws=40, seed=32, kernel=True)
    assert binomial_gap(engine.probability, kernel.probability, 40, 40)[0] <= 1.0
    for label, wrong in perturbed(engine.probability, axis=1).items():
        assert binomial_gap(wrong, kernel.probability, 40, 40)[0] > 1.0, label


def test_binomial_gap_by_hand():
    """0.5 vs 0.4 at 100 + 100 draws: pooled 0.45, s.e. sqrt(0.45 x 0.55 x 0.02) = 0.0704, gap 0.1 =
    0.355 of 4 s.e.; two zeros have a gap of zero."""
    ratio, se = binomial_gap(np.array([0.5, 0.0]), np.array([0.4, 0.0]), 100, 100)
    assert se == pytest.approx(math.sqrt(0.45 * 0.55 * 0.02))
    assert ratio == pytest.approx(0.1 / (4 * math.sqrt(0.45 * 0.55 * 0.02)))


def test_debtrank_default_rule_is_battistons_and_linear_rule_is_bounded():
    example, worst, linear_gap = dr.check_battiston_rule(draws=60)
    assert example <= 1e-12 and worst <= 1e-12
    assert linear_gap == pytest.approx(0.5)  # the linear rule passes node 2's rise on to node 3
    for radius, (low, high, err) in dr.check_linear_near_limit().items():
        assert low >= 0.0 and high <= 1.0, radius
        assert np.isnan(err) or err <= 1e-9, radius
    assert not np.isnan(dr.check_linear_near_limit()[0.999][2])  # below saturation: checked exactly


def test_eisenberg_noe_light_default_networks():
    worst = en.properties(draws=20, n=30, seed=4, light=True)
    assert 0 < worst["defaults"] <= 0.25 * 30
    for key in ("fd_vs_fp", "above_pbar", "below_zero", "non_monotone", "not_fixed_point"):
        assert worst[key] <= 1e-9, key
    assert en.fixed_point_gap(4, 30) > 1e-9
