"""Speed benchmark of the GPU credit-contagion model (a script, not a test).

    python benchmarks/bench_model.py            # full: baseline, 1k / 10k / 100k borrowers, yardstick
    python benchmarks/bench_model.py --quick    # short: fewer repeats, 1k / 10k only

Prints a table and writes ``benchmarks/results.json`` (``--out`` to change). Timing follows Mesa's own
harness (``benchmarks/`` in the mesa repository): ``time.perf_counter`` after a warm-up, garbage
collection disabled while a timed block runs; we report the median and the spread over repeats.

What is measured:
- ``import model.model`` in a fresh interpreter (median of 5 subprocesses);
- the baseline scenario: construction and the 60-month run timed separately (and together), after
  import, and the 20,000-run calibration estimate, 20,000 x (construction + run) / 2 cores;
- generated markets scaled from the baseline to 1k, 10k and 100k borrowers: miners and neo-clouds in
  the baseline's ratio, one lender per 50 borrowers (baseline type mix), the interbank density scaled
  so a lender keeps about the same number of interbank counterparties, and buyers' budgets and
  install capacities scaled with the number of borrowers. Per size: build time, the median ordinary
  month, and one month with a full cascade (largest miner defaulted, BTC -50 %, 5 % of live
  borrowers defaulted at once, then the month is stepped), with the defaults and rounds it caused; peak memory (max RSS of a fresh process per size);
- growth: time per month over the number of loans, and the log-log slope between sizes;
- Mesa's BoltzmannWealth example (100 agents, 125 steps) in the same process, as a yardstick.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SIZES_FULL = (1_000, 10_000, 100_000)
SIZES_QUICK = (1_000, 10_000)
BORROWERS_PER_LENDER = 50
SEED = 1
IMPORT_REPEATS = 5
CALIBRATION_RUNS = 20_000  # the calibration's number of baseline-length runs
CALIBRATION_CORES = 2
CALIBRATION_LIMIT_S = 40 * 60
FORCED_SHARE = 0.05  # full-cascade month: this share of live borrowers defaulted at once (plus shocks)


# --- helpers ---------------------------------------------------------------------------------------


def timed(fn) -> tuple[float, Any]:
    """Run ``fn`` once with GC disabled (after a collection); returns (seconds, result)."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        result = fn()
        return time.perf_counter() - start, result
    finally:
        gc.enable()


def spread(values: list[float]) -> dict[str, float]:
    med = statistics.median(values)
    return {
        "median": med,
        "min": min(values),
        "max": max(values),
        "repeats": len(values),
        "spread_pct": 100.0 * (max(values) - min(values)) / med if med else 0.0,
    }


def rss_now_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kilobytes


def scaled_overrides(n_borrowers: int) -> dict[str, Any]:
    """Overrides that scale the baseline's generated market to ``n_borrowers`` miners + neo-clouds."""
    from core.config import load_scenario

    base = load_scenario("baseline")
    g = base.generated
    n0 = g.miners.count + g.neoclouds.count
    scale = n_borrowers / n0
    miners = round(n_borrowers * g.miners.count / n0)
    lender_counts = {k: getattr(g, k) for k in ("banks", "credit_funds", "abs_trusts", "bond_investors")}
    l0 = sum(lender_counts.values())
    n_lenders = max(1, round(n_borrowers / BORROWERS_PER_LENDER))
    out: dict[str, Any] = {
        "generated.miners.count": miners,
        "generated.neoclouds.count": n_borrowers - miners,
        # about the same number of interbank counterparties per lender as in the baseline
        "generated.interbank_density": min(1.0, g.interbank_density * l0 / n_lenders),
    }
    for key, count in lender_counts.items():
        out[f"generated.{key}"] = max(1, round(n_lenders * count / l0)) if count else 0
    for buyer in base.buyers:
        out[f"buyers.{buyer.name}.budget_per_month"] = buyer.budget_per_month * scale
        out[f"buyers.{buyer.name}.capacity_gpus_per_month"] = buyer.capacity_gpus_per_month * scale
    return out


# --- the measurements ------------------------------------------------------------------------------


