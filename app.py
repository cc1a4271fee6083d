"""The Mesa browser visualiser (SolaraViz): watch a credit cascade happen, and cause one.

Launch with ``solara run app.py`` (or ``python run.py viz``); it listens on localhost only by default.
Every browser session gets its own model (``Page`` builds one per session), so tabs never share state.

What the page shows:
- the lending network: shape and colour by agent type, health as the marker's ring (gold = in breach,
  red cross = defaulted), size by assets, loans as edges whose width is the current exposure;
  node positions are computed once per model (a structured layout by type), so nothing jumps;
- charts updating each step: secondary price by generation against its fundamental value, rent index,
  BTC price, cumulative defaults by type, lender equity by type, fire-sale volume and unsold stock;
- the latest cascade's cause tree (first default -> the defaults it caused, cause on every link),
  also outlined in red on the network; on demand, what a picked default did, counted
  (``experiments.viz_attribution``: extra defaults and defaults brought forward, with months);
- controls: scenario, integer seed and six parameter sliders (applied on Reset), and shock buttons
  that act on the running model now; "Default this borrower" (``experiments.viz_default``) forces the
  borrower picked by name into default now.
Agents are shown by their scenario's display names where it has them (``market_2026``: the public names).
"""

from __future__ import annotations

import html
import io
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import markdown
import matplotlib
import numpy as np
import solara
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from mesa.visualization import SolaraViz, solara_viz
from mesa.visualization.utils import force_update, update_counter

from experiments.display_names import display_names, names_table
from experiments.viz_attribution import (
    CountedEffect,
    Intervention,
    apply_intervention,
    cache_key,
    effect_summary,
    use_count,
)
from experiments.viz_default import DefaultBorrower
from model.config import SCENARIO_DIR, load_scenario
from model.ledger import KIND_NAMES, Kind
from model.model import PARAMETER_ALIASES, GPUCreditModel

DEFAULT_SCENARIO = "baseline"

# Agent types as drawn: (label, colour, marker). Tenants (string node ids) are drawn small and grey.
STYLE: dict[str, tuple[str, str, str]] = {
    "miner": ("Miner", "#e8871e", "o"),
    "neocloud": ("Neo-cloud", "#3b6fd4", "s"),
    "bank": ("Bank", "#1b7f3b", "^"),
    "credit_fund": ("Credit fund", "#8e44ad", "D"),
    "abs_trust": ("ABS trust", "#16a2a2", "p"),
    "bond_investors": ("Bond investors", "#8c5a2b", "h"),
    "buyer": ("Hardware buyer", "#7f7f7f", "P"),
    "tenant": ("Tenant", "#c8c8c8", "."),
}
LENDER_TYPES = ("bank", "credit_fund", "abs_trust", "bond_investors")
BORROWER_TYPES = ("miner", "neocloud")


def scenario_names() -> list[str]:
    """Scenario files the visualiser can open (``experiments/scenarios/*.toml``), baseline first."""
    names = sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))
    return sorted(names, key=lambda n: n != DEFAULT_SCENARIO)


def slider_specs(scenario: str = DEFAULT_SCENARIO) -> dict[str, dict[str, Any]]:
    """The six sliders, each starting at the scenario's own value (so an untouched page is that scenario)."""
    cfg = load_scenario(scenario)
    miners = cfg.generated.miners
    return {
        "rent_deflation": {
            "type": "SliderFloat",
            "label": "New-GPU price decline (per year)",
            "value": cfg.world.rent.new_price_decline_per_year,
            "min": 0.0,
            "max": 0.8,
            "step": 0.05,
        },
        "btc_volatility": {
            "type": "SliderFloat",
            "label": "BTC volatility (per year)",
            "value": cfg.world.btc.volatility_per_year,
            "min": 0.1,
            "max": 1.5,
            "step": 0.05,
        },
        "stress_correlation": {
            "type": "SliderFloat",
            "label": "BTC-compute correlation in stress",
            "value": cfg.world.btc.correlation_stress,
            "min": -0.5,
            "max": 1.0,
            "step": 0.05,
        },
        "buyer_budget_scale": {
            "type": "SliderFloat",
            "label": "Buyer market depth (x budgets)",
            "value": 1.0,
            "min": 0.1,
            "max": 3.0,
            "step": 0.1,
        },
        "ltv_covenant": {
            "type": "SliderFloat",
            "label": "LTV covenant (max LTV at the mark)",
            "value": 1.5 if miners.ltv_max is None else miners.ltv_max,  # none: the slider's loosest
            "min": 0.5,
            "max": 1.5,
            "step": 0.05,
        },
        "loan_tenor_months": {
            "type": "SliderInt",
            "label": "Loan tenor (months)",
            "value": miners.loan_tenor_months,
            "min": 12,
            "max": 120,
            "step": 6,
        },
    }


