"""Build the scenario ``market_2026`` (issue 18, part 1) from the sources table of public filings.

    python scripts/build_market_2026.py            # writes experiments/scenarios/market_2026.toml
    python scripts/build_market_2026.py --check    # exits 1 if the committed file is not what it builds

The table ``data/market_2026/sources.csv`` holds one figure a row (id, entity, field, value, unit,
as_of, source, read_or_estimated, note). This script checks it (units, dates, the sum of CoreWeave's
facilities against its reported total) and turns the rows into the explicit network of the scenario:
borrowers with fleets by generation, cash and contracts; lenders named where public; their loans; the
hosting ties. Every number of the network carries a ``# rows:`` comment naming the table rows (and the
baseline values, ``baseline:<path>``) it is computed from, so each one can be traced and re-derived.

The world (generations, processes, lenders' behaviour, buyers, cascade rules, the observed history up
to the start month) is the calibrated baseline's, copied verbatim from
``experiments/scenarios/baseline.toml`` without its generated network: rebuild this scenario whenever
the baseline changes (the test ``tests/test_market_2026.py`` fails until then).

Conversions (estimates, documented in ``data/market_2026/README.md``):
- loans enter at their outstanding balance with their remaining term (age 0, tenor = months from the
  start to maturity); an amortising balance reported before the start is rolled forward by straight-line
  amortisation to maturity;
- the model charges base rate + spread: a fixed coupon or effective rate becomes spread = rate - the
  baseline's base rate, floored at 0 (low-coupon convertibles then pay the base rate: an overstatement);
- a fleet given as power is converted to GPUs with the baseline's all-in power per GPU of the generation
  it is assigned to;
- lenders hold only the loans in the table; their equity is the baseline's capital ratio by lender type
  times that book (their other assets and liabilities are not public here).
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.config import month_index  # noqa: E402
from core.world import HOURS_PER_MONTH  # noqa: E402

SOURCES = ROOT / "data" / "market_2026" / "sources.csv"
BASELINE = ROOT / "experiments" / "scenarios" / "baseline.toml"
OUTPUT = ROOT / "experiments" / "scenarios" / "market_2026.toml"

COLUMNS = ["id", "entity", "field", "value", "unit", "as_of", "source", "read_or_estimated", "note"]
STATUSES = {"read", "estimated", "not_found"}
NUMERIC_UNITS = {"USD", "GPUs", "MW", "fraction", "per_year", "months", "bp", "EH/s", "J/TH", "ratio"}
TEXT_UNITS = {"month", "name"}
MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
AS_OF = re.compile(r"^\d{4}(-(0[1-9]|1[0-2]))?$")
SUM_TOLERANCE = 1e-3  # relative: a reported total and the sum of its parts, both read in thousands
CARRYING_TOLERANCE = 0.05  # relative: face value against a rounded carrying value (discounts, costs)


class SourceError(ValueError):
    """A row of the sources table that cannot be used; the message names the row and the field."""


@dataclass(frozen=True)
class Row:
    id: str
    entity: str
    field: str
    value: str
    unit: str
    as_of: str
    source: str
    status: str
    note: str


def read_sources(path: Path | None = None) -> dict[str, Row]:
    """The table by id (default ``SOURCES``), checked: known units and statuses, dates, numbers where a
    number is due, a value exactly when the figure was found or estimated, and a source for every row."""
    path = SOURCES if path is None else path
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames != COLUMNS:
            raise SourceError(f"{path.name}: columns must be {COLUMNS}, got {reader.fieldnames}")
        rows: dict[str, Row] = {}
        for line, raw in enumerate(reader, start=2):
            if None in raw or any(v is None for v in raw.values()):
                raise SourceError(f"{path.name} line {line}: expected {len(COLUMNS)} fields (quote commas)")
            row = Row(*(raw[c].strip() for c in COLUMNS[:7]), raw["read_or_estimated"].strip(), raw["note"])
            where = f"{path.name} line {line} (id '{row.id}')"
            if not row.id or row.id in rows:
                raise SourceError(f"{where}: id must be present and unique")
            if row.status not in STATUSES:
                raise SourceError(f"{where}: read_or_estimated must be one of {sorted(STATUSES)}")
            if row.unit not in NUMERIC_UNITS | TEXT_UNITS:
                raise SourceError(
                    f"{where}: unit '{row.unit}' unknown (allowed {sorted(NUMERIC_UNITS | TEXT_UNITS)})"
                )
            if not AS_OF.match(row.as_of):
                raise SourceError(f"{where}: as_of must be YYYY or YYYY-MM, got '{row.as_of}'")
            if not row.source:
                raise SourceError(f"{where}: a source is required (for not_found: what was searched)")
            if (row.status == "not_found") != (row.value == ""):
                raise SourceError(f"{where}: a value is given exactly when the figure was found or estimated")
            if row.value and row.unit in NUMERIC_UNITS:
                try:
                    number = float(row.value)
                except ValueError:
                    raise SourceError(f"{where}: value '{row.value}' is not a number") from None
                if number < 0 or (row.unit in ("fraction", "per_year") and number > 1):
                    raise SourceError(f"{where}: value {number} out of range for unit {row.unit}")
            if row.value and row.unit == "month" and not MONTH.match(row.value):
                raise SourceError(f"{where}: a month must be YYYY-MM, got '{row.value}'")
            rows[row.id] = row
    return rows


def _lookup(data: dict[str, Any], dotted: str) -> Any:
    """A baseline value by dotted path; list items (generations) are addressed by name."""
    node: Any = data
    for key in dotted.split("."):
        node = next(x for x in node if x.get("name") == key) if isinstance(node, list) else node[key]
    return node


@dataclass
class Traced:
    """A number and the rows (and baseline paths) it is computed from."""

    value: float
    rows: tuple[str, ...]

    def __add__(self, other: Traced) -> Traced:
        return Traced(self.value + other.value, _merge(self.rows, other.rows))

    def __sub__(self, other: Traced) -> Traced:
        return Traced(self.value - other.value, _merge(self.rows, other.rows))

    def __mul__(self, other: Traced) -> Traced:
        return Traced(self.value * other.value, _merge(self.rows, other.rows))

    def __truediv__(self, other: Traced) -> Traced:
        return Traced(self.value / other.value, _merge(self.rows, other.rows))


def _merge(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return a + tuple(x for x in b if x not in a)


@dataclass
class Sources:
    """Typed access to the table and the baseline, every answer carrying its provenance."""

    rows: dict[str, Row]
    baseline: dict[str, Any]

    def num(self, row_id: str) -> Traced:
        row = self.rows[row_id]
        if row.unit not in NUMERIC_UNITS or not row.value:
            raise SourceError(f"row '{row_id}' has no number (unit {row.unit}, status {row.status})")
        return Traced(float(row.value), (row_id,))

    def month(self, row_id: str) -> tuple[str, tuple[str, ...]]:
        row = self.rows[row_id]
        if row.unit != "month" or not row.value:
            raise SourceError(f"row '{row_id}' is not a month")
        return row.value, (row_id,)

    def base(self, dotted: str) -> Traced:
        return Traced(float(_lookup(self.baseline, dotted)), (f"baseline:{dotted}",))

    @property
    def start(self) -> str:
        return self.baseline["world"]["start"]


# --- the network ---------------------------------------------------------------------------------


@dataclass
class Agent:
    id: str
    type: str
    comment: str
    cash: Traced | None = None
    fleet: dict[str, Traced] = field(default_factory=dict)
    contract_share: Traced | None = None
    contract_rent_per_hour: Traced | None = None
    contract_months: Traced | None = None
    tenant_grade: str | None = None
    hashrate_ph: Traced | None = None
    mining_efficiency_j_per_th: Traced | None = None
    external_liabilities: Traced | None = None
    lease_rent_per_month: Traced | None = None
    equity_capacity: Traced | None = None


@dataclass
class Hosting:
    host: str
    tenant: str
    share: Traced


@dataclass
class Guarantee:
    guarantor: str
    obligor: str
    covers: str
    cap: Traced
    comment: str


@dataclass
class Loan:
    creditor: str
    debtor: str
    comment: str
    principal: Traced
    spread: Traced
    tenor_months: Traced
    amortisation: str
    instrument: str
    collateral: str
    seniority: int
    dscr_min: Traced | None = None
    ltv_max: Traced | None = None


def gpus_from_power(s: Sources, mw: Traced, generation: str) -> Traced:
    """GPUs of one generation that draw ``mw`` of critical IT power at the baseline's all-in kW per GPU."""
    return mw * Traced(1000.0, ()) / s.base(f"world.generations.{generation}.power_kw")


