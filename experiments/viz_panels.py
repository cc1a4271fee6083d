"""The visualiser's panels: status and shock buttons, and the figures (network, charts) as SVG;
``Rich`` renders the panels' markdown."""

from __future__ import annotations

import html
import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import markdown
import matplotlib
import solara
from matplotlib.figure import Figure
from mesa.visualization.utils import force_update, update_counter

from experiments.viz_network import BORROWER_TYPES, LENDER_TYPES, STYLE, draw_network
from model.model import GPUCreditModel

if TYPE_CHECKING:
    from experiments.viz_model import LiveModel


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


def render_key(model: GPUCreditModel) -> list[Any]:
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
    key = render_key(model)

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
