"""Each mechanism on its own, against expectations computed by hand in the test (never by the code
under test): rent and margins, fundamental value, BTC and hashprice, covenants and cures, the
secondary market, rollovers, the ABS waterfall, repossession and recovery."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scenario_builders import CALM_WORLD, baseline_world_data, explicit_market
from scipy.stats import kurtosis, norm

from agents import ABSTrust, Borrower, HardwareBuyer, Lender
from core.config import TrancheSpec, load_scenario, read_scenario_data
from core.ledger import AMORTISATIONS, INSTRUMENTS, Cause, Kind, LoanBook
from core.secondary import BuyerBook, Offers, clear, clear_impact, largest_by_group
from core.streams import Streams
from core.world import MarketWorld
from experiments.validation.common import interbank_loan
from model.cascade import repossess
from model.cascade import test_and_cure as covenant_round  # aliased: pytest would collect test_*
from model.metrics import lender_losses
from model.model import GPUCreditModel
from model.operations import pay_debt_service, pay_out_surplus, pay_redemptions

HOURS, UTIL, PUE, KWH, HOSTING = 730.0, 0.85, 1.3, 0.08, 150.0
OPEX_PER_KW = PUE * KWH * HOURS + HOSTING  # 225.92 USD per kW-month
# (name, launch, performance, power_kw, rack_kw) of the generations these tests pin
GENS = [
    ("A100", "2020-05", 0.32, 0.6, 25),
    ("H100", "2022-09", 1.0, 1.05, 40),
    ("H200", "2024-05", 1.4, 1.05, 40),
    ("B200", "2025-03", 2.5, 1.5, 60),
    ("GB200", "2025-06", 3.0, 1.8, 120),
    ("Rubin", "2026-09", 6.0, 2.7, 200),
]
H100 = 1
# the inputs of the hand calculations, pinned so that recalibrating the baseline does not move them
PINNED = {
    "world.generations": [
        {
            "name": name,
            "launch": launch,
            "performance": perf,
            "power_kw": kw,
            "rack_kw": rack,
            "new_price": 30_000.0,
            "physical_life_years": 7,
        }
        for name, launch, perf, kw, rack in GENS
    ],
    "world.valuation_discount_rate": 0.10,
    "cascade.dscr_test_every_months": 1,  # hand calculations test DSCR on last month's flows
    "cascade.dscr_trailing_months": 1,
    "world.base_rate": 0.043,
    "world.rent.h100_rent_per_hour": 2.40,
    "world.rent.utilisation": UTIL,
    "world.power.price_per_kwh": KWH,
    "world.power.pue": PUE,
    "world.power.hosting_per_kw_month": HOSTING,
    "world.btc.initial_price": 95_000.0,
    "world.btc.drift_per_year": 0.15,
    "world.btc.volatility_per_year": 0.5,
    "world.btc.jumps_per_year": 1.0,
    "world.btc.jump_mean": -0.15,
    "world.btc.jump_std": 0.10,
    "world.btc.correlation_normal": 0.2,
    "world.btc.correlation_stress": 0.8,
    "world.btc.network_hashrate_eh": 800.0,
    "world.btc.block_subsidy_btc": 3.125,
    "lenders.bank.rollover_capital_ratio": 0.10,
}


def world(overrides: dict | None = None, seed: int = 7) -> MarketWorld:
    scenario = load_scenario(baseline_world_data(), {**CALM_WORLD, **PINNED, **(overrides or {})})
    return MarketWorld(scenario.world, Streams(seed))


# --- rent, margin, obsolescence -------------------------------------------------------------------


def test_margin_is_rent_for_performance_less_power_and_hosting() -> None:
    w = world()
    for g, (_, _, perf, kw, _) in enumerate(GENS):
        revenue = 2.40 * perf * HOURS * UTIL
        assert w.revenue_per_gpu()[g] == pytest.approx(revenue, rel=1e-12)
        assert w.opex_per_gpu[g] == pytest.approx(kw * OPEX_PER_KW, rel=1e-12)
        assert w.margin_per_gpu()[g] == pytest.approx(revenue - kw * OPEX_PER_KW, rel=1e-12)
    assert w.margin_per_gpu()[H100] == pytest.approx(1489.2 - 237.216)


ANCHOR = {  # the anchor's inputs, pinned for the hand calculations below
    "world.rent.new_price_decline_per_year": 0.12,
    "world.rent.anchor_hurdle_rate": 0.15,
    "world.rent.anchor_payback_years": 5,
    "world.rent.anchor_capex_multiplier": 1.6,
    "world.rent.deviation_half_life_months": 9,
}


def hand_anchor(month: int, launches: dict[str, int] | None = None) -> float:
    """The cost-based anchor by hand: each launched generation's all-in price, falling 12 %/yr after its
    launch, repaid monthly over 60 months at 15 %/yr, plus opex, per rentable H100-eq hour; the cheapest."""
    monthly = 1.15 ** (1 / 12) - 1
    annuity_60 = (1 - (1 + monthly) ** -60) / monthly
    start = 2025 * 12
    costs = []
    for name, launch, perf, kw, _ in GENS:
        y, m = map(int, launch.split("-"))
        launched_at = (launches or {}).get(name, y * 12 + m - 1 - start)
        if launched_at > month:
            continue
        age_years = max(month - launched_at, 0) / 12
        capex = 1.6 * 30_000 * 0.88**age_years
        costs.append((capex / annuity_60 + kw * OPEX_PER_KW) / (perf * HOURS * UTIL))
    return min(costs)


def test_rent_converges_to_the_cost_based_anchor() -> None:
    """log R_t = (1 - phi) log A_t + phi log R_(t-1), phi = 0.5^(1/9): half the gap closes in 9 months."""
    w = world(ANCHOR)
    phi = 0.5 ** (1 / 9)
    rent = 2.40
    assert w.anchor == pytest.approx(hand_anchor(0), rel=1e-12)
    for month in range(1, 37):
        w.advance()
        rent = math.exp((1 - phi) * math.log(hand_anchor(month)) + phi * math.log(rent))
        assert w.anchor == pytest.approx(hand_anchor(month), rel=1e-12)
        assert w.rent_per_perf_hour == pytest.approx(rent, rel=1e-12)
    # the gap to the anchor halves every 9 months (the anchor itself moves, so compare deviations)
    assert w.rent_deviation > 0 and w.anchor < hand_anchor(0)


def test_rent_shocks_have_the_configured_size_and_grow_in_stress() -> None:
    def innovations(stress: bool) -> np.ndarray:
        w = world({**ANCHOR, "world.rent.shock_volatility": 0.08, "world.regime.start_in_stress": stress}, 3)
        phi = 0.5 ** (1 / 9)
        out = []
        for _ in range(4000):
            before = math.log(w.rent_per_perf_hour)
            w.advance()
            out.append(math.log(w.rent_per_perf_hour) - (1 - phi) * math.log(w.anchor) - phi * before)
        return np.array(out)

    assert innovations(False).std() == pytest.approx(0.08, rel=0.05)
    assert innovations(True).std() == pytest.approx(0.08 * 2.0, rel=0.05)  # baseline multiplier 2


def test_a_launch_lowers_the_anchor_not_todays_rent() -> None:
    """A launch shock changes where the rent converges, not the rent of the month; an observed rent
    (history mode) stands, launch or not."""
    path = [2.0, 1.5, 1.2]
    replay = world({**ANCHOR, "world.rent.path": path})
    modelled = world(ANCHOR)
    for w in (replay, modelled):
        w.advance()
        w.advance()
    before, anchor_before = modelled.rent_per_perf_hour, modelled.anchor
    assert replay.launch_next_generation() == modelled.launch_next_generation() == "GB200"
    assert modelled.rent_per_perf_hour == before
    assert modelled.anchor == pytest.approx(hand_anchor(2, {"GB200": 2}), rel=1e-12)
    assert modelled.anchor < anchor_before
    assert replay.rent_per_perf_hour == 1.5
    replay.advance()
    assert replay.rent_per_perf_hour == 1.2


def test_an_observed_path_is_followed_exactly_then_the_process_continues_from_it() -> None:
    """History mode: rent, BTC, hashprice and base rate follow their paths month by month; after the
    last observed month each process starts from the last observed value."""
    rent, btc, hashprice, rate = (
        [2.0, 1.7, 1.9],
        [90_000.0, 80_000.0, 100_000.0],
        [50.0, 40.0, 45.0],
        [
            0.043,
            0.041,
            0.040,
        ],
    )
    w = world(
        {
            **ANCHOR,
            "world.rent.path": rent,
            "world.btc.path": btc,
            "world.btc.hashprice_path": hashprice,
            "world.base_rate_path": rate,
        }
    )
    for m in range(3):
        w.advance()
        assert w.rent_per_perf_hour == rent[m] and w.btc_price == btc[m] and w.base_rate == rate[m]
        assert w.hashprice() == pytest.approx(hashprice[m], rel=1e-12)
    hashrate = w.network_hashrate_eh
    w.advance()  # month 4: no shocks in the calm world, so rent converges from 1.9, BTC moves from 100k
    phi = 0.5 ** (1 / 9)
    assert w.rent_per_perf_hour == pytest.approx(
        math.exp((1 - phi) * math.log(hand_anchor(4)) + phi * math.log(1.9)), rel=1e-12
    )
    assert w.btc_price != 100_000.0 and abs(math.log(w.btc_price / 100_000.0)) < 1.0
    assert w.base_rate == 0.040  # the calm world's rate has no volatility
    assert w.network_hashrate_eh != hashrate


def test_older_generations_reach_zero_margin_first() -> None:
    """Along a falling rent 2.40 x 0.5^(t/12), a generation's margin reaches zero when rent meets its
    cost per unit of performance, so poor performance per watt loses its margin first."""
    path = [2.40 * 0.5 ** (m / 12) for m in range(1, 200)]
    w = world({"world.rent.path": path})
    first_loss = {}
    for month in range(1, 200):
        w.advance()
        for g, (name, *_) in enumerate(GENS):
            if name not in first_loss and w.margin_per_gpu()[g] <= 0:
                first_loss[name] = month
    expected = {}
    for name, _, perf, kw, _ in GENS:
        break_even_rent = kw * OPEX_PER_KW / (perf * HOURS * UTIL)
        expected[name] = math.ceil(12 * math.log(break_even_rent / 2.40) / math.log(0.5))
    assert first_loss == expected
    assert expected["A100"] == 22 and expected["H100"] == 32
    order = [first_loss[name] for name, *_ in GENS]
    assert order == sorted(order) and order[0] < order[1] < order[2] < order[3] < order[5]


# --- fundamental value ------------------------------------------------------------------------------


def hand_fundamental(w: MarketWorld, g: int, months_left: int, rate: float = 0.10) -> float:
    """Margins along the median rent path (the rent converging to the scheduled anchor, no shocks),
    kept when positive, over the remaining life, discounted monthly at 10 %/yr."""
    phi = 0.5 ** (1 / 9)
    _, _, perf, kw, _ = GENS[g]
    rent, value = w.rent_per_perf_hour, 0.0
    for k in range(1, months_left + 1):
        rent = math.exp((1 - phi) * math.log(hand_anchor(w.month + k)) + phi * math.log(rent))
        margin = rent * perf * HOURS * UTIL - kw * OPEX_PER_KW
        value += max(margin, 0.0) * (1 + rate) ** (-k / 12)
    return value


def test_fundamental_value_is_discounted_margin_over_remaining_life() -> None:
    w = world(ANCHOR)
    # H100 launched 2022-09 with a 7-year life: 56 months left in 2025-01, 44 a year later
    assert w.fundamental_value()[H100] == pytest.approx(hand_fundamental(w, H100, 56), rel=1e-10)
    values = [w.fundamental_value()[H100]]
    for _ in range(12):
        w.advance()
        values.append(w.fundamental_value()[H100])
    assert values[-1] == pytest.approx(hand_fundamental(w, H100, 44), rel=1e-10)
    assert all(b < a for a, b in zip(values, values[1:], strict=False))  # falls with age and rent
    for _ in range(28 - 12):  # the A100 (2020-05) reaches the end of its physical life in 2027-05
        w.advance()
    assert w.fundamental_value()[0] == 0.0 and w.fundamental_value()[H100] > 0


def test_a_buyers_value_falls_with_the_deflation_it_extrapolates() -> None:
    w = world()
    values = [w.present_value(w.extrapolated_rent_path(d), 0.10) for d in (0.0, 0.2, 0.4, 0.6)]
    live = w.margin_per_gpu() > 0
    for slower, faster in zip(values, values[1:], strict=False):
        assert np.all(faster[live] < slower[live])


# --- BTC and hashprice ------------------------------------------------------------------------------


def btc_returns(overrides: dict, n: int, seed: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """n monthly BTC log returns and the compute-demand shocks drawn in the same months."""
    w = world({"world.rent.shock_volatility": 0.05, **overrides}, seed)
    ret, shock = np.empty(n), np.empty(n)
    for i in range(n):
        w.advance()
        ret[i], shock[i] = w.btc_last_return, w.compute_shock
    return ret, shock


def test_btc_log_returns_have_the_configured_moments() -> None:
    """Jump-diffusion with compensated jumps: mean (log(1 + mu) - lambda k - sigma^2/2)/12 + lambda/12 x
    jump mean with k = E[e^J - 1]; variance sigma^2/12 + lambda/12 x (jump mean^2 + jump s.d.^2), with mu
    0.15, sigma 0.5, lambda 1, jumps N(-0.15, 0.10)."""
    n = 12_000
    ret, _ = btc_returns({}, n)
    k = math.exp(-0.15 + 0.5 * 0.10**2) - 1
    mean = (math.log(1.15) - k - 0.5 * 0.25) / 12 + (1 / 12) * -0.15
    sd = math.sqrt(0.25 / 12 + (1 / 12) * (0.15**2 + 0.10**2))
    assert ret.mean() == pytest.approx(mean, abs=4 * sd / math.sqrt(n))
    assert ret.std() == pytest.approx(sd, rel=0.03)


def test_btc_jumps_do_not_move_its_expected_return() -> None:
    """The drift is the expected return whatever the jumps: E[S_(t+1)/S_t] = 1.15^(1/12) with frequent
    large negative jumps as without them (uncompensated, the jumps would cut it by ~20 %/yr)."""
    n = 40_000
    for jumps in (
        {"world.btc.jumps_per_year": 0.0},
        {"world.btc.jumps_per_year": 4.0, "world.btc.jump_mean": -0.2},
    ):
        ret, _ = btc_returns({**jumps, "world.btc.volatility_per_year": 0.2}, n)
        gross = np.exp(ret)
        assert gross.mean() == pytest.approx(1.15 ** (1 / 12), abs=4 * gross.std() / math.sqrt(n))


def test_hashrate_grows_when_mining_pays_and_shrinks_when_it_does_not() -> None:
    """log growth per year = g + eta x log(hashprice / marginal cost), marginal cost = J/TH x 24 x
    USD/kWh per PH/s per day; here g = 0, eta = 2, a 30 J/TH rig at 5 c/kWh: $36/PH/day."""
    flat = {
        "world.btc.drift_per_year": 0.0,
        "world.btc.volatility_per_year": 0.0,
        "world.btc.jumps_per_year": 0.0,
        "world.btc.hashrate_growth_per_year": 0.0,
        "world.btc.hashrate_profit_elasticity": 2.0,
        "world.btc.marginal_rig_j_per_th": 30.0,
        "world.btc.miner_power_price_per_kwh": 0.05,
    }
    for price in (95_000.0, 40_000.0):
        w = world({**flat, "world.btc.initial_price": price})
        hashprice, hashrate = w.hashprice(), w.network_hashrate_eh
        w.advance()
        expected = hashrate * math.exp(2.0 * math.log(hashprice / 36.0) / 12)
        assert w.network_hashrate_eh == pytest.approx(expected, rel=1e-12)
        assert (w.network_hashrate_eh > hashrate) == (hashprice > 36.0)


def test_a_btc_crash_moves_compute_demand_by_its_conditional_mean_under_the_stress_copula() -> None:
    """Correlation convergence in a crash: rent moves by exp(s_stress rho_stress z), z the crash's score
    under stress BTC returns (hand-computed here without jumps: a normal log return); no random draw."""
    fall, vol, mult, shock = 0.5, 0.5, 1.5, 0.1
    base = {
        "world.btc.jumps_per_year": 0.0,
        "world.btc.stress_volatility_multiplier": mult,
        "world.rent.shock_volatility": shock,
        "world.rent.stress_volatility_multiplier": 2.0,
    }
    sigma = vol * mult / math.sqrt(12.0)
    mu = (math.log(1.15) - 0.5 * (vol * mult) ** 2) / 12.0
    z = (math.log(1.0 - fall) - mu) / sigma
    for rho in (0.0, 0.8, -0.5):
        w = world({**base, "world.btc.correlation_stress": rho})
        rent, btc, rng = w.rent_per_perf_hour, w.btc_price, w.rng.bit_generator.state
        w.shock_btc(fall)
        assert w.stress
        assert w.btc_price == pytest.approx(btc * (1.0 - fall), rel=1e-12)
        assert w.rent_per_perf_hour / rent == pytest.approx(math.exp(shock * 2.0 * rho * z), rel=1e-4)
        assert w.rng.bit_generator.state == rng
    off = world({**base, "world.btc.crash_comovement": False})
    rent = off.rent_per_perf_hour
    off.shock_btc(fall)
    assert (off.stress, off.rent_per_perf_hour) == (False, rent)
    none = world(base)
    none.shock_btc(0.0)
    assert (none.stress, none.btc_price) == (False, 95_000.0)


def test_btc_jumps_fatten_the_tails() -> None:
    no_jumps, _ = btc_returns({"world.btc.jumps_per_year": 0.0}, 12_000)
    jumps, _ = btc_returns(
        {"world.btc.jumps_per_year": 6.0, "world.btc.jump_mean": 0.0, "world.btc.jump_std": 0.25}, 12_000
    )
    # excess kurtosis of a Poisson mixture of normals: 3 l s_J^4 / (s^2 + l s_J^2)^2 = 2.16 here
    assert abs(kurtosis(no_jumps)) < 0.3
    assert kurtosis(jumps) > 1.2


def test_btc_correlates_with_compute_demand_more_in_stress() -> None:
    normal, normal_shock = btc_returns({"world.btc.jumps_per_year": 0.0}, 6_000)
    stress, stress_shock = btc_returns(
        {"world.btc.jumps_per_year": 0.0, "world.regime.start_in_stress": True}, 6_000
    )
    rho_normal = np.corrcoef(normal, normal_shock)[0, 1]
    rho_stress = np.corrcoef(stress, stress_shock)[0, 1]
    assert rho_normal == pytest.approx(0.2, abs=0.05)
    assert rho_stress == pytest.approx(0.8, abs=0.05)
    assert rho_stress > rho_normal + 0.4


def joint_shocks(overrides: dict, months: int, seed: int = 5) -> dict[str, np.ndarray]:
    """Monthly BTC log returns, compute-demand shocks, the regime and the previous month's common
    factor, in a world that switches regime often (entry 0.2, exit 0.3 a month)."""
    w = world(
        {
            "world.rent.shock_volatility": 0.05,
            "world.regime.stress_entry_per_month": 0.2,
            "world.regime.stress_exit_per_month": 0.3,
            **overrides,
        },
        seed,
    )
    out = {k: np.empty(months) for k in ("btc", "shock", "stress", "factor_before")}
    for i in range(months):
        out["factor_before"][i] = w.common_factor
        w.advance()
        out["btc"][i], out["shock"][i], out["stress"][i] = w.btc_last_return, w.compute_shock, w.stress
    out["stress"] = out["stress"].astype(bool)
    return out


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical distributions."""
    a, b = np.sort(a), np.sort(b)
    points = np.concatenate([a, b])
    return float(
        np.abs(
            np.searchsorted(a, points, "right") / a.size - np.searchsorted(b, points, "right") / b.size
        ).max()
    )


