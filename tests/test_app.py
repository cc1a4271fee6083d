"""The visualiser's widgets without a browser (``solara.render``): controls, parameters, Step, shocks.

The page is rendered inside an AppLayout, as solara's server does, so SolaraViz's sidebar (Reset,
Play, Step, model parameters) is part of the rendered tree.
"""

from __future__ import annotations

import inspect
import threading
import time

import ipyvuetify as v
import matplotlib
import pandas as pd
import pytest
import solara
from matplotlib.figure import Figure
from mesa.visualization import SolaraViz

import app
from core.config import load_scenario
from core.ledger import Kind
from experiments import viz_attribution, viz_model, viz_network, viz_panels
from experiments.viz_default import default_borrower, live_borrowers
from model.attribution import compare, counterfactual, default_months
from model.model import PARAMETER_ALIASES, GPUCreditModel

SLIDER_LABELS = {name: spec["label"] for name, spec in viz_model.slider_specs().items()}


def render(element):
    _, rc = solara.render(solara.AppLayout(children=[element]), handle_error=False)
    return rc


def button(rc, label: str):
    return rc.find(v.Btn, children=[label]).widget


def page_text(rc) -> str:
    return "\n".join(h.widget.unsafe_innerHTML for h in rc.find(solara.widgets.HTML))


def alerts_text(rc) -> str:
    return " ".join(str(c) for a in rc.find(v.Alert) for c in a.widget.children)


