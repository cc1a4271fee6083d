"""The cause tree's counted attribution (issue 19, part 3): what one default did, on demand.

The cause tree credits every default to the last straw. Picked in the cascade panel, a borrower's
default is counted instead (``model.attribution``): the page's run is repeated to its horizon twice on
the same seed, as it happened and with that default neutralised (no fire sale, no clearing losses),
and the two are compared: the extra defaults it caused and the defaults it brought forward, with
months. The page's own shocks are part of its run, so each is logged (``Intervention``) and replayed
in both runs at the month it was applied; the future after now is the run with no further shocks.

Each count re-runs the model twice, so it runs only when asked, in a thread (the page keeps working,
with a progress bar), and is kept per model until the next shock changes the run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import solara
import solara.lab
from mesa.visualization.utils import update_counter

from core.config import canonical_dict
from core.ledger import BORROWER_KINDS
from experiments.viz_network import credited_defaults
from experiments.viz_panels import Rich
from model.attribution import compare, default_months
from model.model import GPUCreditModel

if TYPE_CHECKING:
    from experiments.viz_model import LiveModel

BUSY_TEXT = "Re-running the model twice (as it happened, and without this default's fire sale)..."


class Intervention(NamedTuple):
    """A shock applied from the page: at ``month`` (after that many steps), ``action`` on ``agent``."""

    month: int
    action: str  # "default", "crash_btc" or "launch_next_generation"
    agent: int = -1  # the ledger row defaulted ("default" only)


def apply_intervention(model: GPUCreditModel, intervention: Intervention) -> Any:
    """Apply a page's shock to a model now (the live one, or a replay): the model method's result."""
    if intervention.action == "default":
        return model.default_agent(intervention.agent)
    if intervention.action == "crash_btc":
        return model.crash_btc(0.5)
    if intervention.action == "launch_next_generation":
        return model.launch_next_generation()
    raise ValueError(f"unknown intervention {intervention.action!r}")


class Recipe(NamedTuple):
    """What reproduces a page's run: its resolved config, seed and the shocks applied from the page."""

    config: dict[str, Any]
    seed: int
    months: int
    interventions: tuple[Intervention, ...]


def recipe_of(model: LiveModel) -> Recipe:
    """The live model's run as it stands (read under its lock: Play may be stepping it)."""
    with model.lock:
        config = model.config
        return Recipe(canonical_dict(config), config.seed, model.months, tuple(model.interventions))


def replay(
    recipe: Recipe, neutralise: tuple[str, ...] = (), on_month: Callable[[int], None] | None = None
) -> GPUCreditModel:
    """The run to its horizon with the page's shocks at their months (and ``neutralise``'s default
    without its fire sale and clearing losses); ``on_month(month)`` after each simulated month."""
    twin = GPUCreditModel(recipe.config, seed=recipe.seed, months=recipe.months, neutralise=neutralise)
    pending = list(recipe.interventions)
    while True:
        while pending and pending[0].month == int(twin.time):
            apply_intervention(twin, pending.pop(0))
        if twin.finished:
            return twin
        twin.step()
        if on_month is not None:
            on_month(int(twin.time))


def counted_effect(
    recipe: Recipe, name: str, progress: Callable[[float], None] | None = None
) -> dict[str, Any]:
    """``model.attribution.compare`` of the run against the run without ``name``'s fire sale and
    clearing losses, both to the horizon; ``progress(share done)`` as the two runs go."""
    runs = []
    for done, neutralise in enumerate(((), (name,))):

        def report(month: int, done: int = done) -> None:
            if progress is not None:
                progress((done * recipe.months + month) / (2 * recipe.months))

        runs.append(default_months(replay(recipe, neutralise, report)))
    return compare(name, *runs)


def cache_key(name: str, shocks: int) -> tuple[str, int]:
    """A count holds until the next shock from the page (steps only follow the replayed run)."""
    return name, shocks


def count_effect(
    model: LiveModel, name: str, progress: Callable[[float], None] | None = None
) -> dict[str, Any]:
    """Count what ``name``'s default did and keep it on the model (``model.attributions``)."""
    recipe = recipe_of(model)
    counted = counted_effect(recipe, name, progress)
    model.attributions[cache_key(name, len(recipe.interventions))] = counted
    return counted