def model_params() -> dict[str, dict[str, Any]]:
    """SolaraViz's ``model_params``: scenario, seed (text, parsed as an integer) and the sliders."""
    return {
        "scenario_name": {
            "type": "Select",
            "label": "Scenario",
            "value": DEFAULT_SCENARIO,
            "values": scenario_names(),
        },
        "seed": {
            "type": "InputText",
            "label": "Seed (integer)",
            "value": str(load_scenario(DEFAULT_SCENARIO).seed),
        },
        **slider_specs(),
    }


SLIDER_START = {name: spec["value"] for name, spec in slider_specs().items()}
GENERATED_ONLY = {"ltv_covenant", "loan_tenor_months"}  # sliders with no meaning on an explicit network


class LiveModel(GPUCreditModel):
    """GPUCreditModel as the visualiser drives it.

    - the seed arrives as text: an integer is used as is; anything else falls back to the scenario's
      seed with a notice on the page (never an exception in the browser);
    - a slider left at its starting position keeps the chosen scenario's own value;
    - a lock serialises steps, shocks and drawing the figures (Play runs steps in a thread while
      buttons can be clicked and, with "Use Threads", while the page redraws);
    - every month up to the horizon is simulated and none after it; ``running`` then turns False,
      which disables Step and Play;
    - node positions for the network drawing are computed once, here.
    """

    def __init__(
        self,
        scenario_name: str | None = None,
        seed: int | str | None = None,
        scenario: Any = None,
        **params: Any,
    ) -> None:
        # Mesa 3.5.1's Reset always passes its own ``mesa.experimental.scenarios.Scenario`` object as
        # ``scenario`` (a clash with this model's scenario name), so the page's control is
        # ``scenario_name``; a plain name or path in ``scenario`` still works for callers.
        if scenario_name is None:
            scenario_name = scenario if isinstance(scenario, str | Path) else DEFAULT_SCENARIO
        self.notice = ""
        seed_value: int | None = None
        text = "" if seed is None else str(seed).strip()
        if text:
            try:
                seed_value = int(text)
            except ValueError:
                self.notice = f"Seed {text!r} is not an integer: used the scenario's own seed."
        moved = {
            k: v
            for k, v in params.items()
            if k not in SLIDER_START or not math.isclose(float(v), float(SLIDER_START[k]), abs_tol=1e-9)
        }
        if moved.keys() & GENERATED_ONLY and load_scenario(scenario_name).generated is None:
            moved = {k: v for k, v in moved.items() if k not in GENERATED_ONLY}
            self.notice = f"{self.notice} The LTV covenant and loan tenor sliders set a generated network's terms: ignored here.".strip()
        super().__init__(scenario=scenario_name, seed=seed_value, **moved)
        self.buyer_budget_scale = float(moved.get("buyer_budget_scale", 1.0))
        self.labels = display_names(self.config.name, self.names)
        self.lock = threading.RLock()
        self.events: list[str] = []
        self.interventions: list[Intervention] = []  # the page's shocks, replayed by a count
        self.attributions: dict[tuple[str, int], dict[str, Any]] = {}  # counts, by (name, shocks)
        self.positions = structured_layout(self)
        self.charts = ChartFigure(self)
        self.size_reference = max(float(node_assets(self).max()), 1.0)
        self.running = not self.finished
        # Mesa's step moves the clock on before it calls the model's own step, so a guard inside that
        # step would come too late: the horizon month would be skipped and the clock run past it.
        self._mesa_step = self.step
        self.step = self._step_within_horizon

    def _step_within_horizon(self) -> None:
        """One month (Mesa's clock, then ``GPUCreditModel.step``), or nothing once at the horizon."""
        with self.lock:
            if not self.finished:
                self._mesa_step()
            self.running = not self.finished

    def intervene(self, action: str, agent: int = -1) -> Any:
        """Apply a shock from the page now and log it: a count of what a default did
        (``experiments.viz_attribution``) replays the page's shocks."""
        with self.lock:
            intervention = Intervention(int(self.time), action, agent)
            self.interventions.append(intervention)
            return apply_intervention(self, intervention)

    def shock(self, name: str) -> str:
        """Apply a named shock now ('default_largest_miner', 'crash_btc', 'launch_next_generation')."""
        with self.lock:
            before = int(self.ledger.defaulted.sum())
            if name == "default_largest_miner":
                target = self.largest_live(Kind.MINER)
                if target is None:
                    message = "No live miner left to default."
                else:
                    report = self.intervene("default", target)
                    message = f"Defaulted {self.labels[target]}: {report.rounds} cascade round(s)"
            elif name == "crash_btc":
                old = self.state.world.btc_price
                self.intervene("crash_btc")
                message = f"BTC fell 50 %: {old:,.0f} -> {self.state.world.btc_price:,.0f} USD"
            elif name == "launch_next_generation":
                launched = self.intervene("launch_next_generation")
                message = f"{launched} launched now" if launched else "No further GPU generation to launch."
            else:
                raise ValueError(f"unknown shock {name!r}")
            new = int(self.ledger.defaulted.sum()) - before
            message = f"{message.rstrip('.')}; {new} new default(s)."
            self.events.append(f"month {int(self.time)}: {message}")
            return message


