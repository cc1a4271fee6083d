"""One random stream per subsystem (``core.streams``, issue 19): a change in one subsystem leaves
every other's draws identical, so two arms on one seed are paired draw for draw."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from core.ledger import Kind
from core.streams import STREAM_NAMES, Streams, spawn_key, stream_seed
from experiments.run_report import tables
from model.manifest import run_manifest
from model.metrics import run_summary
from model.model import GPUCreditModel
from model.operations import tenant_draws

MONTHS = 60


def outcome(model: GPUCreditModel) -> dict:
    """Everything a user reads of a run: the monthly table, the defaults and the summary."""
    t = tables(model)
    return {
        "steps": t["steps"].to_json(orient="records", double_precision=15),
        "generations": t["generations"].to_json(orient="records", double_precision=15),
        "defaults": t["defaults"].to_json(orient="records", double_precision=15),
        "summary": json.dumps(run_summary(model), default=float, sort_keys=True),
    }


def finished(seed: int, **overrides) -> GPUCreditModel:
    model = GPUCreditModel("baseline", seed=seed, months=MONTHS, overrides=overrides)
    model.run()
    return model


def test_stream_keys_are_fixed_by_name_and_distinct() -> None:
    keys = [spawn_key(name) for name in STREAM_NAMES]
    assert len(set(keys)) == len(keys)
    assert spawn_key("world") == int.from_bytes(hashlib.sha256(b"world").digest()[:4], "big")
    # the same name gives the same draws whatever else exists; different names differ
    a = np.random.default_rng(stream_seed(16, "world")).random(4)
    assert np.array_equal(a, Streams(16)["world"].random(4))
    assert not np.array_equal(a, Streams(16)["world.rates"].random(4))
    with pytest.raises(KeyError, match="unknown random stream 'nope'"):
        stream_seed(1, "nope")


@pytest.mark.parametrize("seed", [0, 16])
def test_a_one_dollar_buyer_of_last_resort_changes_nothing(seed: int) -> None:
    """A buyer whose budget cannot pay for one unit at its own bid stays out of the market, and it
    draws from no other subsystem's stream: the outcome is the one without it, byte for byte."""
    none = finished(seed)
    dollar = finished(seed, **{"policy.buyer_of_last_resort_budget": 1.0})
    assert len(dollar.buyers) == len(none.buyers) + 1
    assert outcome(dollar) == outcome(none)
    assert len(none.metrics.defaults_table()) > 0  # seed 0 and 16 have defaults: the cascade is compared


def test_one_more_neocloud_leaves_the_world_and_the_miners_draws_identical() -> None:
    """One more neo-cloud draws more numbers in the neo-clouds' streams only: the world's paths, the
    miners' characteristics and the miners' tenant draws are those of the run without it."""
    seed, months = 16, 24
    base = GPUCreditModel("baseline", seed=seed, months=months)
    more = GPUCreditModel(
        "baseline",
        seed=seed,
        months=months,
        overrides={"generated.neoclouds.count": base.config.generated.neoclouds.count + 1},
    )
    miners = np.flatnonzero(base.ledger.kind == Kind.MINER)
    assert miners.size and np.array_equal(miners, np.flatnonzero(more.ledger.kind == Kind.MINER))
    for field in ("gpus", "hashrate_ph", "end_of_life", "tenant_subig", "contract_end"):
        assert np.array_equal(getattr(base.ledger, field)[miners], getattr(more.ledger, field)[miners]), field
    for _ in range(months):
        assert np.array_equal(tenant_draws(base.state)[miners], tenant_draws(more.state)[miners])
        base.state.world.advance()
        more.state.world.advance()
        for attr in ("btc_price", "rent_per_perf_hour", "base_rate", "stress", "network_hashrate_eh"):
            assert getattr(base.state.world, attr) == getattr(more.state.world, attr), attr


def test_the_manifest_records_the_streams() -> None:
    record = run_manifest({}, 16, {}, ["run"])["random_streams"]
    assert record["entropy"] == 16
    assert record["spawn_keys"] == {name: spawn_key(name) for name in STREAM_NAMES}