def defaulted_borrowers(model: LiveModel) -> list[int]:
    """Ledger rows of the borrowers that have defaulted, the latest first (only a borrower's default
    is neutralised: a lender's losses run through the interbank clearing)."""
    led = model.ledger
    idx = np.flatnonzero(np.isin(led.kind, BORROWER_KINDS) & led.defaulted)
    return [int(i) for i in idx[np.lexsort((idx, led.default_round[idx], led.default_month[idx]))][::-1]]


def effect_summary(counted: dict[str, Any]) -> str:
    """A tree node's short annotation: its counted effect."""
    return (
        f"counted: {len(counted['extra_defaults'])} extra, {len(counted['brought_forward'])} brought forward"
    )


def effect_markdown(model: LiveModel, counted: dict[str, Any], credited: int) -> str:
    """The counted effect with months, next to what the cause tree credits (``credited`` defaults)."""
    label = dict(zip(model.names, model.labels, strict=True))

    def listed(rows: list[dict[str, Any]], later: bool = False) -> str:
        return ", ".join(
            f"{label[r['name']]} (month {r['month']}" + (f", not {r['month_without']}" if later else "") + ")"
            for r in rows
        )

    name = label[counted["name"]]
    lines = [
        f"**What {name}'s default did** (month {counted['month']}), counted: the run repeated to month "
        f"{model.months} on the same seed without its fire sale and clearing losses (no further shocks "
        "from this page):",
        "",
        f"- **{len(counted['extra_defaults'])} extra default(s)**"
        + (f": {listed(counted['extra_defaults'])}" if counted["extra_defaults"] else ""),
        f"- **{len(counted['brought_forward'])} brought forward**"
        + (f": {listed(counted['brought_forward'], later=True)}" if counted["brought_forward"] else ""),
    ]
    if counted["delayed"]:
        lines.append(f"- delayed: {listed(counted['delayed'], later=True)}")
    if counted["only_without_it"]:
        lines.append(f"- defaults only without it: {listed(counted['only_without_it'])}")
    lines += ["", f"The cause tree credits {name} with {credited} further default(s) so far."]
    return "\n".join(lines)


def use_count(model: LiveModel) -> solara.lab.Task:
    """A hook: the task that counts a default's effect in a thread (``task(name)``), its progress in
    steps of 5 % (each update re-renders the panel)."""

    def count(name: str) -> dict[str, Any]:
        def progress(share: float) -> None:
            if share >= 1.0 or 100.0 * share >= (task.progress or 0.0) + 5.0:
                task.progress = 100.0 * share

        return count_effect(model, name, progress)

    task = solara.lab.use_task(count, dependencies=None, raise_error=False)
    return task


@solara.component
def CountedEffect(model: LiveModel, task: solara.lab.Task) -> None:
    """Pick a defaulted borrower and count what its default did (``task`` from ``use_count``)."""
    update_counter.get()
    rows = defaulted_borrowers(model)
    choices = [model.labels[i] for i in rows]
    chosen, set_chosen = solara.use_state("")
    current = chosen if chosen in choices else (choices[0] if choices else "")
    if not choices:
        return
    index = rows[choices.index(current)]
    name = model.names[index]
    counted = model.attributions.get(cache_key(name, len(model.interventions)))
    with solara.Row(style="align-items: center; gap: 8px; flex-wrap: wrap"):
        solara.Select(label="Default", values=choices, value=current, on_value=set_chosen)
        solara.Button(
            "Count what it did",
            on_click=lambda: task(name),
            color="primary",
            outlined=True,
            small=True,
            disabled=task.pending or counted is not None,
        )
    if task.pending:
        solara.ProgressLinear(task.progress if task.progress is not None else True)
        solara.Text(BUSY_TEXT)
    elif task.error:
        solara.Error(f"The count failed: {task.exception}", dense=True)
    if counted is not None:
        Rich(effect_markdown(model, counted, credited_defaults(model, index)))