# --- what is drawn ---------------------------------------------------------------------------


def node_type(graph_attrs: dict[str, Any], node: Any) -> str:
    return graph_attrs.get("kind") or ("tenant" if isinstance(node, str) else "buyer")


def node_assets(model: GPUCreditModel) -> np.ndarray:
    """Assets per ledger agent at today's marks: lenders' balance sheets; borrowers' GPUs, BTC and cash;
    buyers' monthly budget scale is not an asset, so buyers get a fixed size."""
    state, led = model.state, model.ledger
    borrower = state.value_at_mark() + led.btc * state.world.btc_price + np.maximum(led.cash, 0.0)
    assets = np.where(state.lender_mask(), state.lender_assets(), borrower)
    assets = np.where(led.kind == Kind.BUYER, np.nan, assets)
    return np.nan_to_num(np.maximum(assets, 0.0), nan=0.0)


def structured_layout(model: GPUCreditModel) -> dict[Any, tuple[float, float]]:
    """Stable positions by type: lenders on an inner ring, borrowers on a middle ring next to their
    largest creditor, tenants just outside their landlord, buyers on an outer arc. Deterministic."""
    graph = model.graph
    kinds = {n: node_type(d, n) for n, d in graph.nodes(data=True)}
    pos: dict[Any, tuple[float, float]] = {}
    lenders = [n for n in graph if kinds[n] in LENDER_TYPES]
    angle: dict[Any, float] = {}
    for i, n in enumerate(lenders):
        angle[n] = 2 * math.pi * i / max(len(lenders), 1)
        pos[n] = (math.cos(angle[n]), math.sin(angle[n]))
    borrowers = [n for n in graph if kinds[n] in BORROWER_TYPES]

    def main_creditor_angle(b: Any) -> float:
        loans = [
            (d.get("principal", 0.0), u) for u, _, d in graph.in_edges(b, data=True) if d.get("tie") == "loan"
        ]
        loans = [x for x in loans if x[1] in angle]
        return angle[max(loans, key=lambda x: (x[0], -x[1]))[1]] if loans else 0.0

    order = sorted(borrowers, key=lambda b: (main_creditor_angle(b), kinds[b], b))
    for i, n in enumerate(order):
        a = 2 * math.pi * (i + 0.5) / max(len(order), 1)
        angle[n] = a
        pos[n] = (2.2 * math.cos(a), 2.2 * math.sin(a))
    tenants = [n for n in graph if kinds[n] == "tenant"]
    per_landlord: dict[Any, int] = {}
    for n in tenants:
        landlords = [u for u, _, d in graph.in_edges(n, data=True) if u in angle] + [
            v for _, v, d in graph.out_edges(n, data=True) if v in angle
        ]
        base = angle[landlords[0]] if landlords else 0.0
        k = per_landlord.get(landlords[0] if landlords else None, 0)
        per_landlord[landlords[0] if landlords else None] = k + 1
        a = base + 0.05 * (k - 0.5)
        pos[n] = (2.9 * math.cos(a), 2.9 * math.sin(a))
    buyers = [n for n in graph if n not in pos]
    for i, n in enumerate(buyers):
        a = math.pi * (0.15 + 0.7 * i / max(len(buyers) - 1, 1))  # an arc above the rings
        pos[n] = (3.6 * math.cos(a), 3.6 * math.sin(a) + 0.4)
    return pos


