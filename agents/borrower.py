"""Borrowers (miners and neo-clouds): how they cure a covenant breach."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.balance_sheet import BalanceSheetAgent


@dataclass
class CurePlan:
    """What each breached borrower does: prepay from cash, raise equity, sell GPUs, or give up."""

    from_cash: np.ndarray
    from_equity: np.ndarray
    sale_value: np.ndarray  # value of GPUs to sell at the current mark
    cured: np.ndarray  # bool; False means default


class Borrower(BalanceSheetAgent):
    """An operator that owes money against GPUs (and for miners, BTC)."""

    @property
    def debt(self) -> float:
        return float(self.ledger.debt()[self.index])

    @staticmethod
    def plan_cure(
        need: np.ndarray,
        cash: np.ndarray,
        equity_room: np.ndarray,
        debt: np.ndarray,
        collateral_value: np.ndarray,
        ltv_limit: np.ndarray,
        can_sell: np.ndarray,
    ) -> CurePlan:
        """Cure a breach that needs ``need`` of prepayment: cash first (cheapest), then new equity,
        then (for an LTV breach) selling GPUs, whose proceeds repay debt but also shrink the collateral:
        after prepaying c, selling s restores the limit L when (D - c - s) <= L (V - s), i.e.
        s = (D - c - L V) / (1 - L). A borrower that cannot close the gap defaults."""
        from_cash = np.minimum(cash, need)
        from_equity = np.minimum(equity_room, need - from_cash)
        gap = need - from_cash - from_equity
        remaining_debt = debt - from_cash - from_equity
        with np.errstate(divide="ignore", invalid="ignore"):
            sale = np.where(
                ltv_limit < 1.0, (remaining_debt - ltv_limit * collateral_value) / (1.0 - ltv_limit), np.inf
            )
        sale = np.maximum(sale, 0.0)
        sale_ok = can_sell & (sale <= 0.999 * collateral_value)
        cured = (gap <= 1e-6 * np.maximum(need, 1.0)) | sale_ok
        sale_value = np.where((gap > 1e-6 * np.maximum(need, 1.0)) & sale_ok, sale, 0.0)
        return CurePlan(
            from_cash=from_cash * cured, from_equity=from_equity * cured, sale_value=sale_value, cured=cured
        )
