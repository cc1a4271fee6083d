"""The ledger: who holds what and who owes whom, as arrays indexed by agent id, loan id and lot id.

Every balance that changes during a run lives here, once. Mesa agents hold their ledger index and read
their state through it; the network graph holds the topology and each loan's fixed terms under the
same loan id. Mechanisms (operations, cascade, market) act on whole arrays at once, so a cascade round
is one pass over the loans whatever the number of agents.

Repossessed GPUs are kept as lots (holder, generation, units, the loan and the borrower they came
from), so sale proceeds are credited to the loan they recover and every fire sale can be traced to the
default that caused it.
"""

from __future__ import annotations

from enum import IntEnum
from functools import cache

import numpy as np

FLOW_WINDOW = 12  # months of cash flow and debt service kept for trailing DSCR tests


class Kind(IntEnum):
    MINER = 0
    NEOCLOUD = 1
    BANK = 2
    CREDIT_FUND = 3
    ABS_TRUST = 4
    BOND_INVESTORS = 5
    BUYER = 6


KIND_NAMES = {
    Kind.MINER: "miner",
    Kind.NEOCLOUD: "neocloud",
    Kind.BANK: "bank",
    Kind.CREDIT_FUND: "credit_fund",
    Kind.ABS_TRUST: "abs_trust",
    Kind.BOND_INVESTORS: "bond_investors",
    Kind.BUYER: "buyer",
}
KIND_BY_NAME = {name: kind for kind, name in KIND_NAMES.items()}
BORROWER_KINDS = (Kind.MINER, Kind.NEOCLOUD)
LENDER_KINDS = (Kind.BANK, Kind.CREDIT_FUND, Kind.ABS_TRUST, Kind.BOND_INVESTORS)


class Cause(IntEnum):
    """Why an agent defaulted; with the parent agent this makes each cascade a tree."""

    NONE = 0
    SHOCK = 1  # forced from outside (a scenario shock or the visualiser's button)
    PAYMENT = 2  # could not pay scheduled debt service
    ROLLOVER_REFUSED = 3  # a maturing loan was not refinanced and could not be repaid
    COVENANT_DSCR = 4
    COVENANT_LTV = 5  # loan-to-value at the secondary mark above the covenant
    MARGIN_CALL = 6  # BTC collateral fell and the call could not be met
    INSOLVENCY = 7  # a lender's equity fell below zero from its own losses
    COUNTERPARTY = 8  # a lender failed through losses on claims on another failed lender


CAUSE_NAMES = {c: c.name.lower() for c in Cause}

INSTRUMENTS = ("term_loan", "asset_backed", "high_yield", "convertible", "btc_margin", "interbank")
AMORTISATIONS = ("linear", "annuity", "bullet")
COLLATERALS = ("gpu", "btc", "none")
LTV_BASES = ("mark", "olv", "borrowing_base")  # what a borrower's LTV covenant values (config.LTVBasis)
MAX_CURES_PER_YEAR = 4  # the schema's bound on covenants.equity_cures_per_year (one a quarter)