def cascade_members(model: GPUCreditModel) -> tuple[int | None, dict[int, list[int]]]:
    """The root of the latest cascade (the first default of the tree holding the latest default) and
    the children of every defaulted agent."""
    led = model.ledger
    idx = np.flatnonzero(led.defaulted)
    if idx.size == 0:
        return None, {}
    children: dict[int, list[int]] = {}
    for i in idx:
        children.setdefault(int(led.default_parent[i]), []).append(int(i))
    latest = int(idx[np.lexsort((idx, led.default_round[idx], led.default_month[idx]))][-1])
    root, seen = latest, set()
    while led.default_parent[root] >= 0 and root not in seen:
        seen.add(root)
        root = int(led.default_parent[root])
    return root, children


def subtree(root: int, children: dict[int, list[int]]) -> list[int]:
    out, stack = [], [root]
    while stack:
        node = stack.pop()
        if node in out:
            continue
        out.append(node)
        stack.extend(reversed(children.get(node, [])))
    return out


def draw_network(model: LiveModel) -> Figure:
    """The lending network at its fixed positions; see the module docstring for the encoding."""
    graph, pos, led = model.graph, model.positions, model.ledger
    fig = Figure(figsize=(7.2, 6.4), dpi=80)
    ax = fig.add_axes((0.0, 0.0, 1.0, 0.94))
    ax.set_axis_off()
    ax.set_aspect("equal")
    # loans: width by current exposure (outstanding principal), faded red once written off
    loans = led.loans
    top = max(float(loans.principal.max()) if len(loans) else 0.0, 1.0)
    segs, widths, colours, other = [], [], [], []
    for u, v, key, d in graph.edges(keys=True, data=True):
        if u not in pos or v not in pos:
            continue
        if d.get("tie") == "loan" and isinstance(key, int | np.integer) and key < len(loans):
            segs.append((pos[u], pos[v]))
            defaulted = loans.exposure_at_default[key] > 0
            exposure = float(loans.principal[key])
            widths.append(0.4 + 5.0 * math.sqrt(exposure / top) if not defaulted else 0.8)
            colours.append((0.85, 0.1, 0.1, 0.35) if defaulted else (0.25, 0.3, 0.4, 0.45))
        else:
            other.append((pos[u], pos[v]))
    ax.add_collection(
        LineCollection(other, linewidths=0.5, colors=[(0.6, 0.6, 0.6, 0.5)], linestyles="dotted")
    )
    ax.add_collection(LineCollection(segs, linewidths=widths, colors=colours))
    # nodes
    assets = node_assets(model)
    root, children = cascade_members(model)
    in_cascade = set(subtree(root, children)) if root is not None else set()
    breach = model.in_breach
    named = bool(names_table(model.config.name))  # real names on the nodes where the scenario has them
    by_type: dict[str, list[Any]] = {}
    for n, d in graph.nodes(data=True):
        by_type.setdefault(node_type(d, n), []).append(n)
    for kind, nodes in by_type.items():
        label, colour, marker = STYLE.get(kind, (kind, "#444444", "o"))
        xy = np.array([pos[n] for n in nodes])
        if kind == "tenant":
            ax.scatter(xy[:, 0], xy[:, 1], s=12, c=colour, marker="o", label=label, zorder=2)
            continue
        ids = np.array(nodes, dtype=int)
        if kind == "buyer":
            sizes = np.full(ids.size, 60.0)
        else:
            sizes = 25.0 + 900.0 * np.sqrt(assets[ids] / model.size_reference)
        dead = led.defaulted[ids]
        ring = np.where(breach[ids] & ~dead, "#f2b400", "white")
        width = np.where(breach[ids] & ~dead, 2.5, 0.6)
        ax.scatter(
            xy[:, 0],
            xy[:, 1],
            s=sizes,
            c=colour,
            marker=marker,
            edgecolors=ring,
            linewidths=width,
            alpha=np.where(dead, 0.35, 0.95),
            label=label,
            zorder=3,
        )
        if dead.any():
            ax.scatter(xy[dead, 0], xy[dead, 1], s=70, c="#c0001a", marker="x", linewidths=2.2, zorder=4)
        if named and kind != "buyer":
            for i, (x, y) in zip(ids, xy, strict=True):
                ax.annotate(
                    model.labels[i],
                    (x, y),
                    xytext=(0, 7),
                    textcoords="offset points",
                    fontsize=6.5,
                    ha="center",
                    va="bottom",
                    color="#222222",
                    zorder=6,
                )
        hot = np.array([i in in_cascade for i in ids])
        if hot.any():
            ax.scatter(
                xy[hot, 0],
                xy[hot, 1],
                s=sizes[hot] + 160,
                facecolors="none",
                edgecolors="#c0001a",
                linewidths=1.8,
                marker="o",
                zorder=5,
            )
    ax.set_xlim(-4.1, 4.1)
    ax.set_ylim(-3.9, 4.3)
    handles, labels = ax.get_legend_handles_labels()
    keep = [(h, lab) for h, lab in zip(handles, labels, strict=True) if not lab.startswith("_")]
    ax.legend(
        [h for h, _ in keep],
        [lab for _, lab in keep],
        loc="lower center",
        ncol=4,
        fontsize=8,
        frameon=False,
        markerscale=0.6,
        bbox_to_anchor=(0.5, -0.02),
    )
    world = model.state.world
    fig.suptitle(
        f"Lending network, month {int(model.time)} ({world.calendar_month}): "
        f"{int(led.defaulted.sum())} defaulted, {int(breach.sum())} in breach",
        fontsize=10,
    )
    ax.text(
        -4.05,
        4.2,
        "ring: gold = breach, red = latest cascade; x = defaulted\nedge width = loan exposure",
        fontsize=7,
        color="#555555",
        va="top",
    )
    return fig


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