def btc_stress_cdf(x: np.ndarray) -> np.ndarray:
    """The stress regime's monthly BTC log-return distribution for the PINNED parameters, by hand: a
    Poisson(1/12) mixture of N(m + n (-0.15), 0.75^2 / 12 + n 0.10^2), m the compensated drift."""
    vol = 0.5 * 1.5  # baseline stress multiplier 1.5
    kappa = math.exp(-0.15 + 0.5 * 0.10**2) - 1
    m = (math.log(1.15) - kappa - 0.5 * vol * vol) / 12
    lam = 1 / 12
    return sum(
        math.exp(-lam) * lam**n / math.factorial(n)
        * norm.cdf(x, m + n * -0.15, math.sqrt(vol * vol / 12 + n * 0.10**2))
        for n in range(12)
    )  # fmt: skip


def test_the_marginals_do_not_move_when_the_stress_correlation_does() -> None:
    """Gaussian copula: moving the stress correlation 0 -> 0.9 leaves the BTC return and the rent shock
    distributed as before (two-sample KS at the 1 % level; the stress months' BTC returns against the
    hand-computed jump-diffusion; moments) and the regime path unchanged, while the dependence in stress
    months moves from 0 to Spearman 6/pi asin(0.45) = 0.891."""
    n = 24_000
    calm = joint_shocks({"world.btc.correlation_stress": 0.0}, n)
    tight = joint_shocks({"world.btc.correlation_stress": 0.9}, n)
    assert np.array_equal(calm["stress"], tight["stress"])  # the regime does not depend on the correlation
    stress = calm["stress"]
    assert 0.3 < stress.mean() < 0.5  # 0.2 / (0.2 + 0.3) = 0.4 in the long run
    critical = 1.63 * math.sqrt(2.0 / n)  # KS 1 % critical value
    for key in ("btc", "shock"):
        assert ks_distance(calm[key], tight[key]) < critical
        assert ks_distance(calm[key][stress], tight[key][stress]) < 1.63 * math.sqrt(2.0 / stress.sum())
    for run in (calm, tight):
        shocks = run["shock"]
        assert shocks.mean() == pytest.approx(0.0, abs=4 / math.sqrt(n))
        assert shocks.std() == pytest.approx(1.0, rel=0.02)
        returns = np.sort(run["btc"][stress])
        empirical = np.arange(1, returns.size + 1) / returns.size
        assert np.abs(empirical - btc_stress_cdf(returns)).max() < 1.63 / math.sqrt(returns.size)
    spearman = [
        np.corrcoef(np.argsort(np.argsort(r["btc"][stress])), np.argsort(np.argsort(r["shock"][stress])))[
            0, 1
        ]
        for r in (calm, tight)
    ]
    assert spearman[0] == pytest.approx(0.0, abs=0.03)
    assert spearman[1] == pytest.approx(6 / math.pi * math.asin(0.45), abs=0.02)


