"""The 2022 replay's network is the sources table: scripts/miners_2022_network.py writes it, tests check it."""

from __future__ import annotations

import csv
import importlib.util
import tomllib
from pathlib import Path

import pytest

from core.config import load_scenario

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location(
    "miners_2022_network", ROOT / "scripts" / "miners_2022_network.py"
)
net = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(net)


def test_the_scenario_network_is_the_one_the_table_writes() -> None:
    assert net.main(["--check"]) == 0
    agents, loans = net.network(net.load_rows())
    explicit = load_scenario("miners_2022").explicit
    assert [a.id for a in explicit.agents] == [a["id"] for a in agents]
    for spec, row in zip(explicit.agents, agents, strict=True):
        assert spec.cash == row["cash"] and spec.fleet == row.get("fleet", {}), spec.id
    assert [(x.creditor, x.debtor, x.principal, x.spread) for x in explicit.loans] == [
        (x["creditor"], x["debtor"], x["principal"], x["spread"]) for x in loans
    ]


def test_a_miner_fleet_is_its_hashrate_in_100_th_rigs_and_every_loan_has_its_rows() -> None:
    rows = net.load_rows()
    hashrate = {r["entity"]: float(r["value"]) for r in rows if r["field"] == "hashrate_eh"}
    agents, loans = net.network(rows)
    for a in agents:
        if a["type"] == "miner":
            assert a["fleet"]["ASIC"] == round(hashrate[a["id"]] * 10_000)
    principal = [
        float(r["value"])
        for r in rows
        if r["field"].startswith("loan.") and r["field"].endswith(".principal")
    ]
    assert sum(x["principal"] for x in loans) == pytest.approx(sum(principal))


def test_the_calibration_counts_the_defaults_the_table_records() -> None:
    defaults, miners = net.observed_defaults(net.load_rows())
    scenario = load_scenario("miners_2022")
    assert miners == sum(a.type == "miner" for a in scenario.explicit.agents)
    calibration = tomllib.loads((ROOT / "experiments" / "calibrations" / "miners_2022.toml").read_text())
    target = next(t for t in calibration["targets"] if t["name"] == "miner_defaults")
    assert target["observed"] == defaults == 4
    from experiments.named.miners_2022 import HISTORY_2022

    assert HISTORY_2022["miner_defaults"] == defaults  # experiment 8 reports against the same count


def test_every_row_says_where_it_comes_from() -> None:
    with net.SOURCES.open(newline="") as f:
        rows = list(csv.DictReader(f))
    kinds = {"read", "estimate", "not found", "assumption"}
    for r in rows:
        assert r["read_or_estimated"] in kinds, r
        assert r["modelled"] in ("yes", "no"), r
        if r["read_or_estimated"] == "read" and r["value"] and r["field"] != "kind":
            assert "http" in r["source_url_or_filing"], r  # a figure read somewhere names where
        if r["read_or_estimated"] in ("estimate", "not found"):
            assert r["note"], r  # says how it was made, or what was searched


def test_a_loan_without_a_required_row_is_one_clear_message() -> None:
    rows = [
        r for r in net.load_rows() if r["field"] != "loan.trinity.tenor_months" or r["entity"] != "cleanspark"
    ]
    with pytest.raises(ValueError, match=r"loan 'cleanspark/trinity' has no row for \['tenor_months'\]"):
        net.network(rows)
