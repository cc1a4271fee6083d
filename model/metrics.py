"""What a run measures (DESIGN.md section 7): per month, per generation, per default, and per run.

Monthly rows are kept as tidy records (one row per month; one per month and generation; one per
default), exported as tables. Mesa's DataCollector gets the headline series by attribute name, so the
model stays picklable and ``mesa.batch_run`` sees them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from agents import ABSTrust
from core.ledger import (
    BORROWER_KINDS,
    CAUSE_NAMES,
    COLLATERALS,
    INSTRUMENTS,
    KIND_NAMES,
    LENDER_KINDS,
    Cause,
    Kind,
)
from model.cascade import CascadeReport, book_value

if TYPE_CHECKING:
    from model.model import GPUCreditModel

SYSTEMIC_SHARE = 0.05  # the contagion literature's cut-off for a systemic event (Gai & Kapadia 2010)
COLLATERAL_ZERO = 0.05  # the starting fleet's value below 5 % of its start counts as "hit zero" (convention)
BORROWER_INSTRUMENTS = ("term_loan", "asset_backed", "high_yield", "convertible", "btc_margin")
TYPES = [KIND_NAMES[k] for k in (*BORROWER_KINDS, *LENDER_KINDS)]
# the channel through which each cause of default works (issue 16, part 4): a lender's insolvency comes
# from losses on its defaulted debtors, so it is a counterparty loss like a loss on another lender
CHANNEL_OF_CAUSE = {
    Cause.SHOCK: "shock",
    Cause.PAYMENT: "cash_flow",
    Cause.COVENANT_DSCR: "cash_flow",
    Cause.COVENANT_LTV: "collateral_mark",
    Cause.MARGIN_CALL: "margin_call",
    Cause.ROLLOVER_REFUSED: "rollover_refusal",
    Cause.INSOLVENCY: "counterparty_loss",
    Cause.COUNTERPARTY: "counterparty_loss",
}
CHANNELS = tuple(dict.fromkeys(CHANNEL_OF_CAUSE.values()))


class MetricsRecorder:
    def __init__(self, model: GPUCreditModel) -> None:
        self.model = model
        self.steps: list[dict[str, Any]] = []
        self.generations: list[dict[str, Any]] = []
        self._defaults_seen = np.zeros(model.ledger.n_agents, dtype=bool)
        self.dscr_breached = np.zeros(model.ledger.n_agents, dtype=bool)  # ever short of its DSCR covenant
        self.latest: dict[str, Any] = {}
        led, state = model.ledger, model.state
        self.initial_lender_equity = float(state.lender_equity()[state.lender_mask()].sum())
        # the starting borrower fleet at each month's fundamental value (the collateral-value index)
        self._fleet0 = led.gpus[state.borrower_mask()].sum(axis=0)
        self._fleet0_value = float(self._fleet0 @ state.fundamental())
        self._gpu_loans = _borrower_gpu_loans(led)
        self._gpu_principal0 = float(led.loans.principal[self._gpu_loans].sum())

    @staticmethod
    def mesa_reporters() -> dict[str, str]:
        """Headline series for Mesa's DataCollector, read from the model by attribute name."""
        return {
            name: name
            for name in (
                "defaults_total",
                "rent_index",
                "btc_price",
                "lender_capital_ratio",
                "forced_sale_units",
            )
        }

    def record(self, cascade: CascadeReport, shock: bool = False) -> None:
        """Append this month's row (or, for a shock between steps, fold it into the latest row)."""
        model = self.model
        state, led, world = model.state, model.ledger, model.state.world
        new = led.defaulted & ~self._defaults_seen
        self._defaults_seen |= led.defaulted
        fundamental = state.fundamental()
        mark = state.mark_price()
        inventory = np.bincount(led.lots.generation, weights=led.lots.units, minlength=led.n_generations)
        lenders = state.lender_mask()
        equity = state.lender_equity()
        assets = state.lender_assets()
        live_b = state.borrower_mask() & ~led.defaulted
        gpu_debt = led.debt("gpu")
        collateral = state.collateral_value()
        service = led.debt_service_due
        paying = live_b & (service > 0)
        dscr_live = led.operating_cash_flow[paying] / service[paying]
        live_gpu_debt = gpu_debt[live_b].sum()
        self.dscr_breached |= state.borrower_mask() & (led.dscr_breach_months > 0)
        gpu_loans = self._gpu_loans
        repaid = float(led.loans.repaid[gpu_loans].sum())
        row: dict[str, Any] = {
            "month": int(world.month),
            "date": world.calendar_month,
            "stress": bool(world.stress),
            "rent_per_h100_hour": world.rent_per_perf_hour,
            "rent_index": world.rent_per_perf_hour / world.config.rent.h100_rent_per_hour,
            "btc_price": world.btc_price,
            "hashprice_per_ph_day": world.hashprice(),
            "base_rate": world.base_rate,
            "cascade_rounds": cascade.rounds,
            "cascade_capped": cascade.capped,
            "forced_sale_units": cascade.forced_units,
            "forced_sale_value": cascade.forced_value,
            "cure_sale_units": cascade.cure_units,
            "unsold_units": float(inventory.sum()),
            "book_ltv": _ratio(live_gpu_debt, book_value(state, live_b.nonzero()[0]).sum()),
            "mtm_ltv": _ratio(live_gpu_debt, collateral[live_b].sum()),
            **dict(zip(("dscr_median", "dscr_p10"), _median_and_p10(dscr_live), strict=True)),
            "share_in_breach": _ratio(state.in_breach[live_b].sum(), live_b.sum()),
            "lender_capital_ratio": _ratio(equity[lenders].sum(), assets[lenders].sum()),
            "fleet_value_index": _ratio(float(self._fleet0 @ fundamental), self._fleet0_value),
            "gpu_principal_unpaid_share": _ratio(self._gpu_principal0 - repaid, self._gpu_principal0),
        }
        new_by_kind = np.bincount(led.kind[new], minlength=len(Kind)).tolist()
        defaults_by_kind = np.bincount(led.kind[led.defaulted], minlength=len(Kind)).tolist()
        for kind in (*BORROWER_KINDS, *LENDER_KINDS):
            name = KIND_NAMES[kind]
            row[f"new_defaults_{name}"] = new_by_kind[kind]
            row[f"defaults_{name}"] = defaults_by_kind[kind]
        losses = lender_losses(model)
        for kind in LENDER_KINDS:
            name = KIND_NAMES[kind]
            of_kind = led.of_kind(kind)
            row[f"lender_equity_{name}"] = float(equity[of_kind].sum())
            row[f"lender_loss_{name}"] = float(losses[of_kind].sum())
        trusts = led.of_kind(Kind.ABS_TRUST)
        noteholder_loss = np.maximum(-equity[trusts], 0.0)  # once the trust's own equity is gone
        notes = led.external_liabilities[trusts] + led.debt()[trusts]
        for tranche in model.config.abs_tranches:
            row[f"abs_loss_{tranche.name}"] = 0.0
        # a trust without a loss on valid notes (>= 0) adds 0.0 to every tranche: only the others run
        hit = (noteholder_loss != 0) | ~(notes >= 0)
        for loss, size in zip(noteholder_loss[hit], notes[hit], strict=True):
            for name, hit in ABSTrust.tranche_losses(loss, model.config.abs_tranches, size).items():
                row[f"abs_loss_{name}"] += hit
        row["new_defaults"] = int(new.sum())
        row["defaults_total"] = int(led.defaulted.sum())
        # the live fleets' units by generation: each generation's units in a contiguous row, summed as
        # numpy sums one column (pairwise), not down the columns of the [agents, G] array (one by one)
        in_fleets = np.ascontiguousarray(led.gpus[live_b].T).sum(axis=1)
        columns = zip(
            world.generations.names,
            world.launched.tolist(),
            fundamental.tolist(),
            mark.tolist(),
            state.marks.ratio.tolist(),
            world.margin_per_gpu().tolist(),
            inventory.astype(float).tolist(),  # bincount of no lots gives integers
            in_fleets.tolist(),
            strict=True,
        )
        gens = [
            {
                "month": int(world.month),
                "generation": name,
                "launched": launched,
                "fundamental_value": value,
                "secondary_price": price,
                "price_to_fundamental": ratio,
                "margin_per_gpu_month": margin,
                "unsold_units": unsold,
                "gpus_in_fleets": units,
            }
            for name, launched, value, price, ratio, margin, unsold, units in columns
        ]
        if shock and self.steps:
            merged = self.steps[-1]
            for key in (
                "forced_sale_units",
                "forced_sale_value",
                "cure_sale_units",
                "new_defaults",
                *(f"new_defaults_{t}" for t in TYPES),
            ):
                row[key] = merged[key] + row[key]
            row["cascade_rounds"] = max(merged["cascade_rounds"], row["cascade_rounds"])
            self.steps[-1] = row
            self.generations[-len(gens) :] = gens
        else:
            self.steps.append(row)
            self.generations.extend(gens)
        self.latest = row
        for key in self.mesa_reporters():
            setattr(model, key, row[key])

    # --- tables ---

    def steps_table(self) -> pd.DataFrame:
        return pd.DataFrame(self.steps)

    def generations_table(self) -> pd.DataFrame:
        return pd.DataFrame(self.generations)

    def defaults_table(self) -> pd.DataFrame:
        """The cause tree: one row per default with its cause and the agent that caused it."""
        led, names = self.model.ledger, self.model.names
        idx = np.flatnonzero(led.defaulted)
        idx = idx[np.lexsort((idx, led.default_round[idx], led.default_month[idx]))]
        return pd.DataFrame(
            {
                "agent": idx.astype(np.int64),
                "name": [names[i] for i in idx],
                "type": [KIND_NAMES[Kind(led.kind[i])] for i in idx],
                "month": led.default_month[idx],
                "round": led.default_round[idx],
                "cause": [CAUSE_NAMES[Cause(led.default_cause[i])] for i in idx],
                "channel": [CHANNEL_OF_CAUSE[Cause(led.default_cause[i])] for i in idx],
                "parent": led.default_parent[idx],
                "parent_name": [names[p] if p >= 0 else "" for p in led.default_parent[idx]],
                "book_ltv": led.book_ltv_at_default[idx],
                "recovery": borrower_recoveries(self.model, idx),
            }
        )


