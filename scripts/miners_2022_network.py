"""Write the 2022 miner-crisis replay's network from its sources table (docs/calibration.md 20.4).

``data/miners_2022/sources.csv`` holds one row per figure (entity, field, value, unit, as_of, source,
read/estimate/not found, modelled, note). This script turns its ``modelled = yes`` rows into the
``[explicit]`` agents and loans of ``experiments/scenarios/miners_2022.toml``, so every miner, fleet,
cash balance and loan in the scenario traces back to a row of the table:

- a miner's fleet is its hashrate in S19j Pro-class rigs (the scenario's one generation, 100 TH/s a
  rig: 10,000 rigs per EH/s); its cash and BTC are the table's;
- a loan is the ``loan.<id>.*`` rows of its borrower: lender, principal, rate, tenor, age at the Nov 2021
  start, and optionally amortisation (default linear), collateral (rigs), instrument (term loan),
  seniority and margin-call level. The fixed coupon is the model's spread over the base rate (fed funds
  was 0.08 % at the start, so the modelled rate is the coupon plus the 2022 rise in fed funds);
- lenders' balance sheets are not in the table: they are sized by rule from the loans they hold
  (assumption, ``lender_balance_sheet``).

    python scripts/miners_2022_network.py          # rewrite the scenario's [explicit] section
    python scripts/miners_2022_network.py --check  # exit 1 if the scenario differs from the table
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "data" / "miners_2022" / "sources.csv"
SCENARIO = ROOT / "experiments" / "scenarios" / "miners_2022.toml"
BEGIN = (
    "# BEGIN explicit network: written by scripts/miners_2022_network.py from data/miners_2022/sources.csv"
)
END = "# END explicit network"
RIGS_PER_EH = 10_000  # 1 EH/s = 1e6 TH/s of 100 TH/s rigs
LOAN_FIELDS = ("lender", "principal", "rate", "tenor_months", "age_months")
LOAN_OPTIONS = {  # field -> default written when the table has no row
    "amortisation": "linear",
    "collateral": "gpu",
    "instrument": "term_loan",
    "seniority": 1,
    "margin_call_ltv": None,
}
# assumption: credit funds hold these miner loans as half an equity-funded book and keep 10 % of them in
# cash; banks hold them as a tenth of their assets, at a 10 % capital ratio
FUND_CASH_SHARE, FUND_OTHER_ASSETS = 0.10, 1.0
BANK_CASH_SHARE, BANK_OTHER_ASSETS, BANK_CAPITAL_RATIO = 0.05, 9.0, 0.10


def load_rows(path: Path = SOURCES) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return [r for r in csv.DictReader(f) if r["modelled"] == "yes"]


def _number(text: str) -> float | int:
    value = float(text)
    return int(value) if value.is_integer() else value


def network(rows: list[dict[str, str]]) -> tuple[list[dict], list[dict]]:
    """(agents, loans) in table order: miners first, then lenders."""
    by_entity: dict[str, dict[str, str]] = defaultdict(dict)
    for r in rows:
        by_entity[r["entity"]][r["field"]] = r["value"]
    loans = []
    for entity, fields in by_entity.items():
        ids = dict.fromkeys(f.split(".")[1] for f in fields if f.startswith("loan."))
        for lid in ids:
            get = {k.split(".", 2)[2]: v for k, v in fields.items() if k.startswith(f"loan.{lid}.")}
            missing = [f for f in LOAN_FIELDS if f not in get]
            if missing:
                raise ValueError(f"{SOURCES.name}: loan '{entity}/{lid}' has no row for {missing}")
            loan = {
                "creditor": get["lender"],
                "debtor": entity,
                "principal": _number(get["principal"]),
                "spread": _number(get["rate"]),
                "tenor_months": int(get["tenor_months"]),
                "age_months": int(get["age_months"]),
            }
            for field, default in LOAN_OPTIONS.items():
                value = get.get(field, default)
                if value is not None and value != default:
                    loan[field] = (
                        value if field in ("amortisation", "collateral", "instrument") else _number(value)
                    )
            loans.append(loan)
    held: dict[str, float] = defaultdict(float)
    for loan in loans:
        held[loan["creditor"]] += loan["principal"]
    agents = []
    for entity, fields in by_entity.items():
        if fields["kind"] == "miner":
            agents.append(
                {
                    "id": entity,
                    "type": "miner",
                    "cash": _number(fields["cash"]),
                    "btc": _number(fields["btc"]),
                    "fleet": {"ASIC": round(float(fields["hashrate_eh"]) * RIGS_PER_EH)},
                }
            )
    for entity, fields in by_entity.items():
        if fields["kind"] != "miner":
            agents.append(
                {"id": entity, "type": fields["kind"], **lender_balance_sheet(fields["kind"], held[entity])}
            )
    return agents, loans


def lender_balance_sheet(kind: str, loans_held: float) -> dict[str, float]:
    """Cash and other assets (and, for a bank, deposits) sized from the miner loans held (assumption)."""
    if kind == "bank":
        cash, other = BANK_CASH_SHARE * loans_held, BANK_OTHER_ASSETS * loans_held
        debt = (1.0 - BANK_CAPITAL_RATIO) * (cash + other + loans_held)
        return {"cash": round(cash), "external_assets": round(other), "external_liabilities": round(debt)}
    return {
        "cash": round(FUND_CASH_SHARE * loans_held),
        "external_assets": round(FUND_OTHER_ASSETS * loans_held),
    }


def observed_defaults(rows: list[dict[str, str]]) -> tuple[int, int]:
    """(miners that defaulted or handed rigs back in 2022, modelled miners) from the outcome rows."""
    outcomes = [r["value"] for r in rows if r["field"] == "outcome_2022"]
    return sum(o == "default" for o in outcomes), len(outcomes)


def _toml_value(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return repr(value)


def render(rows: list[dict[str, str]]) -> str:
    agents, loans = network(rows)
    defaults, miners = observed_defaults(rows)
    lines = [
        BEGIN,
        f"# {miners} public miners as of end-2021 / Q1 2022 (each row's date and source in the table; the",
        "# balance sheets are placed at the Nov 2021 start). Fleets: hashrate in 100 TH/s rigs; loans: the",
        "# rig loans, notes and converts outstanding, coupon as spread; lenders sized by rule (assumption).",
        f"# In 2022 {defaults} of the {miners} defaulted or handed rigs back (outcome_2022 rows).",
        "[explicit]",
        "agents = [",
        *(f"  {_toml_value(a)}," for a in agents),
        "]",
        "loans = [",
        *(f"  {_toml_value(loan)}," for loan in loans),
        "]",
        END,
    ]
    return "\n".join(lines) + "\n"


def rewrite(text: str, block: str) -> str:
    """Replace the generated block (or, the first time, everything from the [explicit] section's comment to
    [history]) with ``block``."""
    if BEGIN in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END + "\n", 1)[1]
    else:
        start = text.index("# Six miners")
        head, tail = text[:start], text[text.index("\n[history]\n") :]
    return head + block + tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the scenario differs from the table")
    args = parser.parse_args(argv)
    text = SCENARIO.read_text()
    new = rewrite(text, render(load_rows()))
    if args.check:
        if new != text:
            print(f"{SCENARIO.name}: [explicit] differs from {SOURCES.name}; run {Path(__file__).name}")
            return 1
        return 0
    SCENARIO.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