def test_btc_crashes_come_with_falling_rents_when_the_correlation_is_high() -> None:
    """With correlation 0.9 in every month, BTC's jumps (returns below -15 %) fall in months of negative
    compute-demand shocks; with 0 they do not care."""
    always_stress = {"world.regime.start_in_stress": True, "world.regime.stress_exit_per_month": 0.0}
    for rho, low in ((0.0, (0.4, 0.6)), (0.9, (0.9, 1.0))):
        run = joint_shocks({**always_stress, "world.btc.correlation_stress": rho}, 12_000)
        crash = run["btc"] < -0.15
        assert crash.sum() > 300
        assert low[0] < (run["shock"][crash] < 0).mean() <= low[1]


def test_a_bad_month_of_the_common_factor_makes_stress_likelier() -> None:
    """The regime switch's uniform is Phi(c f_(t-1) + sqrt(1 - c^2) e): entry and exit keep their
    configured rates on average, and conditional on last month's factor they follow, by hand,
    P(entry | f) = Phi((Phi^-1(p_in) - c f) / sqrt(1 - c^2)), averaged over f < -1 or f > 1."""
    c, p_in, p_out = 0.6, 0.2, 0.3
    run = joint_shocks({"world.regime.factor_loading": c}, 40_000, seed=9)
    was, now, f = run["stress"][:-1], run["stress"][1:], run["factor_before"][1:]

    def expected(p: float, sign: float, tail: float) -> float:
        """E[Phi((Phi^-1(p) - sign c f) / sqrt(1 - c^2)) | f beyond the tail]"""
        lo, hi = (-np.inf, -1.0) if tail < 0 else (1.0, np.inf)
        x = np.linspace(max(lo, -9.0), min(hi, 9.0), 4001)
        weight = norm.pdf(x)
        value = norm.cdf((norm.ppf(p) - sign * c * x) / math.sqrt(1 - c * c))
        return float((value * weight).sum() / weight.sum())

    for state, p, sign in ((False, p_in, 1.0), (True, p_out, -1.0)):
        moved = now[was == state] != state
        factor = f[was == state]
        assert moved.mean() == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / moved.size))
        for tail in (-1.0, 1.0):
            chosen = moved[(factor < -1.0) if tail < 0 else (factor > 1.0)]
            rate = expected(p, sign, tail)
            assert chosen.mean() == pytest.approx(rate, abs=4 * math.sqrt(rate * (1 - rate) / chosen.size))
    # entry after a bad month (f < -1) is far likelier than after a good one: 0.53 against 0.02 by hand
    calm_before = ~was
    assert now[calm_before & (f < -1)].mean() > 3 * now[calm_before & (f > 1)].mean()


def test_hashprice_halves_at_a_halving() -> None:
    flat_btc = {
        "world.btc.drift_per_year": 0.0,
        "world.btc.volatility_per_year": 0.0,
        "world.btc.jumps_per_year": 0.0,
        "world.btc.hashrate_growth_per_year": 0.0,
        "world.btc.hashrate_profit_elasticity": 0.0,
        "world.btc.fees_btc_per_block": 0.0,
        "world.btc.halvings": ["2025-04"],
    }
    w = world(flat_btc)
    # 95,000 USD x 3.125 BTC x 144 blocks a day / 800,000 PH/s
    assert w.hashprice() == pytest.approx(53.4375, rel=1e-12)
    w.advance(), w.advance()
    assert w.hashprice() == pytest.approx(53.4375, rel=1e-12)
    w.advance()  # 2025-04
    assert w.hashprice() == pytest.approx(53.4375 / 2, rel=1e-12)


# --- covenants and cures ------------------------------------------------------------------------------


def one_borrower(
    loan: dict, cash: float = 0.0, equity_capacity: float = 0.0, overrides: dict | None = None
) -> GPUCreditModel:
    agents = [
        {
            "id": "nc",
            "type": "neocloud",
            "fleet": {"H100": 1000},
            "cash": cash,
            "equity_capacity": equity_capacity,
        },
        {"id": "bank", "type": "bank", "cash": 1e6},
    ]
    loans = [{"creditor": "bank", "debtor": "nc", "tenor_months": 60, "spread": 0.05, **loan}]
    return GPUCreditModel(explicit_market(agents, loans, overrides={**PINNED, **(overrides or {})}), seed=1)


def fleet_value() -> float:
    """1,000 H100 at the opening collateral price (fundamental x mark 1, no haircut)."""
    probe = one_borrower({"principal": 1.0})
    return float(probe.state.collateral_value()[0])


def test_ltv_covenant_just_inside_is_not_breached() -> None:
    v = fleet_value()
    model = one_borrower({"principal": 0.5 * v * 0.999, "ltv_max": 0.5})
    failures, offers = covenant_round(model.state, test_dscr=False)
    assert failures.agents.size == 0 and len(offers) == 0
    assert not model.state.in_breach[0]


def test_ltv_covenant_just_outside_is_cured_by_selling_gpus() -> None:
    """No cash or equity: sell s with (D - s) = L (V - s), s = (D - L V) / (1 - L)."""
    v = fleet_value()
    debt = 0.5 * v * 1.001
    model = one_borrower({"principal": debt, "ltv_max": 0.5})
    failures, offers = covenant_round(model.state, test_dscr=False)
    assert failures.agents.size == 0 and model.state.in_breach[0]
    sale = (debt - 0.5 * v) / (1 - 0.5)
    assert offers.units.sum() == pytest.approx(1000 * sale / v, rel=1e-9)  # 1 GPU
    assert list(offers.seller) == [0] and list(offers.lot) == [-1]


def test_ltv_covenant_cured_from_cash_prepays_the_gap() -> None:
    v = fleet_value()
    debt = 0.5 * v * 1.01
    model = one_borrower({"principal": debt, "ltv_max": 0.5}, cash=1e6)
    failures, offers = covenant_round(model.state, test_dscr=False)
    assert failures.agents.size == 0 and len(offers) == 0
    assert model.ledger.loans.principal[0] == pytest.approx(0.5 * v, rel=1e-12)
    assert model.ledger.cash[0] == pytest.approx(1e6 - (debt - 0.5 * v), rel=1e-12)
    assert model.ledger.cash[1] == pytest.approx(1e6 + (debt - 0.5 * v), rel=1e-12)


def test_ltv_breach_that_cannot_be_cured_defaults() -> None:
    """A limit of 1 or more cannot be restored by selling (each sale repays no more than it removes)."""
    v = fleet_value()
    model = one_borrower({"principal": 1.0 * v * 1.01, "ltv_max": 1.0})
    failures, _ = covenant_round(model.state, test_dscr=False)
    assert list(failures.agents) == [0]
    assert list(failures.cause) == [Cause.COVENANT_LTV] and list(failures.parent) == [-1]


def dscr_model(cash: float, grace: int = 0, **rules: int) -> tuple[GPUCreditModel, float]:
    v = fleet_value()
    debt = 0.1 * v
    model = one_borrower(
        {"principal": debt, "dscr_min": 1.25},
        cash=cash,
        overrides={"cascade.cure_grace_months": grace, **{f"cascade.{k}": v for k, v in rules.items()}},
    )
    model.ledger.operating_cash_flow[0] = 100_000.0  # last month: coverage 1.0 against a 1.25 covenant
    model.ledger.debt_service_due[0] = 100_000.0
    return model, debt


def test_dscr_breach_is_cured_by_cutting_debt_in_proportion() -> None:
    """Coverage 1.0 under 1.25: debt service must fall by 1 - 1/1.25 = 20 %, so 20 % of the debt."""
    model, debt = dscr_model(cash=1e9)
    failures, offers = covenant_round(model.state, test_dscr=True)
    assert failures.agents.size == 0 and len(offers) == 0 and model.state.in_breach[0]
    assert model.ledger.loans.principal[0] == pytest.approx(0.8 * debt, rel=1e-12)


def test_a_borrower_in_ltv_and_dscr_breach_cures_both() -> None:
    """GPU-secured debt 0.6 V against an LTV limit of 0.5 (need 0.1 V) plus a 0.6 V bond; coverage
    1.2 < 1.25 (need 4 % of total debt, 0.048 V). The cure (0.1 V, from cash) goes to the GPU-secured
    loan first, which ends at the limit; before, it was spread over both loans and left the LTV in
    breach (0.55 V / 0.5 V) while the borrower counted as cured."""
    v = fleet_value()
    agents = [
        {"id": "nc", "type": "neocloud", "fleet": {"H100": 1000}, "cash": 1e9},
        {"id": "bank", "type": "bank", "cash": 1e6},
        {"id": "bond", "type": "bond_investors", "cash": 1e6},
    ]
    terms = {"debtor": "nc", "tenor_months": 60, "principal": 0.6 * v}
    loans = [
        {**terms, "creditor": "bank", "spread": 0.05, "ltv_max": 0.5, "dscr_min": 1.25},
        {**terms, "creditor": "bond", "spread": 0.08, "collateral": "none", "amortisation": "bullet"},
    ]
    model = GPUCreditModel(explicit_market(agents, loans, overrides=PINNED), seed=1)
    led = model.ledger
    led.operating_cash_flow[0], led.debt_service_due[0] = 1.2e5, 1e5
    failures, offers = covenant_round(model.state, test_dscr=True)
    assert failures.agents.size == 0 and len(offers) == 0
    assert led.loans.principal.tolist() == pytest.approx([0.5 * v, 0.6 * v], rel=1e-9)


