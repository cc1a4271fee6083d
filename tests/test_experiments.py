"""The named experiments (issue 6): the model extensions they need, each experiment at a tiny size with
its figure and table, and the qualitative findings that must hold within noise."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.config import ConfigError, load_scenario
from model.metrics import run_summary
from model.model import GPUCreditModel

ROOT = Path(__file__).resolve().parent.parent

# --- the exogenous BTC and rent paths (historical replays) -------------------------------------------


def test_btc_and_rent_paths_replace_the_random_processes_and_default_off():
    btc_path = [90000.0, 45000.0, 30000.0]
    rent_path = [2.0, 1.5]
    m = GPUCreditModel(
        "baseline",
        seed=3,
        months=5,
        overrides={"world.btc.path": btc_path, "world.rent.path": rent_path},
    )
    free = GPUCreditModel("baseline", seed=3, months=5)
    m.run()
    free.run()
    steps, free_steps = m.metrics.steps_table(), free.metrics.steps_table()
    assert steps["btc_price"].tolist()[1:4] == btc_path
    assert steps["rent_per_h100_hour"].tolist()[1:3] == rent_path
    # after the path ends the random process continues from the last recorded level
    assert steps["btc_price"].iloc[4] != btc_path[-1]
    assert steps["rent_per_h100_hour"].iloc[3] != rent_path[-1]
    # the paths do not use or shift the random stream: the base rate draws are identical
    assert steps["base_rate"].tolist() == free_steps["base_rate"].tolist()
    # the default (no path) is the random process
    assert free_steps["btc_price"].iloc[1] != btc_path[0]
    assert load_scenario("baseline").world.btc.path == []


def test_a_bad_path_is_one_clear_message():
    with pytest.raises(ConfigError, match=r"world\.btc\.path\.1"):
        load_scenario("baseline", {"world.btc.path": [1.0, -5.0]})


def test_new_summary_measures_are_consistent():
    m = GPUCreditModel("baseline", seed=5, months=24)
    m.run()
    s = run_summary(m)
    cells = s["credit"]
    defaulted_loans = sum(c["defaulted"] for c in cells.values())
    assert (defaulted_loans > 0) == (s["defaults_by_type"]["miner"] + s["defaults_by_type"]["neocloud"] > 0)
    for c in cells.values():
        assert 0 <= c["defaulted"] <= c["loans"]
        assert c["recovered"] <= c["exposure_at_default"] + 1e-6
        assert c["loss"] == pytest.approx(c["exposure_at_default"] - c["recovered"])
    assert 0.0 <= s["dscr_breach_probability"] <= 1.0
    losses = sum(s["lender_losses_by_type"].values())
    assert s["systemic_loss"] == pytest.approx(losses / m.metrics.initial_lender_equity)
    steps = m.metrics.steps_table()
    assert steps["fleet_value_index"].iloc[0] == pytest.approx(1.0)
    unpaid = steps["gpu_principal_unpaid_share"].to_numpy()
    assert unpaid[0] == pytest.approx(1.0) and np.all(np.diff(unpaid) <= 1e-12)  # repayments only add up


def test_buyer_aliases_scale_budgets_capacity_and_cap_racks():
    from model.model import _resolve_aliases

    base = load_scenario("baseline")
    o = _resolve_aliases("baseline", {"buyer_depth_scale": 2.0, "buyer_rack_kw_cap": 60})
    for b in base.buyers:
        assert o[f"buyers.{b.name}.budget_per_month"] == 2.0 * b.budget_per_month
        assert o[f"buyers.{b.name}.capacity_gpus_per_month"] == 2.0 * b.capacity_gpus_per_month
        assert o[f"buyers.{b.name}.max_rack_kw"] == min(b.max_rack_kw, 60)


# --- the nine experiments at a tiny size -----------------------------------------------------------

# Tiny sizes for CI: replicates and horizon cut down from the reduced files (the designs stay).
TINY: dict[str, dict[str, int]] = {
    "rent_deflation": {"replicates": 4, "months": 24},
    "duration_mismatch": {"replicates": 1, "months": 72},
    "double_leverage": {"replicates": 2, "months": 12},
    "repo_market": {"replicates": 4, "months": 8},
    "concentration": {"replicates": 1, "months": 6},
    "credit_spreads": {"replicates": 3, "months": 36},
    "policies": {"replicates": 3, "months": 24},
    "miners_2022": {"replicates": 1},
    "sensitivity": {"months": 12},
    "systemic_ranking": {"replicates": 2, "months": 2},
}


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    from experiments.named import EXPERIMENTS, run_named
    from experiments.sweep import SerialExecutor

    out = tmp_path_factory.mktemp("named")
    done = {}
    for name in EXPERIMENTS:
        report, sweeps, _ = run_named(name, out=out / name, resize=TINY[name], executor=SerialExecutor())
        done[name] = (report, sweeps, out / name)
    return done


@pytest.mark.parametrize(
    "name",
    [
        "rent_deflation",
        "duration_mismatch",
        "double_leverage",
        "repo_market",
        "concentration",
        "credit_spreads",
        "policies",
        "miners_2022",
        "sensitivity",
        "systemic_ranking",
    ],
)
def test_each_experiment_writes_its_figure_table_and_report(tiny_results, name):
    report, sweeps, folder = tiny_results[name]
    assert report.key_figure.is_file() and report.key_figure.stat().st_size > 10_000
    tables = [f for f in report.files if f.suffix == ".csv"]
    assert tables and all(f.is_file() for f in tables)
    text = (folder / "report.md").read_text()
    assert report.finding in text and f"python run.py experiment {name}" in text
    for s in sweeps:
        assert s.digest in (s.folder / "manifest.json").read_text()
        assert (s.runs["status"] == "ok").all()
    assert not re.search(r"\bnan\b|\bn/a\b", report.finding.lower()), report.finding


def _mean_and_half(table, metric):
    half = (table[f"{metric}_high"] - table[f"{metric}_low"]) / 2
    return table[metric].to_numpy(), half.to_numpy()


def test_higher_rent_deflation_never_lowers_the_default_rate_beyond_noise(tiny_results):
    table = tiny_results["rent_deflation"][0].numbers["table"].sort_values("rent_deflation")
    mean, half = _mean_and_half(table, "borrower_default_rate")
    for i in range(len(mean) - 1):
        assert mean[i + 1] >= mean[i] - (half[i] + half[i + 1]) - 0.05, (mean, half)
    assert mean[-1] > mean[0]  # and it does rise over the whole range


def test_deeper_buyers_never_raise_the_cascade_beyond_noise(tiny_results):
    table = tiny_results["repo_market"][0].numbers["table"]
    for _, by_cap in table.groupby("buyer_rack_kw_cap"):
        by_cap = by_cap.sort_values("buyer_depth_scale")
        mean, half = _mean_and_half(by_cap, "defaults_total")
        for i in range(len(mean) - 1):
            assert mean[i + 1] <= mean[i] + (half[i] + half[i + 1]) + 0.5, (mean, half)
        trough, t_half = _mean_and_half(by_cap, "price_to_fundamental_trough")
        assert trough[-1] >= trough[0] - (t_half[0] + t_half[-1]) - 0.05  # deeper buyers, shallower trough


def test_btc_collateral_never_lowers_miner_defaults_beyond_noise(tiny_results):
    table = tiny_results["double_leverage"][0].numbers["table"]
    btc = "generated.miners.btc_loan_to_value"
    keys = ["stress_correlation", "shocks.0.size"]
    with_ = table[table[btc] > 0].set_index(keys).sort_index()
    without = table[table[btc] == 0].set_index(keys).sort_index()
    noise = (with_["miner_default_rate_high"] - with_["miner_default_rate_low"]) / 2 + (
        without["miner_default_rate_high"] - without["miner_default_rate_low"]
    ) / 2
    assert (with_["miner_default_rate"] >= without["miner_default_rate"] - noise - 0.1).all()


def test_the_2022_replay_follows_the_recorded_paths(tiny_results):
    report, sweeps, _ = tiny_results["miners_2022"]
    scenario = load_scenario("miners_2022")
    hp_mean, hp_low = report.numbers["hashprice"]
    assert hp_mean == pytest.approx(123.9, rel=0.15) and hp_low == pytest.approx(55.9, rel=0.2)
    # the rent path is the rig's mining revenue: model hashprice x 0.1 PH / 24 (the scenario's mapping)
    m = GPUCreditModel("miners_2022")
    for month, rent in enumerate(scenario.world.rent.path, start=1):
        m.state.world.advance()
        assert rent == pytest.approx(m.state.world.hashprice() * 0.1 / 24, rel=0.01), month


def test_fair_spread_is_default_intensity_times_lgd():
    from experiments.named.credit_spreads import fair_spread

    years, ead, recovered = np.array([100.0, 300.0]), np.array([50.0, 150.0]), np.array([20.0, 60.0])
    s = fair_spread(years, ead, recovered)  # intensity 200 / 400 per year, LGD 120 / 200
    assert s == pytest.approx(0.5 * 0.6)
    assert fair_spread(np.array([10.0]), np.array([0.0]), np.array([0.0])) == 0.0


def test_unknown_experiment_is_one_clear_message(capsys):
    import run

    assert run.main(["experiment", "nope"]) == 2
    err = capsys.readouterr().err
    assert "experiment 'nope': unknown" in err and "rent_deflation" in err


def test_concentration_covers_the_number_of_lenders(tiny_results):
    report, sweeps, folder = tiny_results["concentration"]
    assert [s.sweep.plan.experiment.name for s in sweeps] == ["concentration", "concentration_lenders"]
    assert (folder / "concentration_lenders.png").is_file()
    assert "banks" in report.finding and "interbank share" in report.finding


def test_each_experiment_has_its_own_analysis_module_next_to_its_files():
    """One module per experiment in experiments/named (issue 20); what they share is in common.py."""
    import inspect

    from experiments.named import EXPERIMENTS, _function

    modules = set()
    for named in EXPERIMENTS.values():
        path = Path(inspect.getfile(_function(named.analysis, f"experiments.named.{named.name}")))
        assert path.parent == ROOT / "experiments/named" and path.stem not in ("common", "__init__")
        assert all((path.parent / f"{stem}.toml").is_file() for stem in named.files)
        modules.add(path)
    assert len(modules) == len(EXPERIMENTS)


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "experiments/named/full").glob("*.toml")))
def test_full_size_files_validate_and_match_the_reduced_ones(name):
    """The paper-size sweeps are not run in CI, but every design point of theirs is validated here."""
    from experiments.design import build_plan
    from experiments.named import EXPERIMENTS, experiment_file

    (named,) = [named for named in EXPERIMENTS.values() if name in named.files]
    plans = {}
    for size in ("full", "reduced"):
        experiment, _, scenario = experiment_file(named, name, size)
        plans[size] = (experiment, build_plan(experiment, scenario))
    (full, full_plan), (reduced, reduced_plan) = plans["full"], plans["reduced"]
    assert set(full.parameters) == set(reduced.parameters) and full.fixed == reduced.fixed
    assert len(full_plan.runs) >= len(reduced_plan.runs)


def test_findings_state_the_paired_difference_and_say_no_change_in_words():
    """A finding compares two arms by their paired difference (same replicates) with its 95 % interval,
    never reads "from 1.1 to 1.1", and calls a paired interval that holds zero no clear change."""
    from experiments.named import check_finding
    from experiments.named.common import change, points

    one, signed = (lambda v: f"{v:.1f}"), (lambda v: f"{v:+.1f}")
    replicates = pd.Index([0, 1, 2, 3], name="replicate")
    before = pd.Series([1.0, 2.0, 3.0, 4.0], index=replicates)
    # every replicate rises by exactly 1: the arms' own intervals overlap widely, the paired one is [1, 1]
    assert (
        change(before, before + 1.0, one, signed)
        == "goes from 2.5 to 3.5 (paired difference +1.0 [+1.0, +1.0])"
    )
    # differences 1, -1, 1, -1 (mean 0, sd 2/sqrt(3)): half-width 1.96 * 1.1547 / 2 = 1.13
    noisy = before + pd.Series([1.0, -1.0, 1.0, -1.0], index=replicates)
    assert change(before, noisy, one, signed) == "stays at 2.5 (paired difference +0.0 [-1.1, +1.1])"
    # differences 2, 0, 2, 0 (mean 1, half-width 1.13): a move whose paired interval holds zero
    assert change(before, before + pd.Series([2.0, 0.0, 2.0, 0.0], index=replicates), one, signed) == (
        "goes from 2.5 to 3.5 (paired difference +1.0 [-0.1, +2.1]: no clear change)"
    )
    # pairs are matched on the replicate, not on the order; a replicate one arm lacks is left out
    shuffled = (before + 0.1).iloc[::-1]
    assert (
        change(before, shuffled, one, signed) == "goes from 2.5 to 2.6 (paired difference +0.1 [+0.1, +0.1])"
    )
    shares = pd.Series([0.10, 0.20, 0.30], index=replicates[:3])
    assert change(shares, shares + 0.05, lambda v: f"{100 * v:.0f} %", points, " points") == (
        "goes from 20 % to 25 % (paired difference +5.0 points [+5.0, +5.0])"
    )
    assert change(before, pd.Series([9.0], index=pd.Index([7], name="replicate")), one, signed).startswith(
        "cannot be compared"
    )
    for bad in ("defaults from 1.1 to 1.1 and", "from 3 % to 3 %", "from $0.37B vs $0.37B"):
        with pytest.raises(RuntimeError, match="a change that is none"):
            check_finding("x", bad)
    for fine in ("from 3 % to 30 %", "from 1.1 to 1.15", "from 0.85 to 0.95"):
        check_finding("x", fine)


def test_findings_of_compared_arms_carry_paired_intervals(tiny_results):
    """Experiments 1-5 and 7 state their comparisons as paired differences with 95 % intervals."""
    for name in ("rent_deflation", "duration_mismatch", "double_leverage", "repo_market", "concentration"):
        finding = tiny_results[name][0].finding
        assert re.search(r"paired difference [-+]\d", finding) or "no replicate measures both" in finding, (
            name,
            finding,
        )
    assert "paired 95 % CI" in tiny_results["policies"][0].finding


def test_counted_contagion_is_worded_from_the_attribution():
    from experiments.named.common import attribution_markdown

    attribution = {
        "run_id": "p00002-r01",
        "seed": 7,
        "where": {"rent_deflation": 0.6},
        "borrower_defaults": 3,
        "attributed": 2,
        "defaults": [
            {
                "name": "miner-1",
                "month": 4,
                "extra_defaults": [{"name": "bank-0", "month": 5}, {"name": "miner-2", "month": 9}],
                "brought_forward": [{"name": "neocloud-3", "month": 6, "month_without": 30}],
            },
            {"name": "neocloud-3", "month": 6, "extra_defaults": [], "brought_forward": []},
        ],
    }
    text = attribution_markdown(attribution)
    assert "reference run `p00002-r01`" in text and "`rent_deflation` = 0.6; seed 7" in text
    assert "Of its 3 borrower default(s), the first 2 were each rerun" in text
    assert text.endswith(
        "- miner-1 (month 4): 2 extra default(s): bank-0 (month 5), miner-2 (month 9); 1 brought forward: "
        "neocloud-3 (month 6, else 30).\n"
        "- neocloud-3 (month 6): 0 extra default(s): none; 0 brought forward: none."
    )
    none = attribution_markdown({"run_id": None, "where": {"x": 1}, "looked_at": 0, "defaults": []})
    assert "No run at this design point has a default" in none


def test_reports_name_the_counted_contagion_of_their_reference_run(tiny_results):
    """Experiments 1-7 attribute the first defaults of a reference run (model.attribution): the run is
    one of the sweep's, and no default is credited with an effect before it happened."""
    attributed = 0
    for name in ("rent_deflation", "duration_mismatch", "double_leverage", "repo_market", "concentration"):
        report, sweeps, folder = tiny_results[name]
        attribution = report.numbers["attribution"]
        assert "**Counted contagion" in (folder / "report.md").read_text()
        if attribution["run_id"] is None:
            continue
        assert attribution["run_id"] in set(sweeps[0].runs["run_id"])
        for default in attribution["defaults"]:
            attributed += 1
            effects = default["extra_defaults"] + default["brought_forward"]
            assert all(effect["month"] >= default["month"] for effect in effects), default
    for name in ("credit_spreads", "policies"):
        assert "**Counted contagion" in tiny_results[name][0].body
    assert attributed > 0  # at this size some reference run has a borrower default to attribute