def bench_import() -> dict[str, float]:
    """``import model.model`` in a fresh interpreter, timed inside it (interpreter start-up excluded),
    after an untimed import that writes the bytecode cache."""
    code = "import time; t = time.perf_counter(); import model.model; print(time.perf_counter() - t)"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # with the bytecode cache, as an installed package imports: PYTHONDONTWRITEBYTECODE (set in some
    # shells) would compile the project's modules from source at every import (~10 % more instructions)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-c", "import model.model"], capture_output=True, cwd=ROOT, env=env)
    times = []
    for _ in range(IMPORT_REPEATS):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
        if out.returncode != 0:
            raise RuntimeError(f"import model.model failed:\n{out.stderr[-3000:]}")
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return spread(times)


def bench_baseline(repeats: int) -> dict[str, Any]:
    """Construction and the run timed apart, each repeat a fresh model; init + run is their sum."""
    from model.model import GPUCreditModel

    def construct():
        return GPUCreditModel("baseline")

    timed(lambda: construct().run())  # warm-up
    builds, runs, model = [], [], None
    for _ in range(repeats):
        t, model = timed(construct)
        builds.append(t)
        runs.append(timed(model.run)[0])
    months = int(model.time)
    last = model.metrics.steps[-1]
    run = spread(runs)
    total = spread([b + r for b, r in zip(builds, runs, strict=True)])
    return {
        "months": months,
        "agents": int(model.ledger.n_agents),
        "loans": len(model.ledger.loans),
        "defaults_total": int(last["defaults_total"]),
        "construct_s": spread(builds),
        "run_only_s": run,
        "run_s": total,  # construction + run (the figure this benchmark has always reported)
        "per_month_ms": 1000.0 * run["median"] / months,
        "calibration_estimate_s": CALIBRATION_RUNS * total["median"] / CALIBRATION_CORES,
    }


def bench_size(n_borrowers: int, repeats: int, months: int) -> dict[str, Any]:
    """One market size: build, ordinary months, one full-cascade month (fresh model per repeat)."""
    from model.model import GPUCreditModel

    rss_before = rss_now_mb()
    overrides = scaled_overrides(n_borrowers)
    builds, month_times, cascades, rounds, defaults, new_defaults = [], [], [], [], [], []
    rss_after: list[float] = []
    forced_count = 0
    info: dict[str, Any] = {}
    for _ in range(repeats):
        model = None
        gc.collect()
        t, model = timed(lambda: GPUCreditModel("baseline", seed=SEED, overrides=overrides))
        builds.append(t)
        led = model.ledger
        info = {
            "borrowers": n_borrowers,
            "agents": int(led.n_agents),
            "lenders": int(model.state.lender_mask().sum()),
            "buyers": len(model.buyers),
            "loans": len(led.loans),
            "borrower_loans": int(model.state.borrower_mask()[led.loans.debtor].sum()),
        }
        model.step()  # warm-up month (not timed)
        per = []
        for _ in range(months):
            t, _ = timed(model.step)
            per.append(t)
        month_times.append(statistics.median(per))
        before = int(led.defaulted.sum())

        forced = forced_defaults(model)

        def cascade_month(model=model, forced=forced):
            r1 = model.default_largest_miner()
            r2 = model.crash_btc(0.5)
            r3 = default_many(model, forced)
            model.step()
            return max(r1.rounds, r2.rounds, r3.rounds, model.last_cascade.rounds)

        forced_count = int(forced.size)
        t, n_rounds = timed(cascade_month)
        cascades.append(t)
        rounds.append(n_rounds)
        defaults.append(int(led.defaulted.sum()))
        new_defaults.append(int(led.defaulted.sum()) - before)
        rss_after.append(peak_rss_mb())
        del model, led
    ordinary = spread(month_times)
    players = info["borrowers"] + info["lenders"]
    return {
        **info,
        "build_s": spread(builds),
        "ordinary_month_s": ordinary,
        "ordinary_months_per_repeat": months,
        "us_per_loan_month": 1e6 * ordinary["median"] / info["loans"],
        "cascade_month_s": spread(cascades),
        "cascade_rounds": max(rounds),
        "cascade_forced_defaults": forced_count,
        "cascade_new_defaults": new_defaults[-1],
        "cascade_contagion_defaults": new_defaults[-1] - forced_count,
        "cascade_defaults_total": defaults[-1],
        "cascade_share_failed": defaults[-1] / players,
        "rss_before_build_mb": rss_before,
        "peak_rss_mb": peak_rss_mb(),
        "peak_rss_model_mb": peak_rss_mb() - rss_before,
        "peak_rss_after_each_repeat_mb": rss_after,
    }