def test_dscr_breach_without_cash_defaults_and_cannot_sell() -> None:
    model, _ = dscr_model(cash=0.0)
    failures, offers = covenant_round(model.state, test_dscr=True)
    assert list(failures.agents) == [0] and list(failures.cause) == [Cause.COVENANT_DSCR]
    assert len(offers) == 0


def test_dscr_is_tested_only_in_the_first_round_and_after_the_grace_period() -> None:
    model, _ = dscr_model(cash=0.0)
    assert covenant_round(model.state, test_dscr=False)[0].agents.size == 0
    graced, _ = dscr_model(cash=0.0, grace=1)
    assert covenant_round(graced.state, test_dscr=True)[0].agents.size == 0  # month 1 of grace
    assert list(covenant_round(graced.state, test_dscr=True)[0].agents) == [0]  # month 2: default


def test_dscr_is_tested_once_a_month_however_many_cascades_run() -> None:
    """A shock between steps runs another cascade in the same month: it must not count as another
    month in breach. With one month of grace, the borrower is in breach (month 1) after the first
    cascade and stays in its grace month through a second one; the next month's cascade defaults it."""
    graced, _ = dscr_model(cash=0.0, grace=1)
    led = graced.ledger
    graced.resolve_now()
    graced.resolve_now()  # e.g. the visualiser's "re-test covenants", same month
    assert led.dscr_breach_months[0] == 1 and not led.defaulted[0]
    graced.state.world.month += 1  # next month, same flows (as if the month had passed unchanged)
    graced.resolve_now()
    assert led.defaulted[0] and led.default_cause[0] == Cause.COVENANT_DSCR


def test_trailing_dscr_sees_a_bad_month_against_a_good_year() -> None:
    """TTM DSCR (credit agreements test four quarters' cash flow against their debt service): eleven
    months at coverage 2.0 and one at 0.5 give (11 x 2 + 0.5) / 12 = 1.875 >= 1.25, no breach; tested on
    the last month alone the same borrower breaches."""
    ttm, _ = dscr_model(cash=0.0, dscr_trailing_months=12)
    led = ttm.ledger
    month = ttm.state.world.month
    led.service_history[:] = 1e5
    led.cash_flow_history[:] = 2e5
    led.cash_flow_history[month % 12] = 0.5e5
    led.operating_cash_flow[0], led.debt_service_due[0] = 0.5e5, 1e5
    assert covenant_round(ttm.state, test_dscr=True)[0].agents.size == 0
    assert not ttm.state.in_breach[0]
    led.cash_flow_history[:] = 1.2e5  # a whole year at 1.2 < 1.25: breach, and no cash to cure
    assert list(covenant_round(ttm.state, test_dscr=True)[0].agents) == [0]
    last_month, _ = dscr_model(cash=0.0)
    last_month.ledger.operating_cash_flow[0] = 0.5e5
    assert list(covenant_round(last_month.state, test_dscr=True)[0].agents) == [0]


def test_quarterly_dscr_is_tested_at_quarter_ends_only() -> None:
    """With tests every 3 months, a world started in January 2025 tests DSCR in March, June,
    September and December (model months 2, 5, 8, 11); a breach that lasts one quarter counts as 3
    months of grace."""
    from model.cascade import dscr_test_date

    model, _ = dscr_model(cash=0.0, grace=3, dscr_test_every_months=3)
    tested = []
    for month in range(12):
        model.state.world.month = month
        tested.append(dscr_test_date(model.state))
    assert [m for m, t in enumerate(tested) if t] == [2, 5, 8, 11]
    led = model.ledger
    model.state.world.month = 0
    model.resolve_now()  # January: no test
    assert led.dscr_breach_months[0] == 0 and not led.defaulted[0]
    model.state.world.month = 2
    model.resolve_now()  # March: first failed test, within 3 months' grace
    assert led.dscr_breach_months[0] == 3 and not led.defaulted[0]
    model.state.world.month = 5
    model.resolve_now()  # June: second failed test, grace used up
    assert led.defaulted[0] and led.default_cause[0] == Cause.COVENANT_DSCR


def miner_with_margin_loan(cash: float, btc_price: float = 95_000.0) -> GPUCreditModel:
    agents = [
        {"id": "m", "type": "miner", "btc": 100.0, "cash": cash},
        {"id": "bank", "type": "bank", "cash": 0.0},
    ]
    loans = [
        {
            "creditor": "bank",
            "debtor": "m",
            "principal": 8e6,
            "tenor_months": 12,
            "collateral": "btc",
            "amortisation": "bullet",
            "margin_call_ltv": 0.8,
            "spread": 0.05,
        }
    ]
    overrides = {**PINNED, "world.btc.initial_price": btc_price}
    return GPUCreditModel(explicit_market(agents, loans, overrides=overrides), seed=1)


def test_margin_call_met_from_cash_restores_the_loan_to_75_percent_of_the_call() -> None:
    """BTC 100 x 95,000 = 9.5M; call at 0.8 x 9.5M = 7.6M < 8M; restore to 0.75 x 7.6M = 5.7M."""
    model = miner_with_margin_loan(cash=3e6)
    failures, _ = covenant_round(model.state, test_dscr=False)
    assert failures.agents.size == 0
    assert model.ledger.loans.principal[0] == pytest.approx(5.7e6)
    assert model.ledger.cash[0] == pytest.approx(0.7e6)


def test_a_missed_margin_call_sells_only_the_btc_that_restores_the_ratio() -> None:
    """Cash 1M cannot meet the 2.3M call, but the BTC (9.5M) covers the 8M loan: the lender sells x of
    BTC with (8M - x) = 0.75 x 0.8 x (9.5M - x), x = (8M - 5.7M) / 0.4 = 5.75M; the loan falls to 2.25M
    against 3.75M of BTC (LTV 0.6), the miner keeps its cash and does not default."""
    model = miner_with_margin_loan(cash=1e6)
    failures, _ = covenant_round(model.state, test_dscr=False)
    assert failures.agents.size == 0
    led = model.ledger
    assert led.loans.principal[0] == pytest.approx(2.25e6) and led.loans.active[0]
    assert led.btc[0] == pytest.approx(100 - 5.75e6 / 95_000)
    assert led.loans.principal[0] / (led.btc[0] * 95_000) == pytest.approx(0.6)
    assert led.cash[0] == pytest.approx(1e6) and led.cash[1] == pytest.approx(5.75e6)
    again, _ = covenant_round(model.state, test_dscr=False)  # restored: no second call
    assert again.agents.size == 0 and led.loans.principal[0] == pytest.approx(2.25e6)


def test_a_missed_margin_call_defaults_the_miner_when_its_btc_falls_short() -> None:
    """At 70,000 the BTC is worth 7M against the 8M loan: the lender sells it all, 1M stays unpaid and
    the miner defaults (cause margin_call)."""
    model = miner_with_margin_loan(cash=1e6, btc_price=70_000.0)
    failures, _ = covenant_round(model.state, test_dscr=False)
    assert list(failures.agents) == [0] and list(failures.cause) == [Cause.MARGIN_CALL]
    led = model.ledger
    assert led.btc[0] == pytest.approx(0.0, abs=1e-9)
    assert led.loans.principal[0] == pytest.approx(1e6) and led.cash[1] == pytest.approx(7e6)


def test_a_covenant_round_with_no_live_borrower_keeps_the_cached_lender_equity_exact() -> None:
    """With no live borrower the covenant round only turns a cash of -0.0 into 0.0, so the cascade keeps
    the lender equity it cached before the round: it must equal a fresh computation bit for bit, sign
    of zero included, for a bank with nothing but a -0.0 cash and for one with a loan book."""
    agents = [
        {"id": "bank-0", "type": "bank"},
        {"id": "bank-1", "type": "bank", "external_assets": 100.0, "external_liabilities": 90.0},
        {"id": "bank-2", "type": "bank", "external_assets": 100.0, "external_liabilities": 80.0},
    ]
    model = GPUCreditModel(explicit_market(agents, [interbank_loan("bank-1", "bank-2", 10.0)]), seed=1)
    led, state = model.ledger, model.state
    led.cash[0] = -0.0
    assert np.signbit(led.cash[0])
    with led.caching():
        cached = state.lender_equity().copy()
        failures, offers = covenant_round(state, test_dscr=True)
        kept = state.lender_equity().copy()
    assert failures.agents.size == 0 and len(offers) == 0
    assert not np.signbit(led.cash[0])  # the round did change that cash
    fresh = state.lender_equity()  # outside the block: worked out again
    np.testing.assert_array_equal(kept, cached)
    np.testing.assert_array_equal(fresh, kept)
    np.testing.assert_array_equal(np.signbit(fresh), np.signbit(kept))


def test_plan_cure_uses_cash_then_equity_then_sales() -> None:
    # D = 1000, L = 0.5, V = 1800: need = D - L V = 100; cash 60, equity 30, then sell
    # s = (910 - 900) / 0.5 = 20; afterwards (910 - 20) / (1800 - 20) = 0.5 exactly
    plan = Borrower.plan_cure(
        need=np.array([100.0, 100.0, 100.0, 500.0, 50.0]),
        cash=np.array([60.0, 150.0, 60.0, 0.0, 0.0]),
        equity_room=np.array([30.0, 0.0, 30.0, 0.0, 0.0]),
        debt=np.array([1000.0, 1000.0, 1000.0, 1000.0, 1050.0]),
        collateral_value=np.array([1800.0, 1800.0, 1800.0, 1000.0, 1000.0]),
        ltv_limit=np.array([0.5, 0.5, 0.5, 0.5, 1.0]),
        can_sell=np.array([True, True, False, True, True]),
    )
    np.testing.assert_allclose(plan.from_cash, [60, 100, 0, 0, 0])
    np.testing.assert_allclose(plan.from_equity, [30, 0, 0, 0, 0])
    np.testing.assert_allclose(plan.sale_value, [20, 0, 0, 0, 0])
    # 3: a DSCR breach cannot be cured by selling; 4: it would have to sell the whole fleet;
    # 5: at a limit of 1 selling never helps
    assert plan.cured.tolist() == [True, True, False, False, False]