class Ledger:
    """Balances of agents, loans and repossessed lots; sized once agents and loans are known."""

    def __init__(self, n_agents: int, n_generations: int, loans: LoanBook | None = None) -> None:
        n, g = n_agents, n_generations
        self.n_generations = g
        # the per-agent columns are rows of one block per type and starting value: a few allocations,
        # not fifty (a ledger is built for every draw of a validation reduction)
        zero = iter(np.zeros((16, n)))
        zero_int = iter(np.zeros((4, n), dtype=np.int64))
        unset = iter(np.full((5, n), -1, dtype=np.int64))  # no month, round or agent
        zero_small = iter(np.zeros((3, n), dtype=np.int8))
        no = iter(np.zeros((2, n), dtype=bool))
        self.kind = next(zero_small)
        self.cash = next(zero)
        self.gpus = np.zeros((n, g))  # operated fleets (borrowers) and installed units (buyers)
        # month (from the start) the holder's units of each generation reach the end of their physical
        # life, counted from their purchase; repossessed lots keep their source borrower's
        self.end_of_life = np.full((n, g), np.inf)
        self.btc = next(zero)
        self.hashrate_ph = next(zero)
        self.mining_efficiency = next(zero)  # J/TH
        self.cash_buffer_months = np.full(n, np.inf)  # borrowers pay out cash above this buffer
        self.equity_capacity = next(zero)  # USD of new equity a borrower can still raise
        self.external_assets = next(zero)  # lenders: assets outside this market (USD)
        self.external_liabilities = next(zero)  # lenders: deposits, fund investors, trust notes
        self.peak_equity = next(zero)  # credit funds: for the redemption trigger
        self.target_capital_ratio = next(zero)  # lenders: their capital ratio at the start (payouts)
        # contracts (neo-clouds): share of fleet on take-or-pay, contracted rent, end month, tenant
        self.contract_share = next(zero)
        self.contract_rent = next(zero)  # USD per H100-equivalent hour
        self.contract_end = next(zero_int)
        self.tenant_subig = next(no)
        self.tenant_alive = np.ones(n, dtype=bool)
        # fixed rent from an outside lessee (lease SPVs: buildings, not GPUs), USD a month, paid while
        # the contract runs (contract_end) and its tenant survives (tenant_alive)
        self.lease_rent = next(zero)
        # hosting ties (``set_hosting``): tie k's host miner earns share k of its tenant's hosting fee; a
        # neo-cloud with no tie is hosted by a third party. The fee each tenant paid in its last month
        # alive is what a guarantee of its hosting pays after it defaults.
        self.hosting_host = np.zeros(0, dtype=np.int64)
        self.hosting_tenant = np.zeros(0, dtype=np.int64)
        self.hosting_share = np.zeros(0)
        self.hosting_fee = next(zero)
        self.guarantees = Guarantees.empty()
        # last month's flows, and the last FLOW_WINDOW months' (``cash_flow_history``, ``service_history``)
        self.operating_cash_flow = next(zero)
        self.debt_service_due = next(zero)
        self._flow_history: tuple[np.ndarray, np.ndarray] | None = None
        self.dscr_breach_months = next(zero_int)
        # covenants as written (issue 16 part 3): what the LTV test values, the month a waiver's covenant
        # holiday ends (-1: none), waivers granted, equity cures used and the months of the latest ones
        self.ltv_basis = next(zero_small)
        self.waiver_until = next(unset)
        self.waivers = next(zero_int)
        self.equity_cures = next(zero_int)
        self._equity_cure_months: np.ndarray | None = None  # see ``equity_cure_months``
        # defaults: month, round, cause and parent make the cause tree
        self.defaulted = next(no)
        self.default_month = next(unset)
        self.default_round = next(unset)
        self.default_cause = next(zero_small)
        self.default_parent = next(unset)
        self.book_ltv_at_default = np.full(n, np.nan)  # what the books showed when it failed
        self.stress_source = next(unset)  # lenders: the default that cost them most
        self.stress_loss = next(zero)  # ... and what it cost (USD, unrecovered at repossession)
        # running totals that make the accounting identities checkable
        self.cash_in = 0.0  # cash that entered the market from outside
        self.cash_out = 0.0  # cash that left it
        self.gpus_scrapped = np.zeros(g)  # units that left the market (retired at end of life)
        self.gpus_settled = np.zeros(g)  # units bought back off-market by defaulted borrowers' owners
        self.loans = LoanBook.empty() if loans is None else loans
        self.lots = Lots.empty()
        self._aggregates: dict | None = None  # see ``caching``
        self._static: dict | None = None  # masks by kind, fixed within a ``caching`` block
        self._kind_masks: dict = {}  # masks by kind for good, once ``fix_kinds`` made ``kind`` read-only

    @property
    def n_agents(self) -> int:
        return self.kind.size

    # the wide per-month tables are allocated on first use: a ledger that only runs a cascade (the
    # validation reductions, one ledger a draw) never writes them

    @property
    def cash_flow_history(self) -> np.ndarray:
        """Operating cash flow of the last FLOW_WINDOW months (row = month mod FLOW_WINDOW), for DSCR."""
        return self._flows()[0]

    @property
    def service_history(self) -> np.ndarray:
        """Debt service due in the last FLOW_WINDOW months (row = month mod FLOW_WINDOW), for DSCR."""
        return self._flows()[1]

    def _flows(self) -> tuple[np.ndarray, np.ndarray]:
        if self._flow_history is None:
            cash_flow, service = np.zeros((2, FLOW_WINDOW, self.n_agents))
            self._flow_history = (cash_flow, service)
        return self._flow_history

    @property
    def equity_cure_months(self) -> np.ndarray:
        """The months of each borrower's latest MAX_CURES_PER_YEAR equity cures (rows; long ago: none)."""
        if self._equity_cure_months is None:
            self._equity_cure_months = np.full((MAX_CURES_PER_YEAR, self.n_agents), -(10**6), dtype=np.int64)
        return self._equity_cure_months

    def set_hosting(self, host, tenant, share) -> None:
        """The hosting ties, kept in tenant order (stable), so each host's income adds its tenants' fees
        in agent order whatever order the ties were given in."""
        order = np.argsort(np.asarray(tenant, dtype=np.int64), kind="stable")
        self.hosting_host = np.asarray(host, dtype=np.int64)[order]
        self.hosting_tenant = np.asarray(tenant, dtype=np.int64)[order]
        self.hosting_share = np.asarray(share, dtype=np.float64)[order]

    def of_kind(self, *kinds: Kind) -> np.ndarray:
        """Mask of the agents of these kinds (inside a ``caching`` block or once the kinds are fixed,
        ``fix_kinds``: shared, do not modify)."""
        if self.kind.flags.writeable:
            return self.static(kinds, lambda: _kind_table(kinds).take(self.kind))
        mask = self._kind_masks.get(kinds)
        if mask is None:
            mask = self._kind_masks[kinds] = _kind_table(kinds).take(self.kind)
            mask.flags.writeable = False
        return mask

    def fix_kinds(self, masks: dict | None = None) -> None:
        """The market is built and agents' kinds no longer change: ``kind`` becomes read-only and the
        masks by kind are kept for good (they were worked out twenty times a month). ``masks``: those
        of ledgers with the same kinds, to share with them (the validation reductions build one ledger
        a draw, all of the same kinds)."""
        self.kind.flags.writeable = False
        self._kind_masks = {} if masks is None else masks

    # --- per-agent aggregates, cached while balances do not change ------------------------------

    def caching(self) -> _CachingBlock:
        """Within this block, ``debt`` and ``loan_assets`` (and the state's lender
        equity and assets) are worked out once and reused until ``invalidate`` is called. Whoever
        changes a balance inside the block (loans, lots, cash, outside assets, marks) must call
        ``invalidate``; the cascade does so after each phase that can change one. Agents' kinds must
        not change inside the block (``of_kind`` masks are kept). Nested blocks share the outer block's
        cache. Outside any block nothing is cached. Returned arrays are shared: do not modify them."""
        return _CachingBlock(self)

    def invalidate(self) -> None:
        """Forget cached aggregates (a balance changed)."""
        if self._aggregates is not None:
            self._aggregates.clear()

    def cached(self, key: object, compute) -> np.ndarray:
        """``compute()``, remembered under ``key`` inside a ``caching`` block."""
        return _remembered(self._aggregates, key, compute)

    def static(self, key: object, compute):
        """``compute()``, remembered for the rest of the ``caching`` block: only for what no balance
        change can alter (agents' kinds, loans' fixed terms)."""
        return _remembered(self._static, key, compute)

    def debt(self, collateral: str | None = None) -> np.ndarray:
        """Outstanding principal owed by each agent (optionally only loans with that collateral)."""
        return self.cached(("debt", collateral), lambda: self._debt(collateral))

    def _debt(self, collateral: str | None) -> np.ndarray:
        loans = self.loans
        if collateral is None:
            return np.bincount(loans.debtor, weights=self._active_principal(), minlength=self.n_agents)
        mask = loans.active & (loans.collateral == COLLATERALS.index(collateral))
        return np.bincount(loans.debtor[mask], weights=loans.principal[mask], minlength=self.n_agents)

    def _active_principal(self) -> np.ndarray:
        """Principal of active loans, 0.0 for the others. A bincount over every loan with these weights
        equals one over the active loans only, bit for bit: each bin adds the same non-zero terms in
        the same order, and adding 0.0 to a sum that starts at +0.0 never changes it."""
        loans = self.loans
        return self.cached("active_principal", lambda: np.where(loans.active, loans.principal, 0.0))

    def loan_assets(self) -> np.ndarray:
        """Outstanding principal each agent is owed on performing loans."""
        return self.cached("loan_assets", self._loan_assets)

    def _loan_assets(self) -> np.ndarray:
        return np.bincount(self.loans.creditor, weights=self._active_principal(), minlength=self.n_agents)

    def total_gpus(self) -> np.ndarray:
        """Every GPU in the market, by generation: fleets, installed at buyers and in repossession."""
        in_lots = np.bincount(self.lots.generation, weights=self.lots.units, minlength=self.n_generations)
        return self.gpus.sum(axis=0) + in_lots

    def record_default(
        self, agents: np.ndarray, month: int, round_: int, cause: np.ndarray | int, parent: np.ndarray | int
    ) -> None:
        agents = np.asarray(agents, dtype=np.int64)
        self.defaulted[agents] = True
        self.default_month[agents] = month
        self.default_round[agents] = round_
        self.default_cause[agents] = cause
        self.default_parent[agents] = parent


