"""A corpus of bad inputs (command-line arguments, scenario, experiment and sweep files, manifests,
run records, Parquet tables): each gives one clear message naming the field or file, a non-zero exit,
no traceback, and leaves every file in its folder as it was (nothing partial, nothing overwritten).

The corpus runs the command line in-process (``run.main``) for speed; a few cases run as real
subprocesses for the exit code. Resume and replay have their own tests at the end: an edited or
damaged run record is run again and named, a gutted manifest is refused.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import BaseModel

import run
from core.config import SCENARIO_DIR, Scenario, _unwrap, read_scenario_data

ROOT = Path(__file__).resolve().parent.parent

# --- the corpus ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One bad input: the command line (run in a scratch folder), the files it needs there (text, bytes,
    or a function of the reference outputs), the text the message must contain, and the exit code."""

    id: str
    argv: tuple[str, ...]
    expect: str
    files: dict[str, Any] = field(default_factory=dict)
    code: int = 2


def _float_paths(annotation: Any, data: Any, path: str) -> Iterator[tuple[str, bool]]:
    """Dotted paths of the float fields of the schema that ``data`` (a scenario) reaches, with whether
    each is a list of floats (lists and dicts are entered at their first item)."""
    core, _ = _unwrap(annotation)
    if isinstance(core, type) and issubclass(core, BaseModel):
        for name, info in core.model_fields.items():
            sub = data.get(name) if isinstance(data, dict) else None
            yield from _float_paths(info.annotation, sub, f"{path}.{name}".lstrip("."))
    elif typing.get_origin(core) is list:
        item, _ = _unwrap(typing.get_args(core)[0])
        if item is float:
            yield path, True
        elif data:
            yield from _float_paths(typing.get_args(core)[0], data[0], f"{path}.0")
    elif typing.get_origin(core) is dict:
        if isinstance(data, dict) and data:
            key = next(iter(data))
            yield from _float_paths(typing.get_args(core)[1], data[key], f"{path}.{key}")
    elif core is float:
        yield path, False


def _set_cases() -> list[Case]:
    """NaN, infinity and 1e308 in every float field the baseline (generated network) and the fire-sale
    demo (explicit network) reach through --set."""
    cases = []
    for scenario, only in (("baseline", ""), ("fire_sale_demo", "explicit.")):
        data = read_scenario_data(scenario)
        for path, is_list in _float_paths(Scenario, data, ""):
            if not path.startswith(only):
                continue
            for value in ("nan", "inf", "1e308"):
                shown = f"[{value}]" if is_list else value
                cases.append(
                    Case(
                        f"set-{path}={value}",
                        ("--scenario", scenario, "--set", f"{path}={shown}", "--out", "out"),
                        f"{path}.0" if is_list else path,
                    )
                )
    return cases


ABSURD_SETS = [
    ("world.start", '"0000-01"', "world.start: must be a month YYYY-MM from 2000-01 to 2100-12"),
    ("world.start", '"9999-12"', "world.start: must be a month"),
    ("world.start", '"2025-13"', "world.start: must be a month"),
    ("world.start", '"2025-1"', "world.start: must be a month"),
    ("world.start", "202501", "world.start"),
    ("generated.miners.purchase_month", '"2999-01"', "generated.miners.purchase_month: must be a month"),
    ("generated.neoclouds.purchase_month", '"2099-01"', "generated.neoclouds.purchase_month"),
    ("world.btc.halvings", '["1900-01"]', "world.btc.halvings.0: must be a month"),
    ("world.btc.halvings", '"2028-04"', "world.btc.halvings"),
    ("world.generations.0.launch", '"1800-01"', "world.generations.0.launch"),
    ("world.generations.0.new_price", "1e300", "world.generations.0.new_price"),
    ("world.generations.0.name", '"../x"', "world.generations.0.name"),
    ("generated.miners.fleet_gpus_median", "1e300", "generated.miners.fleet_gpus_median"),
    ("generated.miners.count", "-1", "generated.miners.count"),
    ("generated.miners.count", "1.5", "generated.miners.count"),
    ("generated.miners.count", "10000000", "generated.miners.count"),
    ("generated.banks", "100000", "generated.banks"),
    ("generated.miners.generation_mix.H100", "2.0", "generated.miners.generation_mix"),
    ("months", "0", "months"),
    ("months", "601", "months"),
    ("months", "1e3", "months"),
    ("seed", "-1", "seed"),
    ("seed", "9223372036854775808", "seed"),
    ("seed", '"abc"', "seed"),
    ("name", '"../../escaped"', "name: must be a name"),
    ("name", '"/tmp/escaped"', "name: must be a name"),
    ("name", '".."', "name: must be a name"),
    ("name", '"."', "name: must be a name"),
    ("name", '""', "name: must be a name"),
    ("name", '"a/b"', "name: must be a name"),
    ("name", '"-rf"', "name: must be a name"),
    ("name", '"x\\u0000y"', "name: must be a name"),
    ("name", "1", "name"),
    ("cascade.max_rounds", "0", "cascade.max_rounds"),
    ("cascade.dscr_test_every_months", "5", "cascade.dscr_test_every_months"),
    ("cascade.price_channel", '"maybe"', "cascade.price_channel"),
    ("cascade.price_impact", '"quadratic"', "cascade.price_impact"),
    ("cascade.impact_slope", "0", "cascade.impact_slope"),
    ("cascade.execution_price", '"midpoint"', "execution_price 'midpoint' needs an impact price"),
    ("policy.ltv_cap", "0", "policy.ltv_cap"),
    ("policy.buyer_of_last_resort_budget", "-1", "policy.buyer_of_last_resort_budget"),
    ("shocks", '[{month = 500, kind = "btc_crash"}]', "shocks[0].month: 500 is after the run's last month"),
    ("shocks", '[{month = 601, kind = "btc_crash"}]', "shocks.0.month"),
    ("shocks", '[{month = 61, kind = "btc_crash"}]', "shocks[0].month: 61 is after the run's last month"),
    ("shocks", '[{month = 1, kind = "meteor"}]', "shocks.0.kind"),
    ("shocks", '[{month = 1, kind = "btc_crash", size = 2}]', "shocks.0.size"),
    ("world.rent.path", "[-1.0]", "world.rent.path.0"),
    ("world.rent.path", '["x"]', "world.rent.path.0"),
    ("world.rent.utilisation", '"high"', "world.rent.utilisation"),
    ("world.rent.no_such_field", "1", "world.rent.no_such_field: unknown parameter"),
    ("world.rent.utilisation.deeper", "1", "world.rent.utilisation"),
    ("world.generations.B9000.new_price", "1", "world.generations.B9000"),
    ("world.generations.99.new_price", "1", "world.generations.99"),
    ("nosuchsection.x", "1", "unknown section 'nosuchsection'"),
    ("history.until", '"1999-12"', "history.until"),
    ("history.btc", '"../../etc/passwd"', "history.btc"),
]