def forced_defaults(model) -> Any:
    """A fixed random share (FORCED_SHARE) of the live borrowers, the shock of the full-cascade month."""
    import numpy as np

    live = np.flatnonzero(model.state.borrower_mask() & ~model.ledger.defaulted)
    count = max(1, round(FORCED_SHARE * live.size))
    return np.sort(np.random.default_rng(0).choice(live, size=count, replace=False))


def default_many(model, agents) -> Any:
    """Force many agents into default at once and resolve the cascade (``default_agent`` for a set)."""
    import numpy as np

    from core.ledger import Cause
    from model.cascade import Failures

    agents = agents[~model.ledger.defaulted[agents]]
    shock = Failures(agents, np.full(agents.size, Cause.SHOCK, dtype=np.int8), np.full(agents.size, -1))
    report = model.resolve_defaults(shock)
    model.last_cascade = report
    model.metrics.record(report, shock=True)
    return report


def bench_boltzmann(repeats: int) -> dict[str, Any]:
    from mesa.examples.basic.boltzmann_wealth_model.model import BoltzmannScenario, BoltzmannWealth

    def run(seed: int = 42):
        model = BoltzmannWealth(BoltzmannScenario(n=100, width=10, height=10, rng=seed))
        model.run_for(125)
        return model

    timed(run)
    times = [timed(run)[0] for _ in range(repeats)]
    return {"agents": 100, "steps": 125, "run_s": spread(times)}


def size_in_subprocess(n: int, repeats: int, months: int) -> dict[str, Any]:
    """Each size in a fresh interpreter, so its peak memory is its own."""
    cmd = [sys.executable, __file__, "--_size", str(n), "--_repeats", str(repeats), "--_months", str(months)]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"size {n} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def loglog_slope(xs: list[float], ys: list[float]) -> float:
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum((a - mx) ** 2 for a in lx)


def machine() -> dict[str, Any]:
    import mesa
    import numpy

    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False
        ).stdout.strip()
    except OSError:
        rev = ""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "mesa": mesa.__version__,
        "numpy": numpy.__version__,
        "git_revision": rev,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# --- reporting -------------------------------------------------------------------------------------


def fmt_s(stats: dict[str, float]) -> str:
    return f"{stats['median']:.3f} s (±{stats['spread_pct']:.0f} %, n={stats['repeats']})"