class _CachingBlock:
    """``Ledger.caching``'s block (a class, not a generator: four blocks open a month, most nested)."""

    __slots__ = ("ledger", "outermost")

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.outermost = False

    def __enter__(self) -> None:
        ledger = self.ledger
        if ledger._aggregates is None:  # a nested block shares the outer block's cache
            self.outermost = True
            ledger._aggregates, ledger._static = {}, {}

    def __exit__(self, *exc_info: object) -> None:
        if self.outermost:
            self.ledger._aggregates = self.ledger._static = None


@cache
def _kind_table(kinds: tuple[Kind, ...]) -> np.ndarray:
    """Whether each kind is one of ``kinds``, indexed by kind: a lookup in it gives the same mask as
    ``np.isin``."""
    wanted = np.zeros(len(Kind), dtype=bool)
    wanted[list(kinds)] = True
    wanted.flags.writeable = False
    return wanted


def _frozen(values: np.ndarray) -> bool:
    """Whether no array can write into ``values``: it and every array it is a view of are read-only
    (a read-only view of a writeable array can still change)."""
    while not values.flags.writeable:
        if values.base is None:
            return True
        if not isinstance(values.base, np.ndarray):
            return False
        values = values.base
    return False


def _remembered(store: dict | None, key: object, compute):
    """``compute()`` once per key while ``store`` exists (outside a caching block, always fresh)."""
    if store is None:
        return compute()
    value = store.get(key)
    if value is None:
        value = store[key] = compute()
    return value