def months_from(start: str, end: str) -> int:
    return month_index(end) - month_index(start)


def remaining_term(s: Sources, maturity_row: str) -> Traced:
    maturity, rows = s.month(maturity_row)
    months = months_from(s.start, maturity)
    if months < 1:
        raise SourceError(f"row '{maturity_row}': maturity {maturity} is not after the start {s.start}")
    return Traced(float(months), rows)


def rolled_forward(s: Sources, balance_row: str, maturity_row: str) -> Traced:
    """An amortising balance reported at ``as_of`` carried to the start by straight-line amortisation."""
    balance = s.num(balance_row)
    maturity, rows = s.month(maturity_row)
    as_of = s.rows[balance_row].as_of
    left_then = months_from(as_of, maturity)
    left_now = months_from(s.start, maturity)
    return Traced(balance.value * left_now / left_then, _merge(balance.rows, rows))


def spread_over_base(s: Sources, rate_row: str) -> Traced:
    """A fixed coupon or effective rate as a spread over the baseline's base rate, floored at 0."""
    rate = s.num(rate_row) - s.base("world.base_rate")
    return Traced(max(rate.value, 0.0), rate.rows)


def contract_rent(
    s: Sources, backlog: Traced, months: Traced, fleet: dict[str, Traced], share: Traced
) -> Traced:
    """Rent per H100-equivalent hour at which the contracted share of the fleet earns the backlog over the
    contract length (an estimate: the backlog also pays for capacity not yet delivered)."""
    return backlog / (months * Traced(HOURS_PER_MONTH, ()) * _h100_eq(s, fleet) * share)


