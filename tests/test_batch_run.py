"""Mesa's own batch runner drives the model: one row per run with the DataCollector's columns.

Mesa 3.5.1's ``batch_run`` passes its seed under the constructor's ``seed`` parameter and, with
``iterations=``, passes ``seed=None``, overriding a ``seed`` given in ``parameters``; the model then
falls back to the scenario's seed (still reproducible). ``rng=[...]`` is the way to give seeds.
"""

from __future__ import annotations

import multiprocessing
import warnings
from collections.abc import Iterator

import mesa
import pytest

from model.metrics import MetricsRecorder
from model.model import GPUCreditModel

COLUMNS = set(MetricsRecorder.mesa_reporters())


@pytest.fixture(autouse=True)
def keep_start_method() -> Iterator[None]:
    """batch_run forces the 'spawn' start method on the whole process; put it back afterwards."""
    before = multiprocessing.get_start_method(allow_none=True)
    yield
    multiprocessing.set_start_method(before, force=True)


def direct(rent_deflation: float, seed: int | None) -> dict:
    model = GPUCreditModel(rent_deflation=rent_deflation, seed=seed)
    for _ in range(12):
        model.step()
    return model.datacollector.get_model_vars_dataframe().iloc[-1].to_dict()


def test_batch_run_returns_the_datacollector_columns() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # `iterations` is deprecated in Mesa 3.5
        rows = mesa.batch_run(
            GPUCreditModel,
            parameters={"rent_deflation": [0.2, 0.4], "seed": [1]},
            iterations=1,
            max_steps=12,
            number_processes=1,
            display_progress=False,
        )
    assert len(rows) == 2
    for row in rows:
        assert set(row) >= COLUMNS, sorted(COLUMNS - set(row))
        assert row["Step"] == 12
        assert row["seed"] is None  # Mesa replaced the seed with its iteration's (None)
        expected = direct(row["rent_deflation"], seed=None)
        assert {c: row[c] for c in COLUMNS} == {c: expected[c] for c in COLUMNS}
    by_deflation = {row["rent_deflation"]: row for row in rows}
    assert by_deflation[0.4]["rent_index"] < by_deflation[0.2]["rent_index"]


def test_batch_run_with_rng_seeds_the_model() -> None:
    rows = mesa.batch_run(
        GPUCreditModel,
        parameters={"rent_deflation": [0.2]},
        rng=[1, 2],
        max_steps=12,
        number_processes=1,
        display_progress=False,
    )
    assert [row["seed"] for row in rows] == [1, 2]
    for row in rows:
        expected = direct(0.2, seed=row["seed"])
        assert {c: row[c] for c in COLUMNS} == {c: expected[c] for c in COLUMNS}
    assert rows[0]["btc_price"] != rows[1]["btc_price"]
