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

This file is the page (the panels' places on the grid, one model per session); the model and the
panels live in ``experiments/viz_*.py`` (``viz_model``: ``LiveModel`` and the controls; ``viz_network``,
``viz_charts``, ``viz_panels``, ``viz_cascade``, ``viz_attribution``, ``viz_default``).
"""

from __future__ import annotations

from typing import Any

import solara
from mesa.visualization import SolaraViz, solara_viz

from experiments.viz_cascade import CascadeTree
from experiments.viz_default import DefaultBorrower
from experiments.viz_model import LiveModel, model_params
from experiments.viz_panels import Charts, NetworkView, StatusAndShocks

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
