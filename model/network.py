"""The lending network: built from a scenario's explicit agents and loans, or generated.

The graph is a ``networkx.MultiDiGraph`` on integer agent ids (names are node attributes). A loan is an
edge creditor -> debtor keyed by its loan id, carrying its fixed terms; hosting (miner -> neo-cloud)
and tenancy (neo-cloud -> tenant) ties are edges keyed ``"hosting"`` and ``"tenancy"``. Balances that
change every month live in the :class:`~core.ledger.Ledger` under the same ids.

Generators (each part draws from its own stream, ``core.streams``; networkx is seeded from the interbank one):
- ``erdos_renyi``: every borrower-lender pair is linked independently (bipartite G(n, m, p)).
- ``scale_free``: lenders are chosen with probability proportional to a Zipf weight, so a few lenders
  hold most loans; the interbank layer is a seeded scale-free digraph.
- ``core_periphery``: every borrower has one loan from a core lender, the rest from the periphery; the
  interbank layer is dense in the core and links the periphery to it.
``lender_concentration`` is the Zipf exponent of lenders' market shares (0 = equal shares).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import networkx as nx
import numpy as np

from core.config import BorrowerClass, ExplicitNetwork, GeneratedNetwork, Scenario, month_index
from core.ledger import (
    AMORTISATIONS,
    COLLATERALS,
    INSTRUMENTS,
    KIND_BY_NAME,
    KIND_NAMES,
    LENDER_KINDS,
    LTV_BASES,
    Guarantees,
    Kind,
    Ledger,
    LoanBook,
)
from core.streams import Streams
from core.world import HOURS_PER_MONTH, MarketWorld

LENDER_INSTRUMENT = {
    Kind.BANK: "term_loan",
    Kind.CREDIT_FUND: "term_loan",
    Kind.ABS_TRUST: "asset_backed",
    Kind.BOND_INVESTORS: "high_yield",
}
INTERBANK_TENOR_MONTHS = 12
NO_LIMIT = np.inf  # a covenant or margin call that is absent: no finite LTV breaches it


@dataclass
class Market:
    """What the network builder hands the model: balances, topology (built on demand) and agent names."""

    ledger: Ledger
    topology: Topology
    names: list[str]

    @property
    def graph(self) -> nx.MultiDiGraph:
        return self.topology.graph()


class Topology:
    """The topology view of a freshly built market, built only when first asked for.

    The run never reads the graph (the ledger holds every balance), and at 100k borrowers building it
    is most of the build time. The columns it is drawn from are copied when the market is built, so
    the graph is the same whenever it is first built, however far the run has gone. Picklable."""

    COLUMNS = (
        "creditor",
        "debtor",
        "original_principal",
        "spread",
        "tenor",
        "amortisation",
        "seniority",
        "instrument",
        "collateral",
        "dscr_min",
        "ltv_max",
    )

    def __init__(self, ledger: Ledger, names: list[str]) -> None:
        self.names = list(names)
        self.n_generations = ledger.n_generations
        self.kind = ledger.kind.copy()
        self.hosting = (ledger.hosting_host.copy(), ledger.hosting_tenant.copy())
        self.contract_share = ledger.contract_share.copy()
        self.tenant_subig = ledger.tenant_subig.copy()
        self.loans = {name: getattr(ledger.loans, name).copy() for name in self.COLUMNS}
        self._graph: nx.MultiDiGraph | None = None

    def graph(self) -> nx.MultiDiGraph:
        if self._graph is None:
            view = Ledger(self.kind.size, self.n_generations)
            view.kind, (view.hosting_host, view.hosting_tenant) = self.kind, self.hosting
            view.contract_share, view.tenant_subig = self.contract_share, self.tenant_subig
            view.loans = SimpleNamespace(**self.loans)
            graph = _graph(view, self.names)
            _add_tenants(graph, view)
            self._graph = graph
        return self._graph


def build_market(scenario: Scenario, world: MarketWorld, streams: Streams) -> Market:
    if scenario.explicit is not None:
        return _build_explicit(scenario, world)
    return _build_generated(scenario, world, streams)


def monthly_debt_service(principal, spread, tenor, age, amortisation, base_rate) -> np.ndarray:
    """Scheduled interest plus amortisation for one month, per loan (before any maturity balloon)."""
    rate = (base_rate + spread) / 12.0
    interest = principal * rate
    remaining = np.maximum(tenor - age, 1)
    linear = principal / remaining
    with np.errstate(divide="ignore", invalid="ignore"):
        annuity_payment = np.where(
            rate > 0, principal * rate / (1.0 - (1.0 + rate) ** (-remaining)), principal / remaining
        )
    annuity = annuity_payment - interest
    amort = np.where(
        amortisation == AMORTISATIONS.index("linear"),
        linear,
        np.where(amortisation == AMORTISATIONS.index("annuity"), annuity, 0.0),
    )
    return interest + np.minimum(amort, principal)


def _graph(ledger: Ledger, names: list[str]) -> nx.MultiDiGraph:
    """The topology view: nodes with names and kinds, loans keyed by loan id with their fixed terms."""
    graph = nx.MultiDiGraph()
    kind_names = {k: KIND_NAMES[Kind(k)] for k in np.unique(ledger.kind).tolist()}
    graph.add_nodes_from(
        (i, {"name": names[i], "kind": kind_names[k]}) for i, k in enumerate(ledger.kind.tolist())
    )
    loans = ledger.loans
    # columns as Python lists once (not one numpy scalar per loan and field); add_edge per loan is
    # the cheapest public way into a MultiDiGraph (add_edges_from re-reads each edge through views)
    columns = zip(
        loans.creditor.tolist(),
        loans.debtor.tolist(),
        loans.original_principal.tolist(),
        loans.spread.tolist(),
        loans.tenor.tolist(),
        [AMORTISATIONS[a] for a in loans.amortisation.tolist()],
        loans.seniority.tolist(),
        [INSTRUMENTS[x] for x in loans.instrument.tolist()],
        [COLLATERALS[c] for c in loans.collateral.tolist()],
        loans.dscr_min.tolist(),
        loans.ltv_max.tolist(),
        strict=True,
    )
    add_edge = graph.add_edge
    for i, (u, v, principal, spread, tenor, amort, seniority, instrument, collateral, dscr, ltv) in enumerate(
        columns
    ):
        add_edge(
            u,
            v,
            i,
            tie="loan",
            principal=float(principal),
            spread=float(spread),
            tenor=int(tenor),
            amortisation=amort,
            seniority=int(seniority),
            instrument=instrument,
            collateral=collateral,
            dscr_min=float(dscr),
            ltv_max=float(ltv),
        )
    graph.add_edges_from(
        (h, i, "hosting", {"tie": "hosting"})
        for h, i in zip(ledger.hosting_host.tolist(), ledger.hosting_tenant.tolist(), strict=True)
    )
    return graph


def _add_tenants(graph: nx.MultiDiGraph, ledger: Ledger) -> None:
    """Tenancy ties: each neo-cloud with contracts gets a tenant node (outside the market)."""
    with_contracts = np.flatnonzero(ledger.contract_share > 0)
    subig = ledger.tenant_subig[with_contracts].tolist()
    for i, sub in zip(with_contracts.tolist(), subig, strict=True):
        tenant = f"tenant:{i}"
        graph.add_node(tenant, name=tenant, kind="tenant", grade="subig" if sub else "ig")
        graph.add_edge(i, tenant, key="tenancy", tie="tenancy")


def _finish_lenders(ledger: Ledger, capital_ratio: np.ndarray | None) -> None:
    """Size lenders' outside liabilities so each starts with the given equity / total assets
    (``None``: keep the liabilities the scenario gave), and remember credit funds' starting equity as
    their peak (their investors redeem after losses from it; no other lender uses a peak)."""
    funds = ledger.of_kind(Kind.CREDIT_FUND)
    if capital_ratio is None and not funds.any():
        return  # no liabilities to size and no peak to remember
    assets = ledger.cash + ledger.loan_assets() + ledger.external_assets
    owed = ledger.debt()
    if capital_ratio is not None:
        target = np.maximum(assets * (1.0 - capital_ratio) - owed, 0.0)
        ledger.external_liabilities = np.where(
            ledger.of_kind(*LENDER_KINDS), target, ledger.external_liabilities
        )
    ledger.peak_equity = np.where(funds, assets - owed - ledger.external_liabilities, 0.0)


# --- explicit networks ---------------------------------------------------------------------------


def _build_explicit(scenario: Scenario, world: MarketWorld) -> Market:
    net: ExplicitNetwork = scenario.explicit
    gens = world.generations
    buyers = _buyer_rows(scenario)
    n = len(net.agents) + len(buyers)
    ledger = Ledger(n, len(gens))
    index = {a.id: i for i, a in enumerate(net.agents)}
    names = [a.id for a in net.agents] + [name for name, _ in buyers]
    for i, a in enumerate(net.agents):
        ledger.kind[i] = KIND_BY_NAME[a.type]
        ledger.cash[i] = a.cash
        for gname, units in a.fleet.items():
            ledger.gpus[i, gens.index(gname)] = units
        if a.purchase_month is None:  # bought at each generation's launch
            ledger.end_of_life[i] = gens.launch + gens.life_months
        else:
            bought = month_index(a.purchase_month) - month_index(scenario.world.start)
            ledger.end_of_life[i] = end_of_life(world, np.array([bought]))[0]
        ledger.btc[i] = a.btc
        ledger.hashrate_ph[i] = a.hashrate_ph
        ledger.mining_efficiency[i] = a.mining_efficiency_j_per_th
        ledger.equity_capacity[i] = a.equity_capacity
        ledger.contract_share[i] = a.contract_share
        ledger.contract_rent[i] = a.contract_rent_per_hour
        ledger.contract_end[i] = a.contract_months
        ledger.tenant_subig[i] = a.tenant_grade == "subig"
        ledger.ltv_basis[i] = LTV_BASES.index(a.ltv_basis)
        ledger.external_assets[i] = a.external_assets
        ledger.external_liabilities[i] = a.external_liabilities
        ledger.lease_rent[i] = a.lease_rent_per_month
    ledger.kind[len(net.agents) :] = Kind.BUYER
    ledger.set_hosting(
        [index[h.host] for h in net.hosting],
        [index[h.tenant] for h in net.hosting],
        [h.share for h in net.hosting],
    )
    ledger.guarantees = Guarantees(
        [g.guarantor for g in net.guarantees],
        [index[g.obligor] for g in net.guarantees],
        [g.covers == "hosting" for g in net.guarantees],
        [g.cap for g in net.guarantees],
    )
    loans = net.loans
    ledger.loans = LoanBook(
        creditor=[index[x.creditor] for x in loans],
        debtor=[index[x.debtor] for x in loans],
        principal=[x.principal for x in loans],
        spread=[x.spread for x in loans],
        tenor=[x.tenor_months for x in loans],
        age=[x.age_months for x in loans],
        amortisation=[AMORTISATIONS.index(x.amortisation) for x in loans],
        seniority=[x.seniority for x in loans],
        instrument=[INSTRUMENTS.index(x.instrument) for x in loans],
        collateral=[COLLATERALS.index(x.collateral) for x in loans],
        dscr_min=[x.dscr_min for x in loans],
        ltv_max=[NO_LIMIT if x.ltv_max is None else x.ltv_max for x in loans],
        margin_call_ltv=[NO_LIMIT if x.margin_call_ltv is None else x.margin_call_ltv for x in loans],
        exposure_at_default=np.zeros(len(loans)),
        recovered=np.zeros(len(loans)),
        repaid=np.zeros(len(loans)),
        active=np.ones(len(loans), dtype=bool),
    )
    _finish_lenders(ledger, None)
    return Market(ledger, Topology(ledger, names), names)


def _buyer_rows(scenario: Scenario) -> list[tuple[str, int]]:
    """One hardware buyer agent per unit of each buyer class's count: (name, class index)."""
    rows = [(f"{b.name}-{j}", k) for k, b in enumerate(scenario.buyers) for j in range(b.count)]
    if scenario.policy.last_resort_buys:
        rows.append(("buyer-of-last-resort", -1))
    return rows


