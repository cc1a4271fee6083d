"""Crypto miners pivoting to AI hosting: two leverages, BTC and GPUs."""

from __future__ import annotations

import numpy as np

from agents.borrower import Borrower
from core.world import DAYS_PER_MONTH, HOURS_PER_MONTH


class Miner(Borrower):
    """Earns hashrate x hashprice - power, holds a BTC treasury pledged to margin loans, runs a GPU
    fleet financed by convertibles, high-yield or asset-backed loans, and may host a neo-cloud."""

    @staticmethod
    def mining_margin(
        hashrate_ph: np.ndarray, efficiency_j_per_th: np.ndarray, hashprice: float, power_price: float
    ) -> np.ndarray:
        """Monthly mining margin; rigs are switched off when power costs more than they earn."""
        revenue = hashrate_ph * hashprice * DAYS_PER_MONTH
        power_kw = hashrate_ph * efficiency_j_per_th  # PH/s x J/TH = kW
        return np.maximum(revenue - power_kw * HOURS_PER_MONTH * power_price, 0.0)

    @staticmethod
    def meet_margin_call(shortfall: np.ndarray, cash: np.ndarray) -> np.ndarray:
        """Top up with cash when it can; a call it cannot meet lets the lender seize the BTC."""
        return cash >= shortfall
