"""The world the agents live in: GPU generations, rent per unit of performance, BTC and hashprice, rates.

Obsolescence is not drawn by hand: rent is paid per unit of performance and deflates, while a GPU's
power and hosting cost stay put, so a generation with poor performance per watt reaches zero margin
first. A two-state regime (normal / stress) raises the correlation between BTC and compute demand
("correlation convergence") and lowers both.
"""

from __future__ import annotations

import numpy as np

from model.config import World, month_index

HOURS_PER_MONTH = 730.0
DAYS_PER_MONTH = 30.4
BLOCKS_PER_DAY = 144.0
MAX_LIFE_MONTHS = 240


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

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        return self.names.index(name)


class MarketWorld:
    """Exogenous market processes, advanced once a month from the model's generator."""

    def __init__(self, config: World, rng: np.random.Generator) -> None:
        self.config = config
        self.rng = rng
        self.generations = GenerationTable(config)
        self.start_index = month_index(config.start)
        self.month = 0
        self.stress = config.regime.start_in_stress
        self.demand_shock = 0.0  # log deviation of compute demand from trend
        self.launch_factor = 1.0  # cumulative rent drop from launches since the start
        self.base_rate = config.base_rate
        self.btc_price = config.btc.initial_price
        self.btc_last_return = 0.0
        self.network_hashrate_eh = config.btc.network_hashrate_eh
        self._launched = self.generations.launch <= 0
        self._opex_per_gpu = self._operating_cost()
        self.rent_per_perf_hour = self._rent()

    # --- processes ---

    def advance(self) -> None:
        """Move every market process one month: regime, demand, rent, BTC, hashrate, base rate."""
        cfg, rng = self.config, self.rng
        self.month += 1
        r = cfg.regime
        switch = rng.random()
        self.stress = (
            (switch >= r.stress_exit_per_month) if self.stress else (switch < r.stress_entry_per_month)
        )
        compute_shock, btc_idio, jump_draw, rate_draw = rng.standard_normal(4)
        jump_count = rng.poisson(cfg.btc.jumps_per_year / 12.0)

        rent = cfg.rent
        self.demand_shock = (
            rent.noise_persistence * self.demand_shock
            + rent.noise_volatility * compute_shock
            - (rent.stress_rent_drop if self.stress else 0.0)
        )
        newly = (self.generations.launch <= self.month) & ~self._launched
        self._launched |= newly
        self.launch_factor *= (1.0 - rent.launch_rent_drop) ** int(newly.sum())
        self.rent_per_perf_hour = self._rent()

        btc = cfg.btc
        rho = btc.correlation_stress if self.stress else btc.correlation_normal
        vol = btc.volatility_per_year * (btc.stress_volatility_multiplier if self.stress else 1.0)
        drift = btc.stress_drift_per_year if self.stress else btc.drift_per_year
        z = rho * compute_shock + np.sqrt(1.0 - rho * rho) * btc_idio
        jumps = jump_count * btc.jump_mean + np.sqrt(jump_count) * btc.jump_std * jump_draw
        self.btc_last_return = (drift - 0.5 * vol * vol) / 12.0 + vol / np.sqrt(12.0) * z + jumps
        previous = self.btc_price
        self.btc_price *= float(np.exp(self.btc_last_return))
        if self.month <= len(btc.path):  # a historical replay: the recorded price (draws still made)
            self.btc_price = float(btc.path[self.month - 1])
            self.btc_last_return = float(np.log(self.btc_price / previous))
        self.network_hashrate_eh *= (1.0 + btc.hashrate_growth_per_year) ** (1.0 / 12.0)
        self.base_rate = max(0.0, self.base_rate + cfg.base_rate_volatility * rate_draw)

    def shock_btc(self, fall: float) -> None:
        """Scenario shock: BTC falls by ``fall`` (0.5 = -50 %) at once."""
        self.btc_price *= 1.0 - fall

    def launch_next_generation(self) -> str | None:
        """Scenario shock: the next unlaunched generation launches this month. Returns its name."""
        pending = np.flatnonzero(~self._launched)
        if pending.size == 0:
            return None
        g = int(pending[0])
        self.generations.launch[g] = self.month
        self._launched[g] = True
        self.launch_factor *= 1.0 - self.config.rent.launch_rent_drop
        self.rent_per_perf_hour = self._rent()
        return self.generations.names[g]

    # --- derived quantities ---

    def _rent(self) -> float:
        """This month's rent per unit of performance: in a historical replay the recorded level (the
        draws are still made), else trend x cycle x demand shock x launch drops."""
        rent = self.config.rent
        if 1 <= self.month <= len(rent.path):
            return float(rent.path[self.month - 1])
        trend = (1.0 - rent.deflation_per_year) ** (self.month / 12.0)
        cycle = 1.0 + rent.cycle_amplitude * np.sin(
            2 * np.pi * (self.month + rent.cycle_phase_months) / rent.cycle_period_months
        )
        return float(rent.h100_rent_per_hour * trend * cycle * np.exp(self.demand_shock) * self.launch_factor)

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
        g = self.generations
        return np.clip(g.launch + g.life_months - self.month, 0, MAX_LIFE_MONTHS)

    def present_value(self, expected_deflation: float, discount_rate: float) -> np.ndarray:
        """Value of one GPU of each generation: expected margins over its remaining life, discounted.

        The owner can switch a GPU off, so a month's margin counts only when positive; the economic
        life ends where the expected margin reaches zero, earlier for generations with poor
        performance per watt.
        """
        months = np.arange(1, MAX_LIFE_MONTHS + 1)
        rent_path = self.rent_per_perf_hour * (1.0 - expected_deflation) ** (months / 12.0)
        margins = np.maximum(self.revenue_per_gpu(rent_path[:, None]) - self._opex_per_gpu, 0.0)
        alive = months[:, None] <= self.remaining_life()[None, :]
        discount = (1.0 + discount_rate) ** (-months / 12.0)
        return (margins * alive * discount[:, None]).sum(axis=0)

    def fundamental_value(self) -> np.ndarray:
        """The reference value per GPU: the trend deflation, discounted at the valuation rate."""
        return self.present_value(self.config.rent.deflation_per_year, self.config.valuation_discount_rate)

    def hashprice(self) -> float:
        """Mining revenue per PH/s per day (USD), with halvings of the block subsidy."""
        btc = self.config.btc
        halvings = sum(1 for h in btc.halvings if month_index(h) - self.start_index <= self.month)
        btc_per_block = btc.block_subsidy_btc / 2**halvings + btc.fees_btc_per_block
        return self.btc_price * btc_per_block * BLOCKS_PER_DAY / (self.network_hashrate_eh * 1000.0)