def _median_and_p10(values: np.ndarray) -> tuple[float, float]:
    """``np.median`` and ``np.quantile(values, 0.1)`` (linear method) from one sort, with numpy's own
    arithmetic, bit for bit (the two numpy calls cost ~100 us a month; this ~5 us). NaN if empty or
    if any value is NaN, as numpy."""
    if values.size == 0:
        return np.nan, np.nan
    ordered = np.sort(values)
    if np.isnan(ordered[-1]):  # NaN sorts last
        return np.nan, np.nan
    n = ordered.size
    half = n // 2
    median = ordered[half] if n % 2 else (ordered[half - 1] + ordered[half]) / 2
    position = (n - 1) * 0.1  # numpy's virtual index for the linear method
    # numpy's neighbours: at or past the last index (one value) both are the last, at index -1
    below, above = (-1, -1) if position >= n - 1 else (math.floor(position), math.floor(position) + 1)
    weight = position - below
    low, high = ordered[below], ordered[above]
    step = high - low
    # numpy's _lerp: from the nearer end
    p10 = high - step * (1 - weight) if weight >= 0.5 else low + step * weight
    return float(median), float(p10)


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b else float("nan")


def _borrower_gpu_loans(led: Any) -> np.ndarray:
    """Mask of GPU-secured loans owed by miners and neo-clouds."""
    loans = led.loans
    borrower = np.isin(led.kind[loans.debtor], np.array(BORROWER_KINDS, dtype=np.int8))
    return borrower & (loans.collateral == COLLATERALS.index("gpu"))


