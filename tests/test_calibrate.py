"""``run.py calibrate``: recovery of known parameters, byte-identical posteriors across executors and
after a real kill + resume, clear errors for bad files, and an end-to-end run through the model."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pandas as pd
import pytest

import run
from core.config import ConfigError
from experiments.calibrate import load_calibration, run_calibration

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "experiments" / "calibrations" / "synthetic_ar1.toml"
TRUE = {"kappa": 0.15, "sigma": 0.08, "level": 0.5}


def _small(tmp_path: Path, name: str, population: int, generations: int, draws: int = 20) -> Path:
    """The example file with a smaller budget."""
    text = EXAMPLE.read_text()
    text = text.replace("population_size = 200", f"population_size = {population}")
    text = text.replace("max_generations = 8", f"max_generations = {generations}")
    text = text.replace("predictive_draws = 100", f"predictive_draws = {draws}")
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def test_synthetic_recovers_known_parameters(tmp_path):
    resolved = load_calibration(EXAMPLE)
    out = tmp_path / "example"
    outcome = run_calibration(resolved, out, "serial", 1, figures=True)
    table = pd.read_csv(out / "parameters.csv").set_index("parameter")
    for name, true in TRUE.items():
        row = table.loc[name]
        assert row.posterior_q05 <= true <= row.posterior_q95, (name, row.to_dict())
        assert row.width_vs_prior < 1.0, (name, row.to_dict())  # narrower than the prior
    assert table.loc["sigma"].width_vs_prior < 0.5
    posterior = pd.read_parquet(out / "posterior.parquet")
    assert list(posterior.columns) == [
        "generation",
        "particle",
        "kappa",
        "sigma",
        "level",
        "weight",
        "distance",
    ]
    assert len(posterior) == 200 and (posterior.generation == outcome.generations - 1).all()
    assert abs(posterior.weight.sum() - 1) < 1e-12
    gens = pd.read_parquet(out / "generations.parquet")
    assert list(gens.generation) == list(range(outcome.generations))
    assert gens.epsilon.is_monotonic_decreasing
    fit = pd.read_csv(out / "fit.csv")
    assert set(fit.target) == {"mean", "sd", "acf1", "drawdown"} and fit.observed_in_band.all()
    for name in ("figures/posterior.png", "figures/fit.png", "manifest.json", "fit.parquet", "history.db"):
        assert (out / name).is_file(), name


def test_same_posterior_bytes_serial_processes_dask(tmp_path):
    path = _small(tmp_path, "det", population=60, generations=3)
    resolved = load_calibration(path)
    digests = {}
    for kind, workers in (("serial", 1), ("processes", 2), ("dask", 2)):
        out = tmp_path / kind
        run_calibration(resolved, out, kind, workers, figures=False)
        digests[kind] = ((out / "posterior.parquet").read_bytes(), (out / "fit.csv").read_bytes())
    assert digests["processes"] == digests["serial"]
    assert digests["dask"] == digests["serial"]


def test_more_generations_extend_a_finished_calibration_to_the_same_bytes(tmp_path):
    at_once = tmp_path / "at_once"
    run_calibration(load_calibration(_small(tmp_path, "three", 60, 3)), at_once, "serial", 1, figures=False)
    extended = tmp_path / "extended"
    run_calibration(load_calibration(_small(tmp_path, "two", 60, 2)), extended, "serial", 1, figures=False)
    outcome = run_calibration(load_calibration(_small(tmp_path, "three", 60, 3)), extended, "serial", 1)
    assert outcome.generations == 3
    for name in ("posterior.parquet", "fit.csv", "calibration.toml"):
        assert (extended / name).read_bytes() == (at_once / name).read_bytes(), name


def _assert_truth_in_posterior_band(out: Path) -> pd.DataFrame:
    """Every known parameter inside its posterior 90 % interval; returns the parameter table."""
    table = pd.read_csv(out / "parameters.csv").set_index("parameter")
    for name, true in TRUE.items():
        row = table.loc[name]
        assert row.posterior_q05 <= true <= row.posterior_q95, (name, row.to_dict())
    return table


def test_the_local_transition_recovers_the_known_parameters(tmp_path):
    path = _small(tmp_path, "local", population=150, generations=5)
    path.write_text(path.read_text().replace("[inference]", '[inference]\ntransition = "local"'))
    out = tmp_path / "local"
    run_calibration(load_calibration(path), out, "serial", 1, figures=False)
    _assert_truth_in_posterior_band(out)


def test_normal_scores_map_onto_each_prior_and_recover_the_known_parameters(tmp_path):
    from experiments.calibrate import PriorSpec

    uniform = PriorSpec(path="kappa", prior="uniform", low=2.0, high=4.0)
    loguniform = PriorSpec(path="kappa", prior="loguniform", low=1.0, high=100.0)
    assert uniform.from_score(0.0) == pytest.approx(3.0) and loguniform.from_score(0.0) == pytest.approx(10.0)
    assert uniform.from_score(-1.2815515655446004) == pytest.approx(2.2)  # the 10 % quantile
    assert 2.0 <= uniform.from_score(-40.0) <= uniform.from_score(40.0) <= 4.0
    path = _small(tmp_path, "scores", population=150, generations=6)
    path.write_text(path.read_text().replace("[inference]", '[inference]\nparameter_space = "normal_scores"'))
    out = tmp_path / "scores"
    run_calibration(load_calibration(path), out, "serial", 1, figures=False)
    _assert_truth_in_posterior_band(out)
    posterior = pd.read_parquet(out / "posterior.parquet")
    assert posterior.kappa.between(0.01, 0.6).all()  # the prior's range: values, not scores
    gens = pd.read_parquet(out / "generations.parquet")
    assert (gens.effective_sample_size > 1.0).all() and gens.effective_sample_size.iloc[0] == pytest.approx(
        150
    )


def test_draw_from_prior_is_rejection_in_those_dimensions_and_recovers_the_known_parameters(tmp_path):
    every = _small(tmp_path, "all_prior", population=60, generations=3)
    every.write_text(
        every.read_text().replace("[inference]", '[inference]\ndraw_from_prior = ["kappa", "sigma", "level"]')
    )
    out = tmp_path / "all_prior"
    run_calibration(load_calibration(every), out, "serial", 1, figures=False)
    posterior = pd.read_parquet(out / "posterior.parquet")
    assert posterior.generation.iloc[0] == 2
    assert posterior.weight.max() == pytest.approx(posterior.weight.min())  # prior / proposal = 1: rejection
    one = _small(tmp_path, "level_prior", population=150, generations=5)
    one.write_text(one.read_text().replace("[inference]", '[inference]\ndraw_from_prior = ["level"]'))
    out = tmp_path / "level_prior"
    run_calibration(load_calibration(one), out, "serial", 1, figures=False)
    table = _assert_truth_in_posterior_band(out)
    assert table.loc["level"].width_vs_prior < 0.8  # rejection narrows it too, as the targets inform it
    posterior = pd.read_parquet(out / "posterior.parquet")
    assert posterior.weight.max() > 1.5 * posterior.weight.min()  # kappa and sigma are still perturbed


def _stored_generations(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1) as con:
            return con.execute("select count(*) from populations where t >= 0").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_resume_after_kill_gives_the_same_posterior(tmp_path):
    path = _small(tmp_path, "resume", population=150, generations=6)
    command = [sys.executable, "run.py", "calibrate", str(path), "--no-figures", "--no-progress"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*command, "--out", str(killed)], cwd=ROOT, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while _stored_generations(killed / "history.db") < 2 and time.monotonic() < deadline:
        assert proc.poll() is None, "the calibration ended before it could be killed"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stored = _stored_generations(killed / "history.db")
    assert 2 <= stored < 6
    assert not (killed / "posterior.parquet").exists()
    resumed = subprocess.run(
        [*command, "--out", str(killed), "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed after generation {stored}" in resumed.stdout
    whole = tmp_path / "whole"
    run_calibration(load_calibration(path), whole, "serial", 1, figures=False)
    assert (killed / "posterior.parquet").read_bytes() == (whole / "posterior.parquet").read_bytes()
    assert (killed / "fit.csv").read_bytes() == (whole / "fit.csv").read_bytes()
    # a finished calibration run again changes nothing
    again = subprocess.run(
        [*command, "--out", str(killed)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0, again.stderr
    assert (killed / "posterior.parquet").read_bytes() == (whole / "posterior.parquet").read_bytes()


MODEL_FILE = """
name = "tiny_model"
seed = 3
simulator = "model"
scenario = "baseline"
months = 6
[inference]
population_size = 10
max_generations = 2
predictive_draws = 10
[[parameters]]
path = "world.rent.shock_volatility"
prior = "uniform"
low = 0.01
high = 0.3
[[targets]]
name = "rent_mean"
statistic = "series_mean"
args = { series = "rent_index", first = "2026-08", last = "2027-01" }
observed = 0.95
sd = 0.05
source = "made up for the test"
"""


BAD = [
    ("unknown key", ("seed = 3", "seed = 3\ncolour = 'red'"), "colour: unknown field"),
    ("low >= high", ("low = 0.01\nhigh = 0.3", "low = 0.3\nhigh = 0.3"), "parameters.0: empty prior range"),
    ("unknown prior", ('prior = "uniform"', 'prior = "cauchy"'), "parameters.0.prior"),
    ("unknown statistic", ('statistic = "series_mean"', 'statistic = "series_median"'), "unknown statistic"),
    ("sd <= 0", ("sd = 0.05", "sd = 0"), "targets.0.sd"),
    ("non-finite", ("observed = 0.95", "observed = nan"), "targets.0.observed: must be a finite number"),
    ("infinite bound", ("high = 0.3", "high = inf"), "parameters.0.high: must be a finite number"),
    ("unknown path", ("world.rent.shock_volatility", "world.rent.noise_volatilty"), "parameters.0.path"),
    ("bad series", ('series = "rent_index"', 'series = "rent_idx"'), "unknown series ['rent_idx']"),
    ("month outside", ('last = "2027-01"', 'last = "2028-01"'), "outside the simulated months"),
    ("prior outside", ("high = 0.3", "high = 3.0"), "the scenario rejects world.rent.shock_volatility = 3.0"),
    ("bad simulator", ('simulator = "model"', 'simulator = "abm"'), "simulator"),
    (
        "draw_from_prior names no parameter",
        ("max_generations = 2", 'max_generations = 2\ndraw_from_prior = ["world.rent.drift"]'),
        "inference.draw_from_prior: ['world.rent.drift'] are not declared parameters",
    ),
    ("no observed", ("observed = 0.95", ""), "give exactly one of observed = NUMBER or observed_from"),
    (
        "unknown observed series",
        ("observed = 0.95", 'observed_from = { series = "no_such_series" }'),
        "observed_from.series: no series 'no_such_series'",
    ),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_files_give_one_clear_message(tmp_path, capsys, case):
    _, (old, new), expected = case
    assert old in MODEL_FILE
    path = tmp_path / "bad.toml"
    path.write_text(MODEL_FILE.replace(old, new, 1))
    code = run.main(["calibrate", str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_calibrate_runs_serially_unless_workers_or_a_scheduler_are_asked_for():
    from experiments.calibrate import calibrate_parser, executor_choice

    for argv, expected in (
        ([], ("serial", 1)),
        (["--workers", "2"], ("processes", 2)),
        (["--workers", "2", "--executor", "serial"], ("serial", 1)),
        (["--scheduler", "tcp://127.0.0.1:8786"], ("dask", 1)),
    ):
        assert executor_choice(calibrate_parser().parse_args(["x.toml", *argv])) == expected, argv


def test_unknown_synthetic_parameter(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(EXAMPLE.read_text().replace('path = "kappa"', 'path = "speed"'))
    assert run.main(["calibrate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "parameters.0.path: unknown synthetic_ar1 parameter 'speed'" in err and "Traceback" not in err


def test_tiny_model_calibration_end_to_end(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(MODEL_FILE)
    out = tmp_path / "out"
    code = run.main(["calibrate", str(path), "--out", str(out), "--executor", "serial", "--no-progress"])
    assert code == 0
    for name in (
        "posterior.parquet",
        "generations.parquet",
        "parameters.csv",
        "fit.csv",
        "fit.parquet",
        "figures/posterior.png",
        "figures/fit.png",
        "manifest.json",
    ):
        assert (out / name).is_file(), name
    posterior = pd.read_parquet(out / "posterior.parquet")
    assert len(posterior) == 10 and posterior["world.rent.shock_volatility"].between(0.01, 0.3).all()
    assert len(pd.read_parquet(out / "generations.parquet")) == 2
    fit = pd.read_csv(out / "fit.csv")
    assert fit.loc[0, "draws"] == 10 and fit.loc[0, "source"] == "made up for the test"
    import json

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "calibration" and manifest["seed"] == 3
    assert set(manifest["outputs"]) >= {"posterior.parquet", "fit.csv", "figures/fit.png"}
    assert manifest["versions"]["pyabc"] and manifest["code_revision"]["commit"]
    assert tomllib.loads(manifest["calibration_text"])["name"] == "tiny_model"


def test_observed_from_takes_the_targets_statistic_of_the_observed_series() -> None:
    """A target's observed value can come from data/observed: the same statistic, on the data's series."""
    from core.observed import load_observed
    from experiments.calibrate import parse_calibration, resolve

    text = (
        MODEL_FILE.replace('scenario = "baseline"', 'scenario = "history_2023_2026"')
        .replace("months = 6", "months = 12")
        .replace(
            'args = { series = "rent_index", first = "2026-08", last = "2027-01" }\nobserved = 0.95',
            'args = { series = "btc_price", first = "2023-02", last = "2023-07" }\n'
            'observed_from = { series = "btc_close_usd" }',
        )
    )
    text += '\n[[targets]]\nname = "btc_dec"\nstatistic = "series_value_at"\n'
    text += (
        'args = { series = "btc_price", month = "2023-12" }\nobserved_from = { series = "btc_close_usd" }\n'
    )
    text += 'sd = 1000.0\nrole = "check"\n'
    resolved = resolve(parse_calibration(text), text, "(test)")
    btc = load_observed().get("btc_close_usd")
    mean, dec = (t.observed for t in resolved.calibration.targets)
    assert mean == pytest.approx(btc["2023-02":"2023-07"].mean(), rel=1e-12)
    assert dec == btc["2023-12"]
    assert [t.role for t in resolved.calibration.targets] == ["fit", "check"]


def test_summary_statistics_read_the_runs_summary_and_need_the_model() -> None:
    """summary_value and summary_ratio read a run's flattened summary; a name the summary lacks, or a
    simulator without one, is one clear message."""
    from experiments.calibrate import parse_calibration, resolve
    from experiments.calibration_statistics import STATISTICS, Steps

    steps = Steps([{"date": "2025-01"}], {"recovered": 30.0, "written_off": 120.0, "fall": -0.8})
    ratio = STATISTICS["summary_ratio"]
    assert ratio.fn(steps, ratio.args(numerator="recovered", denominator="written_off")) == 0.25
    value = STATISTICS["summary_value"]
    assert value.fn(steps, value.args(metric="fall")) == -0.8
    assert math.isnan(
        ratio.fn(
            Steps([], {"recovered": 1.0, "written_off": 0.0}),
            ratio.args(numerator="recovered", denominator="written_off"),
        )
    )
    bad = MODEL_FILE.replace(
        'statistic = "series_mean"\nargs = { series = "rent_index", first = "2026-08", last = "2027-01" }',
        'statistic = "summary_value"\nargs = { metric = "no_such_metric" }',
    )
    with pytest.raises(ConfigError, match="unknown summary metric"):
        resolve(parse_calibration(bad), bad, "(test)")
