"""Neo-clouds: GPU fleets let on take-or-pay contracts and on the spot market."""

from __future__ import annotations

import numpy as np

from agents.borrower import Borrower


class NeoCloud(Borrower):
    """Revenue from contracts (while the contract runs and its tenant survives) and spot rent;
    delayed-draw term loans with DSCR and LTV covenants; cures breaches with cash, equity or sales."""

    @staticmethod
    def contract_in_force(
        month: int, contract_end: np.ndarray, tenant_alive: np.ndarray, share: np.ndarray
    ) -> np.ndarray:
        """Share of each fleet earning contract rent this month."""
        return np.where((month < contract_end) & tenant_alive, share, 0.0)