# --- the secondary market ----------------------------------------------------------------------------


def book(
    valuation: float, capacity: float, budget: float, eligible=(True,), sigma: float = 0.25
) -> BuyerBook:
    g = len(eligible)
    return BuyerBook(
        valuation=np.full((1, g), valuation),
        dispersion=np.array([sigma]),
        eligible=np.array([eligible]),
        budget=np.array([budget]),
        capacity=np.array([capacity]),
    )


def offers(units, reserve, generation=None) -> Offers:
    units = np.asarray(units, dtype=float)
    n = units.size
    return Offers(
        generation=np.zeros(n, np.int64) if generation is None else np.asarray(generation, np.int64),
        units=units,
        reserve=np.asarray(reserve, dtype=float),
        seller=np.arange(n, dtype=np.int64),
        lot=np.arange(n, dtype=np.int64),
        source=np.arange(n, dtype=np.int64) + 100,
    )


@pytest.mark.parametrize(
    ("supply", "price"),
    [(500.0, 10_000.0), (1000 * norm.cdf(1.0), 10_000.0 * math.exp(-0.25))],
)
def test_capacity_bound_buyer_clears_where_its_valuation_quantile_meets_supply(supply, price) -> None:
    """Demand C x Phi((ln v - ln p) / sigma) = supply: half the capacity at p = v; Phi(1) at v e^-sigma."""
    result = clear(offers([supply], [0.0]), book(10_000.0, 1000.0, 1e15), 1)
    assert result.price[0] == pytest.approx(price, rel=1e-6)
    assert result.sold[0] == pytest.approx(supply, rel=1e-6)
    assert result.bought[0, 0] == pytest.approx(supply, rel=1e-6)


def test_budget_bound_buyer_clears_at_budget_over_supply() -> None:
    result = clear(offers([500.0], [0.0]), book(10_000.0, 1e12, 1e6), 1)
    assert result.price[0] == pytest.approx(1e6 / 500, rel=1e-6)  # Phi(ln 5 / 0.25) = 1 - 6e-11


def test_reserve_is_respected_and_unsold_units_stay_unsold() -> None:
    """Reserve 1.2 v: the market clears at the reserve with C x Phi(-ln 1.2 / sigma) units sold."""
    result = clear(offers([500.0], [12_000.0]), book(10_000.0, 1000.0, 1e15), 1)
    sold = 1000 * norm.cdf(-math.log(1.2) / 0.25)
    assert result.price[0] == pytest.approx(12_000.0, rel=1e-12)
    assert result.filled[0] == pytest.approx(sold, rel=1e-9)
    assert 500 - result.filled[0] == pytest.approx(500 - sold, rel=1e-9)


def test_offer_above_the_clearing_price_is_not_filled() -> None:
    result = clear(offers([500.0, 300.0], [0.0, 20_000.0]), book(10_000.0, 1000.0, 1e15), 1)
    assert result.price[0] == pytest.approx(10_000.0, rel=1e-6)  # set by the 500 units alone
    assert result.filled[1] == 0.0 and result.filled[0] == pytest.approx(500.0, rel=1e-6)
    assert result.driver[0] == 100  # the source of the filled lot


def test_buyer_that_cannot_host_a_generation_does_not_buy_it() -> None:
    result = clear(
        offers([100.0, 100.0], [0.0, 0.0], generation=[0, 1]),
        book(10_000.0, 1000.0, 1e15, eligible=(True, False)),
        2,
    )
    assert result.sold[0] > 0 and result.sold[1] == 0.0 and result.bought[0, 1] == 0.0


@pytest.mark.parametrize(("max_rack_kw", "gb200_sold"), [(60.0, False), (120.0, True)])
def test_facility_limit_excludes_buyers_below_the_rack_density(max_rack_kw, gb200_sold) -> None:
    """From a buyer class to its book: GB200 needs 120 kW racks, H100 40 kW."""
    data = explicit_market(
        [{"id": "bank", "type": "bank"}],
        overrides={**PINNED, "world.start": "2025-07", "buyers.hyperscaler.max_rack_kw": max_rack_kw},
    )
    data["buyers"] = [data["buyers"][0]]
    model = GPUCreditModel(data, seed=1)
    bb = HardwareBuyer.monthly_book(
        model.buyers, model.state.world, False, model.config.policy, model.state.fundamental()
    )
    gb200 = model.state.world.generations.index("GB200")
    result = clear(offers([100.0, 100.0], [0.0, 0.0], generation=[H100, gb200]), bb, len(GENS))
    assert result.sold[H100] > 0
    assert (result.sold[gb200] > 0) == gb200_sold


@pytest.mark.parametrize("impact", ["demand", "exponential"])
def test_only_repossessed_lots_drive_the_mark(impact) -> None:
    """Two offers of one generation, both filled: a curing borrower's (lot -1, source 100) selling 300
    units and a lot repossessed from borrower 101 selling 200. The driver of the mark is 101, whose
    default forced its sale, although the cure sold more; with the cure alone, nobody drives."""
    both = offers([300.0, 200.0], [0.0, 0.0])
    both.lot[0] = -1
    cure_only = offers([300.0], [0.0])
    cure_only.lot[0] = -1
    buyers = book(10_000.0, capacity=1e6, budget=1e12)
    for posted, driver in ((both, 101), (cure_only, -1)):
        if impact == "demand":
            result = clear(posted, buyers, 1)
        else:
            result = clear_impact(posted, buyers, 1, np.array([10_000.0]), np.array([1e4]), 1.0536)
        assert result.filled.tolist() == pytest.approx(posted.units.tolist())
        assert result.driver.tolist() == [driver]


def test_the_driver_is_the_borrower_whose_lots_sold_most_in_all() -> None:
    """Borrower 101's GPUs were repossessed by three lenders (three lots of 100), borrower 102's by one
    (a lot of 150): 101 sold 300 in all and drives the mark, although 102's single lot is the largest."""
    posted = offers([100.0, 100.0, 100.0, 150.0], [0.0] * 4)
    posted.source[:] = [101, 101, 101, 102]
    result = clear(posted, book(10_000.0, capacity=1e6, budget=1e12), 1)
    assert result.filled.tolist() == pytest.approx([100.0, 100.0, 100.0, 150.0])
    assert result.driver.tolist() == [101]


# --- rollovers ------------------------------------------------------------------------------------------


def test_rollover_decisions_by_lender_type() -> None:
    kinds = np.array([Kind.BANK, Kind.BANK, Kind.CREDIT_FUND, Kind.ABS_TRUST, Kind.BOND_INVESTORS])
    stressed = np.array([False, True, False, False, False])
    assert Lender.agrees_to_roll(kinds, stressed, True).tolist() == [True, False, True, False, True]
    assert Lender.agrees_to_roll(kinds, stressed, False).tolist() == [True, False, True, False, False]


def test_bank_below_its_rollover_capital_ratio_is_stressed() -> None:
    params = {"rollover_capital_ratio": np.full(3, 0.10)}
    kinds = np.full(3, Kind.BANK)
    ratio = np.array([0.09, 0.11, 0.5])
    defaulted = np.array([False, False, True])
    stressed = Lender.stressed(kinds, ratio, defaulted, np.zeros(3, bool), params)
    assert stressed.tolist() == [True, False, True]


def maturing_loan_model(bank_liabilities: float, lender: str = "bank") -> GPUCreditModel:
    """A 1M bullet loan maturing this month; the borrower has 10k of cash and cannot repay it."""
    agents = [
        {"id": "nc", "type": "neocloud", "fleet": {"H100": 10}, "cash": 10_000.0},
        {"id": "lender", "type": lender, "external_liabilities": bank_liabilities},
    ]
    loans = [
        {
            "creditor": "lender",
            "debtor": "nc",
            "principal": 1e6,
            "tenor_months": 1,
            "amortisation": "bullet",
            "collateral": "none",
            "spread": 0.05,
        }
    ]
    return GPUCreditModel(explicit_market(agents, loans, overrides=PINNED), seed=1)


def test_healthy_bank_rolls_a_maturing_loan() -> None:
    model = maturing_loan_model(bank_liabilities=0.8e6)  # capital ratio 0.2 > 0.10
    failed = pay_debt_service(model.state, np.zeros(model.ledger.n_agents))
    assert failed.agents.size == 0
    loans = model.ledger.loans
    assert loans.principal[0] == 1e6 and loans.age[0] == 0 and loans.tenor[0] == 1
    interest = 1e6 * (0.043 + 0.05) / 12
    assert model.ledger.cash[0] == pytest.approx(10_000.0 - interest)


@pytest.mark.parametrize(
    ("liabilities", "lender"),
    [(0.95e6, "bank"), (0.0, "abs_trust")],
    ids=["bank-below-rollover-capital", "abs-trust-never-rolls"],
)
def test_refused_rollover_defaults_a_borrower_who_cannot_repay(liabilities, lender) -> None:
    model = maturing_loan_model(liabilities, lender)
    failed = pay_debt_service(model.state, np.zeros(model.ledger.n_agents))
    assert list(failed.agents) == [0]
    assert list(failed.cause) == [Cause.ROLLOVER_REFUSED]
    assert list(failed.parent) == [-1]  # the lender refused for its own reasons, not another default
    assert model.ledger.loans.principal[0] == 1e6  # nothing was paid


def test_a_refused_rollover_is_attributed_to_the_lender_that_refused() -> None:
    """Two loans mature this month: a 1M bullet from an ABS trust (never refinances: no parent) and a
    small linear loan, fully amortised, from a bank that has failed. Only the bullet has a balloon to
    refuse, so the default's parent is -1, not the failed bank (the last maturing loan used to win)."""
    agents = [
        {"id": "nc", "type": "neocloud", "fleet": {"H100": 10}, "cash": 10_000.0},
        {"id": "trust", "type": "abs_trust"},
        {"id": "bank", "type": "bank"},
    ]
    terms = {"debtor": "nc", "tenor_months": 1, "collateral": "none", "spread": 0.05}
    loans = [
        {**terms, "creditor": "trust", "principal": 1e6, "amortisation": "bullet"},
        {**terms, "creditor": "bank", "principal": 1_000.0, "amortisation": "linear"},
    ]
    model = GPUCreditModel(explicit_market(agents, loans, overrides=PINNED), seed=1)
    model.ledger.defaulted[2] = True
    failed = pay_debt_service(model.state, np.zeros(model.ledger.n_agents))
    assert list(failed.agents) == [0] and list(failed.cause) == [Cause.ROLLOVER_REFUSED]
    assert list(failed.parent) == [-1]