def level_payment(principal: Traced, rate: Traced, months: Traced) -> Traced:
    """The monthly payment that repays ``principal`` in ``months`` level payments at the annual ``rate``."""
    r = rate.value / 12.0
    value = principal.value * r / (1.0 - (1.0 + r) ** -months.value)
    return Traced(value, _merge(_merge(principal.rows, rate.rows), months.rows))


def host_share(s: Sources, host_mw_row: str) -> Traced:
    """A host's share of CoreWeave's fleet: the MW it hosts over CoreWeave's active power."""
    return s.num(host_mw_row) / s.num("crwv-active-mw-2026q1")


def _h100_eq(s: Sources, fleet: dict[str, Traced]) -> Traced:
    """A fleet's rentable performance in H100-equivalents (the baseline's performance by generation)."""
    total = Traced(0.0, ())
    for gen, units in fleet.items():
        total = total + units * s.base(f"world.generations.{gen}.performance")
    return total


def build_network(s: Sources) -> Network:
    """The explicit network: which rows become which agents, fleets, contracts and loans."""
    neo = "generated.neoclouds"
    covenants = {"dscr_min": s.base(f"{neo}.dscr_min"), "ltv_max": s.base(f"{neo}.ltv_max")}

    # CoreWeave: the 2024 fleet (H100) plus the active power above its draw as GB200
    h100 = s.num("crwv-gpus-2024")
    h100_mw = h100 * s.base("world.generations.H100.power_kw") / Traced(1000.0, ())
    gb200 = gpus_from_power(s, s.num("crwv-active-mw-2026q1") - h100_mw, "GB200")
    gb200.rows = _merge(gb200.rows, ("crwv-new-generation",))
    crwv_fleet = {"H100": h100, "GB200": gb200}
    crwv_share = s.num("crwv-take-or-pay")
    crwv_months = s.num("crwv-contract-years")
    coreweave = Agent(
        "coreweave",
        "neocloud",
        "CoreWeave (CRWV): fleet from the 2024 GPU count and the 2026-03 active power",
        cash=s.num("crwv-cash-2025q1"),
        fleet=crwv_fleet,
        contract_share=crwv_share,
        contract_rent_per_hour=contract_rent(
            s, s.num("crwv-backlog-2026q1"), crwv_months, crwv_fleet, crwv_share
        ),
        contract_months=crwv_months,
        tenant_grade="ig",  # more than 60 % of the backlog with investment-grade customers (crwv-backlog-ig)
    )
    nebius_b200 = gpus_from_power(s, s.num("nbis-connected-mw"), "B200")
    nebius_b200.rows = _merge(nebius_b200.rows, ("nbis-generation",))
    nebius = Agent(
        "nebius",
        "neocloud",
        "Nebius (NBIS): fleet from the connected-power target",
        cash=s.num("nbis-cash"),
        fleet={"B200": nebius_b200},
    )
    # Lambda's fleet is not public: each GPU-backed facility implies the GPUs it financed at the baseline's
    # loan-to-cost (the 2024 facility H100s; the 2026 facility next-generation accelerators, as B200)
    loan_to_cost = s.base(f"{neo}.loan_to_cost")
    lambda_h100 = s.num("lmbd-macquarie") / (loan_to_cost * s.base("world.generations.H100.new_price"))
    lambda_b200 = s.num("lmbd-credit-facility") / (loan_to_cost * s.base("world.generations.B200.new_price"))
    lambda_b200.rows = _merge(lambda_b200.rows, ("lmbd-facility-generation", "lmbd-fleet"))
    lambda_ = Agent(
        "lambda",
        "neocloud",
        "Lambda (private): fleet implied by its GPU-backed facilities",
        fleet={"H100": lambda_h100, "B200": lambda_b200},
    )
    # IREN: its AI cloud (23,000 GPUs: 1,900 Hopper as H200, the rest Blackwell-class as B200) plus the
    # Microsoft GB300 build (200 MW as GB200); the Microsoft contract covers the build only
    iren_hopper = s.num("iren-hopper")
    iren_msft_build = gpus_from_power(s, s.num("iren-childress-mw"), "GB200")
    iren_fleet = {
        "H200": iren_hopper,
        "B200": s.num("iren-gpus-2025-09") - iren_hopper,
        "GB200": iren_msft_build,
    }
    iren_msft_share = (
        s.num("iren-msft-share") * _h100_eq(s, {"GB200": iren_msft_build}) / _h100_eq(s, iren_fleet)
    )
    iren_months = s.num("iren-msft-months")
    iren = Agent(
        "iren",
        "miner",
        "IREN: its AI cloud, the Microsoft GB300 build at Childress, and bitcoin mining",
        fleet=iren_fleet,
        contract_share=iren_msft_share,
        contract_rent_per_hour=contract_rent(s, s.num("iren-msft"), iren_months, iren_fleet, iren_msft_share),
        contract_months=iren_months,
        tenant_grade="ig",  # Microsoft
        hashrate_ph=s.num("iren-hashrate") * Traced(1000.0, ()),
        mining_efficiency_j_per_th=s.num("iren-efficiency"),
    )
    core_scientific = Agent(
        "core-scientific",
        "miner",
        "Core Scientific (CORZ): host of CoreWeave; mining at its mid-2024 hashrate (stale)",
        hashrate_ph=s.num("corz-hashrate") * Traced(1000.0, ()),
        mining_efficiency_j_per_th=s.num("corz-efficiency"),
    )
    terawulf = Agent(
        "terawulf",
        "miner",
        "TeraWulf (WULF): host of Fluidstack at Lake Mariner, and bitcoin mining",
        cash=s.num("wulf-cash-2025q3"),
        hashrate_ph=s.num("wulf-hashrate") * Traced(1000.0, ()),
    )
    fluidstack_gb200 = gpus_from_power(s, s.num("wulf-fluidstack-mw"), "GB200")
    fluidstack_gb200.rows = _merge(fluidstack_gb200.rows, ("wulf-fluidstack-generation", "fluidstack-fleet"))
    fluidstack = Agent(
        "fluidstack-lake-mariner",
        "neocloud",
        "Fluidstack at Lake Mariner (private; Google backstops its lease: no debt modelled)",
        fleet={"GB200": fluidstack_gb200},
    )
    # CoreWeave's other hosts: the Helios project of Galaxy and Applied Digital's Polaris Forge 1
    galaxy = Agent(
        "galaxy-helios",
        "miner",
        "Galaxy's Helios campus (the project alone): host of CoreWeave's first 133 MW (cash: glxy-cash)",
    )
    applied_digital = Agent(
        "applied-digital",
        "miner",
        "Applied Digital (APLD): host of CoreWeave at Polaris Forge 1 (cash: apld-cash)",
    )
    # Meta Hyperion: Beignet Investor LLC owns the campus and leases it to Meta; a lease SPV, no GPUs. The
    # rent is not public: it is taken as the notes' level debt service (meta-hyperion-rent)
    beignet_term = remaining_term(s, "meta-hyperion-maturity")
    beignet_rent = level_payment(s.num("meta-hyperion"), s.num("meta-hyperion-coupon"), beignet_term)
    beignet_rent.rows = _merge(beignet_rent.rows, ("meta-hyperion-amortisation", "meta-hyperion-rent"))
    beignet = Agent(
        "beignet-hyperion",
        "neocloud",
        "Beignet Investor LLC (Blue Owl 80 % / Meta 20 %): lease SPV of Meta's Hyperion campus, no GPUs",
        contract_months=beignet_term,
        tenant_grade="ig",  # Meta: the notes are rated A+ on its backing (meta-hyperion)
        lease_rent_per_month=beignet_rent,
        equity_capacity=s.num("meta-hyperion-equity"),
    )
    # a data-centre ABS: Compass Datacenters Issuer II, five buildings leased to one hyperscaler; its rent is
    # its net operating income, the debt yield times the notes
    compass_rent = s.num("abs-compass-ii-debt-yield") * s.num("abs-compass-ii") / Traced(12.0, ())
    compass = Agent(
        "compass-abs-ii",
        "neocloud",
        "Compass Datacenters Issuer II (ABS, Red Oak TX, one hyperscale tenant): lease SPV, no GPUs",
        contract_months=remaining_term(s, "abs-compass-ii-lease-end"),
        tenant_grade="ig",  # a hyperscaler, not named (abs-compass-ii-tenant)
        lease_rent_per_month=compass_rent,
    )
    borrowers = [
        coreweave,
        nebius,
        lambda_,
        iren,
        core_scientific,
        terawulf,
        fluidstack,
        galaxy,
        applied_digital,
        beignet,
        compass,
    ]

    lenders = {
        "blackstone-magnetar-ddtl": ("credit_fund", "DDTL 1.0/2.0 lender group (Blackstone, Magnetar)"),
        "magnetar": ("credit_fund", "Magnetar (the Magnetar loan)"),
        "ddtl4-5-syndicate": (
            "bank",
            "DDTL 4.0/5.0 syndicate (arrangers Morgan Stanley, MUFG, Goldman, JPMorgan)",
        ),
        "coreweave-revolver-banks": ("bank", "CoreWeave revolver banks (not named in the sources read)"),
        "coreweave-oem-vendors": ("credit_fund", "OEM vendor financing (schema has no vendor lender type)"),
        "coreweave-noteholders": ("bond_investors", "holders of CoreWeave's 2030 and 2031 senior notes"),
        "coreweave-convert-holders": ("bond_investors", "holders of CoreWeave's 2031 convertibles"),
        "nebius-convert-holders": ("bond_investors", "holders of Nebius's convertibles"),
        "macquarie": ("credit_fund", "Macquarie (Lambda's GPU-backed facility)"),
        "lambda-jpmorgan-syndicate": ("bank", "Lambda's senior secured facility (J.P. Morgan arranged)"),
        "iren-convert-holders": ("bond_investors", "holders of IREN's convertibles"),
        "core-scientific-convert-holders": ("bond_investors", "holders of Core Scientific's convertibles"),
        "terawulf-noteholders": ("bond_investors", "holders of TeraWulf's 7.75 % secured notes"),
        "terawulf-convert-holders": ("bond_investors", "holders of TeraWulf's convertibles"),
        "deutsche-bank-helios": ("bank", "Deutsche Bank (Galaxy Helios project financing)"),
        "applied-digital-noteholders": ("bond_investors", "holders of APLD ComputeCo's 9.25 % notes"),
        "pimco": ("bond_investors", "Pimco funds (Beignet notes)"),
        "blackrock": ("bond_investors", "BlackRock funds (Beignet notes)"),
        "beignet-other-noteholders": ("bond_investors", "other holders of the Beignet notes"),
        "compass-abs-noteholders": ("abs_trust", "holders of Compass Datacenters Issuer II's A-1 notes"),
    }

    def term_loan(creditor, debtor, comment, principal, spread, tenor, collateral="gpu", **kw) -> Loan:
        return Loan(
            creditor,
            debtor,
            comment,
            principal,
            spread,
            tenor,
            kw.pop("amortisation", "linear"),
            kw.pop("instrument", "term_loan"),
            collateral,
            kw.pop("seniority", 1),
            **kw,
        )

    def bond(
        creditor, debtor, comment, principal_row, rate_row, maturity_row, instrument, seniority=2
    ) -> Loan:
        return Loan(
            creditor,
            debtor,
            comment,
            s.num(principal_row),
            spread_over_base(s, rate_row),
            remaining_term(s, maturity_row),
            "bullet",
            instrument,
            "none",
            seniority,
        )

    amend5_maturity = s.month("crwv-ddtl2-amend5-draw")
    amend5_term = s.num("crwv-ddtl2-amend5-term")
    amend5_tenor = Traced(
        months_from(s.start, amend5_maturity[0]) + amend5_term.value,
        _merge(amend5_maturity[1], amend5_term.rows),
    )
    lambda_tenor = s.base(f"{neo}.loan_tenor_months")
    macquarie_left = Traced(
        lambda_tenor.value - months_from(s.rows["lmbd-macquarie"].as_of, s.start),
        _merge(lambda_tenor.rows, ("lmbd-macquarie", "lmbd-macquarie-maturity")),
    )
    facility_left = Traced(
        lambda_tenor.value - months_from(s.rows["lmbd-credit-facility"].as_of, s.start),
        _merge(lambda_tenor.rows, ("lmbd-credit-facility",)),
    )
    nbis_half = s.num("nbis-conv-sep2025") / Traced(2.0, ())
    loans = [
        term_loan(
            "blackstone-magnetar-ddtl",
            "coreweave",
            "DDTL 1.0",
            rolled_forward(s, "crwv-ddtl1-balance", "crwv-ddtl1-maturity"),
            spread_over_base(s, "crwv-ddtl1-rate"),
            remaining_term(s, "crwv-ddtl1-maturity"),
            **covenants,
        ),
        term_loan(
            "blackstone-magnetar-ddtl",
            "coreweave",
            "DDTL 2.0",
            rolled_forward(s, "crwv-ddtl2-balance", "crwv-ddtl2-maturity"),
            spread_over_base(s, "crwv-ddtl2-rate"),
            remaining_term(s, "crwv-ddtl2-maturity"),
            **covenants,
        ),
        term_loan(
            "blackstone-magnetar-ddtl",
            "coreweave",
            "DDTL 2.0 fifth amendment (commitment, modelled drawn)",
            s.num("crwv-ddtl2-amend5"),
            s.num("crwv-ddtl2-amend5-margin"),
            amend5_tenor,
            **covenants,
        ),
        term_loan(
            "ddtl4-5-syndicate",
            "coreweave",
            "DDTL 4.0 (commitment, modelled drawn)",
            s.num("crwv-ddtl4"),
            s.num("crwv-ddtl4-margin"),
            remaining_term(s, "crwv-ddtl4-maturity"),
            **covenants,
        ),
        term_loan(
            "ddtl4-5-syndicate",
            "coreweave",
            "DDTL 5.0 (commitment, modelled drawn)",
            s.num("crwv-ddtl5"),
            s.num("crwv-ddtl5-margin"),
            remaining_term(s, "crwv-ddtl5-maturity"),
            **covenants,
        ),
        term_loan(
            "coreweave-revolver-banks",
            "coreweave",
            "revolving credit facility (drawn 2025-06)",
            s.num("crwv-revolver"),
            spread_over_base(s, "crwv-revolver-rate"),
            remaining_term(s, "crwv-revolver-maturity"),
            collateral="none",
            amortisation="bullet",
        ),
        term_loan(
            "coreweave-oem-vendors",
            "coreweave",
            "OEM financing arrangements",
            rolled_forward(s, "crwv-oem", "crwv-oem-maturity"),
            spread_over_base(s, "crwv-oem-rate"),
            remaining_term(s, "crwv-oem-maturity"),
        ),
        term_loan(
            "magnetar",
            "coreweave",
            "Magnetar loan",
            s.num("crwv-magnetar"),
            spread_over_base(s, "crwv-magnetar-rate"),
            remaining_term(s, "crwv-magnetar-maturity"),
            collateral="none",
            amortisation="bullet",
        ),
        bond(
            "coreweave-noteholders",
            "coreweave",
            "9.25 % senior notes 2030",
            "crwv-notes2030",
            "crwv-notes2030-coupon",
            "crwv-notes2030-maturity",
            "high_yield",
        ),
        bond(
            "coreweave-noteholders",
            "coreweave",
            "9.00 % senior notes 2031",
            "crwv-notes2031",
            "crwv-notes2031-coupon",
            "crwv-notes2031-maturity",
            "high_yield",
        ),
        bond(
            "coreweave-convert-holders",
            "coreweave",
            "1.75 % convertible notes 2031",
            "crwv-conv2031",
            "crwv-conv2031-coupon",
            "crwv-conv2031-maturity",
            "convertible",
        ),
        bond(
            "nebius-convert-holders",
            "nebius",
            "2.00 % convertible notes 2029",
            "nbis-conv2029",
            "nbis-conv2029-coupon",
            "nbis-conv2029-maturity",
            "convertible",
        ),
        bond(
            "nebius-convert-holders",
            "nebius",
            "3.00 % convertible notes 2031",
            "nbis-conv2031",
            "nbis-conv2031-coupon",
            "nbis-conv2031-maturity",
            "convertible",
        ),
        Loan(
            "nebius-convert-holders",
            "nebius",
            "1.00 % convertible notes 2030 (half of the Sep 2025 total)",
            nbis_half,
            spread_over_base(s, "nbis-conv2030-coupon"),
            remaining_term(s, "nbis-conv2030-maturity"),
            "bullet",
            "convertible",
            "none",
            2,
        ),
        Loan(
            "nebius-convert-holders",
            "nebius",
            "2.75 % convertible notes 2032 (half of the Sep 2025 total)",
            nbis_half,
            spread_over_base(s, "nbis-conv2032-coupon"),
            remaining_term(s, "nbis-conv2032-maturity"),
            "bullet",
            "convertible",
            "none",
            2,
        ),
        term_loan(
            "macquarie",
            "lambda",
            "GPU-backed facility (Apr 2024; balance and terms not found)",
            s.num("lmbd-macquarie"),
            s.base(f"{neo}.spread"),
            macquarie_left,
            amortisation=s.baseline["generated"]["neoclouds"]["amortisation"],
            instrument="asset_backed",
            **covenants,
        ),
        term_loan(
            "lambda-jpmorgan-syndicate",
            "lambda",
            "senior secured credit facility (May 2026, modelled drawn)",
            s.num("lmbd-credit-facility"),
            s.base(f"{neo}.spread"),
            facility_left,
            amortisation=s.baseline["generated"]["neoclouds"]["amortisation"],
            **covenants,
        ),
        bond(
            "iren-convert-holders",
            "iren",
            "3.50 % convertible notes 2029",
            "iren-conv2029",
            "iren-conv2029-coupon",
            "iren-conv2029-maturity",
            "convertible",
        ),
        bond(
            "iren-convert-holders",
            "iren",
            "0.00 % convertible notes 2031",
            "iren-conv2031",
            "iren-conv2031-coupon",
            "iren-conv2031-maturity",
            "convertible",
        ),
        bond(
            "iren-convert-holders",
            "iren",
            "0.25 % convertible notes 2032 (Dec 2025)",
            "iren-conv2032",
            "iren-conv2032-coupon",
            "iren-conv2032-maturity",
            "convertible",
        ),
        bond(
            "iren-convert-holders",
            "iren",
            "1.00 % convertible notes 2033 (Dec 2025)",
            "iren-conv2033-dec",
            "iren-conv2033-dec-coupon",
            "iren-conv2033-dec-maturity",
            "convertible",
        ),
        bond(
            "iren-convert-holders",
            "iren",
            "1.00 % convertible notes 2033 (May 2026)",
            "iren-conv2033",
            "iren-conv2033-coupon",
            "iren-conv2033-maturity",
            "convertible",
        ),
        bond(
            "core-scientific-convert-holders",
            "core-scientific",
            "3.00 % convertible notes 2029",
            "corz-conv2029",
            "corz-conv2029-coupon",
            "corz-conv2029-maturity",
            "convertible",
        ),
        bond(
            "core-scientific-convert-holders",
            "core-scientific",
            "0.00 % convertible notes 2031",
            "corz-conv2031",
            "corz-conv2031-coupon",
            "corz-conv2031-maturity",
            "convertible",
        ),
        bond(
            "terawulf-noteholders",
            "terawulf",
            "7.75 % senior secured notes 2030 (secured by compute subsidiaries, not GPUs)",
            "wulf-notes2030",
            "wulf-notes2030-coupon",
            "wulf-notes2030-maturity",
            "high_yield",
            seniority=1,
        ),
        bond(
            "terawulf-convert-holders",
            "terawulf",
            "1.00 % convertible notes 2031",
            "wulf-conv2031",
            "wulf-conv2031-coupon",
            "wulf-conv2031-maturity",
            "convertible",
        ),
        bond(
            "terawulf-convert-holders",
            "terawulf",
            "0.00 % convertible notes 2032",
            "wulf-conv2032",
            "wulf-conv2032-coupon",
            "wulf-conv2032-maturity",
            "convertible",
        ),
    ]
    beignet_notes = s.num("meta-hyperion")
    beignet_spread = spread_over_base(s, "meta-hyperion-coupon")
    beignet_others = beignet_notes - s.num("meta-hyperion-pimco") - s.num("meta-hyperion-blackrock")
    for holder, principal, what in (
        ("pimco", s.num("meta-hyperion-pimco"), "Pimco's share"),
        ("blackrock", s.num("meta-hyperion-blackrock"), "BlackRock's share (a lower bound)"),
        ("beignet-other-noteholders", beignet_others, "the rest (total less Pimco and BlackRock)"),
    ):
        loans.append(
            Loan(
                holder,
                "beignet-hyperion",
                f"6.58 % senior secured amortising notes 2049: {what}",
                principal,
                beignet_spread,
                beignet_term,
                "annuity",
                "high_yield",
                "none",
                1,
            )
        )
    miners = "generated.miners"
    compass_coupon = s.num("abs-compass-ii-debt-yield") / s.num("abs-compass-ii-dscr") - s.base(
        "world.base_rate"
    )
    loans += [
        term_loan(
            "deutsche-bank-helios",
            "galaxy-helios",
            "Helios project financing (modelled drawn; interest only to maturity: amortisation not found)",
            s.num("glxy-helios-loan"),
            Traced(s.base(f"{miners}.spread").value, (f"baseline:{miners}.spread", "glxy-helios-rate")),
            remaining_term(s, "glxy-helios-maturity"),
            collateral="none",
            amortisation="bullet",
        ),
        bond(
            "applied-digital-noteholders",
            "applied-digital",
            "APLD ComputeCo 9.25 % senior secured notes 2030 (secured by the campus, not GPUs)",
            "apld-notes2030",
            "apld-notes2030-coupon",
            "apld-notes2030-maturity",
            "high_yield",
            seniority=1,
        ),
        Loan(
            "compass-abs-noteholders",
            "compass-abs-ii",
            "Compass Datacenters Issuer II A-1 notes (fixed rate; coupon = debt yield / DSCR, interest only)",
            s.num("abs-compass-ii"),
            Traced(max(compass_coupon.value, 0.0), compass_coupon.rows),
            remaining_term(s, "abs-compass-ii-final"),
            "bullet",
            "asset_backed",
            "none",
            1,
        ),
    ]
    lender_agents = []
    for lender_id, (kind, comment) in lenders.items():
        book = Traced(0.0, ())
        for loan in loans:
            if loan.creditor == lender_id:
                book = book + loan.principal
        if book.value <= 0:
            raise SourceError(f"lender '{lender_id}' holds no loan")
        ratio = s.base(f"generated.lender_capital_ratio.{kind}")
        liabilities = book * (Traced(1.0, ()) - ratio)
        lender_agents.append(Agent(lender_id, kind, comment, external_liabilities=liabilities))
    hosting = [
        Hosting("core-scientific", "coreweave", host_share(s, "corz-coreweave")),
        Hosting("applied-digital", "coreweave", host_share(s, "apld-coreweave-live-mw")),
        Hosting("galaxy-helios", "coreweave", host_share(s, "glxy-coreweave-phase1-mw")),
        Hosting("terawulf", "fluidstack-lake-mariner", Traced(1.0, ("wulf-fluidstack-mw",))),
    ]
    guarantees = [
        Guarantee(
            "google",
            "fluidstack-lake-mariner",
            "hosting",
            s.num("wulf-google-backstop"),
            "Google's backstop of Fluidstack's lease obligations at Lake Mariner",
        )
    ]
    return Network(borrowers + lender_agents, loans, hosting, guarantees)


