"""The visualiser's "default this borrower" panel (issue 18, part 3).

Pick a live borrower by its name and one click forces it into default now (``GPUCreditModel.default_agent``:
the cascade it sets off is resolved within the current month); the page's cascade panel then shows the
tree it caused, and the message here says which lenders lost how much. Names are the scenario's display
names (``experiments.display_names``: the public names for ``market_2026``), else the agents' ids.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import solara
from mesa.visualization.utils import force_update, update_counter

from core.ledger import BORROWER_KINDS, Kind
from model.metrics import lender_losses

if TYPE_CHECKING:
    from experiments.viz_model import LiveModel

MAX_LENDERS_LISTED = 5


def live_borrowers(model: LiveModel) -> list[int]:
    """Ledger rows of the borrowers still alive, the largest (by value at the mark) first."""
    led = model.ledger
    idx = np.flatnonzero(np.isin(led.kind, BORROWER_KINDS) & ~led.defaulted)
    size = model.state.value_at_mark(idx) + led.btc[idx] * model.state.world.btc_price
    return [int(i) for i in idx[np.lexsort((idx, -size))]]


def default_borrower(model: LiveModel, label: str) -> str:
    """Force the borrower shown as ``label`` into default now; the message: further defaults and the
    lenders' losses from this cascade (largest first)."""
    with model.lock:
        if label not in model.labels:
            return f"No agent named {label!r}."
        index = model.labels.index(label)
        if Kind(model.ledger.kind[index]) not in BORROWER_KINDS:
            return f"{label} is not a borrower."
        if model.ledger.defaulted[index]:
            return f"{label} has already defaulted."
        before_defaults, before_losses = int(model.ledger.defaulted.sum()), lender_losses(model)
        report = model.intervene("default", index)
        further = int(model.ledger.defaulted.sum()) - before_defaults - 1
        lost = lender_losses(model) - before_losses
        hit = [int(i) for i in np.argsort(-lost, kind="stable") if lost[i] > 0.5]
        losses = ", ".join(f"{model.labels[i]} ${lost[i] / 1e9:,.2f}B" for i in hit[:MAX_LENDERS_LISTED])
        if len(hit) > MAX_LENDERS_LISTED:
            losses += f" and {len(hit) - MAX_LENDERS_LISTED} more"
        message = f"Defaulted {label}: {report.rounds} cascade round(s), {further} further default(s); " + (
            f"lenders lost {losses}." if hit else "no lender lost anything yet."
        )
        model.events.append(f"month {int(model.time)}: {message}")
        return message


@solara.component
def DefaultBorrower(model: LiveModel) -> Any:
    """A borrower picker and the one-click default; the cascade panel shows the tree it sets off."""
    update_counter.get()
    choices = [model.labels[i] for i in live_borrowers(model)]
    chosen, set_chosen = solara.use_state("")
    message, set_message = solara.use_state("")
    current = chosen if chosen in choices else (choices[0] if choices else "")

    def on_click() -> None:
        set_message(default_borrower(model, current))
        force_update()

    with solara.Card("Default this borrower", classes=["viz-default"]):
        with solara.Row(style="align-items: center; gap: 8px; flex-wrap: wrap"):
            solara.Select(label="Borrower", values=choices, value=current, on_value=set_chosen)
            solara.Button(
                "Default this borrower",
                on_click=on_click,
                color="error",
                small=True,
                disabled=not choices,
            )
        if message:
            solara.Info(message, dense=True)
        elif not choices:
            solara.Info("Every borrower has defaulted.", dense=True)