CLI_CASES = [
    Case("months-0", ("--months", "0", "--out", "out"), "months"),
    Case("months-neg", ("--months", "-5", "--out", "out"), "months"),
    Case("months-601", ("--months", "601", "--out", "out"), "months"),
    Case("months-text", ("--months", "abc", "--out", "out"), "--months"),
    Case("months-float", ("--months", "1.5", "--out", "out"), "--months"),
    Case("seed-neg", ("--seed", "-1", "--out", "out"), "seed"),
    Case("seed-huge", ("--seed", str(2**64), "--out", "out"), "seed"),
    Case("seed-text", ("--seed", "abc", "--out", "out"), "--seed"),
    Case("set-no-equals", ("--set", "world.rent.utilisation", "--out", "out"), "expected KEY=VALUE"),
    Case("set-empty-key", ("--set", "=1", "--out", "out"), "expected KEY=VALUE"),
    Case("set-blank", ("--set", "", "--out", "out"), "expected KEY=VALUE"),
    Case("out-empty", ("--out", ""), "give a folder name"),
    Case("out-dot", ("--out", "."), "--out '.'"),
    Case("out-is-file", ("--out", "afile"), "--out afile: exists and is not a folder", {"afile": "x"}),
    Case("out-under-file", ("--out", "afile/sub"), "afile is a file", {"afile": "x"}),
    Case("out-dev-null", ("--out", "/dev/null"), "--out /dev/null"),
    Case("scenario-missing", ("--scenario", "nosuch", "--out", "out"), "scenario 'nosuch': no such file"),
    Case("scenario-missing-path", ("--scenario", "none.toml", "--out", "out"), "none.toml"),
    Case("scenario-dir", ("--scenario", "adir.toml", "--out", "out"), "adir.toml", {"adir.toml/x": "x"}),
    Case("scenario-traversal", ("--scenario", "../../etc/passwd", "--out", "out"), "no such file"),
    Case("unknown-command", ("frobnicate",), "unknown command 'frobnicate'"),
    Case("unknown-option", ("--frobnicate",), "--frobnicate"),
    Case(
        "size-huge-network",
        ("--set", "generated.banks=10000", "--set", "generated.interbank_density=1.0", "--out", "out"),
        "a network of 10,074 agents",
    ),
    Case(
        "size-many-borrowers",
        ("--set", "generated.miners.count=1000000", "--out", "out"),
        "add --yes",
    ),
    Case("validate-seed-neg", ("validate", "eisenberg_noe", "--seed", "-1"), "--seed -1"),
    Case("validate-seed-text", ("validate", "eisenberg_noe", "--seed", "x"), "--seed"),
    Case("validate-out-dev-null", ("validate", "eisenberg_noe", "--out", "/dev/null"), "/dev/null"),
    Case("validate-out-empty", ("validate", "eisenberg_noe", "--out", ""), "give a folder name"),
    Case("validate-out-under-file", ("validate", "all", "--out", "afile/x"), "afile", {"afile": "x"}),
    Case("validate-png-all", ("validate", "all", "--out", "x.png"), "a .png path names one figure"),
    Case(
        "validate-png-under-file", ("validate", "debtrank", "--out", "afile/x.png"), "afile", {"afile": "x"}
    ),
    Case("validate-unknown", ("validate", "nosuch"), "nosuch"),
    Case("viz-port-0", ("viz", "--port", "0", "--skip-assets"), "--port 0"),
    Case("viz-port-high", ("viz", "--port", "70000", "--skip-assets"), "--port 70000"),
    Case("viz-port-text", ("viz", "--port", "http", "--skip-assets"), "--port"),
    Case("experiment-unknown", ("experiment", "nosuch"), "experiment 'nosuch': unknown"),
    Case("experiment-out-empty", ("experiment", "credit_spreads", "--out", ""), "give a folder name"),
    Case("experiment-out-file", ("experiment", "credit_spreads", "--out", "afile"), "afile", {"afile": "x"}),
    Case("experiment-workers-0", ("experiment", "credit_spreads", "--workers", "0"), "--workers"),
    Case("replay-missing", ("replay", "none.json"), "manifest none.json: no such file"),
    Case("replay-dir", ("replay", "adir"), "manifest adir", {"adir/x": "x"}),
    Case("replay-no-arg", ("replay",), "manifest"),
    Case("sweep-no-arg", ("sweep",), "experiment"),
    Case("sweep-missing", ("sweep", "none.toml"), "experiment file none.toml: no such file"),
]