def wait_until(condition, timeout: float = 60.0) -> None:
    """Poll ``condition`` (a count runs in a thread) until it holds or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def viz(model: viz_model.LiveModel):
    """The same SolaraViz the page builds, around a model the test holds."""
    return SolaraViz(model, components=app.COMPONENTS, model_params=viz_model.model_params(), name="test")


def test_controls_exist() -> None:
    rc = render(app.Page())
    for label in (
        "Reset",
        "Step",
        "Default the largest miner",
        "BTC falls 50 %",
        "Next GPU generation launches",
    ):
        rc.find(v.Btn, children=[label]).assert_single()
    sliders = [s.widget.label for s in rc.find(v.Slider)]
    for label in SLIDER_LABELS.values():
        assert label in sliders
    select = rc.find(v.Select, label="Scenario").widget
    assert "baseline" in select.items and select.v_model == "baseline"
    seed = rc.find(v.TextField, label="Seed (integer)").widget
    assert seed.v_model == str(load_scenario("baseline").seed)


def test_parameters_match_the_model_constructor() -> None:
    params = viz_model.model_params()
    accepted = set(inspect.signature(viz_model.LiveModel.__init__).parameters) | set(PARAMETER_ALIASES)
    assert set(params) <= accepted, set(params) - accepted
    assert {"seed"} | set(SLIDER_LABELS) <= set(inspect.signature(GPUCreditModel.__init__).parameters) | set(
        PARAMETER_ALIASES
    )
    assert set(SLIDER_LABELS) == {  # the six of issue 4, each a model parameter
        "rent_deflation",
        "btc_volatility",
        "stress_correlation",
        "buyer_budget_scale",
        "ltv_covenant",
        "loan_tenor_months",
    } and set(SLIDER_LABELS) <= set(PARAMETER_ALIASES)
    # every slider starts at the baseline's own value, so an untouched page runs the baseline
    cfg = load_scenario("baseline")
    start = {k: spec["value"] for k, spec in params.items() if k in SLIDER_LABELS}
    assert start["rent_deflation"] == cfg.world.rent.new_price_decline_per_year
    assert start["btc_volatility"] == cfg.world.btc.volatility_per_year
    assert start["stress_correlation"] == cfg.world.btc.correlation_stress
    assert start["ltv_covenant"] == cfg.generated.miners.ltv_max  # a moved slider sets every borrower class
    assert start["loan_tenor_months"] == cfg.generated.miners.loan_tenor_months
    for name, spec in params.items():
        if name in SLIDER_LABELS:
            assert spec["min"] <= spec["value"] <= spec["max"], name
    # what SolaraViz passes on Reset builds the model, and moved sliders reach its config
    values = {k: spec["value"] for k, spec in params.items()}
    assert viz_model.LiveModel(**values).config == GPUCreditModel("baseline", seed=values["seed"]).config
    # Mesa's Reset adds its own Scenario object as ``scenario``: it must not replace the chosen one
    from mesa.experimental.scenarios import Scenario

    assert viz_model.LiveModel(**values, scenario=Scenario()).config.name == "baseline"
    moved = viz_model.LiveModel(
        **{
            **values,
            "rent_deflation": 0.5,
            "ltv_covenant": 0.7,
            "loan_tenor_months": 36,
            "buyer_budget_scale": 0.5,
        }
    )
    assert moved.config.world.rent.new_price_decline_per_year == 0.5
    assert moved.config.generated.neoclouds.ltv_max == 0.7
    assert moved.config.generated.miners.loan_tenor_months == 36
    assert moved.config.buyers[0].budget_per_month == pytest.approx(cfg.buyers[0].budget_per_month * 0.5)


def test_seed_text_is_an_integer_or_a_visible_fallback() -> None:
    assert viz_model.LiveModel(seed=" 7 ").config.seed == 7
    bad = viz_model.LiveModel(seed="seven")
    assert bad.config.seed == load_scenario("baseline").seed
    assert "not an integer" in bad.notice


def test_step_advances_the_model() -> None:
    model = viz_model.LiveModel()
    rc = render(viz(model))
    assert "Month 0" in page_text(rc)
    button(rc, "Step").click()
    button(rc, "Step").click()
    assert model.time == 2 and len(model.metrics.steps) == 3
    assert "Month 2" in page_text(rc)


def test_shock_buttons_change_the_model() -> None:
    model = viz_model.LiveModel()
    rc = render(viz(model))
    button(rc, "Step").click()
    largest = model.largest_live(Kind.MINER)
    before = int(model.ledger.defaulted.sum())
    button(rc, "Default the largest miner").click()
    assert model.ledger.defaulted[largest]
    assert int(model.ledger.defaulted.sum()) > before
    assert f"Defaults: {int(model.ledger.defaulted.sum())}" in page_text(rc).replace("<strong>", "").replace(
        "</strong>", ""
    )
    assert f"started by <strong>{model.names[largest]}</strong>" in page_text(rc)

    btc = model.state.world.btc_price
    button(rc, "BTC falls 50 %").click()
    assert model.state.world.btc_price == pytest.approx(btc * 0.5)

    launched = int(model.state.world.launched.sum())
    button(rc, "Next GPU generation launches").click()
    assert int(model.state.world.launched.sum()) == launched + 1


def test_reset_applies_the_controls() -> None:
    model = viz_model.LiveModel()
    rc = render(viz(model))
    button(rc, "Step").click()
    seed = rc.find(v.TextField, label="Seed (integer)").widget
    seed.v_model = "7"
    seed.fire_event("keyup.enter", None)  # the text field reports its value on Enter or focus-out
    rc.find(v.Slider, label=SLIDER_LABELS["rent_deflation"]).widget.v_model = 0.5
    button(rc, "Reset").click()
    text = page_text(rc)
    assert "Month 0" in text and "seed 7" in text and "new-GPU price decline 0.50/yr" in text
    assert model.time == 1  # the old model is left alone; Reset built a new one


def test_each_page_has_its_own_model() -> None:
    first, second = render(app.Page()), render(app.Page())
    button(first, "Step").click()
    assert "Month 1" in page_text(first)
    assert "Month 0" in page_text(second)


def test_network_positions_are_fixed_per_model() -> None:
    model = viz_model.LiveModel()
    positions = dict(model.positions)
    assert set(positions) == set(model.graph.nodes)
    assert viz_network.structured_layout(viz_model.LiveModel()) == positions  # deterministic
    for _ in range(3):
        model.step()
    model.shock("default_largest_miner")
    viz_network.draw_network(model)
    assert model.positions == positions


def test_charts_are_one_figure_per_model_that_follows_it() -> None:
    model = viz_model.LiveModel()
    first = model.charts.draw(model)
    for _ in range(4):
        model.step()
    model.shock("launch_next_generation")
    model.step()
    figure = model.charts.draw(model)
    assert figure is first  # updated in place, not rebuilt
    rows = model.metrics.steps
    months, btc = model.charts.btc.get_data()
    assert list(months) == [r["month"] for r in rows]
    assert list(btc) == pytest.approx([r["btc_price"] / 1e3 for r in rows])
    defaults_panel = figure.axes[3]
    assert defaults_panel.get_title() == f"Cumulative defaults by type (total {rows[-1]['defaults_total']})"
    launched = sorted({r["generation"] for r in model.metrics.generations if r["launched"]})
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert sorted(legend) == launched
    assert len(figure.axes[5].patches) == len(rows)  # one fire-sale bar per month, old bars removed


def test_figures_are_drawn_only_between_steps() -> None:
    """A figure never reads a model half-way through a step (Play with "Use Threads" steps the model
    in one thread while another draws the page): drawing waits for the model's lock."""
    model = viz_model.LiveModel()
    holding, released = threading.Event(), threading.Event()

    def hold_the_lock_like_a_step() -> None:
        with model.lock:
            holding.set()
            time.sleep(0.3)
            released.set()

    stepper = threading.Thread(target=hold_the_lock_like_a_step)
    stepper.start()
    holding.wait()
    drawn_after_release = []

    def draw(m: viz_model.LiveModel) -> Figure:
        drawn_after_release.append(released.is_set())
        return m.charts.draw(m)

    render(viz_panels.MatplotlibPanel(model, draw, "viz-test"))
    stepper.join()
    assert drawn_after_release == [True]