# --- components ------------------------------------------------------------------------------


def Rich(text: str, style: str = "") -> Any:
    """Markdown rendered to HTML on the server. (solara.Markdown fetches mermaid.js from a CDN on every
    update: slow, and an error in the server log when offline.)"""
    return solara.HTML(
        tag="div",
        unsafe_innerHTML=markdown.markdown(html.escape(text, quote=False)),
        style="font-size: 0.9rem; line-height: 1.45; " + style,
    )


SHOCKS: list[tuple[str, str]] = [
    ("Default the largest miner", "default_largest_miner"),
    ("BTC falls 50 %", "crash_btc"),
    ("Next GPU generation launches", "launch_next_generation"),
]


def _render_key(model: GPUCreditModel) -> list[Any]:
    return [update_counter.value, id(model), int(model.time)]


def parameter_line(model: LiveModel) -> str:
    """The six parameters as the running model has them (read back from its validated config)."""
    cfg = model.config
    miners = cfg.generated.miners if cfg.generated is not None else None
    terms = (
        "LTV covenant and loan tenor: each loan's own (explicit network)"
        if miners is None
        else f"LTV covenant {'none' if miners.ltv_max is None else f'{miners.ltv_max:.2f}'} · loan tenor {miners.loan_tenor_months} months"
    )
    return (
        f"new-GPU price decline {cfg.world.rent.new_price_decline_per_year:.2f}/yr · BTC volatility {cfg.world.btc.volatility_per_year:.2f} · "
        f"stress correlation {cfg.world.btc.correlation_stress:.2f} · buyer depth x{model.buyer_budget_scale:.1f} · "
        + terms
    )