FIRE_SALE = (SCENARIO_DIR / "fire_sale_demo.toml").read_text()
FIRST_LOAN = '[[explicit.loans]]\ncreditor = "fund"\ndebtor = "big"\n'
GUARANTEE = "[[explicit.guarantees]]\nguarantor = {}\nobligor = {}\ncovers = {}\ncap = {}\n\n"
HOSTS = '[[explicit.agents]]\nid = "m1"\ntype = "miner"\n\n[[explicit.agents]]\nid = "m2"\ntype = "miner"\n\n'
HOSTING = '[[explicit.hosting]]\nhost = {}\ntenant = "big"\nshare = {}\n\n'
SCENARIO_FILE_CHANGES = [
    ("cash = 1e8", "cash = inf", "explicit.agents.0.cash"),
    ("cash = 1e8", "cash = nan", "explicit.agents.0.cash"),
    ("cash = 1e8", "cash = -inf", "explicit.agents.0.cash"),
    ("cash = 1e8", "cash = 1e308", "explicit.agents.0.cash"),
    ("cash = 1e8", "cash = -1", "explicit.agents.0.cash"),
    ("cash = 1e8", 'cash = "lots"', "explicit.agents.0.cash"),
    ("fleet = { H100 = 20000 }", "fleet = { H100 = 1e300 }", "explicit.agents.1.fleet.H100"),
    ("fleet = { H100 = 20000 }", "fleet = { H100 = nan }", "explicit.agents.1.fleet.H100"),
    ("fleet = { H100 = 20000 }", "fleet = { H999 = 1 }", "unknown generation"),
    (
        "fleet = { H100 = 20000 }",
        'fleet = { H100 = 20000 }\npurchase_month = "2999-01"',
        "explicit.agents.1.purchase_month",
    ),
    (
        "fleet = { H100 = 20000 }",
        'fleet = { H100 = 20000 }\npurchase_month = "2030-01"',
        "explicit agent 'big'.purchase_month: fleets are bought by world.start",
    ),
    ('name = "fire_sale_demo"', 'name = "../../escaped"', "name: must be a name"),
    ('name = "fire_sale_demo"', 'name = "/etc"', "name: must be a name"),
    ('name = "fire_sale_demo"', 'name = ".."', "name: must be a name"),
    ("[[shocks]]\nmonth = 1\n", "[[shocks]]\nmonth = 500\n", "shocks[0].month: 500 is after"),
    (
        "[[shocks]]\nmonth = 1\n",
        "[[shocks]]\nmonth = 13\n",
        "shocks[0].month: 13 is after the run's last month (months = 12)",
    ),
    ("[[shocks]]\nmonth = 1\n", "[[shocks]]\nmonth = 0\n", "shocks.0.month"),
    ('agent = "big"', 'agent = "nobody"', "shocks[0].agent: no agent with id 'nobody'"),
    ('start = "2025-01"', 'start = "0000-01"', "world.start: must be a month"),
    ('start = "2025-01"', 'start = "9999-12"', "world.start: must be a month"),
    ('halvings = ["2028-04"]', 'halvings = ["1900-01"]', "world.btc.halvings.0"),
    ('halvings = ["2028-04"]', 'halvings = ["2028-4"]', "world.btc.halvings.0"),
    ("principal = 666000000", "principal = 1e300", "explicit.loans.0.principal"),
    ("principal = 666000000", "principal = 0", "explicit.loans.0.principal"),
    ("principal = 666000000", "principal = inf", "explicit.loans.0.principal"),
    ("tenor_months = 36", "tenor_months = 0", "explicit.loans.0.tenor_months"),
    ("ltv_max = 0.80", "ltv_max = nan", "explicit.loans.0.ltv_max"),
    ("ltv_max = 0.80", 'ltv_max = "sometimes"', "explicit.loans.0.ltv_max"),
    ('creditor = "fund"', 'creditor = "ghost"', "loans[0].creditor: no agent with id 'ghost'"),
    ('id = "fund"', 'id = "../fund"', "explicit.agents.0.id"),
    ("external_assets = 5e9", "external_assets = 1e300", "explicit.agents.0.external_assets"),
    ("months = 12", "months = 0", "months"),
    ("months = 12", "months = 12.5", "months"),
    ("seed = 20250101", "seed = -3", "seed"),
    ("seed = 20250101", 'seed = "abc"', "seed"),
    ("[world]", "[world\n", "malformed TOML"),
    ("[world]", "[world]\n[world]", "malformed TOML"),
    ("[world]", "[wrold]\nx = 1\n[world]", "wrold: unknown parameter"),
    ("mark_recovery_half_life_months = 6", "", "cascade.mark_recovery_half_life_months: required"),
    # guarantees, hosting at several miners and lease rent (explicit networks)
    *(
        (FIRST_LOAN, block + FIRST_LOAN, expect)
        for block, expect in (
            (
                GUARANTEE.format('"fund"', '"big"', '"loans"', "1e8"),
                "guarantees[0].guarantor: 'fund' is an agent",
            ),
            (
                GUARANTEE.format('"google"', '"fund"', '"loans"', "1e8"),
                "guarantees[0].obligor: no miner or neocloud",
            ),
            (
                GUARANTEE.format('"google"', '"big"', '"hosting"', "1e8"),
                "guarantees[0].covers: 'big' is hosted by no",
            ),
            (GUARANTEE.format('"google"', '"big"', '"everything"', "1e8"), "explicit.guarantees.0.covers"),
            (GUARANTEE.format('"google"', '"big"', '"loans"', "0"), "explicit.guarantees.0.cap"),
            (GUARANTEE.format('"google"', '"big"', '"loans"', "nan"), "explicit.guarantees.0.cap"),
            (GUARANTEE.format('"goo gle"', '"big"', '"loans"', "1e8"), "explicit.guarantees.0.guarantor"),
            (
                2 * GUARANTEE.format('"google"', '"big"', '"loans"', "1e8"),
                "'big' already has a guarantee of its",
            ),
            (
                HOSTS + HOSTING.format('"m1"', "0.7") + HOSTING.format('"m2"', "0.4"),
                "hosting[1].share: the shares",
            ),
            (
                HOSTS + HOSTING.format('"m1"', "0.5") + HOSTING.format('"m1"', "0.4"),
                "hosting[1]: 'm1' already hosts",
            ),
            (HOSTS + HOSTING.format('"m1"', "0"), "explicit.hosting.0.share"),
            (HOSTS + HOSTING.format('"m1"', "1.5"), "explicit.hosting.0.share"),
        )
    ),
    (
        "external_liabilities = 1e9",
        "external_liabilities = 1e9\nlease_rent_per_month = 1e6",
        "agents[0].lease_rent_per_month",
    ),
    (
        'id = "big"\ntype = "neocloud"',
        'id = "big"\ntype = "neocloud"\nlease_rent_per_month = 1e6',
        "agents[1].lease_rent_per_month: only",
    ),
    (
        'id = "big"\ntype = "neocloud"',
        'id = "big"\ntype = "neocloud"\nlease_rent_per_month = -1',
        "explicit.agents.1.lease_rent_per_month",
    ),
]
SCENARIO_FILE_RAW = [
    ("empty", b"", "scenario"),
    ("non-utf8", b'name = "\xff\xfe"\n', "not UTF-8"),
    ("utf16", "name = 'x'\n".encode("utf-16"), "not UTF-8"),
    ("binary", bytes(range(256)), "not UTF-8"),
    ("just-a-string", b'"hello"', "malformed TOML"),
    ("array-root", b"[1, 2]", "malformed TOML"),
    ("only-name", b'name = "x"\n', "required parameter is missing"),
    ("truncated", FIRE_SALE[: len(FIRE_SALE) // 2].rsplit("\n", 1)[0].encode(), "bad.toml"),
]


def _scenario_file_cases() -> list[Case]:
    cases = []
    for k, (old, new, expect) in enumerate(SCENARIO_FILE_CHANGES):
        assert old in FIRE_SALE, old
        cases.append(
            Case(
                f"scenario-file-{k}-{new.splitlines()[0][:30] if new else 'deleted'}",
                ("--scenario", "bad.toml", "--out", "out"),
                expect,
                {"bad.toml": FIRE_SALE.replace(old, new, 1)},
            )
        )
    for name, data, expect in SCENARIO_FILE_RAW:
        cases.append(
            Case(
                f"scenario-file-{name}",
                ("--scenario", "bad.toml", "--out", "out"),
                expect,
                {"bad.toml": data},
            )
        )
    return cases


TINY = """name = "tiny"
scenario = "baseline"
months = 2
master_seed = 11
replicates = 1
[design]
kind = "grid"
[parameters.rent_deflation]
values = [0.2]
[outputs]
metrics = ["share_failed", "defaults_total"]
"""
SWEEP_ARGS = ("--executor", "serial", "--no-progress", "--no-figures", "--out", "sw")
EXPERIMENT_CHANGES = [
    ('name = "tiny"', 'name = ".."', "name: must be a name"),
    ('name = "tiny"', 'name = "../../escaped"', "name: must be a name"),
    ('name = "tiny"', 'name = "/tmp/x"', "name: must be a name"),
    ('name = "tiny"', 'name = ""', "name: must be a name"),
    ('name = "tiny"', "name = 3", "name"),
    ('name = "tiny"\n', "", "name: required field is missing"),
    ("months = 2", "months = 0", "months"),
    ("months = 2", "months = nan", "months"),
    ("months = 2", "months = 1e308", "months"),
    ("master_seed = 11", "master_seed = -1", "master_seed"),
    ("master_seed = 11", 'master_seed = "abc"', "master_seed"),
    ("master_seed = 11", "master_seed = 1.5", "master_seed"),
    ("replicates = 1", "replicates = 0", "replicates"),
    ("replicates = 1", "replicates = 1000000", "replicates"),
    ("replicates = 1", "max_run_seconds = inf", "max_run_seconds"),
    ("replicates = 1", "max_run_seconds = nan", "max_run_seconds"),
    ("replicates = 1", "max_run_seconds = -1", "max_run_seconds"),
    ('kind = "grid"', 'kind = "factorial"', "design.kind"),
    ('kind = "grid"', 'kind = "lhs"\nsamples = 0', "design.samples"),
    ('kind = "grid"', 'kind = "lhs"', "design"),
    ('kind = "grid"', 'kind = "sobol"\nsamples = 3', "samples must be a power of 2"),
    ("values = [0.2]", "values = [nan]", "rent_deflation"),
    ("values = [0.2]", "values = [inf]", "rent_deflation"),
    ("values = [0.2]", "values = [1e308]", "rent_deflation"),
    ("values = [0.2]", "values = []", "values is empty"),
    ("values = [0.2]", "values = [0.2, 0.2]", "values has repeats"),
    ("values = [0.2]", 'values = ["fast"]', "rent_deflation"),
    ("values = [0.2]", "min = nan\nmax = 0.5\nsteps = 2", "parameters.rent_deflation.min"),
    ("values = [0.2]", "min = 0.1\nmax = inf\nsteps = 2", "parameters.rent_deflation.max"),
    ("values = [0.2]", "min = 0.5\nmax = 0.1\nsteps = 2", "empty range"),
    ("values = [0.2]", "min = 0.1\nmax = 0.5\nsteps = 0", "steps"),
    ("values = [0.2]", "min = 0.1\nmax = 0.5", "a grid needs values"),
    ("[parameters.rent_deflation]", '[parameters."world.nosuch"]', "world.nosuch: unknown parameter"),
    ("[parameters.rent_deflation]", "[parameters.seed]", "seeds come from master_seed"),
    ('scenario = "baseline"', 'scenario = "nosuch"', "scenario 'nosuch': no such file"),
    ('scenario = "baseline"', 'scenario = "../../etc/passwd.toml"', "no such file"),
    ('metrics = ["share_failed", "defaults_total"]', 'metrics = ["nosuch"]', "outputs.metrics"),
    ('metrics = ["share_failed", "defaults_total"]', 'metrics = "some"', "outputs.metrics"),
    ("[outputs]", '[fixed]\n"world.btc.initial_price" = inf\n[outputs]', "world.btc.initial_price"),
    ("[outputs]", '[fixed]\n"world.btc.initial_price" = nan\n[outputs]', "world.btc.initial_price"),
    ("[outputs]", '[fixed]\n"name" = "../../escaped"\n[outputs]', "name"),
    ("[outputs]", '[fixed]\n"world.nosuch" = 1\n[outputs]', "world.nosuch"),
    ("[outputs]", '[posterior]\nfile = "none.parquet"\n[outputs]', "none.parquet"),
    ("[outputs]", "[unknown_section]\n[outputs]", "unknown_section: unknown field"),
    (
        'kind = "grid"\n[parameters.rent_deflation]\nvalues = [0.2]',
        'kind = "lhs"\nsamples = 1000000\n[parameters.rent_deflation]\nmin = 0.1\nmax = 0.5',
        "1,000,000 runs, about",
    ),
    (
        "[parameters.rent_deflation]",
        "[parameters.a1]\nmin=0.1\nmax=0.5\nsteps=1000\n[parameters.a2]\nmin=0.1\nmax=0.5\nsteps=1000\n"
        "[parameters.rent_deflation]",
        "add --yes",
    ),
    (
        "[parameters.rent_deflation]",
        "[parameters.a1]\nmin=0.1\nmax=0.5\nsteps=1000\n[parameters.a2]\nmin=0.1\nmax=0.5\nsteps=1000\n"
        "[parameters.a3]\nmin=0.1\nmax=0.5\nsteps=1000\n[parameters.a4]\nmin=0.1\nmax=0.5\nsteps=1000\n"
        "[parameters.rent_deflation]",
        "too large",
    ),
    (
        "[outputs]",
        '[fixed]\n"generated.banks" = 10000\n"generated.interbank_density" = 1.0\n[outputs]',
        "too large",
    ),
]
EXPERIMENT_RAW = [
    ("empty", b"", "name: required field is missing"),
    ("non-utf8", b'name = "\xff"\n', "not UTF-8"),
    ("binary", bytes(range(256)), "not UTF-8"),
    ("malformed", b"name = \n", "malformed TOML"),
    ("truncated", TINY[: TINY.index("[parameters")].encode() + b"[param", "malformed TOML"),
]


def _experiment_cases() -> list[Case]:
    cases = []
    for k, (old, new, expect) in enumerate(EXPERIMENT_CHANGES):
        assert old in TINY, old
        cases.append(
            Case(
                f"experiment-file-{k}-{new.splitlines()[0][:30] if new else 'deleted'}",
                ("sweep", "exp.toml", *SWEEP_ARGS),
                expect,
                {"exp.toml": TINY.replace(old, new, 1)},
            )
        )
    for name, data, expect in EXPERIMENT_RAW:
        cases.append(
            Case(f"experiment-file-{name}", ("sweep", "exp.toml", *SWEEP_ARGS), expect, {"exp.toml": data})
        )
    for args, expect in (
        (("--workers", "0"), "--workers"),
        (("--workers", "x"), "--workers"),
        (("--executor", "mpi"), "--executor"),
        (("--scheduler", "localhost:1", "--executor", "dask"), "--scheduler localhost:1"),
        (("--scheduler", "tcp://1.2.3.4:1", "--executor", "serial"), "--scheduler needs --executor dask"),
        (("--out", ""), "give a folder name"),
        (("--out", "afile"), "afile"),
        (("--out", "afile/sub"), "afile is a file"),
        (("--out", "/dev/null"), "/dev/null"),
    ):
        cases.append(
            Case(
                f"sweep-args-{'-'.join(args)}",
                ("sweep", "exp.toml", "--executor", "serial", "--no-progress", *args),
                expect,
                {"exp.toml": TINY, "afile": "x"},
            )
        )
    return cases


def _sweep_folder_cases() -> list[Case]:
    """A sweep folder whose sweep.json (the key record) is damaged: refused, the folder untouched."""
    cases = []
    for name, data in (
        ("empty", b""),
        ("truncated", b'{"key": "ab'),
        ("list", b"[]"),
        ("null", b"null"),
        ("string", b'"key"'),
        ("key-number", b'{"key": 3}'),
        ("no-key", b'{"name": "tiny"}'),
        ("non-utf8", b'{"key": "\xff"}'),
    ):
        cases.append(
            Case(
                f"sweep-json-{name}",
                ("sweep", "exp.toml", *SWEEP_ARGS),
                "sw/sweep.json: damaged",
                {"exp.toml": TINY, "sw/sweep.json": data, "sw/runs/p00000-r00.json": b"{}"},
            )
        )
    cases.append(
        Case(
            "sweep-other-folder",
            ("sweep", "exp.toml", *SWEEP_ARGS),
            "folder is not empty and holds no sweep",
            {"exp.toml": TINY, "sw/precious.txt": "mine"},
        )
    )
    return cases


def _gut(key: str) -> Callable[[dict], Any]:
    return lambda m: {k: v for k, v in m.items() if k != key}


def _with(**changes: Any) -> Callable[[dict], Any]:
    return lambda m: m | changes


def _edit_config(m: dict) -> dict:
    out = json.loads(json.dumps(m))
    out["config"]["world"]["rent"]["shock_volatility"] = 0.5
    return out


def _rename(m: dict) -> dict:
    out = json.loads(json.dumps(m))
    out["config"]["name"] = "renamed"
    return out


MANIFEST_MUTATIONS: list[tuple[str, Any, str, int]] = [
    ("list", lambda m: [], "not a manifest (a JSON object), got list", 2),
    ("null", lambda m: None, "got NoneType", 2),
    ("string", lambda m: "manifest", "got str", 2),
    ("number", lambda m: 3, "got int", 2),
    ("empty-object", lambda m: {}, "missing field 'kind'", 2),
    *[
        (f"no-{key}", _gut(key), f"missing field '{key}'", 2)
        for key in ("kind", "config", "seed", "outputs", "digest")
    ],
    ("seed-abc", _with(seed="abc"), "field 'seed'", 2),
    ("seed-neg", _with(seed=-1), "field 'seed'", 2),
    ("seed-float", _with(seed=1.5), "field 'seed'", 2),
    ("seed-bool", _with(seed=True), "field 'seed'", 2),
    ("seed-huge", _with(seed=2**64), "field 'seed'", 2),
    ("seed-null", _with(seed=None), "field 'seed'", 2),
    ("kind-other", _with(kind="batch"), "field 'kind'", 2),
    ("kind-null", _with(kind=None), "field 'kind'", 2),
    ("config-list", _with(config=[]), "field 'config'", 2),
    ("config-string", _with(config="baseline"), "field 'config'", 2),
    ("config-empty", _with(config={}), "required parameter is missing", 2),
    ("outputs-empty", _with(outputs={}), "field 'outputs'", 2),
    ("outputs-list", _with(outputs=[]), "field 'outputs'", 2),
    ("outputs-null", _with(outputs=None), "field 'outputs'", 2),
    ("outputs-passwd", _with(outputs={"../../../../etc/passwd": "0" * 64}), "etc/passwd", 2),
    ("outputs-absolute", _with(outputs={"/etc/passwd": "0" * 64}), "/etc/passwd", 2),
    ("outputs-home", _with(outputs={"~/x": "0" * 64}), "~/x", 2),
    ("outputs-empty-name", _with(outputs={"": "0" * 64}), "outputs entry ''", 2),
    ("outputs-bad-digest", _with(outputs={"steps.parquet": "abc"}), "must be a sha256", 2),
    ("outputs-digest-null", _with(outputs={"steps.parquet": None}), "must be a sha256", 2),
    ("digest-number", _with(digest=5), "field 'digest'", 2),
    ("non-utf8", b'{"kind": "\xff"}', "not UTF-8", 2),
    ("truncated", (lambda b: b[: len(b) // 2],), "not valid JSON", 2),
    ("empty-file", b"", "not valid JSON", 2),
    ("edited-config", _edit_config, "manifest edited", 1),
    ("edited-name", _rename, "manifest edited", 1),
    ("edited-digest", _with(digest="0" * 64), "manifest edited", 1),
    ("no-manifest-digest", _gut("manifest_digest"), "manifest edited (or written by an older version)", 1),
]


def _manifest_cases() -> list[Case]:
    cases = []
    for name, mutate, expect, code in MANIFEST_MUTATIONS:
        cases.append(
            Case(f"manifest-{name}", ("replay", "r/manifest.json"), expect, {"r/": ("run", mutate)}, code)
        )
    for name, mutate, expect, code in MANIFEST_MUTATIONS[:14]:
        cases.append(
            Case(
                f"sweep-manifest-{name}",
                ("replay", "s/manifest.json"),
                expect,
                {"s/": ("sweep", mutate)},
                code,
            )
        )
    cases.append(
        Case(
            "sweep-manifest-no-experiment",
            ("replay", "s/manifest.json"),
            "experiment_text",
            {"s/": ("sweep", _gut("experiment_text"))},
        )
    )
    for name, damage in (
        ("truncated", lambda b: b[: len(b) // 2]),
        ("empty", lambda b: b""),
        ("text", lambda b: b"x"),
    ):
        cases.append(
            Case(
                f"parquet-{name}",
                ("replay", "r/manifest.json"),
                "r/steps.parquet: not a readable Parquet table",
                {"r/": ("run", None), "r/steps.parquet": ("damage", damage)},
                1,
            )
        )
    return cases


CORPUS = [
    *_set_cases(),
    *[Case(f"absurd-{p}={v}", ("--set", f"{p}={v}", "--out", "out"), e) for p, v, e in ABSURD_SETS],
    *CLI_CASES,
    *_scenario_file_cases(),
    *_experiment_cases(),
    *_sweep_folder_cases(),
    *_manifest_cases(),
]


def test_the_corpus_is_large_and_its_ids_unique():
    assert len(CORPUS) >= 274
    ids = [c.id for c in CORPUS]
    assert len(set(ids)) == len(ids), sorted({i for i in ids if ids.count(i) > 1})


# --- running it ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> dict[str, Path]:
    """A real run's and a real sweep's output folders, for the manifest and Parquet cases."""
    tmp = tmp_path_factory.mktemp("references")
    assert run.main(["--months", "2", "--no-figures", "--no-progress", "--out", str(tmp / "run")]) == 0
    (tmp / "exp.toml").write_text(TINY)
    assert run.main(["sweep", str(tmp / "exp.toml"), *SWEEP_ARGS[:-1], str(tmp / "sweep")]) == 0
    return {"run": tmp / "run", "sweep": tmp / "sweep"}


def _write_files(work: Path, files: dict[str, Any], references: dict[str, Path]) -> None:
    for name, content in files.items():
        path = work / name
        if name.endswith("/"):  # a copy of a reference folder, its manifest changed by ``mutate``
            kind, mutate = content
            shutil.copytree(references[kind], path)
            manifest_path = path / "manifest.json"
            original = manifest_path.read_bytes()
            if isinstance(mutate, bytes):
                manifest_path.write_bytes(mutate)
            elif isinstance(mutate, tuple):  # (function of the file's bytes,)
                manifest_path.write_bytes(mutate[0](original))
            elif mutate is not None:
                manifest_path.write_text(json.dumps(mutate(json.loads(original))))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, tuple):  # ("damage", function of the file's bytes)
            path.write_bytes(content[1](path.read_bytes()))
        else:
            path.write_bytes(content if isinstance(content, bytes) else content.encode())


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


@pytest.mark.parametrize("case", CORPUS, ids=[c.id for c in CORPUS])
def test_bad_input_is_refused_cleanly(case, references, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    (work / "existing").mkdir()
    (work / "existing" / "result.json").write_text('{"kept": true}')  # a user's earlier output
    _write_files(work, case.files, references)
    before = _snapshot(work)
    monkeypatch.chdir(work)
    try:
        code = run.main(list(case.argv))
    except SystemExit as exc:  # argparse's own errors (usage + one line), exit 2
        code = exc.code
    out, err = capsys.readouterr()
    assert code == case.code, f"exit {code}, expected {case.code}\nstdout: {out}\nstderr: {err}"
    assert case.expect in err, f"message should name {case.expect!r}; got:\n{err}"
    assert "Traceback" not in out + err
    assert _snapshot(work) == before, "a refused input must leave every file as it was"


# --- real subprocesses: exit codes and no traceback as a user sees them ---------------------------


@pytest.mark.parametrize(
    "args, expect",
    [
        (["--set", "world.rent.h100_rent_per_hour=nan", "--out", "out"], "world.rent.h100_rent_per_hour"),
        (["--set", "name=../../escaped", "--out", "out"], "name: must be a name"),
        (["--out", ""], "give a folder name"),
        (["validate", "eisenberg_noe", "--seed", "-1"], "--seed -1"),
        (["replay", "bad.json"], "not a manifest (a JSON object), got list"),
    ],
)
def test_bad_input_in_a_real_subprocess(tmp_path, args, expect):
    (tmp_path / "bad.json").write_text("[]")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert expect in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json"]


# --- resume and replay -------------------------------------------------------------------------------


def _sweep(tmp: Path, capsys) -> tuple[int, str]:
    code = run.main(["sweep", str(tmp / "exp.toml"), *SWEEP_ARGS[:-1], str(tmp / "sw")])
    return code, capsys.readouterr().out


@pytest.mark.parametrize(
    "damage, why",
    [
        (lambda text: text.replace('"share_failed": 0.0', '"share_failed": 0.999'), "edited after the run"),
        (lambda text: text[: len(text) // 2], "unreadable"),
        (lambda text: "", "unreadable"),
        (lambda text: "[]", "wrong shape"),
        (lambda text: '{"status": "ok", "summary": {}}', "not a run record of this run"),
    ],
    ids=["edited", "truncated", "empty", "list", "other-shape"],
)
def test_resume_reruns_an_edited_or_damaged_run_record(tmp_path, capsys, damage, why):
    (tmp_path / "exp.toml").write_text(TINY.replace("values = [0.2]", "values = [0.2, 0.3]"))
    assert _sweep(tmp_path, capsys)[0] == 0
    runs = pd.read_parquet(tmp_path / "sw" / "runs.parquet")
    record = tmp_path / "sw" / "runs" / "p00000-r00.json"
    text = record.read_text()
    assert '"share_failed": 0.0' in text
    record.write_text(damage(text))
    code, out = _sweep(tmp_path, capsys)
    assert code == 0
    assert f"RERUN (damaged record) {record}: " in out and why in out
    assert "1 run now, 1 resumed" in out
    rerun = pd.read_parquet(tmp_path / "sw" / "runs.parquet")
    pd.testing.assert_frame_equal(rerun, runs)  # the edit did not reach the results
    assert json.loads(record.read_text())["summary"]["share_failed"] == 0.0
    code, out = _sweep(tmp_path, capsys)  # now trusted again
    assert code == 0 and "RERUN" not in out and "0 run now, 2 resumed" in out


def test_replay_refuses_a_gutted_manifest(references, tmp_path, capsys):
    folder = tmp_path / "run"
    shutil.copytree(references["run"], folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert run.main(["replay", str(folder / "manifest.json")]) == 0  # intact: reproduced
    assert "replay OK" in capsys.readouterr().out
    for gutted in ({k: v for k, v in manifest.items() if k != "config"}, manifest | {"outputs": {}}):
        (folder / "manifest.json").write_text(json.dumps(gutted))
        assert run.main(["replay", str(folder / "manifest.json")]) == 2
        assert "replay OK" not in capsys.readouterr().out


def test_replay_does_not_count_missing_values_as_changes():
    from experiments.run_report import _value_differences

    recorded = pd.DataFrame({"a": [1.0, float("nan"), 3.0], "b": ["x", None, "z"]})
    same = recorded.copy()
    assert _value_differences("t", recorded, same) == []
    changed = same.assign(a=[1.0, float("nan"), 4.0])
    (only,) = _value_differences("t", recorded, changed)
    assert only.startswith("t.a: 1 value(s) differ, first at row 2")


def test_every_float_field_of_the_schema_is_bounded():
    """The ranges live in the schema: no float field may be left without an upper bound (with
    ``allow_inf_nan=False`` that refuses NaN, infinities and 1e308 everywhere)."""
    from core.config import allowed_range

    def walk(model: type[BaseModel], loc: tuple) -> Iterator[tuple]:
        for name, info in model.model_fields.items():
            yield from visit(info.annotation, (*loc, name))

    def visit(annotation: Any, loc: tuple) -> Iterator[tuple]:
        core, _ = _unwrap(annotation)
        if isinstance(core, type) and issubclass(core, BaseModel):
            yield from walk(core, loc)
        elif typing.get_origin(core) in (list, dict):
            yield from visit(typing.get_args(core)[-1], (*loc, 0 if typing.get_origin(core) is list else "k"))
        elif core is float:
            yield loc

    floats = list(walk(Scenario, ()))
    assert len(floats) > 100
    unbounded = [".".join(map(str, loc)) for loc in floats if "value <" not in allowed_range(Scenario, loc)]
    assert unbounded == []
    assert Scenario.model_config["allow_inf_nan"] is False