class LoanBook:
    """Loans as parallel arrays. Fixed terms are set at origination; balances change every month."""

    FIELDS_INT = (
        "creditor",
        "debtor",
        "tenor",
        "age",
        "amortisation",
        "seniority",
        "instrument",
        "collateral",
    )
    FIELDS_FLOAT = (
        "principal",
        "spread",
        "dscr_min",
        "ltv_max",
        "margin_call_ltv",
        "exposure_at_default",
        "recovered",
        "repaid",
    )

    BALANCES = (
        "principal",
        "age",
        "tenor",
        "exposure_at_default",
        "recovered",
        "repaid",
        "active",
    )
    """The columns that change during a run: the book owns them, so one array passed for two of them
    does not become one balance and the caller's array does not change with the book."""

    _STARTING = (("original_principal", "principal", np.float64), ("rollover_tenor", "tenor", np.int64))
    """Copies of the terms each loan starts with, the book's own (a refinanced loan runs
    ``rollover_tenor`` again): (column, the argument it copies, dtype)."""
    _COLUMNS = (
        *((name, name, np.int64) for name in FIELDS_INT),
        *((name, name, np.float64) for name in FIELDS_FLOAT),
        ("active", "active", np.bool_),
        *_STARTING,
    )
    """Every column the constructor sets: (name, the argument it comes from, dtype)."""

    OUTCOMES = {
        "default_month": -1,  # the month the loan defaulted (-1: it has not)
        "default_rate": 0.0,  # its annual rate (base rate then + spread): recoveries are discounted at it
        "recovery_pv": 0.0,  # recoveries discounted to the default month at ``default_rate``
        "workout_cost": 0.0,  # what the creditor paid to work the default out (USD, at default)
        "exposure_years": 0.0,  # interest-bearing balance x years, summed month by month (USD-years)
    }
    """Columns every book starts with at these values: what happened to each loan, for the credit
    measures (``model.metrics.loan_outcomes``). Each is allocated on first use (``__getattr__``)."""

    def __init__(self, **arrays: np.ndarray) -> None:
        # a balance (``BALANCES``, and the starting principal and tenor) is the book's own copy; one given
        # as a read-only array of its dtype, which nothing can write and so cannot change under the book,
        # is copied on its first use (``__getattr__``): a cascade of a validation reduction, one book a
        # draw, uses three of the nine
        self._to_copy: dict[str, np.ndarray] = {}
        for name, source, dtype in self._COLUMNS:
            values = arrays[source]
            if name == source and name not in self.BALANCES:  # a fixed term: shared if it can be
                setattr(self, name, np.asarray(values, dtype=dtype))
            elif isinstance(values, np.ndarray) and values.dtype == dtype and _frozen(values):
                self._to_copy[name] = values
            else:
                setattr(self, name, np.array(values, dtype=dtype))
        self.recovery_log: list[tuple[int, np.ndarray, np.ndarray]] = []  # (month, loans, amounts)
        self._by_activity: dict[str, tuple[bytes, object]] = {}  # see ``per_activity``

    def __getattr__(self, name: str) -> np.ndarray:
        """A balance given read-only (see ``__init__``), copied, or an outcome column (``OUTCOMES``) at
        its starting value, on its first use: a book whose loans do not default, recover or earn interest
        does not hold the outcome columns (a cascade of a validation reduction uses two of the five)."""
        to_copy = self.__dict__.get("_to_copy")
        if to_copy and name in to_copy:
            column = to_copy.pop(name).copy()
            setattr(self, name, column)
            return column
        if name not in LoanBook.OUTCOMES:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        start, size = LoanBook.OUTCOMES[name], self.principal.size
        column = np.full(size, start) if start else np.zeros(size, dtype=type(start))
        setattr(self, name, column)
        return column

    @classmethod
    def empty(cls) -> LoanBook:
        zeros = {name: np.zeros(0) for name in cls.FIELDS_INT + cls.FIELDS_FLOAT}
        return cls(active=np.zeros(0, dtype=bool), **zeros)

    def __len__(self) -> int:
        return self.principal.size

    def per_activity(self, key: str, compute):
        """``compute()``, kept under ``key`` until a loan's activity (``active``) changes: for what depends
        only on which loans are active and on their fixed terms (e.g. each borrower's tightest covenant),
        which changes in a few months of a run. Shared: do not modify."""
        activity = self.active.tobytes()
        kept = self._by_activity.get(key)
        if kept is None or kept[0] != activity:
            kept = self._by_activity[key] = (activity, compute())
        return kept[1]

    def rate(self, base_rate: float) -> np.ndarray:
        return base_rate + self.spread

    def default(self, ids: np.ndarray, month: int, base_rate: float, workout_cost_share: float) -> np.ndarray:
        """Loans ``ids`` default in ``month``: their principal becomes the exposure at default (EAD),
        recoveries will be discounted at the rate they carried then, and their creditors pay the
        workout cost, a share of the EAD. Returns the cost per loan (the caller moves the cash)."""
        claim = self.principal[ids]
        self.exposure_at_default[ids] += claim
        self.default_month[ids] = month
        self.default_rate[ids] = base_rate + self.spread[ids]
        cost = workout_cost_share * claim
        if workout_cost_share:  # (with none, adding 0.0 would change no cost booked so far)
            self.workout_cost[ids] += cost
        self.principal[ids] = 0.0
        self.active[ids] = False
        return cost

    def recover(self, ids: np.ndarray, amounts: np.ndarray, month: int) -> None:
        """Book recoveries on defaulted loans (``ids`` may repeat): cash as it arrives, and its value at
        the default month, discounted monthly at the loan's rate (``recovery_pv``). Nothing recovered
        (an estate without cash) books nothing: adding 0.0 would change no balance."""
        if ids.size == 0 or not np.any(amounts):
            return
        np.add.at(self.recovered, ids, amounts)
        np.add.at(self.recovery_pv, ids, amounts * self.discount(ids, month))
        self.recovery_log.append((month, ids.copy(), np.asarray(amounts, dtype=np.float64).copy()))

    def discount(self, ids: np.ndarray, month: int | float) -> np.ndarray:
        """Value at the default month of one dollar received in ``month`` (monthly compounding at the
        rate the loan carried at default, as its interest is charged)."""
        months = np.maximum(month - self.default_month[ids], 0)
        return (1.0 + self.default_rate[ids] / 12.0) ** -months


