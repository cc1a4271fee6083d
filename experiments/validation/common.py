"""What the validation reductions share: the reduced scenario, the engine session, and the report.

A reduction switches the AI-infrastructure features off by configuration only: no borrowers, no GPU
loans, a bank-only lending network (explicit scenario), lenders that neither sell nor refuse while calm.
It then runs the model's own engine: the ledger, ``model.cascade.run_cascade`` (covenants -> defaults ->
repossession -> lender clearing -> offers -> secondary market -> re-mark) and ``core.clearing``.

Building a full :class:`~model.model.GPUCreditModel` goes through pydantic validation of every agent and
loan and one Mesa agent per row (the networkx graph is built only on first use): about 0.1 s for 1,000
banks. Thousands of network draws therefore use :class:`EngineSession`, which builds the same :class:`~core.ledger.Ledger` and
:class:`~model.state.MarketState` from arrays and calls the same ``run_cascade`` that
``GPUCreditModel.default_agent`` calls. ``tests/test_validation.py`` checks that both paths give the same
defaults, draw for draw.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents import Lender
from core.config import Scenario, load_scenario, read_scenario_data
from core.ledger import AMORTISATIONS, COLLATERALS, INSTRUMENTS, Cause, Kind, Ledger, LoanBook
from core.secondary import BuyerBook, Marks
from core.streams import Streams
from core.world import MarketWorld
from model.cascade import CascadeReport, Failures, run_cascade
from model.network import _finish_lenders
from model.state import MarketState

RESULTS_DIR = Path(__file__).resolve().parents[2] / "results" / "validation"

# Lenders that only sell once they have failed, and then everything at any price (no scrap floor).
PASSIVE_LENDER = {
    "rollover_capital_ratio": 0.0,
    "patient_sale_share": 0.0,
    "hurried_sale_share": 1.0,
    "patient_reserve": 1.0,
}


def without_issue16_mechanisms(data: dict[str, Any]) -> dict[str, Any]:
    """Raw scenario data with the issue-16 mechanisms the baseline turns on since session 11 (covenants
    as written, OLV / borrowing-base LTV, buyers and lenders as they are, the idling option, the common
    factor's channels) back at their defaults: the plain rules that the classic reductions and the tests'
    hand calculations are written for."""
    for section in ("secondary", "covenants", "host_failure"):
        data.pop(section, None)
    data["world"].pop("idle_option_volatility", None)
    data.get("tenants", {}).pop("factor_loading", None)
    for lender in data.get("lenders", {}).values():
        lender.pop("funding_factor_loading", None)
    for kind in ("miners", "neoclouds"):
        data.get("generated", {}).get(kind, {}).pop("ltv_basis", None)
    return data


def reduced_scenario(
    agents: list[dict[str, Any]],
    loans: list[dict[str, Any]] | None = None,
    cascade: dict[str, Any] | None = None,
    generations: list[dict[str, Any]] | None = None,
    buyers: list[dict[str, Any]] | None = None,
    seed: int = 1,
) -> dict[str, Any]:
    """A scenario dict on the baseline's world with an explicit network and the given cascade rules.

    The world (rent, BTC, rates) is the baseline's and plays no part: nothing earns or pays within the
    single month in which ``default_agent`` resolves a cascade. Buyers default to none.
    """
    data = without_issue16_mechanisms(read_scenario_data("baseline"))  # the classic models' rules
    data.pop("generated", None)
    data["name"] = "validation"
    data["seed"] = seed
    data["months"] = 1
    data["explicit"] = {"agents": agents, "loans": loans or []}
    if generations is not None:
        data["world"]["generations"] = generations
    base_buyer = copy.deepcopy(data["buyers"][0])
    data["buyers"] = buyers if buyers is not None else [{**base_buyer, "count": 0}]
    data["lenders"] = {
        k: dict(PASSIVE_LENDER) for k in ("bank", "credit_fund", "abs_trust", "bond_investors")
    }
    rules = {
        "max_rounds": 1000,
        "price_channel": True,
        "scrap_value_share": 0.0,
        "mark_recovery_half_life_months": 6.0,
        "interbank_recovery": "zero",
        "default_at_zero_equity": True,
    }
    rules.update(cascade or {})
    data["cascade"] = rules
    return data


def interbank_loan(creditor: str, debtor: str, principal: float) -> dict[str, Any]:
    """An unsecured interbank loan (bullet, 12 months) of the explicit-network schema."""
    return {
        "creditor": creditor,
        "debtor": debtor,
        "principal": principal,
        "spread": 0.0,
        "tenor_months": 12,
        "amortisation": "bullet",
        "instrument": "interbank",
        "collateral": "none",
    }


class EngineSession:
    """The model's engine for many draws of one reduced scenario, without rebuilding the Mesa model.

    Holds the validated scenario, the world and the buyers' book once; ``state`` wraps a fresh ledger
    exactly as ``GPUCreditModel.__init__`` does, and ``default`` runs ``run_cascade`` exactly as
    ``GPUCreditModel.default_agent`` does.
    """

    def __init__(self, scenario: dict[str, Any] | Scenario, book: BuyerBook | None = None) -> None:
        self.config = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        self.streams = Streams(self.config.seed)
        self.world = MarketWorld(self.config.world, self.streams)
        self.fundamental = self.world.fundamental_value()
        self.n_generations = len(self.world.generations)
        self.book = book if book is not None else empty_book(self.n_generations)
        self._kinds: dict[bytes, tuple[dict[str, np.ndarray], dict]] = {}  # see ``_by_kinds``
        self._columns: dict[str, np.ndarray] = {}  # see ``interbank_book``
        self._term_size = 0  # the length of those columns
        self._unit_value: dict[int, np.ndarray] = {}  # see ``_unit_values``

    def ledger(self, n_agents: int, kind: Kind = Kind.BANK, loans: LoanBook | None = None) -> Ledger:
        ledger = Ledger(n_agents, self.n_generations, loans)
        ledger.kind[:] = kind
        return ledger

    def state(self, ledger: Ledger) -> MarketState:
        """Finish the ledger as the network builder does and wrap it as the model does."""
        params, masks = self._by_kinds(ledger.kind)
        ledger.fix_kinds(masks)
        with ledger.caching():  # loan assets and debt from one pass over the loans
            _finish_lenders(ledger, None)
        state = MarketState(
            scenario=self.config,
            ledger=ledger,
            world=self.world,
            marks=Marks(self.n_generations, self.config.cascade.mark_recovery_half_life_months),
            streams=self.streams,
            lender_params=dict(params),
            in_breach=np.zeros(ledger.n_agents, dtype=bool),
            redeeming=np.zeros(ledger.n_agents, dtype=bool),
            last_driver=np.full(self.n_generations, -1, dtype=np.int64),
        )
        state._fundamental = self.fundamental.copy()
        state._unit_value = self._unit_values(ledger.n_agents)
        return state

    def _unit_values(self, n_agents: int) -> np.ndarray:
        """``MarketState.unit_values`` for ``n_agents`` agents: no vintages here, so every holder's units
        are worth the generation's fundamental value. Worked out once per number of agents and shared,
        read-only, by every state (the model replaces the array, ``refresh_fundamental``, never writes
        into it; a write would raise, not change the next draw)."""
        values = self._unit_value.get(n_agents)
        if values is None:
            if len(self._unit_value) >= 8:
                self._unit_value.clear()
            values = self._unit_value[n_agents] = np.tile(self.fundamental, (n_agents, 1))
            values.flags.writeable = False
        return values

    def _by_kinds(self, kind: np.ndarray) -> tuple[dict[str, np.ndarray], dict]:
        """``Lender.behaviour_arrays`` and the ledger's masks by kind (``Ledger.fix_kinds``) for these
        kinds: worked out once per distinct kind vector (the draws of a reduction share it) and shared,
        read-only, by every state (nothing writes them)."""
        key = kind.tobytes()
        kept = self._kinds.get(key)
        if kept is None:
            if len(self._kinds) >= 8:
                self._kinds.clear()
            params = Lender.behaviour_arrays(kind, self.config.lenders)
            for values in params.values():
                values.flags.writeable = False
            kept = self._kinds[key] = (params, {})
        return kept

    def interbank_book(self, creditor: np.ndarray, debtor: np.ndarray, principal: np.ndarray) -> LoanBook:
        """Interbank loans as the ledger's loan book (the arrays ``_build_explicit`` would produce).

        The terms all loans share (``INTERBANK_TERMS``) are read-only slices of one column per term, kept
        for the next draw: the book copies the columns that change during a run (``LoanBook.BALANCES``)
        and the cascade never writes the others (a write would raise, not corrupt the next draw).
        """
        m = principal.size
        if self._term_size < m:
            self._term_size = 2 * m  # room for larger draws
            for name, (value, dtype) in INTERBANK_TERMS.items():
                column = self._columns[name] = np.full(self._term_size, value, dtype)
                column.flags.writeable = False
        terms = {name: column[:m] for name, column in self._columns.items()}
        return LoanBook(creditor=creditor, debtor=debtor, principal=principal, **terms)

    def default(self, state: MarketState, agent: int, buyer_index: np.ndarray | None = None) -> CascadeReport:
        """Force ``agent`` into default and resolve the cascade (as ``GPUCreditModel.default_agent``)."""
        shock = Failures(np.array([agent]), np.array([Cause.SHOCK], dtype=np.int8), np.array([-1]))
        index = np.zeros(0, dtype=np.int64) if buyer_index is None else buyer_index
        return run_cascade(state, self.book, index, shock)


INTERBANK_TERMS: dict[str, tuple[Any, type]] = {
    "spread": (0.0, np.float64),
    "tenor": (12, np.int64),
    "age": (0, np.int64),
    "amortisation": (AMORTISATIONS.index("bullet"), np.int64),
    "seniority": (1, np.int64),
    "instrument": (INSTRUMENTS.index("interbank"), np.int64),
    "collateral": (COLLATERALS.index("none"), np.int64),
    "dscr_min": (0.0, np.float64),
    "ltv_max": (np.inf, np.float64),  # no covenant
    "margin_call_ltv": (np.inf, np.float64),  # no margin call
    "exposure_at_default": (0.0, np.float64),
    "recovered": (0.0, np.float64),
    "repaid": (0.0, np.float64),
    "active": (True, np.bool_),
}
"""What every loan of ``EngineSession.interbank_book`` shares: the terms ``_build_explicit`` gives an
``interbank_loan``."""


def empty_book(n_generations: int) -> BuyerBook:
    """A buyers' book with no buyers (the reductions that sell use their own price-impact rule)."""
    return BuyerBook(
        valuation=np.zeros((0, n_generations)),
        dispersion=np.zeros(0),
        eligible=np.zeros((0, n_generations), dtype=bool),
        budget=np.zeros(0),
        capacity=np.zeros(0),
    )


# --- reporting -----------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of a validation table: the project's figure beside the reference's."""

    quantity: str
    project: float | str
    reference: float | str
    tolerance: str
    ok: bool


@dataclass
class Report:
    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    figure: Path | None = None
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    def add(self, quantity: str, project: Any, reference: Any, tolerance: str, ok: bool) -> None:
        self.rows.append(Row(quantity, project, reference, tolerance, bool(ok)))

    def table(self) -> str:
        """A plain-text table: quantity | project | reference | tolerance | ok."""

        def fmt(v: Any) -> str:
            if isinstance(v, float | np.floating):
                return f"{v:.4g}"
            return str(v)

        head = ("quantity", "project", "reference", "tolerance", "ok")
        body = [
            (r.quantity, fmt(r.project), fmt(r.reference), r.tolerance, "yes" if r.ok else "NO")
            for r in self.rows
        ]
        widths = [max(len(x[i]) for x in [head, *body]) for i in range(5)]
        lines = [f"== {self.name}: {self.title}"]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in [head, *body]]
        lines += [f"  note: {n}" for n in self.notes]
        if self.figure is not None:
            lines.append(f"  figure: {self.figure}")
        lines.append(f"  result: {'PASS' if self.ok else 'FAIL'}")
        return "\n".join(lines)