def loan_outcomes(model: GPUCreditModel) -> dict[str, np.ndarray]:
    """Exposure, recovery and loss of every loan, defined once (every credit measure reads these).

    - ``exposure_at_default`` (EAD): the principal outstanding when the loan defaulted.
    - ``recovered``: what came back, undiscounted: cash received as it arrived (estate cash and BTC at
      default, sale proceeds of repossessed GPUs over the workout, interbank clearing).
    - ``held``: repossessed GPUs the creditor still holds at the end of the run, at the mark, up to
      the unrecovered claim (``MarketState.repossessed_value``).
    - ``book_loss``: what the creditor's equity lost: EAD + workout cost - recovered - held.
    - ``loss``: the economic loss at the default month: EAD + workout cost - each recovery discounted
      to the default month at the loan's rate (``LoanBook.recover``) - the stock still held,
      discounted from the run's last month. Loss given default = loss / EAD.
    - ``in_workout``: defaulted loans whose creditor still held repossessed GPUs at the end of the run.
    Loans that have not defaulted have zero in every column."""
    loans = model.ledger.loans
    held = _held(model)
    defaulted = loans.default_month >= 0
    everything = np.arange(len(loans))
    held_pv = held * np.where(defaulted, loans.discount(everything, model.state.world.month), 0.0)
    ead = loans.exposure_at_default
    return {
        "defaulted": defaulted,
        "exposure_at_default": ead,
        "workout_cost": loans.workout_cost,
        "recovered": loans.recovered,
        "held": held,
        "book_loss": _book_loss(loans, defaulted, held),
        "loss": np.where(defaulted, ead + loans.workout_cost - loans.recovery_pv - held_pv, 0.0),
        "in_workout": defaulted & (held > 0),
    }


