"""The visualiser's cascade panel: the latest cascade's cause tree and, on demand, what a default did,
counted (``experiments.viz_attribution``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import solara
from mesa.visualization.utils import update_counter

from core.ledger import KIND_NAMES, Kind
from experiments.display_names import display_names
from experiments.viz_attribution import (
    CountedEffect,
    cache_key,
    effect_summary,
    use_count,
)
from experiments.viz_network import cascade_members, subtree
from experiments.viz_panels import Rich, render_key

if TYPE_CHECKING:
    from experiments.viz_model import LiveModel


def cascade_markdown(model: LiveModel, limit: int = 60) -> str:
    """The latest cascade as a nested list: first default, then what it caused, cause on each link;
    a default whose effect was counted (``experiments.viz_attribution``) says so."""
    led, names = model.ledger, display_names(model.config.name, model.names)
    root, children = cascade_members(model)
    if root is None:
        return "**Latest cascade:** no default yet. Step the model, or press *Default the largest miner*."
    from core.ledger import CAUSE_NAMES, Cause

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
    tree = solara.use_memo(lambda: cascade_markdown(model), [*render_key(model), task.value])
    # the tree scrolls in its part of the card, the card in its grid cell: a long count stays inside
    with solara.Card("Cascade", classes=["viz-cascade"], style="height: 100%; overflow-y: auto"):
        Rich(tree, style="max-height: 230px; overflow-y: auto")
        CountedEffect(model, task)
        if model.events:
            Rich("**Shocks applied:** " + "; ".join(model.events[-5:]))
