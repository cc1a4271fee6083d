"""One random stream per subsystem, so a change in one leaves every other's draws identical.

A run's seed is the entropy of a ``numpy.random.SeedSequence``; each subsystem draws from the child
with spawn key ``(key(name),)``, the first four bytes of the SHA-256 of its name. The key depends on
the name alone, so adding a subsystem later shifts no other stream, and a policy or parameter change
that makes one subsystem draw more (or less) leaves the others' draws as they were: runs of two arms
on one seed are paired (common random numbers) subsystem by subsystem.

The world's regime switch, common factor and BTC and rent scores come from one stream (``world``):
the Gaussian copula in ``core.world`` needs the common factor shared by BTC and rents in the same
month, so they are drawn together, four normals a month whatever else happens. The base rate's walk
has its own stream (``world.rates``). Each agent class draws its tenants and its own characteristics
from streams of its own, so adding a neo-cloud does not move a miner's draws.
"""

from __future__ import annotations

import hashlib

import numpy as np

# Every stream of a run; the manifest records each with its spawn key.
STREAM_NAMES = (
    "world",  # regime switch, common factor, BTC and compute-demand scores (one copula)
    "world.rates",  # the base rate's random walk
    "tenants.miner",  # monthly tenant defaults of miners' contracts
    "tenants.neocloud",  # monthly tenant defaults of neo-clouds' contracts
    "network.miner",  # miners' fleets, purchase dates, contracts, hashrate, tenant grades
    "network.neocloud",  # the same for neo-clouds
    "network.hosting",  # which miners host which neo-clouds
    "network.loans",  # lender choice, loan shares and tenors
    "network.btc_margin",  # the lender of each miner's BTC margin loan
    "network.interbank",  # the interbank graph (networkx is seeded from this stream)
    "buyers",  # hardware buyers (they draw nothing today; reserved so that they never share a stream)
    "shocks",  # scheduled shocks (they draw nothing today; reserved likewise)
    "mesa",  # Mesa's own ``model.rng`` / ``model.random`` (agent shuffles, visualiser); unused by the step
)


def spawn_key(name: str) -> int:
    """The stream's spawn key: fixed by its name, independent of every other stream."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")


def stream_seed(seed: int, name: str) -> np.random.SeedSequence:
    """The ``SeedSequence`` of stream ``name`` for a run seeded ``seed``."""
    if name not in STREAM_NAMES:
        raise KeyError(f"unknown random stream '{name}' (streams: {', '.join(STREAM_NAMES)})")
    return np.random.SeedSequence(seed, spawn_key=(spawn_key(name),))


class Streams:
    """The run's generators by subsystem name (created on first use)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._generators: dict[str, np.random.Generator] = {}

    def seed_of(self, name: str) -> np.random.SeedSequence:
        return stream_seed(self.seed, name)

    def __getitem__(self, name: str) -> np.random.Generator:
        generator = self._generators.get(name)
        if generator is None:
            generator = self._generators[name] = np.random.default_rng(self.seed_of(name))
        return generator


def streams_record(seed: int | None) -> dict[str, object]:
    """For manifests: how each stream is seeded from a run's seed (``None``: each run's own seed)."""
    return {
        "entropy": "each run's seed" if seed is None else seed,
        "method": "numpy.random.SeedSequence(entropy, spawn_key=(key,)), key = the first 4 bytes of "
        "sha256(stream name), big-endian",
        "spawn_keys": {name: spawn_key(name) for name in STREAM_NAMES},
    }