def progress(total: int, desc: str):
    """A progress bar on stderr for a long reduction (shown only on a terminal, like the sweeps')."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="cascade", disable=None, dynamic_ncols=True, file=sys.stderr)


def figure_path(out: Path | None, name: str) -> Path:
    """``out`` if it names a .png, else ``out/NAME.png`` (default folder results/validation)."""
    if out is not None and out.suffix.lower() == ".png":
        out.parent.mkdir(parents=True, exist_ok=True)
        return out
    folder = out if out is not None else RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.png"


# --- checks that can fail ----------------------------------------------------------------------------

Z_SE = 4.0
"""Standard errors a frequency may stray from its reference: with some 50 compared points per
reduction, a correct engine fails by chance with probability about 50 x 6e-5 = 0.3 %."""


def binomial_gap(
    engine: np.ndarray, reference: np.ndarray, engine_draws: int, reference_draws: int
) -> tuple[float, float]:
    """(largest |engine - reference| in units of its tolerance, largest standard error) for two
    independent binomial frequencies per point: the tolerance is ``Z_SE`` standard errors of their
    difference at the pooled frequency, floored at half a hit so that a point with no hits on either
    side still has a standard error."""
    a, b = np.asarray(engine, float), np.asarray(reference, float)
    total = engine_draws + reference_draws
    pooled = np.clip((a * engine_draws + b * reference_draws) / total, 0.5 / total, 1 - 0.5 / total)
    se = np.sqrt(pooled * (1 - pooled) * (1 / engine_draws + 1 / reference_draws))
    return float(np.max(np.abs(a - b) / (Z_SE * se))), float(se.max())


def perturbed(values: np.ndarray, axis: int = -1) -> dict[str, np.ndarray]:
    """A frequency curve (or surface) as a wrong engine would give it: scaled by 0.5 and 1.5 (capped
    at 1), and shifted one grid step either way along ``axis`` (the end value repeated)."""
    v = np.asarray(values, float)
    n = v.shape[axis]
    down = np.take(v, np.r_[1:n, n - 1], axis=axis)
    up = np.take(v, np.r_[0, 0 : n - 1], axis=axis)
    return {"x0.5": 0.5 * v, "x1.5": np.minimum(1.5 * v, 1.0), "shift -1": down, "shift +1": up}
