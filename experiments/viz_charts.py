"""The visualiser's time series: one figure per model, updated in place each step."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from experiments.viz_network import BORROWER_TYPES, LENDER_TYPES, STYLE
from model.model import GPUCreditModel


class ChartFigure:
    """Six panels over time: prices vs fundamentals, rent, BTC, defaults, lender equity, fire sales.

    The figure, its axes and its lines are made once per model and only their data change each step:
    building six axes anew (and their ticks) took as long as rendering them, about half the time of a
    re-render in the browser. Legends go where they hide the least data (``loc="best"``: a few ms with
    these few points).
    """

    FIRE_SALE_COLOUR = "#c0001a"
    GENERATION_COLOURS = (
        "#1f77b4",
        "#ff7f0e",
        "#2ca02c",
        "#d62728",
        "#9467bd",
        "#8c564b",
        "#e377c2",
        "#17becf",
    )

    def __init__(self, model: GPUCreditModel) -> None:
        self.figure = Figure(figsize=(10.5, 5.6), dpi=80)
        self.axes = axes = self.figure.subplots(2, 3)
        self.figure.subplots_adjust(left=0.06, right=0.99, top=0.94, bottom=0.08, wspace=0.28, hspace=0.42)
        names = model.state.world.generations.names
        prices = axes[0, 0]
        self.price: dict[str, tuple[Line2D, Line2D]] = {}  # solid: secondary price, dashed: fundamental
        for g, name in enumerate(names):
            colour = self.GENERATION_COLOURS[g % len(self.GENERATION_COLOURS)]
            solid = prices.plot([], [], color=colour, lw=1.6)[0]
            dashed = prices.plot([], [], color=colour, lw=1.0, ls="--")[0]
            self.price[name] = (solid, dashed)
        self.legend_names: tuple[str, ...] = ()
        prices.set_title("GPU price (solid) vs fundamental (dashed), k$", fontsize=9)
        self.rent = axes[0, 1].plot([], [], color="#3b6fd4")[0]
        axes[0, 1].set_title("Rent index (start = 1)", fontsize=9)
        self.btc = axes[0, 2].plot([], [], color="#e8871e")[0]
        axes[0, 2].set_title("BTC price, k$", fontsize=9)
        self.defaults = {
            t: axes[1, 0].plot([], [], drawstyle="steps-post", color=STYLE[t][1], label=STYLE[t][0])[0]
            for t in (*BORROWER_TYPES, *LENDER_TYPES)
        }
        axes[1, 0].legend(fontsize=6, frameon=False, loc="best")
        axes[1, 0].yaxis.set_major_locator(MaxNLocator(integer=True))  # counts
        self.equity = {
            t: axes[1, 1].plot([], [], color=STYLE[t][1], label=STYLE[t][0])[0] for t in LENDER_TYPES
        }
        axes[1, 1].set_title("Lender equity, $bn", fontsize=9)
        axes[1, 1].legend(fontsize=6, frameon=False, loc="best")
        sales = axes[1, 2]
        self.fire_sold = sales.bar([], [])
        self.unsold = sales.plot([], [], color="#333333")[0]
        sales.set_title("Fire-sale volume and unsold stock, k GPUs", fontsize=9)
        fire_sold_key = Patch(color=self.FIRE_SALE_COLOUR, alpha=0.7)
        sales.legend(
            [fire_sold_key, self.unsold],
            ["fire-sold", "unsold stock"],
            fontsize=6,
            frameon=False,
            loc="best",
        )
        for a in axes.flat:
            a.xaxis.set_major_locator(MaxNLocator(integer=True))
            a.tick_params(labelsize=7)
            a.set_xlabel("month", fontsize=7)

    def draw(self, model: GPUCreditModel) -> Figure:
        """The figure with the model's series up to now."""
        rows = model.metrics.steps
        months = np.array([r["month"] for r in rows])

        def series(key: str, scale: float = 1.0) -> np.ndarray:  # a type with no agents has no column
            return np.array([r.get(key, 0.0) for r in rows]) / scale

        by_generation: dict[str, list[dict]] = {name: [] for name in self.price}
        for r in model.metrics.generations:  # one pass, not one per generation
            if r["launched"]:
                by_generation[r["generation"]].append(r)
        launched = []
        for name, (solid, dashed) in self.price.items():
            mine = by_generation[name]
            m = [r["month"] for r in mine]
            solid.set_data(m, [r["secondary_price"] / 1e3 for r in mine])
            dashed.set_data(m, [r["fundamental_value"] / 1e3 for r in mine])
            if mine:
                launched.append(name)
        if tuple(launched) != self.legend_names:  # a generation launched: it joins the legend
            self.legend_names = tuple(launched)
            self.axes[0, 0].legend(
                [self.price[n][0] for n in launched],
                launched,
                fontsize=6,
                ncol=2,
                frameon=False,
                loc="best",
            )
        self.rent.set_data(months, series("rent_index"))
        self.btc.set_data(months, series("btc_price", 1e3))
        for t, line in self.defaults.items():
            line.set_data(months, series(f"defaults_{t}"))
        self.axes[1, 0].set_title(
            f"Cumulative defaults by type (total {rows[-1]['defaults_total']})", fontsize=9
        )
        for t, line in self.equity.items():
            line.set_data(months, series(f"lender_equity_{t}", 1e9))
        sales = self.axes[1, 2]
        self.fire_sold.remove()
        self.fire_sold = sales.bar(
            months, series("forced_sale_units", 1e3), color=self.FIRE_SALE_COLOUR, alpha=0.7
        )
        self.unsold.set_data(months, series("unsold_units", 1e3))
        for a in self.axes.flat:
            a.relim()
            a.autoscale_view()
        return self.figure
