"""The world the agents live in: GPU generations, rent per unit of performance, BTC and hashprice, rates.

Each process is written out with its equation in ``docs/ODD.md`` section 7.1 (Submodels: the world).

- Rent per unit of performance ``R`` (USD per H100-equivalent hour) mean-reverts in logs towards a
  cost-based anchor ``A``: ``log R_t = (1 - phi) log A_t + phi log R_{t-1} + s_t e_t``. ``A_t`` is the
  rent at which the cheapest launched generation, bought new at month ``t``, repays its all-in cost at
  the hurdle rate over its payback period; new prices fall after launch and launches bring cheaper
  compute, so the anchor falls with price-performance. Obsolescence follows from physics: an older
  generation's power per unit of performance is higher, so its margin reaches zero first. A launch
  lowers the anchor, not today's rent: the rent then converges to it as the new supply arrives.
- BTC is a jump-diffusion whose jumps are compensated, so ``drift_per_year`` is the expected return.
- Joint shocks (Gaussian copula with one common factor): each month a factor ``f`` and idiosyncratic
  normals give a BTC score and a compute-demand (rent) shock whose correlation is the regime's; the
  BTC return is the jump-diffusion's quantile at the BTC score, the rent shock is the rent shock size
  times its score. The marginals do not depend on the correlation, only the dependence does.
- Network hashrate grows with mining profitability: rigs are switched on when hashprice exceeds the
  marginal rig's power cost and off when it does not; below the best rigs' power cost every rig is
  off, so hashprice cannot fall below it.
- A two-state regime (normal / stress) makes shocks larger and raises the correlation between BTC and
  compute demand ("correlation convergence"); it imposes no fixed declines. A bad month of the common
  factor makes stress next month likelier (the transition probabilities hold on average).
- History mode: observed paths (``path`` lists) replace the random processes while they last; the
  state then continues from the last observed values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from scipy.special import ndtr

from core.config import World, month_index
from core.streams import Streams

HOURS_PER_MONTH = 730.0
DAYS_PER_MONTH = 30.4
BLOCKS_PER_DAY = 144.0
MAX_LIFE_MONTHS = 240
SCORE_GRID = np.linspace(-8.0, 8.0, 1601)  # Gaussian scores at which the BTC quantile is tabulated
_YEARS_AHEAD = np.arange(1, MAX_LIFE_MONTHS + 1) / 12.0  # months 1 .. 240 in years
_YEARS_AHEAD.flags.writeable = False


@lru_cache(maxsize=64)
def btc_return_quantiles(
    mean: float, sd: float, jumps_per_month: float, jump_mean: float, jump_std: float
) -> np.ndarray:
    """The monthly BTC log return at each Gaussian score of ``SCORE_GRID``: the quantile at
    ``Phi(score)`` of the jump-diffusion marginal, a Poisson(``jumps_per_month``) mixture of normals with
    mean ``mean + n jump_mean`` and variance ``sd^2 + n jump_std^2``. Cached: the parameters rarely
    change between the models of one process."""
    quantiles = _mixture_quantiles(mean, sd, jumps_per_month, jump_mean, jump_std)
    quantiles.flags.writeable = False  # shared by every model through the cache
    return quantiles


def _mixture_quantiles(
    mean: float, sd: float, jumps_per_month: float, jump_mean: float, jump_std: float
) -> np.ndarray:
    if jumps_per_month == 0.0:  # one normal: the quantile is linear in the score
        return mean + sd * SCORE_GRID
    counts = np.arange(1 + math.ceil(jumps_per_month + 12.0 * math.sqrt(jumps_per_month) + 8.0))
    log_factorial = np.array([math.lgamma(n + 1.0) for n in counts])
    weights = np.exp(counts * math.log(jumps_per_month) - jumps_per_month - log_factorial)
    means = mean + counts * jump_mean
    sds = np.maximum(np.sqrt(sd * sd + counts * jump_std * jump_std), 1e-12)
    live = weights > 1e-15
    weights, means, sds = weights[live], means[live], sds[live]
    grid = np.linspace((means - 9.0 * sds).min(), (means + 9.0 * sds).max(), 8001)
    cdf = (weights * ndtr((grid[:, None] - means) / sds)).sum(axis=1)
    target = ndtr(SCORE_GRID)
    upper = np.clip(np.searchsorted(cdf, target), 1, grid.size - 1)
    lo, hi = cdf[upper - 1], cdf[upper]
    share = np.clip((target - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0, 1.0)
    return grid[upper - 1] + share * (grid[upper] - grid[upper - 1])


class GenerationTable:
    """The generations as arrays (index = generation), fixed for the run except launch dates."""

    def __init__(self, world: World) -> None:
        gens = world.generations
        self.names = [g.name for g in gens]
        self.performance = np.array([g.performance for g in gens])
        self.power_kw = np.array([g.power_kw for g in gens])
        self.rack_kw = np.array([g.rack_kw for g in gens])
        self.new_price = np.array([g.new_price for g in gens])
        self.launch = np.array([month_index(g.launch) - month_index(world.start) for g in gens])
        self.life_months = np.array([round(12 * g.physical_life_years) for g in gens])
        # the end of life of the units the market values (``remaining_life``); the market's state
        # sets it to its units' mean (``MarketState.refresh_fundamental``); until then, and for a
        # generation nobody holds, the units bought at launch
        self.reference_end = (self.launch + self.life_months).astype(float)

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        return self.names.index(name)


def annuity_factor(months: int, annual_rate: float) -> float:
    """Present value of 1 USD a month for ``months`` months at ``annual_rate`` (monthly compounding)."""
    monthly = (1.0 + annual_rate) ** (1.0 / 12.0) - 1.0
    return float((1.0 - (1.0 + monthly) ** (-months)) / monthly)


class MarketWorld:
    """Exogenous market processes, advanced once a month: the regime, BTC and rents from one stream
    (the copula's common factor is shared), the base rate from another (``core.streams``)."""

    def __init__(self, config: World, streams: Streams) -> None:
        self.config = config
        self.rng = streams["world"]
        self.rates_rng = streams["world.rates"]
        self.generations = GenerationTable(config)
        self.start_index = month_index(config.start)
        self._halving_months = [month_index(h) - self.start_index for h in config.btc.halvings]
        self.month = 0
        self.stress = config.regime.start_in_stress
        self.base_rate = config.base_rate
        self.btc_price = config.btc.initial_price
        self.btc_last_return = 0.0
        self.compute_shock = 0.0
        self.common_factor = 0.0  # last month's common factor of BTC and compute demand
        self.network_hashrate_eh = config.btc.network_hashrate_eh
        self._launched = self.generations.launch <= 0
        self._opex_per_gpu = self._operating_cost()
        rent = config.rent
        self._persistence = 0.5 ** (1.0 / rent.deviation_half_life_months)
        self._schedule_anchor(720 + MAX_LIFE_MONTHS + 1)
        self.rent_per_perf_hour = rent.h100_rent_per_hour
        self._powers: dict[tuple, np.ndarray] = {}  # deflation and discount factors, by rate
        self._option_sd = self._idle_option_sd(MAX_LIFE_MONTHS) if config.idle_option_volatility > 0 else None
        # e^(v / 2) of ``expected_margins``, by month
        self._option_drift = (
            None if self._option_sd is None else np.exp(0.5 * self._option_sd * self._option_sd)
        )
        self._median: dict | None = None  # see ``_median_view``

    # --- processes ---

    def advance(self) -> None:
        """Move every market process one month: regime, rent, BTC, hashrate, base rate."""
        cfg, rng = self.config, self.rng
        self.month += 1
        if self.month + MAX_LIFE_MONTHS >= self._anchor_path.size:  # runs longer than any scenario
            self._schedule_anchor(2 * self._anchor_path.size)
        r = cfg.regime
        switch_draw, factor, btc_idio, rent_idio = rng.standard_normal(4)
        rate_draw = self.rates_rng.standard_normal()
        # the regime responds to last month's factor: a bad month (low score) makes entry likelier and
        # exit less likely; the score is N(0, 1), so the configured probabilities hold on average
        score = r.factor_loading * self.common_factor + np.sqrt(1.0 - r.factor_loading**2) * switch_draw
        if self.stress:
            self.stress = bool(ndtr(-score) >= r.stress_exit_per_month)  # exit in the upper tail
        else:
            self.stress = bool(ndtr(score) < r.stress_entry_per_month)
        btc = cfg.btc
        rho = btc.correlation_stress if self.stress else btc.correlation_normal
        loading = np.sqrt(abs(rho))  # both scores load sqrt|rho| on the factor: correlation rho
        btc_score = loading * factor + np.sqrt(1.0 - abs(rho)) * btc_idio
        compute_shock = np.copysign(loading, rho) * factor + np.sqrt(1.0 - abs(rho)) * rent_idio
        self.common_factor = float(factor)
        self.compute_shock = float(compute_shock)  # the month's standardised compute-demand shock
        newly = (self.generations.launch <= self.month) & ~self._launched
        self._launched |= newly
        hashprice_before = self.hashprice()

        rent = cfg.rent
        size = rent.shock_volatility * (rent.stress_volatility_multiplier if self.stress else 1.0)
        phi = self._persistence
        log_rent = (1.0 - phi) * np.log(self.anchor) + phi * np.log(self.rent_per_perf_hour)
        self.rent_per_perf_hour = float(np.exp(log_rent + size * compute_shock))
        if self.month <= len(rent.path):  # history mode: the observed level
            self.rent_per_perf_hour = float(rent.path[self.month - 1])

        self.btc_last_return = float(np.interp(btc_score, SCORE_GRID, self._btc_quantiles()))
        previous = self.btc_price
        self.btc_price *= float(np.exp(self.btc_last_return))
        if self.month <= len(btc.path):  # history mode: the recorded price
            self.btc_price = float(btc.path[self.month - 1])
            self.btc_last_return = float(np.log(self.btc_price / previous))

        growth = btc.hashrate_growth_per_year + btc.hashrate_profit_elasticity * np.log(
            hashprice_before / self.mining_break_even()
        )
        self.network_hashrate_eh *= float(np.exp(growth / 12.0))
        floor = self.mining_break_even(btc.efficient_rig_j_per_th)
        if self.hashprice() < floor:  # below the best rigs' power cost every rig is switched off
            self.network_hashrate_eh *= self.hashprice() / floor
        if self.month <= len(
            btc.hashprice_path
        ):  # history mode: the hashrate that gives the observed hashprice
            self.network_hashrate_eh *= self.hashprice() / btc.hashprice_path[self.month - 1]

        self.base_rate = max(0.0, self.base_rate + cfg.base_rate_volatility * rate_draw)
        if self.month <= len(cfg.base_rate_path):
            self.base_rate = float(cfg.base_rate_path[self.month - 1])

    def _btc_quantiles(self) -> np.ndarray:
        """This regime's BTC monthly log return at each score of ``SCORE_GRID``: drift
        ``(log(1 + mu) - lambda kappa - s^2 / 2) / 12``, diffusion ``s / sqrt(12)``, Poisson jumps."""
        btc = self.config.btc
        vol = btc.volatility_per_year * (btc.stress_volatility_multiplier if self.stress else 1.0)
        drift = (
            np.log1p(btc.drift_per_year) - btc.jumps_per_year * self.jump_compensator() - 0.5 * vol * vol
        ) / 12.0
        return btc_return_quantiles(
            float(drift), vol / math.sqrt(12.0), btc.jumps_per_year / 12.0, btc.jump_mean, btc.jump_std
        )

    def jump_compensator(self) -> float:
        """E[e^J - 1] of one BTC jump: subtracted from the drift so jumps do not move the expected return."""
        btc = self.config.btc
        return float(np.expm1(btc.jump_mean + 0.5 * btc.jump_std**2))

    def shock_btc(self, fall: float) -> None:
        """Scenario shock: BTC falls by ``fall`` (0.5 = -50 %) at once.

        With ``btc.crash_comovement`` the crash is what correlation convergence is about: the world is in
        stress from now on (the regime then exits as usual), and the compute-demand shock takes its mean
        given the crash, ``rho_stress x z`` with ``z`` the crash's score under stress BTC returns (both
        scores are N(0, 1) with correlation rho in the copula of ``advance``), so rent moves by
        ``exp(s_stress x rho_stress x z)``. No random number is drawn: paired runs stay paired. Rent is
        left alone in a month whose rent is observed (history mode, months 1 .. len(path))."""
        if fall <= 0.0:
            return
        self.btc_price *= 1.0 - fall
        btc, rent = self.config.btc, self.config.rent
        if not btc.crash_comovement:
            return
        self.stress = True
        score = float(np.interp(np.log1p(-fall), self._btc_quantiles(), SCORE_GRID))
        if not 1 <= self.month <= len(rent.path):
            size = rent.shock_volatility * rent.stress_volatility_multiplier
            self.rent_per_perf_hour *= float(np.exp(size * btc.correlation_stress * score))

    def launch_next_generation(self) -> str | None:
        """Scenario shock: the next unlaunched generation launches this month; the anchor falls to its
        cost if it is cheaper, and the rent converges to it from here. Returns its name."""
        pending = np.flatnonzero(~self._launched)
        if pending.size == 0:
            return None
        g = int(pending[0])
        self.generations.reference_end[g] += self.month - self.generations.launch[g]
        self.generations.launch[g] = self.month
        self._launched[g] = True
        self._schedule_anchor(self._anchor_path.size)
        return self.generations.names[g]

    # --- the anchor ---

    def _schedule_anchor(self, months: int) -> None:
        """Set the anchor for months 0 .. ``months`` - 1 from the launch schedule, and its logs (the
        median rent path's recursion reads them every month)."""
        self._anchor_path = self._anchor_schedule(months)
        self._log_anchor_path = np.log(self._anchor_path)

    def _anchor_schedule(self, months: int) -> np.ndarray:
        """The cost-based anchor for months 0 .. ``months`` - 1, from the launch schedule.

        For each launched generation g: (multiplier x new price_g x (1 - decline)^(years since launch)
        / annuity(payback, hurdle) + opex_g) / (performance_g x hours x utilisation); the anchor is the
        cheapest of them (the source of new compute that sets the long-run price).
        """
        rent, g = self.config.rent, self.generations
        months = np.arange(months)[:, None]
        age_years = np.maximum(months - g.launch[None, :], 0) / 12.0
        capex = (
            rent.anchor_capex_multiplier * g.new_price * (1.0 - rent.new_price_decline_per_year) ** age_years
        )
        annuity = annuity_factor(round(12 * rent.anchor_payback_years), rent.anchor_hurdle_rate)
        per_month = capex / annuity + self._opex_per_gpu
        cost_rent = per_month / (g.performance * HOURS_PER_MONTH * rent.utilisation)
        launched = months >= g.launch[None, :]
        launched[:, 0] |= ~launched.any(axis=1)  # before any launch: the first generation
        return np.where(launched, cost_rent, np.inf).min(axis=1)

    @property
    def anchor(self) -> float:
        """This month's cost-based anchor rent per H100-eq hour (USD)."""
        return float(self._anchor_path[self.month])

    @property
    def rent_deviation(self) -> float:
        """log(rent / anchor): positive when compute is scarce, negative in a glut."""
        return float(np.log(self.rent_per_perf_hour / self.anchor))

    def expected_rent_path(self, months: int = MAX_LIFE_MONTHS) -> np.ndarray:
        """Median rent per H100-eq hour for the next ``months`` months: today's log rent converging
        towards the scheduled anchor at the process's persistence (no shocks). The recursion runs in
        Python floats (the same IEEE doubles and operations as numpy scalars, without their overhead)."""
        phi = self._persistence
        pull = 1.0 - phi
        level = float(np.log(self.rent_per_perf_hour))
        log_anchor = self._log_anchor_path[self.month + 1 : self.month + months + 1].tolist()
        return np.exp([level := pull * anchor + phi * level for anchor in log_anchor])

    # --- derived quantities ---

    def _operating_cost(self) -> np.ndarray:
        """Power and hosting cost per GPU per month, by generation (USD)."""
        p, g = self.config.power, self.generations
        return g.power_kw * (p.pue * p.price_per_kwh * HOURS_PER_MONTH + p.hosting_per_kw_month)

    @property
    def calendar_month(self) -> str:
        idx = self.start_index + self.month
        return f"{idx // 12:04d}-{idx % 12 + 1:02d}"

    @property
    def launched(self) -> np.ndarray:
        return self._launched.copy()

    def revenue_per_gpu(self, rent_per_perf_hour: float | np.ndarray | None = None) -> np.ndarray:
        """Monthly rental revenue of one GPU of each generation at the given (or current) rent."""
        rent = self.rent_per_perf_hour if rent_per_perf_hour is None else rent_per_perf_hour
        return rent * self.generations.performance * HOURS_PER_MONTH * self.config.rent.utilisation

    @property
    def opex_per_gpu(self) -> np.ndarray:
        return self._opex_per_gpu

    def margin_per_gpu(self) -> np.ndarray:
        """Operating margin per GPU per month by generation: rent for its performance - power and hosting."""
        return self.revenue_per_gpu() - self._opex_per_gpu

    def remaining_life(self) -> np.ndarray:
        """Months of physical life left, by generation, of the units the market values (the mean of
        the units in the market: each unit's life counts from its purchase)."""
        g = self.generations
        # (np.minimum / np.maximum: np.clip's Python wrapper costs as much again on six numbers)
        return np.minimum(np.maximum(np.round(g.reference_end - self.month), 0.0), MAX_LIFE_MONTHS)

    def present_value(
        self,
        rent_path: np.ndarray,
        discount_rate: float | Sequence[float],
        idle_margins: np.ndarray | None = None,
    ) -> np.ndarray:
        """Value of one GPU of each generation: margins at the given monthly rent path (months 1, 2, ...,
        USD per H100-eq hour) over its remaining life, discounted. Several views at once: rent paths
        ``[views, months]`` and a discount rate per view give ``[views, generations]`` (the same values as
        one view at a time, in a few numpy calls instead of a few per view).

        The owner can switch a GPU off, so a month's margin counts only when positive; the economic
        life ends where the expected margin reaches zero, earlier for generations with poor
        performance per watt. ``idle_margins`` ([months, generations], as ``expected_margins``): months
        in which the path's median margin is not positive (the owner expects to idle the unit) are
        valued at these instead, e.g. the market's expected margins of restarting it.
        """
        life = np.minimum(self.remaining_life(), rent_path.shape[-1]).astype(np.int64)
        # only the months up to the longest remaining life are read: the table of a shorter path is the
        # same prefix (element-wise margins, a running sum), at a third of the cost for 7-year lives
        table = self.values_by_life(rent_path[..., : life.max(initial=0)], discount_rate, idle_margins)
        return table[..., life, np.arange(len(self.generations))]

    def values_by_life(
        self,
        rent_path: np.ndarray,
        discount_rate: float | Sequence[float],
        idle_margins: np.ndarray | None = None,
    ) -> np.ndarray:
        """Row L: the value of one GPU of each generation with L months of physical life left (L = 0 ..
        the path's length), as in ``present_value``; units of one generation bought in different months
        differ only in their remaining life. Rent paths ``[views, months]`` with a rate per view give a
        table per view (each running sum is over months alone, so the same sums as one view at a time)."""
        months = rent_path.shape[-1]
        margins = self.expected_margins(rent_path)
        if idle_margins is not None:
            running = self.revenue_per_gpu(rent_path[..., None]) > self._opex_per_gpu
            margins = np.where(running, margins, idle_margins[:months])
        return self._value_table(margins, discount_rate)

    def _value_table(self, margins: np.ndarray, discount_rate: float | Sequence[float]) -> np.ndarray:
        """``values_by_life``'s table from the margins ([months, generations], or a view per rate)."""
        months = margins.shape[-2]
        if np.ndim(discount_rate):  # the buyers' hurdle rates: the same few views month after month
            key = ("discounts", tuple(discount_rate))
            stacked = self._powers.get(key)
            if stacked is None or stacked.shape[-1] < months:
                horizon = max(months, MAX_LIFE_MONTHS)
                stacked = self._powers[key] = np.array([self._discount_factors(r, horizon) for r in key[1]])
            discount = stacked[:, :months]
        else:
            discount = self._discount_factors(discount_rate, months)
        table = np.zeros((*margins.shape[:-2], months + 1, len(self.generations)))
        np.cumsum(margins * discount[..., None], axis=-2, out=table[..., 1:, :])
        return table

    def _discount_factors(self, discount_rate: float, months: int) -> np.ndarray:
        """``(1 + rate) ** -(m / 12)`` for months m = 1 .. ``months``, worked out once per rate (the
        rates are the valuation rate and the buyers' hurdle rates; element-wise, so a prefix of the
        cached factors is the same as the factors of fewer months)."""
        key = ("discount", discount_rate)
        factors = self._powers.get(key)
        if factors is None or factors.size < months:
            horizon = np.arange(1, max(months, MAX_LIFE_MONTHS) + 1)
            factors = self._powers[key] = (1.0 + discount_rate) ** (-horizon / 12.0)
        return factors[:months]

    def expected_margins(self, rent_path: np.ndarray) -> np.ndarray:
        """Expected margin per GPU ([months, generations], or [views, months, generations]) of an owner who idles a unit whenever its
        margin is negative and restarts it when it is positive again, along a median rent path.

        Without rent uncertainty (``idle_option_volatility`` 0) a month counts where its median margin
        is positive: ``max(k r_m - c, 0)``. With it, log rent at month m is normal around the path with
        the s.d. of the rent process's deviations after m monthly shocks of that size (persistence
        phi: ``s^2 (1 - phi^(2m)) / (1 - phi^2)``), and the month is worth the call on revenue struck at
        the operating cost (Black 1976): ``k r_m e^(v/2) N(d2 + sqrt v) - c N(d2)``,
        ``d2 = ln(k r_m / c) / sqrt v``. A unit whose power costs more than it earns today is then worth
        something while its future margin may turn positive: the real option of idling."""
        revenue = self.revenue_per_gpu(rent_path[..., None])
        if self._option_sd is None:
            return np.maximum(revenue - self._opex_per_gpu, 0.0)
        months = rent_path.shape[-1]
        sd = self._option_sd[:months, None]
        opex = self._opex_per_gpu[None, :]
        d2 = np.log(revenue / opex) / sd
        return revenue * self._option_drift[:months, None] * ndtr(d2 + sd) - opex * ndtr(d2)

    def _idle_option_sd(self, months: int) -> np.ndarray:
        """S.d. of log rent around its median path after 1 .. ``months`` monthly shocks of size
        ``idle_option_volatility`` decaying at the rent process's persistence."""
        q = self._persistence**2
        m = np.arange(1, months + 1)
        terms = m.astype(float) if q >= 1.0 else -np.expm1(m * np.log(q)) / -np.expm1(np.log(q))
        return self.config.idle_option_volatility * np.sqrt(terms)

    def extrapolated_rent_path(
        self, deflation_per_year: float, cache: bool = True, months: int = MAX_LIFE_MONTHS
    ) -> np.ndarray:
        """Today's rent falling at a constant rate for the next ``months`` months: the rule-of-thumb
        expectation of buyers who extrapolate a deflation rate instead of knowing the process.
        ``cache=False`` for rates that change every month (adaptive expectations), which would only
        fill the cache; they work out only the months asked for (element-wise: the same prefix)."""
        key = ("deflation", deflation_per_year)
        if key in self._powers:
            return self.rent_per_perf_hour * self._powers[key][:months]
        if not cache:
            return self.rent_per_perf_hour * (1.0 - deflation_per_year) ** _YEARS_AHEAD[:months]
        powers = self._powers[key] = (1.0 - deflation_per_year) ** _YEARS_AHEAD
        return self.rent_per_perf_hour * powers[:months]

    def market_margins(self) -> np.ndarray:
        """The expected margins ([months, generations]) the fundamental value discounts: along the
        process's median rent path, with the idling option (``expected_margins``). Read-only."""
        return self._median_view()["margins"]

    def market_values_by_life(self, discount_rate: float) -> np.ndarray:
        """``values_by_life`` along the median rent path (the market's margins) at ``discount_rate``:
        the fundamental value's table at the valuation rate, the lenders' value of operating a lot at
        theirs. Read-only."""
        tables = self._median_view()["tables"]
        table = tables.get(discount_rate)
        if table is None:
            table = tables[discount_rate] = self._value_table(self.market_margins(), discount_rate)
            table.flags.writeable = False
        return table

    def _median_view(self) -> dict:
        """The median rent path's margins and value tables by rate, kept while the month, today's rent
        and the anchor schedule stay the same: the fundamental value, the lenders' disposal choice in
        each cascade round and the buyers' idle months read them several times a month."""
        view = self._median
        if (
            view is None
            or view["month"] != self.month
            or view["rent"] != self.rent_per_perf_hour
            or view["log_anchor"] is not self._log_anchor_path
        ):
            margins = self.expected_margins(self.expected_rent_path())
            margins.flags.writeable = False
            view = self._median = {
                "month": self.month,
                "rent": self.rent_per_perf_hour,
                "log_anchor": self._log_anchor_path,
                "margins": margins,
                "tables": {},
            }
        return view

    def fundamental_value(self) -> np.ndarray:
        """The reference value per GPU: margins along the process's median rent path (the anchor with
        today's deviation decaying), discounted at the valuation rate."""
        return self.present_value(self.expected_rent_path(), self.config.valuation_discount_rate)

    def mining_break_even(self, j_per_th: float | None = None) -> float:
        """Power cost per PH/s per day (USD) of rigs of ``j_per_th`` (default: the network's marginal
        rigs), below which they are switched off. A rig of e J/TH draws e kW per PH/s."""
        btc = self.config.btc
        efficiency = btc.marginal_rig_j_per_th if j_per_th is None else j_per_th
        return efficiency * 24.0 * btc.miner_power_price_per_kwh

    def hashprice(self) -> float:
        """Mining revenue per PH/s per day (USD), with halvings of the block subsidy."""
        btc = self.config.btc
        halvings = sum(1 for month in self._halving_months if month <= self.month)
        btc_per_block = btc.block_subsidy_btc / 2**halvings + btc.fees_btc_per_block
        return self.btc_price * btc_per_block * BLOCKS_PER_DAY / (self.network_hashrate_eh * 1000.0)
