"""Lenders: banks, private-credit funds, ABS/CMBS trusts and bond investors.

They differ in what stresses them and what they do then: a bank watches its capital ratio; a credit
fund faces investor redemptions once losses mount; an ABS trust is a static pool that never
refinances and passes losses down its tranches; bond investors refinance only while markets are open.
A stressed or failed lender sells repossessed GPUs in a hurry and refuses to roll maturing loans.
"""

from __future__ import annotations

import numpy as np

from agents.balance_sheet import BalanceSheetAgent
from core.config import LenderBehaviour, SecondaryMarket, TrancheSpec
from core.ledger import KIND_NAMES, Kind

DISPOSALS = ("hold", "operate", "settle", "sell_orderly", "sell_auction", "sell_distressed")
HOLD, OPERATE, SETTLE, ORDERLY, AUCTION, DISTRESSED = range(len(DISPOSALS))


class Lender(BalanceSheetAgent):
    kind: Kind = Kind.BANK

    @property
    def equity(self) -> float:
        return float(self.model.lender_equity()[self.index])

    @staticmethod
    def behaviour_arrays(kinds: np.ndarray, behaviour: dict[str, LenderBehaviour]) -> dict[str, np.ndarray]:
        """Per-agent copies of each lender type's behavioural parameters (zeros for non-lenders); the
        sale rule becomes the mask ``leverage_targeting``."""
        fields = [name for name in LenderBehaviour.model_fields if name != "sale_rule"]
        out = {name: np.zeros(kinds.size) for name in fields}
        out["leverage_targeting"] = np.zeros(kinds.size, dtype=bool)
        for kind, spec in behaviour.items():
            mask = kinds == next(k for k, n in KIND_NAMES.items() if n == kind)
            for name in fields:
                out[name][mask] = getattr(spec, name)
            out["leverage_targeting"][mask] = spec.sale_rule == "leverage_target"
        return out

    @staticmethod
    def stressed(kinds, capital_ratio, defaulted, redeeming, params) -> np.ndarray:
        """Below its rollover threshold, failed, or (credit funds) paying out redemptions."""
        return defaulted | (capital_ratio < params["rollover_capital_ratio"]) | redeeming

    @staticmethod
    def rollover_threshold(params, factor: float) -> np.ndarray:
        """The capital ratio each lender needs this month to roll a maturing loan: its
        ``rollover_capital_ratio``, raised in a bad month of the common factor ``f`` of BTC and compute
        demand by ``1 + funding_factor_loading x max(-f, 0)``: its own funders (depositors, fund
        investors, warehouse lines) ask for more capital when the market turns, as all of them do in
        the same month. A lender with no capital threshold (a zero ratio) is not affected."""
        return params["rollover_capital_ratio"] * (1.0 + params["funding_factor_loading"] * max(-factor, 0.0))

    @staticmethod
    def agrees_to_roll(kinds, stressed, markets_open: bool) -> np.ndarray:
        """Whether each lender refinances a maturing loan this month."""
        agree = ~stressed
        agree &= kinds != Kind.ABS_TRUST  # a static pool: no new money
        if not markets_open:
            agree &= kinds != Kind.BOND_INVESTORS  # a bond refinances only through an open market
        return agree

    @staticmethod
    def sale_plan(stressed: np.ndarray, params) -> tuple[np.ndarray, np.ndarray]:
        """(share of repossessed stock offered per round, reserve as a share of fundamental value)."""
        share = np.where(stressed, params["hurried_sale_share"], params["patient_sale_share"])
        reserve = np.where(stressed, 0.0, params["patient_reserve"])
        return share, reserve

    @staticmethod
    def leverage_target_plan(
        equity: np.ndarray,
        assets: np.ndarray,
        cash: np.ndarray,
        minimum: float | np.ndarray,
        buffer: float | np.ndarray,
        target: float | np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Leverage targeting (Greenwood, Landier & Thesmar 2015; Cont & Schaanning 2017), with leverage
        the ratio equity / assets: below ``minimum`` a lender fails; below ``buffer`` it shrinks its
        balance sheet to ``target`` by paying debt down, first from cash, then by selling a pro-rata slice
        of its marketable holdings (whose proceeds repay debt later). Returns (fails, paid from cash,
        value to sell)."""
        leverage = np.divide(equity, assets, out=np.zeros_like(equity), where=assets > 0)
        fails = leverage < minimum
        target_assets = np.divide(
            equity, target, out=np.array(assets, dtype=float), where=np.asarray(target) > 0
        )
        shrink = np.where(~fails & (leverage < buffer), np.maximum(assets - target_assets, 0.0), 0.0)
        from_cash = np.minimum(shrink, np.maximum(cash, 0.0))
        return fails, from_cash, shrink - from_cash

    @staticmethod
    def targeting_sale_plan(
        to_sell: np.ndarray, holdings: np.ndarray, params
    ) -> tuple[np.ndarray, np.ndarray]:
        """The sale plan of a live leverage-targeting lender: while it deleverages, the pro-rata slice
        of its repossessed stock worth ``to_sell`` (of ``holdings``, at the mark), at any price;
        otherwise its calm plan (stress alone does not make it dump its stock)."""
        calm_share, calm_reserve = Lender.sale_plan(np.zeros(to_sell.size, dtype=bool), params)
        slice_ = np.clip(
            np.divide(to_sell, holdings, out=np.zeros_like(to_sell), where=holdings > 0), 0.0, 1.0
        )
        deleveraging = to_sell > 0
        return np.where(deleveraging, slice_, calm_share), np.where(deleveraging, 0.0, calm_reserve)

    def disposal(
        value: np.ndarray,
        appraised: np.ndarray,
        operate_value: np.ndarray,
        settle_value: np.ndarray,
        waiting_cost: np.ndarray,
        failed: np.ndarray,
        rules: SecondaryMarket,
        heal_months: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """What each holder does with each repossessed lot (``DISPOSALS``) and, for a sale, its reserve as
        a share of the generation's appraised (orderly) value.

        Per unit, with ``V`` the lot's fundamental value, ``m`` the generation's mark at this month's
        appraisal (so ``m V`` is the orderly value) and ``w`` the holder's cost of waiting a month:
        a sale through a channel brings its price share ``h`` of orderly value after its time to sell,
        ``h m V / (1 + w)^T``; holding waits one half-life of the mark's recovery and then sells
        orderly, ``h_orderly (1 - (1 - m) / 2) V / (1 + w)^(half-life + T_orderly)``; operating is worth
        ``operate_value``, settling ``settle_value`` (``-inf`` where not open). The holder takes the
        option worth most (ties: the first listed). A failed lender's liquidator cannot wait: it settles
        or sells distressed (down to the scrap floor, in ``chosen_offers``)."""
        wait = 1.0 + waiting_cost
        orderly = rules.orderly_share * value
        options = np.stack(
            [
                orderly * (1.0 - 0.5 * (1.0 - appraised)) / wait ** (heal_months + rules.orderly_months),
                operate_value,
                settle_value,
                orderly * appraised / wait**rules.orderly_months,
                rules.auction_share * appraised * value / wait**rules.auction_months,
                rules.distressed_share * appraised * value / wait**rules.distressed_months,
            ]
        )
        liquidator = np.where(failed, -np.inf, 0.0)
        options[[HOLD, OPERATE, ORDERLY, AUCTION]] += liquidator[None, :]
        choice = options.argmax(axis=0)
        shares = np.zeros(len(DISPOSALS))
        shares[[ORDERLY, AUCTION, DISTRESSED]] = (
            rules.orderly_share,
            rules.auction_share,
            rules.distressed_share,
        )
        return choice, shares[choice]

    @staticmethod
    def redemptions(equity: np.ndarray, peak_equity: np.ndarray, params) -> np.ndarray:
        """Credit funds: investors pull a share of equity each month once the drawdown passes the trigger."""
        drawdown = np.divide(
            peak_equity - equity, peak_equity, out=np.zeros_like(equity), where=peak_equity > 0
        )
        return np.where(
            drawdown > params["redemption_trigger"],
            params["redemption_per_month"] * np.maximum(equity, 0),
            0.0,
        )


class Bank(Lender):
    kind = Kind.BANK


class CreditFund(Lender):
    kind = Kind.CREDIT_FUND


class BondInvestors(Lender):
    kind = Kind.BOND_INVESTORS


class ABSTrust(Lender):
    kind = Kind.ABS_TRUST

    @staticmethod
    def tranche_losses(loss: float, tranches: list[TrancheSpec], liabilities: float) -> dict[str, float]:
        """Waterfall: losses hit the most junior tranche first (tranches are listed senior first);
        the trust's own equity (first-loss piece) is the bottom of the stack."""
        remaining = max(loss, 0.0)
        out: dict[str, float] = {}
        for spec in reversed(tranches):
            size = spec.share * liabilities
            hit = min(size, remaining)
            out[spec.name] = hit
            remaining -= hit
        return {t.name: out[t.name] for t in tranches}