@solara.component
def StatusAndShocks(model: LiveModel) -> None:
    """Headline numbers and the shock buttons (they act on the running model now)."""
    update_counter.get()
    message, set_message = solara.use_state("")
    led, world = model.ledger, model.state.world
    latest = model.metrics.latest

    def make_handler(name: str) -> Callable[[], None]:
        def handler() -> None:
            set_message(model.shock(name))
            force_update()

        return handler

    with solara.Card("Run and shocks", classes=["viz-status"]):
        by_type = ", ".join(
            f"{STYLE[t][0].lower()} {int(latest.get(f'defaults_{t}', 0))}"
            for t in (*BORROWER_TYPES, *LENDER_TYPES)
        )
        Rich(
            f"**Month {int(model.time)}** ({world.calendar_month}) of {model.months} · "
            f"scenario `{model.config.name}` · seed {model.config.seed} · "
            f"{'**stress regime**' if world.stress else 'normal regime'}\n\n"
            f"**Defaults: {int(led.defaulted.sum())}** ({by_type}) · in breach: {int(model.in_breach.sum())}\n\n"
            f"Rent index {latest.get('rent_index', float('nan')):.3f} · BTC {world.btc_price:,.0f} USD · "
            f"last cascade rounds {latest.get('cascade_rounds', 0)}\n\n"
            f"Parameters: {parameter_line(model)}"
        )
        with solara.Row(style="flex-wrap: wrap; gap: 6px"):
            for label, name in SHOCKS:
                solara.Button(
                    label,
                    on_click=make_handler(name),
                    color="error",
                    outlined=True,
                    small=True,
                    disabled=bool(led.defaulted.all()),
                )
        if message:
            solara.Info(message, dense=True)
        if model.notice:
            solara.Warning(model.notice, dense=True)


def figure_svg(figure: Figure) -> bytes:
    """The figure as SVG with its text kept as text: the browser draws the letters, ~0.1 s a step
    faster than matplotlib rasterising them into a PNG, and the figure stays sharp when zoomed."""
    out = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        figure.savefig(out, format="svg")
    return out.getvalue()


@solara.component
def MatplotlibPanel(model: LiveModel, draw: Callable[[LiveModel], Figure], css_class: str) -> None:
    """A figure redrawn when the model changes (SVG from matplotlib)."""
    update_counter.get()
    key = _render_key(model)

    def drawn() -> tuple[bytes, str]:
        with model.lock:  # with "Use Threads", Play steps the model in another thread meanwhile
            figure = draw(model)
        return figure_svg(figure), f"{figure.get_figwidth() * figure.dpi:.0f}px"  # SVG sizes are in pt

    image, width = solara.use_memo(drawn, key)
    with solara.Div(classes=[css_class]):
        solara.Image(image, width=width, format="svg+xml")


def NetworkView(model: LiveModel) -> Any:
    """The lending network (positions fixed per model)."""
    return MatplotlibPanel(model, draw_network, "viz-network")


def Charts(model: LiveModel) -> Any:
    """The time series, redrawn each step (one figure per model, updated in place)."""
    return MatplotlibPanel(model, model.charts.draw, "viz-charts")


def credited_defaults(model: GPUCreditModel, index: int) -> int:
    """The further defaults the cause tree credits to agent ``index`` (the size of its subtree)."""
    _, children = cascade_members(model)
    return len(subtree(index, children)) - 1