def _held(model: GPUCreditModel) -> np.ndarray:
    """``loan_outcomes``' held: each loan's repossessed GPUs still held, at the mark up to its claim."""
    held = np.zeros(len(model.ledger.loans))
    if len(model.ledger.lots):
        loan, value = model.state.repossessed_value()
        held[loan] = value
    return held


def _book_loss(loans: Any, defaulted: np.ndarray, held: np.ndarray) -> np.ndarray:
    """``loan_outcomes``' book loss: EAD + workout cost - recovered - held, for defaulted loans."""
    return np.where(defaulted, loans.exposure_at_default + loans.workout_cost - loans.recovered - held, 0.0)


def credit_cells(model: GPUCreditModel) -> dict[str, dict[str, float]]:
    """Loan outcomes by borrower type and instrument, as sums that pool across runs (``loan_outcomes``):
    loans, defaulted loans, starting principal, exposure at default, recovered (EAD - economic loss:
    discounted at the loan rate, net of workout costs, so LGD = 1 - recovered / EAD, exposure-weighted),
    economic loss, the balance at risk in USD-years (the denominator of a fair spread), the loans'
    tenors in months (their mean is the instrument's horizon) and the EAD still in workout at the end."""
    loans = model.ledger.loans
    out = loan_outcomes(model)
    defaulted = out["defaulted"] & (out["exposure_at_default"] > 0)
    cells: dict[str, dict[str, float]] = {}
    for name, m in _cell_masks(model):
        d = m & defaulted
        ead = float(out["exposure_at_default"][d].sum())
        loss = float(out["loss"][d].sum())
        cells[name] = {
            "loans": int(m.sum()),
            "defaulted": int(d.sum()),
            "principal": float(loans.original_principal[m].sum()),
            "exposure_at_default": ead,
            "recovered": ead - loss,
            "loss": loss,
            "exposure_years": float(loans.exposure_years[m].sum()),
            "tenor_months": float(loans.rollover_tenor[m].sum()),
            "in_workout": float(out["exposure_at_default"][d & out["in_workout"]].sum()),
        }
    return cells


def _cell_masks(model: GPUCreditModel) -> Iterator[tuple[str, np.ndarray]]:
    """(name, loan mask) of each credit cell: borrower type x instrument (``credit_cells``)."""
    led = model.ledger
    loans = led.loans
    for kind in BORROWER_KINDS:
        for instrument in BORROWER_INSTRUMENTS:
            mask = (led.kind[loans.debtor] == kind) & (loans.instrument == INSTRUMENTS.index(instrument))
            yield f"{KIND_NAMES[kind]}_{instrument}", mask


def cash_recovered(model: GPUCreditModel) -> dict[str, float]:
    """By credit cell, the cash its defaulted loans recovered by the end of the run, undiscounted and
    gross of workout costs: the estate's cash and BTC at default, guarantors' payments, sale proceeds of
    repossessed GPUs, settlements with the borrower's owners and income of operated lots
    (``loan_outcomes``' ``recovered``), without the GPUs still held. Over the cell's exposure at
    default it is the realised recovery, as a lender's recovery is reported once the collateral has
    been sold; ``credit_cells``' ``recovered`` also counts the GPUs still held, at the mark."""
    loans = model.ledger.loans
    defaulted = (loans.default_month >= 0) & (loans.exposure_at_default > 0)
    return {name: float(loans.recovered[m & defaulted].sum()) for name, m in _cell_masks(model)}


def lender_losses(model: GPUCreditModel) -> np.ndarray:
    """Loss to each creditor's equity on its defaulted loans (``loan_outcomes``' book loss)."""
    loans = model.ledger.loans  # (the book loss alone: metrics need it monthly, not the discounting)
    defaulted = loans.default_month >= 0
    if not defaulted.any():  # the bincount of zero losses, without the pass over the book
        return np.zeros(model.ledger.n_agents)
    book_loss = _book_loss(loans, defaulted, _held(model))
    return np.bincount(loans.creditor, weights=book_loss, minlength=model.ledger.n_agents)


def borrower_recoveries(model: GPUCreditModel, agents: np.ndarray) -> np.ndarray:
    """Recovery rate (1 - LGD, exposure-weighted over its loans, ``loan_outcomes``) of each agent in
    ``agents``; NaN for one whose loans had no exposure at default."""
    loans = model.ledger.loans
    out = loan_outcomes(model)
    n = model.ledger.n_agents
    ead = np.bincount(loans.debtor, weights=out["exposure_at_default"], minlength=n)[agents]
    loss = np.bincount(loans.debtor, weights=out["loss"], minlength=n)[agents]
    return np.divide(ead - loss, ead, out=np.full(ead.size, np.nan), where=ead > 0)