def test_figures_are_sent_as_svg_with_their_text_as_text() -> None:
    """The browser draws the letters (faster than matplotlib rasterising them); the setting does not
    leak into the process's other figures."""
    model = viz_model.LiveModel()
    svg = viz_panels.figure_svg(model.charts.draw(model)).decode()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert "<text" in svg and "Rent index (start = 1)" in svg
    assert matplotlib.rcParams["svg.fonttype"] == "path"  # the default, untouched


def test_the_page_runs_every_month_to_the_horizon_and_no_further() -> None:
    """Mesa moves the clock before the model's step runs: the horizon month must still be simulated,
    and steps after it (e.g. a render interval above 1) must not move the clock."""
    model = viz_model.LiveModel(scenario_name="fire_sale_demo")
    plain = GPUCreditModel("fire_sale_demo")
    plain.run()
    while model.running:
        model.step()
    assert model.time == model.months and model.metrics.steps[-1]["month"] == model.months
    model.step()
    assert model.time == model.months and len(model.metrics.steps) == model.months + 1
    assert pd.DataFrame(model.metrics.steps).equals(pd.DataFrame(plain.metrics.steps))  # the same model


def test_market_2026_has_real_names_and_a_one_click_default() -> None:
    """market_2026 in the visualiser: real names on the nodes; pick TeraWulf, one click defaults it, and
    the cascade panel shows the tree: its two lender groups (hand-checked in test_systemic_ranking)."""
    assert "market_2026" in viz_model.scenario_names()
    model = viz_model.LiveModel(scenario_name="market_2026")
    assert model.labels[model.names.index("coreweave")] == "CoreWeave"
    svg = viz_panels.figure_svg(viz_network.draw_network(model)).decode()
    assert "CoreWeave" in svg and "TeraWulf noteholders" in svg
    rc = render(viz(model))
    select = rc.find(v.Select, label="Borrower").widget
    assert select.items[0] == "CoreWeave"  # the largest fleet first
    assert "TeraWulf" in select.items and "TeraWulf noteholders" not in select.items  # borrowers only
    select.v_model = "TeraWulf"
    button(rc, "Default this borrower").click()
    assert model.ledger.defaulted[model.names.index("terawulf")]
    text = page_text(rc)
    assert "started by <strong>TeraWulf</strong>" in text and "caused <strong>2</strong> further" in text
    assert "<strong>TeraWulf noteholders</strong> (bond_investors) &lt;- insolvency" in text
    alerts = alerts_text(rc)
    assert "Defaulted TeraWulf" in alerts and "2 further default(s)" in alerts
    assert "TeraWulf noteholders $2.55B, TeraWulf convert holders $1.78B" in alerts
    assert "TeraWulf" not in rc.find(v.Select, label="Borrower").widget.items  # defaulted: no longer offered


def test_default_this_borrower_refuses_what_it_cannot_do() -> None:
    model = viz_model.LiveModel(scenario_name="market_2026")
    assert default_borrower(model, "Nobody") == "No agent named 'Nobody'."
    assert default_borrower(model, "Macquarie") == "Macquarie is not a borrower."
    default_borrower(model, "Lambda")
    assert default_borrower(model, "Lambda") == "Lambda has already defaulted."
    # the LTV and tenor sliders set a generated network's terms: on an explicit one they are ignored, with a notice
    moved = viz_model.LiveModel(scenario_name="market_2026", ltv_covenant=1.0, loan_tenor_months=36)
    assert "ignored here" in moved.notice and moved.config.generated is None


def test_a_count_is_the_attribution_of_the_run_summary() -> None:
    """With no shock from the page, the cascade panel's count of a default is ``model.attribution``'s
    (summary.json's): baseline seed 5, where neocloud-1's default fells bank-0 in month 55 (since the session-11 baseline)."""
    live = viz_model.LiveModel(seed="5")
    while live.running:
        live.step()
    plain = GPUCreditModel("baseline", seed=5)
    plain.run()
    name = "neocloud-1"
    expected = compare(name, default_months(plain), default_months(counterfactual(plain, name)))
    assert expected["extra_defaults"]  # a default with a counted effect
    shares: list[float] = []
    counted = viz_attribution.counted_effect(viz_attribution.recipe_of(live), name, shares.append)
    assert counted == expected
    assert len(shares) == 2 * live.months and shares == sorted(shares) and shares[-1] == 1.0  # progress