def test_systemic_ranking_pairs_every_agent_with_its_reference(tiny_results):
    """Every borrower and lender of market_2026 ranked, paired with the no-default reference on the same
    seeds; TeraWulf's default fells its two lender groups in every replicate, as checked by hand in
    tests/test_systemic_ranking.py, with and without the price channel."""
    report, (forced, reference), folder = tiny_results["systemic_ranking"]
    assert set(forced.runs["seed"]) == set(reference.runs["seed"])  # common random numbers
    table = report.numbers["table"]
    assert len(table) == 31 and table["n"].eq(2).all()  # every borrower and lender of market_2026
    assert (
        pd.to_numeric(reference.runs["defaults_total"]).sum() == 0
    )  # so each further default is the forced one's
    wulf = table.set_index("agent").loc["terawulf"]
    assert wulf["further_defaults"] == 2 and wulf["further_defaults_off"] == 2
    assert wulf["further_borrower_defaults"] == 0 and wulf["engine_further_defaults_off"] == 2
    assert wulf["engine_lender_loss_off"] == pytest.approx(
        2_551.2e6 + 1_785.0e6, rel=1e-3
    )  # notes senior, 2 % workout
    assert np.isfinite(table["debtrank"]).all() and table["debtrank"].between(0.0, 1.0).all()
    assert (folder / "network_impact.png").is_file() and (folder / "paired_effects.csv").is_file()
    assert "--scenario market_2026" in (folder / "report.md").read_text()
    assert "What the public data leaves unknown" in report.body