def cascade_sizes(defaults: pd.DataFrame) -> dict[int, int]:
    """For every root of the cause tree, the number of defaults descending from it."""
    children: dict[int, list[int]] = {}
    for agent, parent in zip(defaults["agent"], defaults["parent"], strict=True):
        children.setdefault(int(parent), []).append(int(agent))
    sizes = {}
    for root in children.get(-1, []):
        count, stack = 0, list(children.get(root, []))
        while stack:
            node = stack.pop()
            count += 1
            stack.extend(children.get(node, []))
        sizes[root] = count
    return sizes


def run_summary(model: GPUCreditModel) -> dict[str, Any]:
    """Per-run measures: first default, cascade sizes, systemic event, losses, recovery vs book LTV."""
    led = model.ledger
    defaults = model.metrics.defaults_table()
    sizes = cascade_sizes(defaults)
    first = defaults.iloc[0] if len(defaults) else None
    players = led.of_kind(*BORROWER_KINDS, *LENDER_KINDS)
    losses = lender_losses(model)
    borrower_defaults = defaults[defaults["type"].isin(["miner", "neocloud"])]
    borrowers = led.of_kind(*BORROWER_KINDS)
    summary: dict[str, Any] = {
        "months": int(model.time),
        "defaults_total": len(defaults),
        "time_to_first_default": int(first["month"]) if first is not None else None,
        "first_default": str(first["name"]) if first is not None else None,
        "first_cascade_size": sizes.get(int(first["agent"]), 0) if first is not None else 0,
        "largest_cascade": max(sizes.values(), default=0),
        "largest_cascade_root": model.names[max(sizes, key=lambda r: (sizes[r], -r))] if sizes else None,
        "share_failed": float(led.defaulted[players].mean()) if players.any() else 0.0,
        "systemic_event": bool(led.defaulted[players].mean() >= SYSTEMIC_SHARE) if players.any() else False,
        "book_ltv_at_default": float(np.nanmean(borrower_defaults["book_ltv"]))
        if len(borrower_defaults) and borrower_defaults["book_ltv"].notna().any()
        else None,
        "realised_recovery": float(np.nanmean(borrower_defaults["recovery"]))
        if len(borrower_defaults) and borrower_defaults["recovery"].notna().any()
        else None,
        "defaults_by_type": {t: int((defaults["type"] == t).sum()) for t in TYPES},
        "defaults_by_cause": {
            c: int((defaults["cause"] == c).sum()) for c in CAUSE_NAMES.values() if c != "none"
        },
        "defaults_by_channel": {c: int((defaults["channel"] == c).sum()) for c in CHANNELS},
        "lender_losses_by_type": {KIND_NAMES[k]: float(losses[led.kind == k].sum()) for k in LENDER_KINDS},
        "systemic_loss": _ratio(float(losses.sum()), model.metrics.initial_lender_equity),
        "dscr_breach_probability": float(model.metrics.dscr_breached[borrowers].mean())
        if borrowers.any()
        else 0.0,
        **_collateral_measures(model),
        "credit": credit_cells(model),
        "cash_recovered": cash_recovered(model),
    }
    return summary


def _collateral_measures(model: GPUCreditModel) -> dict[str, Any]:
    """Secondary-price trough (share of fundamental, launched generations) and each generation's
    peak-to-trough fall of its secondary price; the month the starting fleet's value at the mark first
    falls below ``COLLATERAL_ZERO`` of its start, and the share of GPU-secured principal still unpaid then."""
    gens = model.metrics.generations_table()
    launched = gens[gens["launched"]] if len(gens) else gens
    trough = float(launched["price_to_fundamental"].min()) if len(launched) else 1.0
    drawdown = {}
    for name in model.state.world.generations.names:
        price = launched.loc[launched["generation"] == name, "secondary_price"].to_numpy()
        if price.size and price.max() > 0:
            peak = int(np.argmax(price))
            drawdown[name] = float(price[peak:].min() / price[peak] - 1.0)
        else:
            drawdown[name] = None
    steps = model.metrics.steps_table()
    below = steps[steps["fleet_value_index"] < COLLATERAL_ZERO] if len(steps) else steps
    zero = below.iloc[0] if len(below) else None
    return {
        "price_to_fundamental_trough": trough,
        "price_peak_to_trough": drawdown,
        "collateral_zero_month": int(zero["month"]) if zero is not None else None,
        "principal_unpaid_at_collateral_zero": float(zero["gpu_principal_unpaid_share"])
        if zero is not None
        else None,
    }
