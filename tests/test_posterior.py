"""Sweeps over a calibration's posterior: each replicate runs at its own weighted draw (the same draw and
seed at every design point), the design's values win over a draw's, the file's digest is recorded and
checked on replay, and a bad posterior file or section is one clear message."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.config import ConfigError
from experiments.design import build_plan, load_experiment, scenario_for
from experiments.sweep import RESULTS, prepare, replay_sweep, run_sweep

EXPERIMENT = """
name = "over_posterior"
scenario = "baseline"
months = 4
master_seed = 5
replicates = 4
[design]
kind = "grid"
[parameters."world.btc.volatility_per_year"]
values = [0.5, 0.9]
[outputs]
metrics = ["defaults_total", "share_failed"]
[posterior]
file = "posterior.parquet"
draws = 2
exclude = ["world.rent.h100_rent_per_hour"]
"""

PARTICLES = {
    "generation": [3, 3, 3],
    "particle": [0, 1, 2],
    "world.rent.h100_rent_per_hour": [5.0, 6.0, 7.0],
    "world.rent.shock_volatility": [0.05, 0.10, 0.15],
    "world.btc.volatility_per_year": [0.7, 0.7, 0.7],
    "weight": [0.5, 0.0, 0.5],
    "distance": [1.0, 2.0, 3.0],
}


def write_case(folder: Path, text: str = EXPERIMENT, particles: dict | None = None) -> Path:
    pd.DataFrame(particles or PARTICLES).to_parquet(folder / "posterior.parquet")
    path = folder / "exp.toml"
    path.write_text(text)
    return path


def plan_of(path: Path):
    experiment, _ = load_experiment(path)
    return build_plan(experiment, scenario_for(experiment, path), experiment_path=path)


def test_replicates_cycle_over_weighted_draws_with_common_random_numbers(tmp_path):
    plan = plan_of(write_case(tmp_path))
    assert len(plan.posterior_draws) == 2
    for draw in plan.posterior_draws:
        assert set(draw) == {"world.rent.shock_volatility", "world.btc.volatility_per_year"}
        assert draw["world.rent.shock_volatility"] in (0.05, 0.15), "a particle of weight 0 was drawn"
    for run in plan.runs:
        assert run.draw == run.replicate % 2
        draw = plan.posterior_draws[run.draw]
        assert run.overrides["world.rent.shock_volatility"] == draw["world.rent.shock_volatility"]
        # the design point's value wins over the draw's
        assert run.overrides["world.btc.volatility_per_year"] == run.params["world.btc.volatility_per_year"]
        assert "world.rent.h100_rent_per_hour" not in run.overrides
    same = {(r.replicate, r.seed, r.draw) for r in plan.runs}
    assert len(same) == 4, "replicate r must have one seed and one draw at every design point"
    again = plan_of(tmp_path / "exp.toml")
    assert again.posterior_draws == plan.posterior_draws, "draws must follow from the master seed"


def test_draws_follow_the_weights(tmp_path):
    particles = dict(PARTICLES, weight=[0.9, 0.1, 0.0])
    text = EXPERIMENT.replace("replicates = 4", "replicates = 2000").replace("draws = 2", "draws = 2000")
    plan = plan_of(write_case(tmp_path, text, particles))
    shares = pd.Series([d["world.rent.shock_volatility"] for d in plan.posterior_draws]).value_counts(
        normalize=True
    )
    assert shares.get(0.15, 0.0) == 0.0
    assert shares[0.05] == pytest.approx(0.9, abs=0.03)


def test_sweep_records_the_posterior_and_replay_checks_its_content(tmp_path):
    path = write_case(tmp_path)
    experiment, text = load_experiment(path)
    out = tmp_path / "out"
    sweep = prepare(experiment, text, scenario_for(experiment, path), out, str(path))
    outcome = run_sweep(sweep, "serial", 1)
    assert outcome.ok == 8 and not outcome.failed
    runs = pd.read_parquet(out / RESULTS)
    assert list(runs["draw"]) == [0, 1, 0, 1] * 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["posterior"]["draws"] == sweep.plan.posterior_draws
    assert len(manifest["posterior"]["sha256"]) == 64

    ok, problems, _ = replay_sweep(out / "manifest.json", executor="serial")
    assert ok, problems

    changed = pd.DataFrame(PARTICLES)
    changed.loc[0, "world.rent.shock_volatility"] = 0.06
    changed.to_parquet(tmp_path / "posterior.parquet")
    ok, problems, _ = replay_sweep(out / "manifest.json", executor="serial")
    assert not ok and any("posterior file" in p for p in problems)


def test_a_draw_changes_the_run(tmp_path):
    """The same seed at two posteriors' single particles gives different rent paths: the draw is applied."""
    from model.model import GPUCreditModel

    text = EXPERIMENT.replace("months = 4", "months = 24")
    rents = []
    for weight in ([1.0, 0.0, 0.0], [0.0, 0.0, 1.0]):
        folder = tmp_path / str(len(rents))
        folder.mkdir()
        run = plan_of(write_case(folder, text, dict(PARTICLES, weight=weight))).runs[0]
        model = GPUCreditModel("baseline", seed=run.seed, months=run.months, overrides=run.overrides)
        model.run()
        rents.append(np.array([row["rent_index"] for row in model.metrics.steps]))
    assert not np.allclose(rents[0], rents[1])


@pytest.mark.parametrize(
    ("edit", "particles", "message"),
    [
        (("posterior.parquet", "missing.parquet"), None, "posterior.file: "),
        (('exclude = ["world.rent.h100_rent_per_hour"]', 'exclude = ["nope"]'), None, "posterior.exclude"),
        (("draws = 2", "draws = 9"), None, "posterior.draws (9) exceeds replicates"),
        (("draws = 2", "draws = 0"), None, "posterior.draws"),
        (("[posterior]", "[posterior]\nseed = 3"), None, "posterior.seed: unknown field"),
        (None, dict(PARTICLES, weight=[np.nan, 1.0, 1.0]), "column 'weight'"),
        (None, dict(PARTICLES, weight=[0.0, 0.0, 0.0]), "positive sum"),
        (
            None,
            {**PARTICLES, "world.no_such": [1.0, 2.0, 3.0]},
            "'world.no_such' is not a scenario parameter",
        ),
        (
            None,
            dict(PARTICLES, weight=[1.0, 0.0, 0.0], **{"world.rent.shock_volatility": [-1.0, 0.1, 0.1]}),
            "posterior draw 0 gives an invalid scenario",
        ),
    ],
)
def test_bad_posterior_is_one_clear_message(tmp_path, edit, particles, message):
    text = EXPERIMENT if edit is None else EXPERIMENT.replace(*edit)
    with pytest.raises(ConfigError) as info:
        plan_of(write_case(tmp_path, text, particles))
    assert message in str(info.value), str(info.value)
    assert "Traceback" not in str(info.value)


def test_a_damaged_posterior_file_is_one_clear_message(tmp_path):
    path = write_case(tmp_path)
    (tmp_path / "posterior.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ConfigError, match="not a readable Parquet file"):
        plan_of(path)
