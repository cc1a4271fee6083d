"""The model as the visualiser drives it (``LiveModel``) and the page's controls for it: scenario,
seed and six sliders (``model_params``, SolaraViz's ``model_params``)."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

from core.config import SCENARIO_DIR, load_scenario
from core.ledger import Kind
from experiments.display_names import display_names
from experiments.viz_attribution import (
    Intervention,
    apply_intervention,
)
from experiments.viz_charts import ChartFigure
from experiments.viz_network import node_assets, structured_layout
from model.model import PARAMETER_ALIASES, GPUCreditModel

DEFAULT_SCENARIO = "baseline"


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


assert set(SLIDER_START) <= set(PARAMETER_ALIASES), "every slider must be a model parameter"
