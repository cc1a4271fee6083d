"""The lending network as drawn: agent types' style, fixed positions per model (``structured_layout``),
the latest cascade's members, and the figure (``draw_network``; the encoding is in ``app``'s docstring)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from core.ledger import Kind
from experiments.display_names import names_table
from model.model import GPUCreditModel

if TYPE_CHECKING:
    from experiments.viz_model import LiveModel

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


def credited_defaults(model: GPUCreditModel, index: int) -> int:
    """The further defaults the cause tree credits to agent ``index`` (the size of its subtree)."""
    _, children = cascade_members(model)
    return len(subtree(index, children)) - 1


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
