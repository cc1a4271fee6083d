"""DebtRank as a systemic-importance output of the model, for any market.

References:
- Battiston, S., Puliga, M., Kaushik, R., Tasca, P. & Caldarelli, G. (2012). DebtRank: too central to
  fail? Sci. Rep. 2, 541: impact W_ij = min(1, exposure_ij / equity_i); R_j = sum_{i != j} v_i h_i.
- Bardoscia, M., Battiston, S., Caccioli, F. & Caldarelli, G. (2015). DebtRank: a microscopic foundation
  for shock propagation. PLoS ONE 10(6), e0130406: linear DebtRank h_{t+1} = min(1, h_t + Lambda (h_t -
  h_{t-1})) whose limit below saturation is (I - Lambda)^{-1} h_1; with propagation only from defaulted
  nodes (the threshold limit) it is the Gai-Kapadia cascade.

``debtrank_of(model)`` reads every active loan of the model's ledger (creditor, debtor, outstanding
principal: all instruments, GPU, BTC and interbank) and every agent's balance-sheet equity at the current
marks, and returns each agent's DebtRank: the share of the rest of the system's equity its default alone
would destroy. Agents already in default or with no positive equity get NaN (DebtRank measures losses
relative to equity before the shock).

Checks: (1) linear DebtRank on a ledger-built bank network equals the linear solve (I - Lambda)^{-1} h_1;
(2) threshold DebtRank on the Gai-Kapadia reduction gives exactly the engine's cascade, draw for draw;
(3) on the baseline market, DebtRank is in [0, 1] for every eligible agent and the systemic-importance
batch equals single-shock runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from experiments.validation.common import Report, figure_path, interbank_loan, reduced_scenario
from model.clearing import debtrank, systemic_importance

if TYPE_CHECKING:
    from model.model import GPUCreditModel


def balance_sheet_equity(model: GPUCreditModel) -> np.ndarray:
    """Every agent's equity at the current marks: cash, loans owed to it, repossessed stock, outside
    assets, its own GPU fleet and BTC, less outside liabilities and the loans it owes."""
    state = model.state
    led = model.ledger
    return state.lender_equity() + state.value_at_mark() + led.btc * state.world.btc_price


def exposures(model: GPUCreditModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(debtor, creditor, amount) of every active loan in the ledger."""
    loans = model.ledger.loans
    live = loans.active & (loans.principal > 0)
    return loans.debtor[live], loans.creditor[live], loans.principal[live]


def debtrank_of(model: GPUCreditModel, linear: bool = False, threshold: bool = False) -> np.ndarray:
    """Per-agent DebtRank of a model's market (NaN for defaulted agents or those without equity)."""
    led = model.ledger
    equity = balance_sheet_equity(model)
    eligible = ~led.defaulted & (equity > 0)
    idx = np.flatnonzero(eligible)
    local = np.full(led.n_agents, -1, dtype=np.int64)
    local[idx] = np.arange(idx.size)
    d, c, a = exposures(model)
    keep = (local[d] >= 0) & (local[c] >= 0)
    out = np.full(led.n_agents, np.nan)
    if idx.size:
        out[idx] = systemic_importance(
            idx.size, local[d[keep]], local[c[keep]], a[keep], equity[idx], linear=linear, threshold=threshold
        )
    return out


def _bank_ring_model(n: int, seed: int, capital: float) -> GPUCreditModel:
    """A bank-only market (each bank lends 20 % of its assets to 3 random others) with the given capital."""
    from model.model import GPUCreditModel

    rng = np.random.default_rng(seed)
    agents, loans = [], []
    owed = np.zeros(n)
    for i in range(n):
        borrowers = rng.choice(np.delete(np.arange(n), i), size=3, replace=False)
        for b in borrowers:
            loans.append(interbank_loan(f"bank-{i}", f"bank-{b}", 20.0 / 3))
            owed[b] += 20.0 / 3
    for i in range(n):
        deposits = max(100.0 - 100.0 * capital - owed[i], 0.0)
        extra = max(owed[i] - (100.0 - 100.0 * capital), 0.0)
        agents.append(
            {
                "id": f"bank-{i}",
                "type": "bank",
                "external_assets": 80.0 + extra,
                "external_liabilities": deposits,
            }
        )
    return GPUCreditModel(reduced_scenario(agents, loans))


def check_linear(n: int = 40, seed: int = 7) -> float:
    """Max |linear DebtRank - (I - Lambda)^{-1} h_1| on a ledger-built network below saturation."""
    model = _bank_ring_model(n, seed, capital=0.30)  # Lambda's row sums 0.2 / 0.3 < 1: no blow-up
    equity = balance_sheet_equity(model)[:n]
    d, c, a = exposures(model)
    shock = 0.01
    h_engine = debtrank(n, d, c, a, equity, [0], shock=shock, linear=True, tol=1e-15)
    lam = np.zeros((n, n))
    np.add.at(lam, (c, d), a / equity[c])
    h1 = np.zeros(n)
    h1[0] = shock
    h_solve = np.linalg.solve(np.eye(n) - lam, h1)
    assert h_solve.max() < 1.0, "the check must stay below saturation"
    return float(np.abs(h_engine - h_solve).max())


