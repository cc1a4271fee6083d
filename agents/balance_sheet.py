"""What every agent shares: a row in the ledger, read through properties, and a health state."""

from __future__ import annotations

import mesa
import numpy as np

from core.ledger import Ledger


class BalanceSheetAgent(mesa.Agent):
    """A Mesa agent whose balances live in the model's ledger at ``index``.

    Agents decide; the ledger keeps the books. Decision rules are class methods that act on all
    agents of a type at once (arrays in, decisions out), so a month costs one pass, not one Python
    call per loan.
    """

    def __init__(self, model: mesa.Model, index: int, name: str) -> None:
        super().__init__(model)
        self.index = index
        self.name = name

    @property
    def ledger(self) -> Ledger:
        return self.model.ledger

    @property
    def cash(self) -> float:
        return float(self.ledger.cash[self.index])

    @property
    def gpus(self) -> np.ndarray:
        return self.ledger.gpus[self.index].copy()

    @property
    def defaulted(self) -> bool:
        return bool(self.ledger.defaulted[self.index])

    @property
    def health(self) -> str:
        """'defaulted', 'breach' (a covenant or capital test failed this month) or 'healthy'."""
        if self.defaulted:
            return "defaulted"
        return "breach" if self.model.in_breach[self.index] else "healthy"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, index={self.index})"