def cascade_markdown(model: LiveModel, limit: int = 60) -> str:
    """The latest cascade as a nested list: first default, then what it caused, cause on each link;
    a default whose effect was counted (``experiments.viz_attribution``) says so."""
    led, names = model.ledger, display_names(model.config.name, model.names)
    root, children = cascade_members(model)
    if root is None:
        return "**Latest cascade:** no default yet. Step the model, or press *Default the largest miner*."
    from model.ledger import CAUSE_NAMES, Cause

    members = subtree(root, children)
    lines = [
        f"**Latest cascade:** started by **{names[root]}** "
        f"({KIND_NAMES[Kind(led.kind[root])]}, {CAUSE_NAMES[Cause(led.default_cause[root])]}, "
        f"month {int(led.default_month[root])}); it caused **{len(members) - 1}** further default(s).",
        "",
    ]

    def walk(node: int, depth: int) -> None:
        if len(lines) > limit:
            return
        cause = CAUSE_NAMES[Cause(led.default_cause[node])]
        link = "first default" if depth == 0 else f"<- {cause}"
        counted = model.attributions.get(cache_key(model.names[node], len(model.interventions)))
        lines.append(
            f"{'    ' * depth}- **{names[node]}** ({KIND_NAMES[Kind(led.kind[node])]}) {link} · "
            f"month {int(led.default_month[node])}, round {int(led.default_round[node])}"
            + (f" · {effect_summary(counted)}" if counted else "")
        )
        for child in children.get(node, []):
            walk(child, depth + 1)

    walk(root, 0)
    roots = [r for r in children.get(-1, []) if r != root]
    if roots:
        lines += [
            "",
            f"Other first defaults so far: {', '.join(names[r] for r in roots[:12])}"
            + (" ..." if len(roots) > 12 else ""),
        ]
    return "\n".join(lines)


@solara.component
def CascadeTree(model: LiveModel) -> None:
    """The cause tree of the latest cascade (also outlined in red on the network) and, on demand,
    what a default did, counted (``experiments.viz_attribution``)."""
    update_counter.get()
    task = use_count(model)
    # the tree marks the defaults counted so far, so it follows a finished count too (task.value)
    tree = solara.use_memo(lambda: cascade_markdown(model), [*_render_key(model), task.value])
    # the tree scrolls in its part of the card, the card in its grid cell: a long count stays inside
    with solara.Card("Cascade", classes=["viz-cascade"], style="height: 100%; overflow-y: auto"):
        Rich(tree, style="max-height: 230px; overflow-y: auto")
        CountedEffect(model, task, lambda index: credited_defaults(model, index), Rich)
        if model.events:
            Rich("**Shocks applied:** " + "; ".join(model.events[-5:]))


COMPONENTS = [(StatusAndShocks, 0), (NetworkView, 0), (Charts, 0), (CascadeTree, 0), (DefaultBorrower, 0)]
# Where each component sits on Mesa's 12-column grid (rows of ~30 px): status, "default this borrower"
# and the cascade tree on the left, the network on the right, the charts full width below. Users can
# still drag and resize.
GRID = [
    {"i": 0, "x": 0, "y": 0, "w": 6, "h": 11, "moved": False},
    {"i": 1, "x": 6, "y": 0, "w": 6, "h": 30, "moved": False},
    {"i": 2, "x": 0, "y": 30, "w": 12, "h": 17, "moved": False},
    {"i": 3, "x": 0, "y": 17, "w": 6, "h": 13, "moved": False},
    {"i": 4, "x": 0, "y": 11, "w": 6, "h": 6, "moved": False},
]
_mesa_grid_layout = solara_viz.make_initial_grid_layout


def grid_layout(num_components: int) -> list[dict[str, Any]]:
    """Mesa 3.5.1 places every component at half width; this page's five get the layout above."""
    return [dict(g) for g in GRID] if num_components == len(GRID) else _mesa_grid_layout(num_components)


solara_viz.make_initial_grid_layout = grid_layout  # SolaraViz has no layout argument in Mesa 3.5.1


@solara.component
def Page() -> None:
    """One model per browser session: created when the session's page is first rendered."""
    model = solara.use_memo(lambda: LiveModel(), [])
    SolaraViz(
        model,
        components=COMPONENTS,
        model_params=model_params(),
        name="GPU credit contagion",
        play_interval=300,
    )


page = Page

assert set(SLIDER_START) <= set(PARAMETER_ALIASES), "every slider must be a model parameter"