@dataclass
class Network:
    agents: list[Agent]
    loans: list[Loan]
    hosting: list[Hosting]
    guarantees: list[Guarantee]


def check_sums(s: Sources) -> None:
    """CoreWeave's facilities of 2025-06 add up to the total principal the 10-Q reports; Nebius's four
    convertibles (face) agree with the non-current debt its 6-K reports (carrying value, rounded to 0.1B);
    the named holders of the Beignet notes hold no more than the issue; CoreWeave's hosts host no more
    than its active power; a guarantee is dated before the start."""
    issued = s.num("meta-hyperion").value
    named = s.num("meta-hyperion-pimco").value + s.num("meta-hyperion-blackrock").value
    if named > issued:
        raise SourceError(f"Beignet's named holders hold {named:,.0f}, more than the {issued:,.0f} issued")
    hosts = ("corz-coreweave", "apld-coreweave-live-mw", "glxy-coreweave-phase1-mw")
    hosted = sum(s.num(h).value for h in hosts)
    active = s.num("crwv-active-mw-2026q1").value
    if hosted > active:
        raise SourceError(
            f"CoreWeave's hosts ({', '.join(hosts)}) host {hosted:,.0f} MW, more than its {active:,.0f} MW"
        )
    if month_index(s.rows["wulf-google-backstop"].as_of) > month_index(s.start):
        raise SourceError(f"row 'wulf-google-backstop': a guarantee dated after the start {s.start}")
    nebius = sum(s.num(p).value for p in ("nbis-conv2029", "nbis-conv2031", "nbis-conv-sep2025"))
    reported_nebius = s.num("nbis-debt-noncurrent-2025q4").value
    if abs(nebius - reported_nebius) > CARRYING_TOLERANCE * reported_nebius:
        raise SourceError(
            f"Nebius convertibles sum to {nebius:,.0f}, the 6-K reports {reported_nebius:,.0f} of debt"
        )
    parts = [
        "crwv-ddtl1-balance",
        "crwv-ddtl2-balance",
        "crwv-notes2030",
        "crwv-revolver",
        "crwv-oem",
        "crwv-magnetar",
    ]
    total = sum(s.num(p).value for p in parts)
    reported = s.num("crwv-debt-total-2025q2").value
    if abs(total - reported) > SUM_TOLERANCE * reported:
        raise SourceError(
            f"CoreWeave facilities at 2025-06 sum to {total:,.0f}, the 10-Q reports {reported:,.0f}"
        )
    for p in parts:
        if s.rows[p].as_of != s.rows["crwv-debt-total-2025q2"].as_of:
            raise SourceError(f"row '{p}': as_of must be the total's date for the sum check")


