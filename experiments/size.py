"""Size checks before anything runs: a network, a sweep's design or its runs that would take hours or
more memory than the machine has is refused with the estimate (a large one can be confirmed with
``--yes``; one larger than the machine's memory cannot), instead of running silent for minutes and
dying with MemoryError.

The per-item costs are measured on the baseline scenario (docs/performance.md): building a network
takes about 2 KB per agent and 300 B per interbank loan (tracemalloc peak; 414 lenders at density 0.5,
85,000 loans: 23 MB, 1.8 s), and a 60-month baseline run about 0.12 s. The estimates are rough (a
factor of two) and err on the large side.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from core.config import ConfigError, Scenario

BYTES_PER_AGENT = 4_000  # measured ~2 KB per agent with its loans; doubled
BYTES_PER_LOAN = 600  # measured ~300 B per interbank loan; doubled
BYTES_PER_RUN_RECORD = 4_000  # a run's summary record kept in memory by the sweep coordinator
SECONDS_PER_RUN_MONTH = 0.12 / 60  # baseline: 0.12 s for 60 months
BASELINE_SIZE = 201  # agents + loans of the baseline network (80 + 121), the unit of the time estimate
ASK_ABOVE_BYTES = 2 * 1024**3  # more than this needs --yes
ASK_ABOVE_SECONDS = 3600.0
ASK_ABOVE_RUNS = 100_000


@dataclass(frozen=True)
class Estimate:
    """What a command would take: its memory and its run time (both rough)."""

    what: str
    memory_bytes: float
    seconds: float
    runs: int = 1

    def describe(self) -> str:
        runs = f"{self.runs:,} runs, " if self.runs > 1 else ""
        return f"{self.what}: {runs}about {_bytes(self.memory_bytes)} of memory and {_duration(self.seconds)}"


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:.3g} PB"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:,.3g} days"


def network_size(scenario: Scenario) -> tuple[int, float]:
    """Agents and expected loans of the scenario's network, known before it is built."""
    if scenario.explicit is not None:
        return len(scenario.explicit.agents), len(scenario.explicit.loans)
    net = scenario.generated
    assert net is not None  # the schema requires one of the two
    borrowers = net.miners.count + net.neoclouds.count
    lenders = net.banks + net.credit_funds + net.abs_trusts + net.bond_investors
    buyers = sum(b.count for b in scenario.buyers)
    loans = borrowers * net.loans_per_borrower + net.interbank_density * lenders * (lenders - 1)
    return borrowers + lenders + buyers, loans


def estimate_run(scenario: Scenario) -> Estimate:
    """One run of ``scenario``: its network's memory and its duration."""
    agents, loans = network_size(scenario)
    memory = agents * BYTES_PER_AGENT + loans * BYTES_PER_LOAN
    scale = max(1.0, (agents + loans) / BASELINE_SIZE)
    return Estimate(
        f"a network of {agents:,} agents and {loans:,.0f} loans",
        memory,
        scenario.months * SECONDS_PER_RUN_MONTH * scale,
    )


def estimate_sweep(one_run: Estimate, runs: int, workers: int, what: str) -> Estimate:
    """``runs`` runs like ``one_run`` on ``workers`` workers (each holding one network at a time)."""
    memory = one_run.memory_bytes * max(1, workers) + runs * BYTES_PER_RUN_RECORD
    return Estimate(what, memory, one_run.seconds * runs / max(1, workers), runs)


def machine_memory() -> float:
    """Physical memory of this machine in bytes (inf if unknown)."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return math.inf


def check_size(estimate: Estimate, yes: bool) -> None:
    """Refuse an estimate larger than the machine's memory; ask for ``--yes`` above the limits."""
    if estimate.memory_bytes > machine_memory():
        raise ConfigError(
            f"too large: {estimate.describe()}; this machine has {_bytes(machine_memory())} "
            "(reduce the size: fewer agents, a sparser network, fewer points or replicates)"
        )
    large = (
        estimate.memory_bytes > ASK_ABOVE_BYTES
        or estimate.seconds > ASK_ABOVE_SECONDS
        or estimate.runs > ASK_ABOVE_RUNS
    )
    if large and not yes:
        raise ConfigError(f"large: {estimate.describe()}; add --yes to run it anyway")