def test_a_borrower_that_cannot_repay_keeps_its_cash_for_its_creditors() -> None:
    """A borrower whose refused balloon it cannot repay pays no surplus cash out to its owners in the
    month it fails (it used to, before repossession): its creditor recovers all 50k of it."""
    model = maturing_loan_model(0.0, "abs_trust")
    led = model.ledger
    led.cash[0], led.cash_buffer_months[0] = 50_000.0, 1.0  # 1 month of service (7.75k) as buffer
    failed = pay_debt_service(model.state, np.zeros(led.n_agents))
    pay_out_surplus(model.state, failed.agents)
    assert led.cash[0] == 50_000.0
    repossess(model.state, failed.agents)
    assert led.loans.recovered[0] == pytest.approx(50_000.0)


def test_a_generated_loan_rolls_over_for_its_original_tenor() -> None:
    """Generated loans start part-way through their tenor (tenor = what is left, age 0); a rollover
    runs the loan's own tenor at origination again (drawn from its class's terms, issue 22), not what
    was left at the start (ODD 7.2)."""
    model = GPUCreditModel(seed=1)
    loans, generated = model.ledger.loans, model.config.generated
    borrower_loans = loans.instrument != INSTRUMENTS.index("interbank")
    borrower_loans &= loans.instrument != INSTRUMENTS.index("btc_margin")
    tenors = set()
    for cls in (generated.miners, generated.neoclouds):
        tenors |= set(range(cls.loan_tenor_months, cls.loan_tenor_months + cls.loan_tenor_spread_months + 1))
        tenors |= set(range(cls.bond_tenor_months, cls.bond_tenor_months + cls.bond_tenor_spread_months + 1))
    assert set(loans.rollover_tenor[borrower_loans].tolist()) <= tenors
    assert (loans.tenor[borrower_loans] < loans.rollover_tenor[borrower_loans]).any()


def test_bond_investors_roll_only_while_markets_are_open() -> None:
    model = maturing_loan_model(0.0, "bond_investors")
    assert pay_debt_service(model.state, np.zeros(model.ledger.n_agents)).agents.size == 0
    closed = maturing_loan_model(0.0, "bond_investors")
    closed.state.world.stress = True  # markets close in stress (markets_open_in_stress is false)
    assert list(pay_debt_service(closed.state, np.zeros(closed.ledger.n_agents)).cause) == [
        Cause.ROLLOVER_REFUSED
    ]


# --- ABS waterfall --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loss", "expected"),
    [
        (0.0, (0, 0, 0)),
        (-5.0, (0, 0, 0)),
        (5.0, (0, 0, 5)),
        (20.0, (0, 10, 10)),
        (95.0, (70, 15, 10)),
        (200.0, (75, 15, 10)),
    ],
)
def test_abs_losses_hit_the_junior_tranche_first(loss, expected) -> None:
    tranches = [
        TrancheSpec(name="senior", share=0.75),
        TrancheSpec(name="mezzanine", share=0.15),
        TrancheSpec(name="junior", share=0.10),
    ]
    out = ABSTrust.tranche_losses(loss, tranches, liabilities=100.0)
    assert list(out) == ["senior", "mezzanine", "junior"]
    assert tuple(out.values()) == pytest.approx(expected)


# --- repossession and recovery --------------------------------------------------------------------------


def estate(loans: list[dict], cash: float = 1000.0) -> tuple[GPUCreditModel, float]:
    agents = [
        {"id": "nc", "type": "neocloud", "fleet": {"H100": 1000}, "cash": cash},
        {"id": "bank", "type": "bank"},
        {"id": "fund", "type": "credit_fund"},
    ]
    v = 1000 * float(one_borrower({"principal": 1.0}).state.mark_price()[H100])
    full = [
        {"debtor": "nc", "tenor_months": 60, "spread": 0.05, **x, "principal": x["principal"] * v}
        for x in loans
    ]
    return GPUCreditModel(explicit_market(agents, full, overrides=PINNED), seed=1), v


def units_by_holder(model: GPUCreditModel) -> dict[int, float]:
    lots = model.ledger.lots
    return {int(h): float(lots.units[lots.holder == h].sum()) for h in np.unique(lots.holder)}


def test_gpus_go_to_secured_lenders_by_seniority() -> None:
    """Claims 0.6 V senior (bank) and 0.6 V junior (fund): the bank takes 600 GPUs, the fund the
    remaining 400; the estate's cash goes to the fund, whose claim the collateral does not cover."""
    model, v = estate(
        [
            {"creditor": "bank", "principal": 0.6, "seniority": 1},
            {"creditor": "fund", "principal": 0.6, "seniority": 2},
        ]
    )
    repossess(model.state, np.array([0]))
    assert units_by_holder(model) == pytest.approx({1: 600.0, 2: 400.0})
    loans, led = model.ledger.loans, model.ledger
    assert loans.exposure_at_default.tolist() == pytest.approx([0.6 * v, 0.6 * v])
    assert loans.recovered.tolist() == pytest.approx([0.0, 1000.0])
    assert not loans.active.any() and loans.principal.tolist() == [0.0, 0.0]
    assert led.gpus[0].sum() == 0.0 and led.cash[0] == 0.0 and led.cash[2] == pytest.approx(1000.0)


def test_surplus_collateral_is_shared_by_all_creditors_by_claim() -> None:
    """Secured 0.3 V (bank) and unsecured 0.3 V bond: the bank takes 300 GPUs first, the 700 left
    are split by claim, 350 each."""
    model, _ = estate(
        [
            {"creditor": "bank", "principal": 0.3, "seniority": 1},
            {"creditor": "fund", "principal": 0.3, "seniority": 2, "collateral": "none"},
        ]
    )
    repossess(model.state, np.array([0]))
    assert units_by_holder(model) == pytest.approx({1: 650.0, 2: 350.0})


def test_a_lender_remembers_the_default_that_cost_it_most() -> None:
    """The bank lends 3 V to nc-a and 0.2 V to nc-b, each with a fleet worth V. nc-a's default costs
    it about 2 V; nc-b's later default costs it nothing (its fleet covers the claim), so nc-a stays the
    bank's stress source (a later, cheaper default used to replace it)."""
    v = fleet_value()
    agents = [
        {"id": "nc-a", "type": "neocloud", "fleet": {"H100": 1000}, "cash": 0.0},
        {"id": "nc-b", "type": "neocloud", "fleet": {"H100": 1000}, "cash": 0.0},
        {"id": "bank", "type": "bank", "cash": 1e6},
    ]
    loans = [
        {"creditor": "bank", "debtor": debtor, "tenor_months": 60, "spread": 0.05, "principal": share * v}
        for debtor, share in (("nc-a", 3.0), ("nc-b", 0.2))
    ]
    model = GPUCreditModel(explicit_market(agents, loans, overrides=PINNED), seed=1)
    led = model.ledger
    repossess(model.state, np.array([0]))
    assert led.stress_source[2] == 0 and led.stress_loss[2] == pytest.approx(2.0 * v, rel=1e-6)
    repossess(model.state, np.array([1]))
    assert led.stress_source[2] == 0


def test_an_over_collateralised_default_does_not_raise_the_lenders_equity() -> None:
    """The bank lends 0.2 V against a fleet worth V. After the default it holds the whole fleet as lots,
    but only 0.2 V of it is its own (the rest of any sale goes to the borrower's owners): its equity and
    its recorded loss do not move (it used to gain 0.8 V)."""
    v = fleet_value()
    agents = [
        {"id": "nc", "type": "neocloud", "fleet": {"H100": 1000}, "cash": 0.0},
        {"id": "bank", "type": "bank", "cash": 1e6},
    ]
    loans = [{"creditor": "bank", "debtor": "nc", "tenor_months": 60, "spread": 0.05, "principal": 0.2 * v}]
    model = GPUCreditModel(explicit_market(agents, loans, overrides=PINNED), seed=1)
    before = model.state.lender_equity()[1]
    repossess(model.state, np.array([0]))
    assert model.ledger.lots.units.sum() == pytest.approx(1000.0)
    assert model.state.lender_equity()[1] == pytest.approx(before, rel=1e-12)
    assert lender_losses(model)[1] == pytest.approx(0.0, abs=1e-6 * v)


def test_default_sells_repossessed_gpus_credits_recoveries_and_carries_the_rest() -> None:
    # a claim of 1.5 V: buyers, who extrapolate today's rent, may pay above the fundamental value V, and
    # the sale must stay within the claim for all of it to count as recovery
    model, v = estate([{"creditor": "bank", "principal": 1.5, "ltv_max": 5.0}], cash=0.0)
    total = model.ledger.total_gpus().copy()
    report = model.default_agent(0)
    led, loans = model.ledger, model.ledger.loans
    assert led.defaulted[0] and led.default_cause[0] == Cause.SHOCK
    sold = report.forced_units
    assert 0 < sold < 1000  # the calm bank offers only part of the stock per round
    bought = led.gpus[model.buyer_index].sum()
    assert bought == pytest.approx(sold)
    assert led.lots.units.sum() == pytest.approx(1000 - sold)  # unsold stock stays with the bank
    assert loans.recovered[0] == pytest.approx(report.forced_value) and loans.recovered[0] <= 1.5 * v
    assert led.cash[1] == pytest.approx(report.forced_value)
    np.testing.assert_allclose(led.total_gpus(), total)
    model.step()  # next month more of the carried stock is offered
    assert led.lots.units.sum() < 1000 - sold


# --- lender clearing ----------------------------------------------------------------------------


def _bank_chain(recovery: str) -> GPUCreditModel:
    """bank-3 -> bank-2 -> bank-1 -> bank-0 (creditor -> debtor) with the given interbank recovery."""
    agents = [
        {"id": "bank-0", "type": "bank", "external_assets": 100.0, "external_liabilities": 80.0},
        {"id": "bank-1", "type": "bank", "external_assets": 100.0, "external_liabilities": 95.0},
        {"id": "bank-2", "type": "bank", "external_assets": 100.0, "external_liabilities": 100.0},
        {"id": "bank-3", "type": "bank", "external_assets": 100.0, "external_liabilities": 95.0},
    ]
    loans = [interbank_loan(f"bank-{c}", f"bank-{c - 1}", p) for c, p in ((1, 10.0), (2, 10.0), (3, 2.0))]
    model = GPUCreditModel(
        explicit_market(agents, loans, overrides={"cascade.interbank_recovery": recovery}), seed=1
    )
    return model