# --- generated networks --------------------------------------------------------------------------


def _zipf_weights(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Market shares proportional to rank^-exponent, ranks in random order."""
    w = np.arange(1, n + 1, dtype=float) ** (-exponent)
    return rng.permutation(w / w.sum())


def _choose_lenders(
    net: GeneratedNetwork, n_borrowers: int, lender_kinds: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(borrower, lender) pairs of borrower loans, by topology. Lender indices are 0-based among lenders."""
    n_l = lender_kinds.size
    k = min(net.loans_per_borrower, n_l)
    weights = _zipf_weights(n_l, net.lender_concentration, rng)
    if net.topology == "erdos_renyi":
        degree = np.maximum(rng.binomial(n_l, k / n_l, size=n_borrowers), 1)
        weights = np.full(n_l, 1.0 / n_l)
    else:
        degree = np.minimum(1 + rng.poisson(k - 1.0, size=n_borrowers), n_l)
    if net.topology == "core_periphery":
        n_core = max(1, round(net.core_share * n_l))
        core, periphery = np.arange(n_core), np.arange(n_core, n_l)
        first = rng.choice(core, size=n_borrowers, p=weights[core] / weights[core].sum())
        pairs_b, pairs_l = [np.arange(n_borrowers)], [first]
        rest = np.minimum(degree - 1, periphery.size)
        if periphery.size and rest.sum():
            b = np.repeat(np.arange(n_borrowers), rest)
            pairs_b.append(b)
            pairs_l.append(
                rng.choice(periphery, size=b.size, p=weights[periphery] / weights[periphery].sum())
            )
        b, lender = np.concatenate(pairs_b), np.concatenate(pairs_l)
    else:
        b = np.repeat(np.arange(n_borrowers), degree)
        lender = rng.choice(n_l, size=b.size, p=weights)
    # one loan per (borrower, lender) pair: duplicates merge into one
    pair = np.unique(b * n_l + lender)
    return pair // n_l, pair % n_l


def _interbank_edges(net: GeneratedNetwork, n_l: int, rng: np.random.Generator) -> np.ndarray:
    """Lender-to-lender ties as sorted (creditor, debtor) rows; networkx is seeded from the interbank
    stream (``rng``)."""
    seed = int(rng.integers(2**31))
    if n_l < 2 or net.interbank_density == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if net.topology == "scale_free":
        multi = nx.scale_free_graph(n_l, seed=seed)
        edges = sorted({(u, v) for u, v in multi.edges() if u != v})
        keep_probability = min(1.0, net.interbank_density * n_l * (n_l - 1) / max(1, len(edges)))
        keep = rng.random(len(edges)) < keep_probability
        return _sorted_edges([e for e, k in zip(edges, keep, strict=True) if k], n_l)
    if net.topology == "core_periphery":
        # the random graph, plus a complete core, less periphery-periphery ties (on arrays: the core
        # alone has n_core^2 ties)
        n_core = max(1, round(net.core_share * n_l))
        graph = nx.gnp_random_graph(n_l, net.interbank_density, seed=seed, directed=True)
        edges = np.array(list(graph.edges()), dtype=np.int64).reshape(-1, 2)
        core = np.arange(n_core, dtype=np.int64)
        u, v = np.repeat(core, n_core), np.tile(core, n_core)
        codes = np.concatenate([edges[:, 0] * n_l + edges[:, 1], (u * n_l + v)[u != v]])
        codes = np.unique(codes)
        u, v = codes // n_l, codes % n_l
        keep = (u < n_core) | (v < n_core)
        return np.stack([u[keep], v[keep]], axis=1)
    graph = nx.gnp_random_graph(n_l, net.interbank_density, seed=seed, directed=True)
    return _sorted_edges(list(graph.edges()), n_l)


def _sorted_edges(edges: list[tuple[int, int]], n_l: int) -> np.ndarray:
    """Distinct (u, v) rows in lexicographic order."""
    arr = np.array(edges, dtype=np.int64).reshape(-1, 2)
    codes = np.unique(arr[:, 0] * n_l + arr[:, 1])
    return np.stack([codes // n_l, codes % n_l], axis=1)


def _spread_draw(spread: np.ndarray | int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Whole months drawn uniformly from 0..spread (per row); no draw at all when every spread is 0, so
    a scenario without spreads keeps its random stream."""
    spread = np.broadcast_to(np.asarray(spread, dtype=np.int64), (size,))
    if not spread.any():
        return np.zeros(size, dtype=np.int64)
    return np.floor(rng.random(size) * (spread + 1)).astype(np.int64)


def _borrowers(
    cls: BorrowerClass, kind: Kind, scenario: Scenario, world: MarketWorld, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    gens = world.generations
    n = cls.count
    fleet = np.maximum(
        np.round(cls.fleet_gpus_median * np.exp(cls.fleet_gpus_sigma * rng.standard_normal(n))), 1.0
    )
    mix = np.array([cls.generation_mix.get(name, 0.0) for name in gens.names])
    units = np.round(fleet[:, None] * mix[None, :])
    cost = units @ gens.new_price
    ltc = min(cls.loan_to_cost, scenario.policy.ltv_cap)
    # each borrower bought (and financed) its fleet in its own month; months before the start are < 0
    purchase = month_index(cls.purchase_month) - month_index(world.config.start)
    purchase = purchase + _spread_draw(cls.purchase_spread_months, n, rng)
    age = -purchase
    contract_months = cls.contract_months + _spread_draw(cls.contract_spread_months, n, rng)
    rent_at_start = world.rent_per_perf_hour
    return {
        "kind": np.full(n, kind),
        "units": units,
        "debt": ltc * cost,
        "age": age,
        "end_of_life": end_of_life(world, purchase),
        "hashrate_ph": cls.hashrate_ph_median * np.exp(0.5 * rng.standard_normal(n))
        if kind == Kind.MINER
        else np.zeros(n),
        "contract_share": np.full(n, cls.contract_share),
        "contract_rent": np.full(n, rent_at_start * (1.0 + cls.contract_premium)),
        "contract_end": np.maximum(contract_months - age, 0),
        "tenant_subig": rng.random(n) < cls.subinvestment_grade_tenants,
    }


def end_of_life(world: MarketWorld, purchase: np.ndarray) -> np.ndarray:
    """The month (from the start) each holder's GPUs of each generation reach the end of their physical
    life: physical life counts from the purchase month (``purchase``, one per holder), never from before
    the generation's launch."""
    gens = world.generations
    bought = np.maximum(np.asarray(purchase, dtype=float)[:, None], gens.launch[None, :])
    return bought + gens.life_months[None, :]


def _build_generated(scenario: Scenario, world: MarketWorld, streams: Streams) -> Market:
    """Each part of the market draws from its own stream (``core.streams``): a change to one part
    (a class's count, the hosting share, the topology) leaves the others' draws as they were."""
    net: GeneratedNetwork = scenario.generated
    gens = world.generations
    miners = _borrowers(net.miners, Kind.MINER, scenario, world, streams["network.miner"])
    neoclouds = _borrowers(net.neoclouds, Kind.NEOCLOUD, scenario, world, streams["network.neocloud"])
    lender_kinds = np.concatenate(
        [
            np.full(c, k)
            for k, c in (
                (Kind.BANK, net.banks),
                (Kind.CREDIT_FUND, net.credit_funds),
                (Kind.ABS_TRUST, net.abs_trusts),
                (Kind.BOND_INVESTORS, net.bond_investors),
            )
        ]
    ).astype(np.int8)
    buyers = _buyer_rows(scenario)
    n_m, n_n, n_l = net.miners.count, net.neoclouds.count, lender_kinds.size
    n_b = n_m + n_n
    n = n_b + n_l + len(buyers)
    ledger = Ledger(n, len(gens))
    ledger.kind[:n_m] = Kind.MINER
    ledger.kind[n_m:n_b] = Kind.NEOCLOUD
    ledger.kind[n_b : n_b + n_l] = lender_kinds
    ledger.kind[n_b + n_l :] = Kind.BUYER
    names = (
        [f"miner-{i}" for i in range(n_m)]
        + [f"neocloud-{i}" for i in range(n_n)]
        + [f"{KIND_NAMES[Kind(k)]}-{i}" for i, k in enumerate(lender_kinds)]
        + [name for name, _ in buyers]
    )
    for key in ("hashrate_ph", "contract_share", "contract_rent", "contract_end", "tenant_subig"):
        getattr(ledger, key)[:n_b] = np.concatenate([miners[key], neoclouds[key]])
    ledger.gpus[:n_b] = np.concatenate([miners["units"], neoclouds["units"]])
    ledger.end_of_life[:n_b] = np.concatenate([miners["end_of_life"], neoclouds["end_of_life"]])
    ledger.mining_efficiency[:n_m] = net.miners.mining_efficiency_j_per_th
    # hosting: a share of miners host one neo-cloud each
    n_hosts = min(int(round(net.miners.hosting_share * n_m)), n_n)
    if n_hosts:
        hosting = streams["network.hosting"]
        hosts = hosting.choice(n_m, size=n_hosts, replace=False)
        tenants = n_m + hosting.choice(n_n, size=n_hosts, replace=False)
        ledger.set_hosting(hosts, tenants, np.ones(n_hosts))

    # borrower loans: GPU debt split over the borrower's lenders
    rng = streams["network.loans"]
    b_idx, l_idx = _choose_lenders(net, n_b, lender_kinds, rng)
    debt = np.concatenate([miners["debt"], neoclouds["debt"]])
    shares = rng.gamma(2.0, size=b_idx.size)
    shares /= np.bincount(b_idx, weights=shares, minlength=n_b)[b_idx]
    principal = debt[b_idx] * shares
    cls_of = np.where(b_idx < n_m, 0, 1)
    classes = (net.miners, net.neoclouds)
    kinds_of_lender = lender_kinds[l_idx]
    is_bond = kinds_of_lender == Kind.BOND_INVESTORS
    instrument = np.array(
        [INSTRUMENTS.index(LENDER_INSTRUMENT[Kind(k)]) for k in kinds_of_lender], dtype=np.int64
    )
    instrument = np.where(is_bond & (cls_of == 0), INSTRUMENTS.index("convertible"), instrument)

    def per_class(attr: str) -> np.ndarray:
        return np.array([getattr(c, attr) for c in classes])[cls_of]

    ltv_of_class = np.array([NO_LIMIT if c.ltv_max is None else c.ltv_max for c in classes])
    amort_of_class = np.array([AMORTISATIONS.index(c.amortisation) for c in classes])[cls_of]
    age = np.concatenate([miners["age"], neoclouds["age"]])[b_idx]
    # each loan's tenor at origination, drawn from its instrument's terms: term and asset-backed loans
    # from the class's loan tenors, bonds from its bond tenors
    bond_tenor = np.array(
        [c.loan_tenor_months if c.bond_tenor_months is None else c.bond_tenor_months for c in classes]
    )
    tenor = np.where(is_bond, bond_tenor[cls_of], per_class("loan_tenor_months"))
    tenor_spread = np.where(
        is_bond, per_class("bond_tenor_spread_months"), per_class("loan_tenor_spread_months")
    )
    tenor = tenor + _spread_draw(tenor_spread, b_idx.size, rng)
    loan_rows = {
        "creditor": n_b + l_idx,
        "debtor": b_idx,
        "principal": principal,
        "spread": per_class("spread"),
        "tenor": tenor,
        "age": age,
        "amortisation": np.where(is_bond, AMORTISATIONS.index("bullet"), amort_of_class),
        "seniority": np.where(is_bond, 2, 1),
        "instrument": instrument,
        "collateral": np.where(is_bond, COLLATERALS.index("none"), COLLATERALS.index("gpu")),
        "dscr_min": np.where(is_bond, 0.0, per_class("dscr_min")),  # bonds: incurrence, not maintenance
        "ltv_max": np.where(is_bond, NO_LIMIT, ltv_of_class[cls_of]),
        "margin_call_ltv": np.full(b_idx.size, NO_LIMIT),
    }
    # the balance outstanding today, after ``age`` months of amortisation from the original loan
    months_paid = np.minimum(loan_rows["age"], loan_rows["tenor"] - 1)
    paid_share = np.where(
        loan_rows["amortisation"] == AMORTISATIONS.index("bullet"), 0.0, months_paid / loan_rows["tenor"]
    )
    loan_rows["principal"] = principal * (1.0 - paid_share)
    original_tenor = loan_rows["tenor"]  # a refinanced loan runs its original tenor again
    loan_rows["tenor"] = loan_rows["tenor"] - months_paid
    loan_rows["age"] = np.zeros(b_idx.size, dtype=np.int64)

    # BTC: treasury sized in months of mining revenue; a margin loan against it from a bank or fund
    mining_month = ledger.hashrate_ph[:n_m] * world.hashprice() * 30.4
    ledger.btc[:n_m] = net.miners.btc_treasury_months * mining_month / world.btc_price
    margin_lenders = np.flatnonzero(np.isin(lender_kinds, (Kind.BANK, Kind.CREDIT_FUND)))
    if net.miners.btc_loan_to_value > 0 and margin_lenders.size:
        has_btc = np.flatnonzero(ledger.btc[:n_m] > 0)
        lender = n_b + streams["network.btc_margin"].choice(margin_lenders, size=has_btc.size)
        btc_rows = {
            "creditor": lender,
            "debtor": has_btc,
            "principal": net.miners.btc_loan_to_value * ledger.btc[has_btc] * world.btc_price,
            "spread": np.full(has_btc.size, net.miners.spread),
            "tenor": np.full(has_btc.size, 12),
            "age": np.zeros(has_btc.size, dtype=np.int64),
            "amortisation": np.full(has_btc.size, AMORTISATIONS.index("bullet")),
            "seniority": np.ones(has_btc.size, dtype=np.int64),
            "instrument": np.full(has_btc.size, INSTRUMENTS.index("btc_margin")),
            "collateral": np.full(has_btc.size, COLLATERALS.index("btc")),
            "dscr_min": np.zeros(has_btc.size),
            "ltv_max": np.full(has_btc.size, NO_LIMIT),
            "margin_call_ltv": np.full(has_btc.size, net.miners.btc_margin_call_ltv),
        }
        loan_rows = {k: np.concatenate([loan_rows[k], btc_rows[k]]) for k in loan_rows}

    # cash buffers and equity capacity from the scheduled debt service
    service = monthly_debt_service(
        loan_rows["principal"],
        loan_rows["spread"],
        loan_rows["tenor"],
        loan_rows["age"],
        loan_rows["amortisation"],
        world.base_rate,
    )
    monthly = np.bincount(loan_rows["debtor"], weights=service, minlength=n_b)
    borrower_debt = np.bincount(loan_rows["debtor"], weights=loan_rows["principal"], minlength=n_b)
    cash_months = np.where(np.arange(n_b) < n_m, net.miners.cash_months, net.neoclouds.cash_months)
    ledger.cash[:n_b] = cash_months * monthly
    ledger.cash_buffer_months[:n_b] = cash_months
    ledger.equity_capacity[:n_b] = (
        np.where(np.arange(n_b) < n_m, net.miners.equity_capacity, net.neoclouds.equity_capacity)
        * borrower_debt
    )
    ledger.ltv_basis[:n_b] = np.where(
        np.arange(n_b) < n_m, LTV_BASES.index(net.miners.ltv_basis), LTV_BASES.index(net.neoclouds.ltv_basis)
    )

    # interbank layer: each debtor lender owes interbank_share of its loan book, spread over its creditors
    edges = _interbank_edges(net, n_l, streams["network.interbank"])
    if edges.size and net.interbank_share > 0:
        book = np.bincount(loan_rows["creditor"] - n_b, weights=loan_rows["principal"], minlength=n_l)
        out_deg = np.bincount(edges[:, 1], minlength=n_l)
        amount = net.interbank_share * book[edges[:, 1]] / np.maximum(out_deg[edges[:, 1]], 1)
        ok = amount > 0
        m = int(ok.sum())
        ib = {
            "creditor": n_b + edges[ok, 0],
            "debtor": n_b + edges[ok, 1],
            "principal": amount[ok],
            "spread": np.full(m, 0.01),
            "tenor": np.full(m, INTERBANK_TENOR_MONTHS),
            "age": np.zeros(m, dtype=np.int64),
            "amortisation": np.full(m, AMORTISATIONS.index("bullet")),
            "seniority": np.ones(m, dtype=np.int64),
            "instrument": np.full(m, INSTRUMENTS.index("interbank")),
            "collateral": np.full(m, COLLATERALS.index("none")),
            "dscr_min": np.zeros(m),
            "ltv_max": np.full(m, NO_LIMIT),
            "margin_call_ltv": np.full(m, NO_LIMIT),
        }
        loan_rows = {k: np.concatenate([loan_rows[k], ib[k]]) for k in loan_rows}

    count = loan_rows["principal"].size
    ledger.loans = LoanBook(
        **loan_rows,
        exposure_at_default=np.zeros(count),
        recovered=np.zeros(count),
        repaid=np.zeros(count),
        active=np.ones(count, dtype=bool),
    )
    ledger.loans.rollover_tenor[: original_tenor.size] = original_tenor  # the borrowers' loans come first
    # lenders: a cash buffer of 5 % of their loan book (an assumption), then equity by type
    book = ledger.loan_assets()
    lenders = slice(n_b, n_b + n_l)
    ledger.cash[lenders] = 0.05 * book[lenders]
    ratio = np.zeros(n)
    ratio[lenders] = [net.lender_capital_ratio.get(KIND_NAMES[Kind(k)], 0.1) for k in lender_kinds]
    _finish_lenders(ledger, ratio)
    return Market(ledger, Topology(ledger, names), names)


def contract_revenue_per_gpu(world: MarketWorld, contract_rent: np.ndarray) -> np.ndarray:
    """Monthly contract revenue per GPU of each generation for each agent's contracted rent."""
    gens = world.generations
    return (
        contract_rent[:, None] * gens.performance[None, :] * HOURS_PER_MONTH * world.config.rent.utilisation
    )
