"""Sweep throughput (runs/second) for the baseline: serial, 1 and 2 local worker processes, and a Dask
LocalCluster of 2 workers; plus the runner's per-run overhead against the model's own run time.

    .venv/bin/python benchmarks/bench_sweep.py [--runs 16] [--months 60]

Pools and clusters are started and warmed up (model imported in every worker) before the clock starts,
so the figures are steady-state throughput; start-up times are printed separately. Targets (issue 3):
2 workers >= 1.7 x 1 worker; Dask within 15 % of the process pool; overhead < 5 % of a run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments.design import parse_experiment, scenario_for  # noqa: E402
from experiments.sweep import dask_executor, prepare, process_pool, run_sweep  # noqa: E402

EXPERIMENT = """
name = "bench"
scenario = "baseline"
months = {months}
master_seed = 1
replicates = {runs}
[design]
kind = "grid"
[parameters.rent_deflation]
values = [0.3]
"""


def _warm(executor, workers: int) -> None:
    """Make every worker import the model before timing."""
    from experiments.runner import fingerprint

    for f in [executor.submit(fingerprint) for _ in range(4 * workers)]:
        f.result()


def model_only(sweep) -> float:
    """The model's own time: build, run and summarise each run of the sweep, in this process."""
    from model.metrics import run_summary
    from model.model import GPUCreditModel

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for spec in sweep.plan.runs:
            model = GPUCreditModel(
                sweep.plan.scenario, seed=spec.seed, months=spec.months, overrides=spec.overrides
            )
            model.run()
            run_summary(model)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--months", type=int, default=60)
    args = parser.parse_args()
    text = EXPERIMENT.format(runs=args.runs, months=args.months)
    experiment = parse_experiment(text)
    scenario = scenario_for(experiment, None)
    tmp = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    load = os.getloadavg()
    print(
        f"{args.runs} baseline runs of {args.months} months; {os.cpu_count()} cores; load average {load[0]:.2f}"
    )

    def fresh(tag: str):
        return prepare(experiment, text, scenario, tmp / tag)

    results: dict[str, float] = {}
    model_only(fresh("warm"))  # imports and caches outside the clock
    results["model only (in-process loop)"] = args.runs / model_only(fresh("model"))
    sweep = fresh("serial")
    serial = run_sweep(sweep, "serial", 1)
    results["runner, serial"] = serial.ran / serial.seconds
    # overhead measured inside one sweep (so load drift between phases cannot masquerade as overhead):
    # wall time of the runner vs the model's own time (build + run + summary) recorded by each run
    own = sum(r["seconds"] for r in sweep.done.values())
    overhead = serial.seconds / own - 1
    for workers in (1, 2):
        t0 = time.perf_counter()
        pool = process_pool(workers)
        _warm(pool, workers)
        print(f"  process pool of {workers}: start-up {time.perf_counter() - t0:.1f} s")
        out = run_sweep(fresh(f"proc{workers}"), pool, workers)
        pool.shutdown()
        results[f"processes, {workers} worker{'s' if workers > 1 else ''}"] = out.ran / out.seconds
    t0 = time.perf_counter()
    with dask_executor(2, None) as executor:  # the LocalCluster `run.py sweep --executor dask` starts
        _warm(executor, 2)
        print(f"  Dask LocalCluster of 2: start-up {time.perf_counter() - t0:.1f} s")
        out = run_sweep(fresh("dask"), executor, 2)
        results["Dask LocalCluster, 2 workers"] = out.ran / out.seconds

    print(f"\n{'configuration':34s} {'runs/s':>8s}")
    for name, rate in results.items():
        print(f"{name:34s} {rate:8.2f}")
    drift = results["model only (in-process loop)"] / results["runner, serial"] - 1
    speedup = results["processes, 2 workers"] / results["processes, 1 worker"]
    dask_gap = results["Dask LocalCluster, 2 workers"] / results["processes, 2 workers"] - 1
    print(
        f"\nper-run overhead of the runner (wall vs the runs' own time): {overhead:+.2%} of a run (target < 5 %)"
    )
    print(f"(serial runner vs a separate model-only loop: {drift:+.1%}; includes load drift between phases)")
    print(f"2 workers / 1 worker: {speedup:.2f}x (target >= 1.7x)")
    print(f"Dask vs process pool (2 workers): {dask_gap:+.1%} (target within 15 %)")
    print(
        f"load average now {os.getloadavg()[0]:.2f} (was {load[0]:.2f}); other work on the machine skews these"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
