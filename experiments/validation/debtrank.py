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

from core.clearing import debtrank, systemic_importance
from experiments.validation.common import Report, figure_path, interbank_loan, reduced_scenario

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


def check_linear(n: int = 40, seed: int = 7, scale: float = 1.0) -> float:
    """Max |linear DebtRank - (I - Lambda)^{-1} h_1| on a ledger-built network below saturation
    (``scale`` multiplies the engine's answer: a perturbed answer the check must reject)."""
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
    return float(np.abs(scale * h_engine - h_solve).max())


BATTISTON_EXAMPLE = {
    # (debtor, creditor, exposure / creditor's equity): node 0 is shocked to h = 1
    "edges": [(0, 1, 0.5), (0, 2, 0.3), (1, 2, 1.0), (2, 3, 1.0)],
    "h": [1.0, 0.5, 0.8, 0.3],
}
"""Battiston et al.'s (2012) stop rule by hand: step 1, node 0 (distressed) passes 0.5 to node 1 and
0.3 to node 2; step 2, nodes 1 and 2 pass on what they had then: node 2 gains 1.0 x 0.5 -> 0.8 and
node 3 gains 1.0 x 0.3 = 0.3; nodes 1 and 2 are now inactive, so node 2's rise to 0.8 never reaches
node 3. The linear rule would pass it on (node 3 -> 0.8)."""


def battiston_loop(n: int, edges: list[tuple[int, int, float]], shocked: int) -> np.ndarray:
    """Battiston et al. (2012) as the paper states it, node by node: distressed nodes pass on
    W_ij h_j once, in the step after they become distressed, then turn inactive."""
    h = np.zeros(n)
    h[shocked] = 1.0
    state = ["D" if i == shocked else "U" for i in range(n)]
    while "D" in state:
        new = h.copy()
        for debtor, creditor, w in edges:
            if state[debtor] == "D":
                new[creditor] = min(1.0, new[creditor] + min(1.0, w) * h[debtor])
        state = ["I" if s == "D" else ("D" if s == "U" and new[i] > 0 else s) for i, s in enumerate(state)]
        h = new
    return h


def check_battiston_rule(draws: int = 200, seed: int = 12) -> tuple[float, float, float]:
    """(error on the hand example, largest error against ``battiston_loop`` on random networks, how far
    the linear rule's answer to the example is from the stop rule's: a wrong rule would fail)."""
    ex = BATTISTON_EXAMPLE
    d, c, w = (np.array(col) for col in zip(*ex["edges"], strict=True))
    n = len(ex["h"])
    h = debtrank(n, d, c, w, np.ones(n), [0])
    example = float(np.abs(h - ex["h"]).max())
    linear = float(np.abs(debtrank(n, d, c, w, np.ones(n), [0], linear=True) - ex["h"]).max())
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(draws):
        m = int(rng.integers(3, 15))
        mask = (rng.random((m, m)) < 0.3) & ~np.eye(m, dtype=bool)
        dd, cc = np.nonzero(mask)
        ww = rng.uniform(0.05, 1.5, dd.size)
        shocked = int(rng.integers(m))
        got = debtrank(m, dd, cc, ww, np.ones(m), [shocked])
        expected = battiston_loop(m, list(zip(dd.tolist(), cc.tolist(), ww.tolist(), strict=True)), shocked)
        worst = max(worst, float(np.abs(got - expected).max()))
    return example, worst, linear


def check_linear_near_limit(n: int = 30, seed: int = 7) -> dict[float, tuple[float, float, float]]:
    """Linear DebtRank on one network with Lambda scaled to spectral radius 0.9, 0.999, 1.0 and 1.2
    (shock 0.01 on node 0): per radius (smallest h, largest h, largest |h - (I - Lambda)^-1 h_1| where
    that limit is below saturation, else NaN). It must finish and stay in [0, 1] at every radius."""
    rng = np.random.default_rng(seed)
    base = (rng.random((n, n)) < 0.15) * rng.uniform(0.5, 1.5, (n, n))
    np.fill_diagonal(base, 0.0)
    rho = float(np.abs(np.linalg.eigvals(base)).max())
    out = {}
    for radius in (0.9, 0.999, 1.0, 1.2):
        lam = base / rho * radius  # lam[creditor, debtor], equity 1
        c, d = np.nonzero(lam)
        h = debtrank(n, d, c, lam[c, d], np.ones(n), [0], shock=0.01, linear=True)
        err = np.nan
        if radius < 1.0:
            h1 = np.zeros(n)
            h1[0] = 0.01
            exact = np.linalg.solve(np.eye(n) - lam, h1)
            if exact.max() < 1.0:
                err = float(np.abs(h - exact).max())
        out[radius] = (float(h.min()), float(h.max()), err)
    return out


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
    wrong = check_linear(scale=1.0 + 1e-6)
    report.add(
        "that check on the answer scaled by 1 + 1e-6: rejected (the check can fail)",
        wrong,
        "> 1e-10",
        "-",
        wrong > 1e-10,
    )
    for radius, (low, high, limit_err) in check_linear_near_limit().items():
        bounded = low >= 0.0 and high <= 1.0
        exact = np.isnan(limit_err) or limit_err <= 1e-9
        report.add(
            f"linear DebtRank at spectral radius {radius:g}: finishes, h in [0, 1]"
            + ("" if np.isnan(limit_err) else ", equals (I - Lambda)^-1 h_1"),
            f"[{low:.3g}, {high:.3g}]" + ("" if np.isnan(limit_err) else f", {limit_err:.1e}"),
            "[0, 1]" + ("" if np.isnan(limit_err) else ", 0"),
            "exact" + ("" if np.isnan(limit_err) else "; 1e-9"),
            bounded and exact,
        )
    example, worst, linear_gap = check_battiston_rule()
    report.add(
        "default rule: Battiston et al. (2012) stop rule, hand example h = [1, .5, .8, .3]",
        example,
        0.0,
        "<= 1e-12",
        example <= 1e-12,
    )
    report.add(
        "default rule vs the paper's rule written as a loop, 200 random networks, max |diff|",
        worst,
        0.0,
        "<= 1e-12",
        worst <= 1e-12,
    )
    report.add(
        "the linear rule's answer to the hand example is rejected (the check can fail)",
        linear_gap,
        "> 1e-12",
        "-",
        linear_gap > 1e-12,
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

    from core.ledger import KIND_NAMES, Kind

    ok = ~np.isnan(ranks)
    order = np.argsort(-np.where(ok, ranks, -1))[: min(25, int(ok.sum()))]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    kinds = [KIND_NAMES[Kind(model.ledger.kind[i])] for i in order]
    colours = {k: f"C{j}" for j, k in enumerate(sorted(set(kinds)))}
    ax.bar(range(order.size), ranks[order], color=[colours[k] for k in kinds])
    ax.set_xticks(range(order.size), [model.names[i] for i in order], rotation=70, fontsize=7)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=col, label=k) for k, col in colours.items()], fontsize=8)
    ax.set_ylabel("DebtRank R (share of others' equity lost)")
    ax.set_title(
        "Systemic importance in the baseline market (DebtRank on the ledger)\n"
        "one baseline market at its start: deterministic, no sampling error",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