def test_a_count_replays_the_shocks_applied_from_the_page() -> None:
    """The page's shocks are part of its run: the replay a count starts from, with the same shocks at
    the same months, is the page's run to the byte (drawing the figures disturbs nothing)."""
    live = viz_model.LiveModel()
    live.step()
    live.shock("default_largest_miner")
    live.step()
    live.step()
    live.shock("crash_btc")
    live.shock("launch_next_generation")
    default_borrower(live, live.labels[live_borrowers(live)[0]])
    viz_network.draw_network(live)
    live.charts.draw(live)
    recipe = viz_attribution.recipe_of(live)
    assert [(i.month, i.action) for i in recipe.interventions] == [
        (1, "default"),
        (3, "crash_btc"),
        (3, "launch_next_generation"),
        (3, "default"),
    ]
    twin = viz_attribution.replay(recipe)
    while live.running:
        live.step()
    assert pd.DataFrame(twin.metrics.steps).equals(pd.DataFrame(live.metrics.steps))
    assert twin.metrics.defaults_table().equals(live.metrics.defaults_table())
    without_shocks = viz_attribution.replay(recipe._replace(interventions=()))
    assert not without_shocks.metrics.defaults_table().equals(live.metrics.defaults_table())


def test_the_cascade_panel_counts_a_default_on_demand(monkeypatch) -> None:
    """Pick a defaulted borrower, press "Count what it did": a progress bar while the two runs go (in a
    thread: Step still works), then the counted effect with months, also marked on the tree; kept
    while the page only steps, dropped by the next shock (the run it counted has changed)."""
    model = viz_model.LiveModel(scenario_name="market_2026")
    rc = render(viz(model))
    assert not rc.find(v.Btn, children=["Count what it did"])  # no default yet: nothing to count
    rc.find(v.Select, label="Borrower").widget.v_model = "TeraWulf"
    button(rc, "Default this borrower").click()
    assert rc.find(v.Select, label="Default").widget.v_model == "TeraWulf"

    started, release = threading.Event(), threading.Event()
    real = viz_attribution.counted_effect

    def held(*args, **kwargs):
        started.set()
        release.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(viz_attribution, "counted_effect", held)
    button(rc, "Count what it did").click()
    assert started.wait(60)
    wait_until(lambda: len(rc.find(v.ProgressLinear)) == 1)
    rc.find(v.Html, tag="span", children=[viz_attribution.BUSY_TEXT]).assert_single()
    assert button(rc, "Count what it did").disabled
    button(rc, "Step").click()  # the page keeps working while it counts
    assert model.time == 1
    release.set()
    wait_until(lambda: "extra default(s)" in page_text(rc))
    assert not rc.find(v.ProgressLinear)
    counted = model.attributions[("terawulf", 1)]
    labels = dict(zip(model.names, model.labels, strict=True))
    text = page_text(rc)
    assert f"<strong>{len(counted['extra_defaults'])} extra default(s)</strong>: " in text
    for row in counted["extra_defaults"]:
        assert f"{labels[row['name']]} (month {row['month']})" in text
    # its two lender groups fail with it (hand-checked in test_systemic_ranking) and not without it
    assert {row["name"] for row in counted["extra_defaults"]} == {
        "terawulf-noteholders",
        "terawulf-convert-holders",
    }
    assert "The cause tree credits TeraWulf with 2 further default(s) so far." in text
    assert "first default · month 0, round 0 · counted: 2 extra, 0 brought forward" in text
    assert button(rc, "Count what it did").disabled  # counted already
    button(rc, "Step").click()
    assert "counted: 2 extra" in page_text(rc)  # stepping follows the counted run
    button(rc, "BTC falls 50 %").click()  # a new shock: another run, to be counted anew
    assert "extra default(s)" not in page_text(rc) and not button(rc, "Count what it did").disabled


def test_a_failed_count_says_so(monkeypatch) -> None:
    model = viz_model.LiveModel(scenario_name="market_2026")
    default_borrower(model, "TeraWulf")
    rc = render(viz(model))

    def fails(*args, **kwargs):
        raise ValueError("no such run")

    monkeypatch.setattr(viz_attribution, "counted_effect", fails)
    button(rc, "Count what it did").click()
    wait_until(lambda: "The count failed: no such run" in alerts_text(rc))
    assert not button(rc, "Count what it did").disabled  # it can be tried again