@pytest.mark.parametrize("recovery", ["zero", "clearing"])
def test_lender_contagion_is_a_cause_tree_within_the_round(recovery) -> None:
    """A chain of interbank loans, bank-3 -> bank-2 -> bank-1 -> bank-0 (creditor -> debtor; 2, 10 and
    10), equities 7, 8, 5 and 10. bank-0 is forced into default and repays nothing (no cash): bank-1
    loses 10 > 5 and fails on its own losses (insolvency, parent bank-0). With zero recovery bank-2
    loses its 10 on bank-1 > 8 and fails in the same round; its equity was positive with every claim
    at face value, so its cause is counterparty, parent bank-1. With clearing, bank-1's 100 of outside
    assets pay 100 / 105 of what it owes (95 outside, 10 to bank-2, pari passu): bank-2 recovers
    10 * 100/105 = 9.52 and survives. bank-3 loses at most 2 < 7 and survives."""
    model = _bank_chain(recovery)
    model.default_agent(0)
    led = model.ledger
    failed = [1, 2] if recovery == "zero" else [1]
    assert np.flatnonzero(led.defaulted).tolist() == [0, *failed]
    assert led.default_cause[failed].tolist() == [Cause.INSOLVENCY, Cause.COUNTERPARTY][: len(failed)]
    assert led.default_parent[failed].tolist() == [0, 1][: len(failed)]
    assert led.default_round[failed].tolist() == [0] * len(failed)
    written_off = led.loans.exposure_at_default.tolist()
    assert written_off == ([10.0, 10.0, 2.0] if recovery == "zero" else [10.0, 10.0, 0.0])
    recovered = 0.0 if recovery == "zero" else 10.0 * 100.0 / 105.0
    assert led.loans.recovered.tolist() == pytest.approx([0.0, recovered, 0.0])


@pytest.mark.parametrize("recovery", ["zero", "clearing"])
def test_defaults_among_lenders_move_equity_and_create_none(recovery) -> None:
    """The chain above: every write-off is one lender's loss and its debtor's gain, and what Eisenberg-
    Noe has a failed lender pay leaves its own outside assets as it reaches its creditor's. So the
    equity of all the banks together, failed ones included, is the same after the cascade as before.
    With clearing, bank-1 pays bank-2 10 * 100/105 out of its outside assets of 100."""
    model = _bank_chain(recovery)
    banks = slice(0, 4)
    before = model.state.lender_equity()[banks].sum()
    model.default_agent(0)
    assert model.ledger.defaulted[1]
    assert model.state.lender_equity()[banks].sum() == pytest.approx(before, abs=1e-9)
    paid = 0.0 if recovery == "zero" else 10.0 * 100.0 / 105.0
    assert model.ledger.external_assets[banks].tolist() == pytest.approx(
        [100.0, 100.0 - paid, 100.0 + paid, 100.0]
    )


def test_credit_fund_investors_redeem_after_a_drawdown_from_the_peak() -> None:
    """A credit fund starts with equity 100 + 20 - 90 = 30 as its peak; a bank keeps no peak (only
    funds' investors redeem). A loss of 4 (13 % of the peak, past the 10 % trigger) makes investors
    pull 5 % of the remaining equity 26 a month, out of the fund's cash; a loss of 2 (7 %) does not."""
    agents = [
        {
            "id": "fund",
            "type": "credit_fund",
            "cash": 20.0,
            "external_assets": 100.0,
            "external_liabilities": 90.0,
        },
        {"id": "bank", "type": "bank", "cash": 20.0, "external_assets": 100.0, "external_liabilities": 90.0},
    ]
    for loss, redeemed in ((2.0, 0.0), (4.0, 0.05 * 26.0)):
        model = GPUCreditModel(explicit_market(agents), seed=1)
        led, state = model.ledger, model.state
        assert led.peak_equity[:2].tolist() == [30.0, 0.0]
        led.external_assets[:2] -= loss
        pay_redemptions(state)
        assert led.cash[:2].tolist() == pytest.approx([20.0 - redeemed, 20.0])
        assert state.redeeming[:2].tolist() == [redeemed > 0, False]
        assert led.peak_equity[:2].tolist() == [30.0, 0.0]  # a peak only rises


def test_a_lender_with_negative_equity_fails_under_clearing_too() -> None:
    """bank-1 owes 10 to bank-0 and has lent 20 to a neo-cloud; equity 100 + 20 - 95 - 10 = 15. bank-0
    fails first (its claim on bank-1 stays on the books); then the neo-cloud defaults with nothing to
    recover and bank-1's equity is 15 - 20 = -5. It fails, on its own losses, and its debt to the
    failed bank-0 is written down at its clearing value: 100 of outside assets against 95 + 10 owed
    pays 100 / 105 of it (pari passu with its outside creditors)."""
    agents = [
        {"id": "bank-0", "type": "bank", "external_assets": 100.0, "external_liabilities": 80.0},
        {"id": "bank-1", "type": "bank", "external_assets": 100.0, "external_liabilities": 95.0},
        {"id": "nc", "type": "neocloud", "cash": 0.0},
    ]
    loans = [
        interbank_loan("bank-0", "bank-1", 10.0),
        {
            "creditor": "bank-1",
            "debtor": "nc",
            "principal": 20.0,
            "tenor_months": 60,
            "spread": 0.05,
            "collateral": "none",
        },
    ]
    model = GPUCreditModel(
        explicit_market(agents, loans, overrides={"cascade.default_at_zero_equity": False}), seed=1
    )
    model.default_agent(0)
    assert not model.ledger.defaulted[1]
    model.default_agent(2)
    led = model.ledger
    # -5 before the clearing; the part of its debt it does not pay (10 / 21) is written off
    assert model.state.lender_equity()[1] == pytest.approx(-5.0 + 10.0 * 5.0 / 105.0)
    assert led.defaulted[1] and led.default_cause[1] == Cause.INSOLVENCY and led.default_parent[1] == 2
    assert led.loans.exposure_at_default[0] == 10.0 and not led.loans.active[0]
    assert led.loans.recovered[0] == pytest.approx(10.0 * 100.0 / 105.0)


def test_losses_are_pari_passu_in_every_round() -> None:
    """A chain bank-0 <- bank-1 <- bank-2 (creditor <- debtor, 10 each); bank-1 and bank-2 have each
    lent 30 to a neo-cloud with nothing to recover. Round one: bank-1's neo-cloud defaults; bank-1
    holds 90 outside and its claim of 10 on bank-2 (paid in full) against 100 + 10 owed, so it pays
    100 / 110 and bank-0 recovers 9.0909. Round two (a later cascade): bank-2's neo-cloud defaults;
    bank-2 holds 100 against 95 outside and 10 owed to the failed bank-1, so it pays 100 / 105 and
    bank-1's claim on it is written down to 9.5238. bank-1's estate is now worth 99.5238 against 110:
    bank-0's recovery falls to 10 * 99.5238 / 110 = 9.0476. Before losses were pari passu in every
    round, bank-2's debt to the failed bank-1 was outside the clearing (bank-2 paid it in full and it
    was never written off) and bank-0 kept 9.0909. Total equity is conserved throughout."""
    agents = [
        {"id": "bank-0", "type": "bank", "external_assets": 100.0, "external_liabilities": 50.0},
        {"id": "bank-1", "type": "bank", "external_assets": 90.0, "external_liabilities": 100.0},
        {"id": "bank-2", "type": "bank", "external_assets": 100.0, "external_liabilities": 95.0},
        {"id": "nc-1", "type": "neocloud", "cash": 0.0},
        {"id": "nc-2", "type": "neocloud", "cash": 0.0},
    ]
    unsecured = {"tenor_months": 60, "spread": 0.05, "collateral": "none", "principal": 30.0}
    loans = [
        interbank_loan("bank-0", "bank-1", 10.0),
        interbank_loan("bank-1", "bank-2", 10.0),
        {"creditor": "bank-1", "debtor": "nc-1", **unsecured},
        {"creditor": "bank-2", "debtor": "nc-2", **unsecured},
    ]
    model = GPUCreditModel(explicit_market(agents, loans), seed=1)
    led, loans_ = model.ledger, model.ledger.loans
    banks = slice(0, 3)
    equity_before = model.state.lender_equity()[banks].sum()
    model.default_agent(3)
    assert np.flatnonzero(led.defaulted[banks]).tolist() == [1]
    assert loans_.recovered[0] == pytest.approx(10.0 * 100.0 / 110.0, rel=1e-12)
    assert loans_.active[1] and loans_.recovered[1] == 0.0
    model.default_agent(4)
    assert np.flatnonzero(led.defaulted[banks]).tolist() == [1, 2]
    assert led.default_cause[2] == Cause.INSOLVENCY
    b2_pays = 10.0 * 100.0 / 105.0
    assert loans_.exposure_at_default[1] == 10.0 and not loans_.active[1]
    assert loans_.recovered[1] == pytest.approx(b2_pays, rel=1e-12)
    assert loans_.recovered[0] == pytest.approx(10.0 * (90.0 + b2_pays) / 110.0, rel=1e-12)
    assert led.external_assets[banks].tolist() == pytest.approx(
        [
            100.0 + 10.0 * (90.0 + b2_pays) / 110.0,
            90.0 + b2_pays - 10.0 * (90.0 + b2_pays) / 110.0,
            100.0 - b2_pays,
        ]
    )
    # the two neo-cloud loans (60) are the only losses of the banks together
    assert model.state.lender_equity()[banks].sum() == pytest.approx(equity_before - 60.0, abs=1e-9)


def test_largest_by_group_picks_the_largest_total_then_the_lowest_member() -> None:
    """Against a plain loop over (group, amount, member) rows, on random small cases with many ties
    (integer amounts, some all zero), members listed several times in a group (summed), and one case
    in three with a single member."""
    rng = np.random.default_rng(3)
    for case in range(300):
        n, m = int(rng.integers(1, 12)), int(rng.integers(0, 30))
        group = rng.integers(0, n, m)
        member = np.full(m, rng.integers(0, n)) if case % 3 == 0 else rng.integers(0, n, m)
        amount = rng.integers(0, 3, m).astype(float)
        totals: dict[int, dict[int, float]] = {}
        for g, a, c in zip(group.tolist(), amount.tolist(), member.tolist(), strict=True):
            totals.setdefault(g, {}).setdefault(c, 0.0)
            totals[g][c] += a
        expected = np.full(n, -1)
        for g, by_member in totals.items():
            expected[g] = min(by_member, key=lambda c, t=by_member: (-t[c], c))
        winner, largest = largest_by_group(n, group, amount, member)
        assert winner.tolist() == expected.tolist()
        assert largest.tolist() == [max(totals[g].values()) if g in totals else -np.inf for g in range(n)]
        # the same totals as distinct (group, member) rows already in order: the path without np.unique
        rows = sorted((g, c, t) for g, by_member in totals.items() for c, t in by_member.items())
        in_order = [np.array([r[k] for r in rows], dtype=int if k < 2 else float) for k in range(3)]
        winner, largest = largest_by_group(n, in_order[0], in_order[2], in_order[1])
        assert winner.tolist() == expected.tolist()
        assert largest.tolist() == [max(totals[g].values()) if g in totals else -np.inf for g in range(n)]


