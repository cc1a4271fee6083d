"""History mode: observed series drive the world exactly, then the processes continue from them."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from core.config import ConfigError, load_scenario, month_index
from core.observed import load_observed, month_from_index
from model.model import GPUCreditModel


def observed_months(start: str, months: int) -> list[str]:
    return [month_from_index(month_index(start) + m) for m in range(months + 1)]


@pytest.mark.parametrize("scenario", ["history_2023_2026", "miners_2022"])
def test_an_observed_path_is_followed_exactly(scenario: str) -> None:
    data = load_observed()
    model = GPUCreditModel(scenario)
    model.run()
    steps = model.metrics.steps
    months = [row["date"] for row in steps]
    assert months == observed_months(model.config.world.start, model.months)
    btc = data.get("btc_close_usd")
    rate = data.get("base_rate")
    for row in steps:  # month 0 is the start value, months 1.. the path
        assert row["btc_price"] == btc[row["date"]], row["date"]
        assert row["base_rate"] == rate[row["date"]], row["date"]


def test_history_runs_to_the_last_month_every_driven_series_covers() -> None:
    data = load_observed()
    scenario = load_scenario("history_2023_2026")
    last = min(data.last_month("btc_close_usd"), data.last_month("base_rate"))
    assert scenario.history.until == last  # 'latest' is resolved and recorded in the config
    assert len(scenario.world.btc.path) == month_index(last) - month_index("2023-01")


def test_after_the_last_observed_month_the_processes_continue_from_it() -> None:
    """A horizon past the data: BTC follows the record to the last month, then moves on from there."""
    scenario = load_scenario("history_2023_2026")
    until = scenario.history.until
    observed = len(scenario.world.btc.path)
    runs = [GPUCreditModel("history_2023_2026", seed=s, months=observed + 6) for s in (1, 2)]
    for m in runs:
        m.run()
    paths = [np.array([row["btc_price"] for row in m.metrics.steps]) for m in runs]
    np.testing.assert_array_equal(paths[0][: observed + 1], paths[1][: observed + 1])
    assert runs[0].metrics.steps[observed]["date"] == until
    assert not np.array_equal(paths[0][observed + 1 :], paths[1][observed + 1 :])  # stochastic after
    # one month on, BTC is one monthly return away from the last observed close, not from elsewhere
    for path in paths:
        assert abs(np.log(path[observed + 1] / path[observed])) < 1.0


def test_a_run_in_history_mode_replays_to_the_byte(tmp_path) -> None:
    a, b = GPUCreditModel("history_2023_2026", seed=3), GPUCreditModel("history_2023_2026", seed=3)
    a.run(), b.run()
    assert a.metrics.steps == b.metrics.steps


@pytest.mark.parametrize(
    ("history", "message"),
    [
        ({"until": "2022-06"}, "history.until: 2022-06 is before world.start 2023-01"),
        ({"until": "2031-01"}, "btc_close_usd"),  # beyond the data: the missing month is named
        ({"until": "latest", "btc": "no_such_series"}, "history.btc: no series 'no_such_series'"),
        ({"until": "2024-13"}, "history.until"),
        ({"until": "latest", "rent": "h100_rent_contract_usd_per_hour"}, "h100_rent_contract_usd_per_hour"),
    ],
)
def test_bad_history_is_one_clear_message(history: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_scenario("history_2023_2026", {f"history.{k}": v for k, v in history.items()})
    assert message in str(err.value)


def test_a_damaged_data_folder_stops_the_run_with_the_file_named(tmp_path) -> None:
    from core.config import PROJECT_DIR

    folder = tmp_path / "observed"
    shutil.copytree(PROJECT_DIR / "data" / "observed", folder)
    text = (folder / "monthly.csv").read_text().replace("btc_close_usd,2023-05,", "btc_close_usd,2023-5,", 1)
    (folder / "monthly.csv").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_scenario("history_2023_2026", {"history.folder": str(folder)})
    assert "monthly.csv line" in str(err.value) and "2023-5" in str(err.value)


def test_both_history_scenarios_are_in_the_visualisers_list() -> None:
    from experiments.viz_model import scenario_names

    assert {"history_2023_2026", "miners_2022"} <= set(scenario_names())