class Guarantees:
    """Guarantees by parties outside the market (a hyperscaler's backstop): when the obligor defaults,
    the guarantor pays what it guarantees (``covers_hosting``: the obligor's hosting fees to its hosts,
    month by month; else the shortfall of its loans at default) until ``cap_left`` is used up. ``paid``
    counts the guarantor's loss; its own solvency is outside the model."""

    def __init__(self, guarantor, obligor, covers_hosting, cap) -> None:
        self.guarantor = list(guarantor)
        self.obligor = np.asarray(obligor, dtype=np.int64)
        self.covers_hosting = np.asarray(covers_hosting, dtype=bool)
        self.cap_left = np.array(cap, dtype=np.float64)
        self.paid = np.zeros(self.cap_left.size)

    @classmethod
    def empty(cls) -> Guarantees:
        return cls([], [], [], [])

    def __len__(self) -> int:
        return self.cap_left.size

    def pay(self, ids: np.ndarray, due: np.ndarray) -> np.ndarray:
        """Guarantees ``ids`` pay ``due``, each at most what is left of its cap; returns what each paid."""
        paid = np.minimum(due, self.cap_left[ids])
        self.cap_left[ids] -= paid
        self.paid[ids] += paid
        return paid


class Lots:
    """Repossessed GPUs awaiting sale, one row per (defaulted loan, generation)."""

    def __init__(self, holder, generation, units, loan, source) -> None:
        self.holder = np.asarray(holder, dtype=np.int64)
        self.generation = np.asarray(generation, dtype=np.int64)
        self.units = np.asarray(units, dtype=np.float64)
        self.loan = np.asarray(loan, dtype=np.int64)
        self.source = np.asarray(source, dtype=np.int64)  # the defaulted borrower they came from
        self._by_loan: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # see ``by_loan``

    @classmethod
    def empty(cls) -> Lots:
        return cls([], [], [], [], [])

    def append(self, holder, generation, units, loan, source) -> None:
        if len(units) == 0:
            return
        self.holder = np.concatenate([self.holder, np.asarray(holder, dtype=np.int64)])
        self.generation = np.concatenate([self.generation, np.asarray(generation, dtype=np.int64)])
        self.units = np.concatenate([self.units, np.asarray(units, dtype=np.float64)])
        self.loan = np.concatenate([self.loan, np.asarray(loan, dtype=np.int64)])
        self.source = np.concatenate([self.source, np.asarray(source, dtype=np.int64)])

    def drop_empty(self) -> None:
        keep = self.units > 1e-9
        if keep.all():
            return
        for name in ("holder", "generation", "units", "loan", "source"):
            setattr(self, name, getattr(self, name)[keep])

    def by_loan(self) -> tuple[np.ndarray, np.ndarray]:
        """The loans the lots came from (ascending) and each lot's position among them, as
        ``np.unique(loan, return_inverse=True)``; worked out again only when the lots' loans change
        (``append`` and ``drop_empty`` replace the array; nothing writes into it). Shared: do not modify."""
        if self._by_loan is None or self._by_loan[0] is not self.loan:
            self._by_loan = (self.loan, *np.unique(self.loan, return_inverse=True))
        return self._by_loan[1], self._by_loan[2]

    def __len__(self) -> int:
        return self.units.size