# --- loan book ----------------------------------------------------------------------------------


def test_loan_book_owns_its_balances_even_if_one_array_is_passed_for_two() -> None:
    zeros = np.zeros(2)
    ints = {name: np.zeros(2, dtype=np.int64) for name in LoanBook.FIELDS_INT}
    floats = {name: zeros for name in LoanBook.FIELDS_FLOAT}
    book = LoanBook(**{**ints, **floats, "principal": np.array([100.0, 50.0])}, active=np.ones(2, dtype=bool))
    book.exposure_at_default[0] += 10.0
    assert book.recovered.tolist() == [0.0, 0.0]
    assert book.repaid.tolist() == [0.0, 0.0]
    assert zeros.tolist() == [0.0, 0.0]  # the caller's array is not the book's either


def test_linear_loan_repays_the_same_amount_every_month() -> None:
    """A linear schedule repays principal / remaining months, which is the original principal over
    the tenor each month: a linear loan that paid twice, to a borrower that made no covenant cure
    (a cure prepays), repaid equal amounts."""
    data = read_scenario_data("baseline")
    data["world"]["regime"]["stress_entry_per_month"] = 0.0
    model = GPUCreditModel(scenario=data)
    loans = model.ledger.loans
    model.step()
    first, cured = loans.repaid.copy(), model.state.in_breach.copy()
    model.step()
    cured |= model.state.in_breach
    linear = (loans.amortisation == AMORTISATIONS.index("linear")) & loans.active & (loans.age >= 2)
    linear &= ~cured[loans.debtor]
    assert linear.sum() > 10
    np.testing.assert_allclose(loans.repaid[linear] - first[linear], first[linear], rtol=1e-9)


# --- agents -------------------------------------------------------------------------------------


def test_an_agent_reports_its_health_from_the_ledger() -> None:
    """Mesa agents read their state through the ledger: healthy, in breach this month, or defaulted."""
    model = GPUCreditModel(scenario="baseline")
    miner = model.agent_of[model.largest_live(Kind.MINER)]
    assert miner.health == "healthy" and not miner.defaulted
    model.state.in_breach[miner.index] = True
    assert miner.health == "breach"
    model.default_agent(miner.index)
    assert miner.health == "defaulted" and miner.defaulted


# --- leverage targeting (lenders.<kind>.sale_rule = "leverage_target") ---------------------------


def _targeting_bank(liabilities: float, overrides: dict | None = None) -> tuple[GPUCreditModel, float]:
    """A leverage-targeting bank (cash 3 V, outside assets 6.5 V, outside liabilities ``liabilities`` V)
    has lent 2 V against a neo-cloud's fleet worth V at the mark; the neo-cloud's default has just
    handed it the fleet (its stock counts up to its claim: all of V). ``overrides``: more scenario
    settings (the market's price rule)."""
    v = fleet_value()
    agents = [
        {"id": "nc", "type": "neocloud", "fleet": {"H100": 1000}, "cash": 0.0},
        {
            "id": "bank",
            "type": "bank",
            "cash": 3.0 * v,
            "external_assets": 6.5 * v,
            "external_liabilities": liabilities * v,
        },
    ]
    loans = [{"creditor": "bank", "debtor": "nc", "tenor_months": 60, "spread": 0.05, "principal": 2.0 * v}]
    settings = {
        **PINNED,
        "lenders.bank.sale_rule": "leverage_target",
        "lenders.bank.patient_sale_share": 0.0,
        **(overrides or {}),
    }
    model = GPUCreditModel(explicit_market(agents, loans, overrides=settings), seed=1)
    repossess(model.state, np.array([0]))
    model.ledger.invalidate()
    return model, v


def test_a_leverage_targeting_lender_pays_debt_from_cash_then_sells_a_slice_back_to_target() -> None:
    """Assets 3 + 6.5 + 1 = 10.5 V, equity 0.3675 V: leverage 3.5 %, below the 4 % buffer and above the
    3 % minimum. Back to 5 % means assets of 0.3675 / 0.05 = 7.35 V: it pays 3 V of liabilities from
    cash (depositors leave with it), then offers, at any price, 0.15 V of its 1 V of GPUs: a 15 % slice."""
    from model.cascade import deleverage_from_cash, lender_offers

    model, v = _targeting_bank(10.5 - 0.3675)
    state, led = model.state, model.ledger
    assert state.capital_ratio()[1] == pytest.approx(0.035)
    to_sell = deleverage_from_cash(state)
    assert to_sell[1] == pytest.approx(0.15 * v)
    assert led.cash[1] == pytest.approx(0.0, abs=1e-6 * v)
    assert led.external_liabilities[1] == pytest.approx((10.5 - 0.3675 - 3.0) * v)
    assert state.lender_equity()[1] == pytest.approx(0.3675 * v)
    offers = lender_offers(state, to_sell)
    held = state.lot_values_at_mark().sum()
    assert held == pytest.approx(v)
    assert offers.units.sum() == pytest.approx(0.15 * 1000)
    floor = state.scenario.cascade.scrap_value_share  # at any price: down to the scrap floor
    np.testing.assert_allclose(offers.reserve, floor * state.fundamental()[offers.generation])


def test_a_leverage_targeting_lender_fails_below_its_minimum_leverage() -> None:
    """The same bank with liabilities 10.5 - 0.2625 V: leverage 2.5 % < 3 %, equity still positive. It
    fails (insolvency) in the clearing; the same bank under the share-of-stock rule does not."""
    from model.cascade import clear_lenders

    model, v = _targeting_bank(10.5 - 0.2625)
    assert model.state.lender_equity()[1] > 0
    failed = clear_lenders(model.state)
    assert failed.agents.tolist() == [1] and failed.cause.tolist() == [Cause.INSOLVENCY]
    model.state.lender_params = {
        **model.state.lender_params,
        "leverage_targeting": np.zeros(model.ledger.n_agents, dtype=bool),
    }
    model.ledger.defaulted[:] = False
    model.ledger.defaulted[0] = True
    assert clear_lenders(model.state).agents.size == 0


def test_a_deleveraging_sale_moves_the_price_linearly_and_executes_at_the_midpoint() -> None:
    """Cont & Schaanning's market for the rule above (``cascade.price_impact = 'linear'``, slope 1,
    ``execution_price = 'midpoint'``), one deleveraging step by hand. The bank of the first test pays
    3 V from cash and sells a 15 % slice: 150 of its 1,000 H100, the only H100 in the market, so
    x = 0.15 of the units outstanding. The price falls linearly from p0 to p1 = p0 (1 - 1 x 0.15) =
    0.85 p0 (the new mark); the units change hands at the mid-point (p0 + p1) / 2 = 0.925 p0, so the
    proceeds are 150 x 0.925 p0 = 0.13875 V (post-impact execution: 0.1275 V). Then assets are
    0.13875 + 6.5 + 850 x 0.85 p0 = 7.36125 V, equity 7.36125 - 7.1325 = 0.22875 V: leverage 3.1 %,
    still below the buffer, so the next round the proceeds repay liabilities (all 0.13875 V of cash,
    liabilities 7.1325 -> 6.99375 V) and 7.36125 - 0.22875 / 0.05 - 0.13875 = 2.6475 V is left to
    sell."""
    from model.cascade import CascadeReport, deleverage_from_cash, lender_offers, sell

    def one_step(execution: str) -> tuple[GPUCreditModel, float, int]:
        market = {"cascade.price_impact": "linear", "cascade.execution_price": execution}
        model, v = _targeting_bank(10.5 - 0.3675, market)
        state = model.state
        offers = lender_offers(state, deleverage_from_cash(state))
        assert offers.units.sum() == pytest.approx(150.0)
        assert model.ledger.total_gpus()[offers.generation[0]] == pytest.approx(1000.0)
        sell(state, offers, model.monthly_buyer_book(), model.buyer_index, CascadeReport())
        model.ledger.invalidate()
        return model, v, int(offers.generation[0])

    model, v, h100 = one_step("midpoint")
    state, led = model.state, model.ledger
    assert 1000 * state.fundamental()[h100] == pytest.approx(v)  # p0 = V / 1000
    assert state.marks.ratio[h100] == pytest.approx(0.85)
    assert led.lots.units.sum() == pytest.approx(850.0)
    assert led.cash[1] == pytest.approx(0.13875 * v)
    assert led.loans.recovered[0] == pytest.approx(0.13875 * v)  # proceeds credited to the loan
    assert state.lender_assets()[1] == pytest.approx(7.36125 * v)
    assert state.lender_equity()[1] == pytest.approx(0.22875 * v)
    to_sell = deleverage_from_cash(state)
    assert led.cash[1] == pytest.approx(0.0, abs=1e-6 * v)
    assert led.external_liabilities[1] == pytest.approx(6.99375 * v)
    assert to_sell[1] == pytest.approx(2.6475 * v)

    post, v, _ = one_step("post_impact")
    assert post.state.marks.ratio[h100] == pytest.approx(0.85)
    assert post.ledger.cash[1] == pytest.approx(0.1275 * v)


def test_midpoint_execution_needs_an_impact_price() -> None:
    with pytest.raises(ValueError, match="execution_price 'midpoint' needs an impact price"):
        load_scenario("baseline", {"cascade.execution_price": "midpoint"})
    rules = load_scenario(
        "baseline", {"cascade.execution_price": "midpoint", "cascade.price_impact": "linear"}
    ).cascade
    assert rules.impact_slope == 1.0
    with pytest.raises(ValueError, match="impact_slope"):
        load_scenario("baseline", {"cascade.price_impact": "linear", "cascade.impact_slope": 0.0})


def test_leverage_fields_are_validated() -> None:
    with pytest.raises(ValueError, match="leverage_min must be below leverage_target"):
        load_scenario("baseline", {"lenders.bank.leverage_min": 0.06})
    with pytest.raises(ValueError, match="leverage_buffer must be at least leverage_min"):
        load_scenario("baseline", {"lenders.bank.leverage_buffer": 0.01})
    with pytest.raises(ValueError, match="sale_rule"):
        load_scenario("baseline", {"lenders.bank.sale_rule": "panic"})
