"""Any agent can be a creditor and a debtor at once (a neo-cloud lending to another, a fund borrowing)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np

from model.model import GPUCreditModel

DEMO = Path(__file__).resolve().parent.parent / "experiments/scenarios/fire_sale_demo.toml"


def test_a_borrower_can_lend_and_its_claim_is_written_off_when_its_debtor_fails():
    data = tomllib.loads(DEMO.read_text())
    data["explicit"]["loans"].append(
        {
            "creditor": "small-1",
            "debtor": "small-2",
            "principal": 2e6,
            "spread": 0.05,
            "tenor_months": 24,
            "collateral": "none",
            "amortisation": "bullet",
        }
    )
    model = GPUCreditModel(data)
    lender, debtor = model.names.index("small-1"), model.names.index("small-2")
    assert model.graph.has_edge(lender, debtor)
    assert model.ledger.loan_assets()[lender] == 2e6 and model.ledger.debt()[lender] > 0
    model.run()
    loans = model.ledger.loans
    claim = np.flatnonzero((loans.creditor == lender) & (loans.debtor == debtor))[0]
    assert model.ledger.defaulted[debtor]
    assert loans.exposure_at_default[claim] == 2e6 and not loans.active[claim]
    assert 0.0 <= loans.recovered[claim] < 2e6