def check_threshold_vs_gai_kapadia(draws: int, n: int, seed: int) -> tuple[int, int]:
    """Draws (of ``draws`` over several z) where threshold DebtRank on the model's ledger gives a
    different failed set than the engine's Gai-Kapadia cascade; and the total failures compared."""
    from experiments.validation.gai_kapadia import GKEngine, draw_network, scenario_for
    from model.model import GPUCreditModel

    rng = np.random.default_rng(seed)
    engine = GKEngine(default_at_zero_equity=True)
    mismatches = failures = 0
    for k in range(draws):
        draw = draw_network(n, (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)[k % 6], rng)
        model = GPUCreditModel(scenario_for(draw, True))
        equity = balance_sheet_equity(model)[:n]
        d, c, a = exposures(model)
        h = debtrank(n, d, c, a, equity, [draw.shocked], shock=1.0, threshold=True)
        by_engine = engine.defaults(draw)
        mismatches += int(not np.array_equal(h >= 1.0, by_engine))
        failures += int(by_engine.sum())
    return mismatches, failures


def run(quick: bool = False, out: Path | None = None, seed: int = 2012) -> Report:
    from model.model import GPUCreditModel

    report = Report(
        "debtrank", "DebtRank (Battiston et al. 2012; Bardoscia et al. 2015) on the model's ledger"
    )
    err = check_linear()
    report.add(
        "linear DebtRank vs (I - Lambda)^-1 h_1 (Bardoscia et al. 2015), max abs",
        err,
        0.0,
        "<= 1e-10",
        err <= 1e-10,
    )
    draws, n = (12, 200) if quick else (60, 400)
    mismatches, failures = check_threshold_vs_gai_kapadia(draws, n, seed)
    report.add(
        f"threshold DebtRank vs engine GK cascade: draws that differ (of {draws})",
        mismatches,
        0,
        "exact",
        mismatches == 0,
    )
    report.notes.append(f"GK comparison: n={n}, z = 1..6, {failures} failures compared in total")
    model = GPUCreditModel("baseline")
    ranks = debtrank_of(model)
    ok_range = bool(np.all((ranks[~np.isnan(ranks)] >= -1e-12) & (ranks[~np.isnan(ranks)] <= 1 + 1e-12)))
    report.add(
        "baseline market: DebtRank in [0, 1] for every eligible agent",
        f"{int((~np.isnan(ranks)).sum())} agents",
        "[0, 1]",
        "exact",
        ok_range,
    )
    top = int(np.nanargmax(ranks))
    led = model.ledger
    equity = balance_sheet_equity(model)
    idx = np.flatnonzero(~led.defaulted & (equity > 0))
    local = np.full(led.n_agents, -1)
    local[idx] = np.arange(idx.size)
    d, c, a = exposures(model)
    keep = (local[d] >= 0) & (local[c] >= 0)
    h = debtrank(idx.size, local[d[keep]], local[c[keep]], a[keep], equity[idx], [local[top]])
    v = equity[idx] / equity[idx].sum()
    single = float(v @ h - v[local[top]] * h[local[top]])
    report.add(
        f"baseline: R of the top agent ({model.names[top]}), batch vs single shock",
        float(ranks[top]),
        single,
        "1e-12",
        abs(ranks[top] - single) <= 1e-12,
    )
    order = np.argsort(-np.nan_to_num(ranks, nan=-1))[:5]
    report.notes.append(
        "baseline top-5 DebtRank: " + ", ".join(f"{model.names[i]} {ranks[i]:.3f}" for i in order)
    )
    report.notes.append(
        "Battiston et al.'s FED-data values are not reproducible (confidential data); checks are the"
        " two identities the papers state."
    )
    report.figure = plot(model, ranks, figure_path(out, "debtrank"))
    return report


def plot(model: GPUCreditModel, ranks: np.ndarray, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from model.ledger import KIND_NAMES, Kind

    ok = ~np.isnan(ranks)
    order = np.argsort(-np.where(ok, ranks, -1))[: min(25, int(ok.sum()))]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    kinds = [KIND_NAMES[Kind(model.ledger.kind[i])] for i in order]
    colours = {k: f"C{j}" for j, k in enumerate(sorted(set(kinds)))}
    ax.bar(range(order.size), ranks[order], color=[colours[k] for k in kinds])
    ax.set_xticks(range(order.size), [model.names[i] for i in order], rotation=70, fontsize=7)
    for k, col in colours.items():
        ax.bar([], [], color=col, label=k)
    ax.legend(fontsize=8)
    ax.set_ylabel("DebtRank R (share of others' equity lost)")
    ax.set_title("Systemic importance in the baseline market (DebtRank on the ledger)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