# --- writing -------------------------------------------------------------------------------------


def _number(x: float) -> str:
    """A stable text for a number: integers without a point, others to 6 significant decimals."""
    if abs(x - round(x)) < 1e-9 or abs(x) >= 1e6:
        return str(int(round(x)))
    return repr(round(x, 6))


def _line(key: str, value: Traced) -> str:
    return f"{key} = {_number(value.value)}  # rows: {', '.join(value.rows)}"


def render(s: Sources) -> str:
    """The scenario file's text: a header, the baseline's world verbatim, the explicit network."""
    network = build_network(s)
    lines = [
        "# market_2026: the public GPU-financed borrowers and their known financing, from public filings",
        "# (issue 18). GENERATED by scripts/build_market_2026.py from data/market_2026/sources.csv and the",
        "# world of experiments/scenarios/baseline.toml: do not edit by hand; rebuild instead. Every number of",
        "# the network names the table rows it comes from ('# rows:'); data/market_2026/README.md explains the",
        "# conversions, the coverage and the gaps.",
        'name = "market_2026"',
        f"months = {s.baseline['months']}",
        f"seed = {s.baseline['seed']}",
        "",
    ]
    lines += _baseline_world_text()
    for a in network.agents:
        lines += ["", "[[explicit.agents]]", f"# {a.comment}", f'id = "{a.id}"', f'type = "{a.type}"']
        if a.cash is not None:
            lines.append(_line("cash", a.cash))
        if a.fleet:
            rows: tuple[str, ...] = ()
            for units in a.fleet.values():
                rows = _merge(rows, units.rows)
            inner = ", ".join(f"{g} = {_number(round(u.value))}" for g, u in a.fleet.items())
            lines.append(f"fleet = {{ {inner} }}  # rows: {', '.join(rows)}")
        for key in (
            "contract_share",
            "contract_rent_per_hour",
            "contract_months",
            "hashrate_ph",
            "mining_efficiency_j_per_th",
            "lease_rent_per_month",
            "equity_capacity",
        ):
            value = getattr(a, key)
            if value is not None:
                lines.append(_line(key, value))
        if a.tenant_grade is not None:
            lines.append(f'tenant_grade = "{a.tenant_grade}"')
        if a.external_liabilities is not None:
            lines.append(_line("external_liabilities", a.external_liabilities))
    for loan in network.loans:
        lines += [
            "",
            "[[explicit.loans]]",
            f"# {loan.comment}",
            f'creditor = "{loan.creditor}"',
            f'debtor = "{loan.debtor}"',
        ]
        lines.append(_line("principal", loan.principal))
        lines.append(_line("spread", loan.spread))
        lines.append(_line("tenor_months", loan.tenor_months))
        lines += [
            f'amortisation = "{loan.amortisation}"',
            f'instrument = "{loan.instrument}"',
            f'collateral = "{loan.collateral}"',
            f"seniority = {loan.seniority}",
        ]
        for key in ("dscr_min", "ltv_max"):
            value = getattr(loan, key)
            if value is not None:
                lines.append(_line(key, value))
    for h in network.hosting:
        lines += ["", "[[explicit.hosting]]", f'host = "{h.host}"', f'tenant = "{h.tenant}"']
        lines.append(_line("share", h.share))
    for g in network.guarantees:
        lines += ["", "[[explicit.guarantees]]", f"# {g.comment}", f'guarantor = "{g.guarantor}"']
        lines += [f'obligor = "{g.obligor}"', f'covers = "{g.covers}"', _line("cap", g.cap)]
    return "\n".join(lines) + "\n"


def _baseline_world_text() -> list[str]:
    """The baseline's sections after its header, less the generated network, as written (comments kept)."""
    text = BASELINE.read_text().splitlines()
    first = next(i for i, line in enumerate(text) if line.startswith("["))
    out: list[str] = []
    keep = True
    for line in text[first:]:
        if line.startswith("["):
            keep = not line.strip("[] ").startswith("generated")
        if keep:
            out.append(line)
    while out and not out[-1].strip():
        out.pop()
    return out


def build() -> str:
    rows = read_sources()
    baseline = tomllib.loads(BASELINE.read_text())
    s = Sources(rows, baseline)
    check_sums(s)
    return render(s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed file, write nothing")
    args = parser.parse_args(argv)
    text = build()
    if args.check:
        if OUTPUT.read_text() != text:
            print(f"{OUTPUT.relative_to(ROOT)} is stale: run scripts/build_market_2026.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