def print_table(res: dict[str, Any]) -> None:
    b = res["baseline"]
    print(
        f"\nmachine: {res['machine']['cpus']} CPUs, {res['machine']['cpu']}, "
        f"load at start {tuple(round(x, 2) for x in res['machine']['load_average_at_start'])}"
    )
    print(
        f"import model.model (fresh process, median of {IMPORT_REPEATS}): {fmt_s(res['import'])}   [target < 1 s]"
    )
    print(f"baseline construction ({b['agents']} agents, {b['loans']} loans): {fmt_s(b['construct_s'])}")
    print(
        f"baseline {b['months']}-month run (after construction): {fmt_s(b['run_only_s'])} = "
        f"{b['per_month_ms']:.2f} ms/month   [target < 0.1 s]"
    )
    print(f"baseline construction + run: {fmt_s(b['run_s'])}")
    bw = res["boltzmann"]
    print(f"Mesa BoltzmannWealth 100 agents x 125 steps: {fmt_s(bw['run_s'])}")
    print(
        f"calibration estimate: {CALIBRATION_RUNS:,} x (construction + run) / {CALIBRATION_CORES} cores = "
        f"{b['calibration_estimate_s'] / 60:.1f} min   [target < {CALIBRATION_LIMIT_S / 60:.0f} min]"
    )
    head = (
        f"{'borrowers':>9} {'agents':>7} {'loans':>8} {'build s':>8} {'month s':>8} {'us/loan':>8} "
        f"{'cascade s':>9} {'rounds':>6} {'forced':>7} {'contagion':>9} {'peak MB':>8}"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for s in res["sizes"]:
        print(
            f"{s['borrowers']:>9,} {s['agents']:>7,} {s['loans']:>8,} {s['build_s']['median']:>8.3f} "
            f"{s['ordinary_month_s']['median']:>8.4f} {s['us_per_loan_month']:>8.2f} "
            f"{s['cascade_month_s']['median']:>9.3f} {s['cascade_rounds']:>6} "
            f"{s['cascade_forced_defaults']:>7,} {s['cascade_contagion_defaults']:>9,} {s['peak_rss_mb']:>8.0f}"
        )
    g = res["growth"]
    print(
        f"\nlog-log slope vs loans: ordinary month {g['slope_month_vs_loans']:.2f}, "
        f"cascade month {g['slope_cascade_vs_loans']:.2f}, build {g['slope_build_vs_loans']:.2f} "
        "(1 = linear)"
    )
    print("spread = (max - min) / median over repeats; peak MB = max RSS of the size's own process")
    for name, t in res["targets"].items():
        print(f"  target {name}: {'met' if t['met'] else 'MISSED'} ({t['value']:.3g} vs {t['limit']})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short version: fewer repeats, 1k and 10k")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results.json"))
    parser.add_argument("--_size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--_repeats", type=int, default=3, help=argparse.SUPPRESS)
    parser.add_argument("--_months", type=int, default=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)

    if args._size:  # worker: one market size, JSON on the last line of stdout
        print(json.dumps(bench_size(args._size, args._repeats, args._months)))
        return

    start = time.perf_counter()
    print("import model.model ...", flush=True)
    imports = bench_import()
    import_s = time.perf_counter()
    import model.model  # noqa: F401

    import_s = time.perf_counter() - import_s
    quick = args.quick
    res: dict[str, Any] = {
        "mode": "quick" if quick else "full",
        "machine": machine(),
        "import": imports,
        "import_s": imports["median"],
        "import_in_this_process_s": import_s,
    }
    print("baseline ...", flush=True)
    res["baseline"] = bench_baseline(repeats=5 if quick else 11)
    print("BoltzmannWealth ...", flush=True)
    res["boltzmann"] = bench_boltzmann(repeats=5 if quick else 11)
    sizes = SIZES_QUICK if quick else SIZES_FULL
    plan = {1_000: (5, 10), 10_000: (3, 8), 100_000: (3, 5)} if not quick else {1_000: (3, 5), 10_000: (2, 3)}
    res["sizes"] = []
    for n in sizes:
        repeats, months = plan[n]
        print(f"{n:,} borrowers ({repeats} repeats x {months} months) ...", flush=True)
        res["sizes"].append(size_in_subprocess(n, repeats, months))
    loans = [s["loans"] for s in res["sizes"]]
    res["growth"] = {
        "loans": loans,
        "us_per_loan_month": [s["us_per_loan_month"] for s in res["sizes"]],
        "slope_month_vs_loans": loglog_slope(loans, [s["ordinary_month_s"]["median"] for s in res["sizes"]]),
        "slope_cascade_vs_loans": loglog_slope(loans, [s["cascade_month_s"]["median"] for s in res["sizes"]]),
        "slope_build_vs_loans": loglog_slope(loans, [s["build_s"]["median"] for s in res["sizes"]]),
    }
    largest = res["sizes"][-1]
    base = res["baseline"]
    res["targets"] = {
        "baseline_60_month_run_s": {
            "value": base["run_s"]["median"],
            "limit": 0.5,
            "met": base["run_s"]["median"] < 0.5,
        },
        "import_model_s": {"value": imports["median"], "limit": 1.0, "met": imports["median"] < 1.0},
        "baseline_run_after_construction_s": {
            "value": base["run_only_s"]["median"],
            "limit": 0.1,
            "met": base["run_only_s"]["median"] < 0.1,
        },
        "calibration_20k_runs_2_cores_s": {
            "value": base["calibration_estimate_s"],
            "limit": CALIBRATION_LIMIT_S,
            "met": base["calibration_estimate_s"] < CALIBRATION_LIMIT_S,
        },
        f"cascade_month_at_{largest['borrowers']}_borrowers_s": {
            "value": largest["cascade_month_s"]["median"],
            "limit": 5.0,
            "met": largest["cascade_month_s"]["median"] < 5.0,
        },
        "month_growth_slope_vs_loans": {
            "value": res["growth"]["slope_month_vs_loans"],
            "limit": 1.15,
            "met": res["growth"]["slope_month_vs_loans"] <= 1.15,
        },
    }
    res["wall_s"] = time.perf_counter() - start
    print_table(res)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(f"\nwrote {args.out} ({res['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
