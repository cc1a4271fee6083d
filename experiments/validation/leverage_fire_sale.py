"""Leverage-targeting fire sales on the 48 banks of the EBA 2018 EU-wide stress test (Cont & Schaanning
2017), against the public INET Oxford implementation ``firesale_stresstest`` (Farmer, Kleinnijenhuis,
Nahai-Williamson & Wetzer, "Foundations of system-wide financial stress testing").

References:
- Cont, R. & Schaanning, E. (2017). Fire sales, indirect contagion and systemic stress testing.
  SSRN 2541114: banks target a leverage ratio, sell a pro-rata slice of their marketable holdings when
  above it, and fail below a minimum; linear price impact; execution between pre- and post-impact prices.
- Greenwood, R., Landier, A. & Thesmar, D. (2015). Vulnerable banks. J. Financial Economics 115(3).
- github.com/ox-inet-resilience/firesale_stresstest (Apache 2.0), commit dd861c6: the data
  (``data/eba_2018/EBA_2018.csv``) and the reference numbers (``data/eba_2018/reference.json``, from
  running that code unmodified; see data/eba_2018/README.md). None of its code is in this project.

Each bank holds cash (5 % of assets), two marketable assets (government and corporate bonds, price 1),
other assets, and liabilities split into a loan it can repay and other liabilities. The government bond
price falls by the initial shock. Then, for six rounds, all at once (decide-then-act): banks that failed
last round post all their bonds; the market clears every posted order (the price moves by the volume
sold relative to the outstanding stock, ``core.secondary.impact_price``; orders execute at the
mid-point of the pre- and post-impact prices, and the proceeds are the seller's cash); then every live
bank applies ``Lender.leverage_target_plan``: below 3 % leverage (equity / assets) it fails; below the
buffer (4 %) it pays its loan down from cash to reach the 5 % target and posts a pro-rata slice of its
bonds for what cash cannot cover. Exposure of the system event (EoSE, Gai & Kapadia 2010 as the
reference computes it) = failed banks / 48, counted as 0 below 5 %. Share sold = bonds sold / the
bonds outstanding at the start.

The reference uses the exponential form of the impact (5 % of the stock sold moves the price by the
impact parameter); the reduction runs the engine with that form to compare, and reports the linear form
(Cont & Schaanning's) beside it, unchecked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agents import Lender
from core.secondary import impact_price
from experiments.validation.common import Report, figure_path

DATA = Path(__file__).resolve().parents[2] / "data" / "eba_2018"
ROUNDS = 6
LEVERAGE_MIN, LEVERAGE_BUFFER, LEVERAGE_TARGET = 0.03, 0.04, 0.05
SYSTEMIC_SHARE = 0.05  # EoSE below this counts as no systemic event (the reference's rule)
EOSE_TOLERANCE = 1 / 48  # one bank at a grid point: a bank on a threshold tie (see docs/validation.md)
SOLD_TOLERANCE = 0.005  # absolute share of bonds sold


@dataclass(frozen=True)
class Banks:
    """The EBA 2018 balance sheets (EUR million) as the reference builds them."""

    names: list[str]
    cash: np.ndarray
    bonds: np.ndarray  # (banks, 2): government, corporate
    other_assets: np.ndarray
    loan: np.ndarray
    other_liabilities: np.ndarray


def load_banks(path: Path = DATA / "EBA_2018.csv") -> Banks:
    """CET1 capital, leverage ratio (%), debt securities and government bonds (written as a sum of
    holdings, e.g. ``13+27682``) per bank; assets = CET1 / leverage, cash 5 % of assets, liabilities
    split equally into a repayable loan and other liabilities."""
    rows = path.read_text().strip().splitlines()[1:]
    names, cet1, leverage, debt_sec, gov = [], [], [], [], []
    for row in rows:
        name, c, lev, d, g = row.split(" ")
        names.append(name)
        cet1.append(float(c))
        leverage.append(float(lev) / 100)
        debt_sec.append(float(d))
        gov.append(sum(float(x) for x in g.split("+")))
    cet1_, debt_, gov_ = np.array(cet1), np.array(debt_sec), np.array(gov)
    assets = cet1_ / np.array(leverage)
    cash = 0.05 * assets
    liabilities = assets - cet1_
    return Banks(
        names=names,
        cash=cash,
        bonds=np.column_stack([gov_, debt_ - gov_]),
        other_assets=assets - debt_ - cash,
        loan=liabilities / 2,
        other_liabilities=liabilities / 2,
    )


@dataclass(frozen=True)
class Outcome:
    eose: float
    sold: float
    failed: int


def run_stress(
    banks: Banks,
    shock: float,
    impact: float,
    buffer: float = LEVERAGE_BUFFER,
    form: str = "exponential",
    rounds: int = ROUNDS,
) -> Outcome:
    """One stress test: the government bond price falls by ``shock``, then ``rounds`` rounds of
    clearing and deleveraging (see the module docstring)."""
    cash = banks.cash.copy()
    held = banks.bonds.copy()
    loan = banks.loan.copy()
    stock = held.sum(axis=0)
    price = np.array([1.0 - shock, 1.0])
    posted = np.zeros_like(held)
    sold = np.zeros(2)
    alive = np.ones(cash.size, dtype=bool)
    failing = np.zeros(cash.size, dtype=bool)  # failed last round: sells everything this round
    impacts = np.full(2, impact)
    for _ in range(rounds):
        posted[failing] = held[failing]
        failing[:] = False
        volume = posted.sum(axis=0)
        new_price = impact_price(price, volume / stock, impacts, form)
        filled = np.minimum(posted, held)
        held -= filled
        cash += filled @ ((price + new_price) / 2)
        sold += volume
        price = new_price
        posted[:] = 0.0
        marketable = held @ price
        assets = cash + marketable + banks.other_assets
        equity = assets - loan - banks.other_liabilities
        fails, from_cash, to_sell = Lender.leverage_target_plan(
            equity, assets, cash, LEVERAGE_MIN, buffer, LEVERAGE_TARGET
        )
        fails &= alive
        live = alive & ~fails
        repay = np.where(live, np.minimum(from_cash, loan), 0.0)
        loan -= repay
        cash -= repay
        sale = np.where(live, np.minimum(to_sell, marketable), 0.0)
        share = np.divide(sale, marketable, out=np.zeros_like(sale), where=marketable > 0)
        posted = held * share[:, None]
        failing = fails
        alive &= ~fails
    failed = int((~alive).sum())
    eose = failed / cash.size
    return Outcome(eose if eose >= SYSTEMIC_SHARE else 0.0, float(sold.sum() / stock.sum()), failed)


EXPERIMENTS = {
    "price_impact": {"xlabel": "price impact (%)", "shock": 0.2, "buffer": LEVERAGE_BUFFER},
    "initial_shock": {"xlabel": "initial shock (%)", "impact": 0.01, "buffer": LEVERAGE_BUFFER},
    "leverage_targeting": {"xlabel": "initial shock (%)", "impact": 0.01, "buffer": 1.0},
}
"""The reference's three experiments: EoSE against the price impact at a 20 % shock; against the
initial shock at a 1 % impact; the same with a buffer of 100 % (every bank always targets 5 %)."""


def sweep(banks: Banks, name: str, grid: np.ndarray, form: str = "exponential") -> dict[str, list[float]]:
    spec = EXPERIMENTS[name]
    outcomes = [
        run_stress(
            banks,
            shock=spec.get("shock", x),
            impact=spec.get("impact", x),
            buffer=spec["buffer"],
            form=form,
        )
        for x in grid
    ]
    return {"eose": [o.eose for o in outcomes], "sold": [o.sold for o in outcomes]}


def compare(engine: dict[str, list[float]], reference: dict[str, list[float]]) -> tuple[float, float]:
    """Largest absolute gaps in EoSE and in share sold over the grid."""
    eose = float(np.max(np.abs(np.subtract(engine["eose"], reference["eose"]))))
    sold = float(np.max(np.abs(np.subtract(engine["sold"], reference["sold"]))))
    return eose, sold


def mutations(curves: dict[str, list[float]]) -> dict[str, dict[str, list[float]]]:
    """The engine's curves perturbed as a wrong engine would get them: scaled by 0.9 and 1.1, and
    shifted one grid step either way (the end point repeated)."""
    out: dict[str, dict[str, list[float]]] = {}
    for label, f in (
        ("x0.9", lambda v: 0.9 * v),
        ("x1.1", lambda v: 1.1 * v),
        ("shift -1", lambda v: np.append(v[1:], v[-1])),
        ("shift +1", lambda v: np.insert(v[:-1], 0, v[0])),
    ):
        out[label] = {k: f(np.asarray(v)).tolist() for k, v in curves.items()}
    return out


def within(gaps: tuple[float, float]) -> bool:
    return gaps[0] <= EOSE_TOLERANCE + 1e-12 and gaps[1] <= SOLD_TOLERANCE


def run(quick: bool = False, out: Path | None = None, seed: int = 0) -> Report:
    """The three experiments on the reference's grids (deterministic: ``quick`` and ``seed`` change
    nothing); writes the figure and ``leverage_fire_sale.json`` beside it."""
    report = Report("leverage_fire_sale", "Cont-Schaanning leverage targeting, EBA 2018 (INET reference)")
    banks = load_banks()
    reference = json.loads((DATA / "reference.json").read_text())
    results: dict[str, dict] = {}
    for name in EXPERIMENTS:
        ref = reference[name]
        grid = np.array(ref["x"])
        engine = sweep(banks, name, grid)
        linear = sweep(banks, name, grid, form="linear")
        gaps = compare(engine, ref)
        results[name] = {
            "x": grid.tolist(),
            "engine": engine,
            "engine_linear_impact": linear,
            "reference": {"eose": ref["eose"], "sold": ref["sold"]},
            "max_gap": {"eose": gaps[0], "sold": gaps[1]},
        }
        report.add(
            f"{name}: max |EoSE gap| over {grid.size} points",
            gaps[0],
            0.0,
            f"<= 1/48 ({EOSE_TOLERANCE:.4f})",
            gaps[0] <= EOSE_TOLERANCE + 1e-12,
        )
        report.add(
            f"{name}: max |share sold gap|", gaps[1], 0.0, f"<= {SOLD_TOLERANCE}", gaps[1] <= SOLD_TOLERANCE
        )
    # the check can fail: the engine's answer perturbed (scaled, shifted one grid step) is rejected
    for name, res in results.items():
        caught = [not within(compare(m, res["reference"])) for m in mutations(res["engine"]).values()]
        report.add(
            f"{name}: perturbed engine answers rejected",
            f"{sum(caught)}/{len(caught)}",
            "all",
            "-",
            all(caught),
        )
    report.figure = figure_path(out, "leverage_fire_sale")
    _plot(results, report.figure)
    payload = {
        "source": "github.com/ox-inet-resilience/firesale_stresstest@dd861c6 (EBA 2018, 48 banks)",
        "tolerance": {"eose": EOSE_TOLERANCE, "sold": SOLD_TOLERANCE},
        "figure": report.figure.name,
        "experiments": results,
    }
    (report.figure.parent / "leverage_fire_sale.json").write_text(json.dumps(payload, indent=1))
    report.data = payload
    report.notes.append(
        "deterministic: the engine and the reference should agree exactly; the tolerance allows one bank "
        "on a leverage threshold tie per point and rounding in the share sold"
    )
    return report


def _plot(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 7), sharey="row")
    for col, (name, res) in enumerate(results.items()):
        x = 100 * np.array(res["x"])
        for row, key in enumerate(("eose", "sold")):
            ax = axes[row, col]
            ax.plot(x, res["reference"][key], "o", color="0.3", ms=6, mfc="none", label="INET reference")
            ax.plot(x, res["engine"][key], "-", color="C0", label="engine (exponential impact)")
            ax.plot(x, res["engine_linear_impact"][key], "--", color="C1", label="engine, linear impact")
            ax.set_xlabel(EXPERIMENTS[name]["xlabel"])
            if col == 0:
                ax.set_ylabel("EoSE (share of banks failed)" if key == "eose" else "share of bonds sold")
            ax.set_title(name.replace("_", " ") if row == 0 else "")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Leverage-targeting fire sales, 48 EBA 2018 banks (deterministic; 21 grid points)")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
