"""Try likelihood-free calibration libraries on the same small problem with known parameters.

The problem: a geometric random walk with mean reversion, 36 months,
``log x[t+1] = log x[t] + kappa * (level - log x[t]) + sigma * eps[t]``, ``log x[0] = 0``, with three
unknowns (kappa: mean-reversion speed per month; sigma: monthly volatility; level: long-run log level).
Summary statistics of one series: mean, sd, lag-1 autocorrelation and maximum drawdown, each scaled by
its sd across replicates at the truth, so the distance is sum(((sim - obs) / sd) ** 2). The observed
series is one simulation at the truth (seed OBSERVED_SEED). Budget: about 200 particles x 8 rounds.

Each library runs in an interpreter that has it (black-it and ELFI pin numpy/matplotlib versions the
project does not use, so they were measured in throwaway venvs, not installed into the project's):

    python benchmarks/bench_calibration_libraries.py pyabc
    /tmp/venv-blackit/bin/python benchmarks/bench_calibration_libraries.py blackit
    /tmp/venv-elfi/bin/python benchmarks/bench_calibration_libraries.py elfi

Each prints one JSON line: wall time, simulations, the 90 % interval (weighted quantiles of the final
population; for black-it, which gives no posterior, the best point and the spread of its best 5 %),
and whether each true value lies inside. Results are in docs/calibration-library.md.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

MONTHS = 36
TRUE = {"kappa": 0.15, "sigma": 0.08, "level": 0.5}
BOUNDS = {"kappa": (0.01, 0.6), "sigma": (0.01, 0.3), "level": (-0.5, 1.5)}
NAMES = list(TRUE)
OBSERVED_SEED = 20240601
POP = 200
ROUNDS = 8
STAT_NAMES = ["mean", "sd", "acf1", "drawdown"]


def simulate(kappa: float, sigma: float, level: float, rng: np.random.Generator) -> np.ndarray:
    x = np.empty(MONTHS)
    log_x = 0.0
    shocks = rng.standard_normal(MONTHS)
    for t in range(MONTHS):
        log_x = log_x + kappa * (level - log_x) + sigma * shocks[t]
        x[t] = np.exp(log_x)
    return x


def stats(x: np.ndarray) -> np.ndarray:
    d = x - x.mean()
    denom = float(d @ d)
    acf1 = float(d[1:] @ d[:-1]) / denom if denom > 0 else 0.0
    peak = np.maximum.accumulate(x)
    return np.array([x.mean(), x.std(ddof=1), acf1, float(np.max(1.0 - x / peak))])


def observed() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The observed series, its statistics and the statistics' sd across 500 replicates at the truth."""
    series = simulate(**TRUE, rng=np.random.default_rng(OBSERVED_SEED))
    reps = np.array([stats(simulate(**TRUE, rng=np.random.default_rng(i))) for i in range(500)])
    return series, stats(series), reps.std(axis=0, ddof=1)


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    order = np.argsort(values)
    v, w = values[order], weights[order]
    cum = np.cumsum(w) / w.sum()
    return float(np.interp(q, cum - w / w.sum() / 2, v))


def summarise(name: str, samples: np.ndarray, weights: np.ndarray, wall: float, sims: int, **extra) -> dict:
    out = {"library": name, "wall_seconds": round(wall, 2), "simulations": int(sims)}
    for j, p in enumerate(NAMES):
        lo = weighted_quantile(samples[:, j], weights, 0.05)
        hi = weighted_quantile(samples[:, j], weights, 0.95)
        width = (hi - lo) / (BOUNDS[p][1] - BOUNDS[p][0])
        out[p] = {
            "true": TRUE[p],
            "median": round(weighted_quantile(samples[:, j], weights, 0.5), 4),
            "q05": round(lo, 4),
            "q95": round(hi, 4),
            "covers_truth": bool(lo <= TRUE[p] <= hi),
            "width_vs_prior": round(width, 3),
        }
    out.update(extra)
    return out


def run_pyabc(seed: int = 1) -> dict:
    import pyabc

    _, s_obs, sd = observed()

    def model(par):
        rng = np.random.default_rng(np.random.randint(2**63))
        return dict(
            zip(STAT_NAMES, stats(simulate(par["kappa"], par["sigma"], par["level"], rng)), strict=True)
        )

    def distance(x, x0):
        return float(sum(((x[k] - x0[k]) / sd[i]) ** 2 for i, k in enumerate(STAT_NAMES)))

    prior = pyabc.Distribution(**{p: pyabc.RV("uniform", lo, hi - lo) for p, (lo, hi) in BOUNDS.items()})
    np.random.seed(seed)
    abc = pyabc.ABCSMC(
        model,
        prior,
        distance,
        population_size=POP,
        sampler=pyabc.SingleCoreSampler(),
        eps=pyabc.MedianEpsilon(initial_epsilon=np.inf),
    )
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        abc.new(f"sqlite:///{tmp}/bench.db", dict(zip(STAT_NAMES, s_obs, strict=True)))
        start = time.perf_counter()
        history = abc.run(max_nr_populations=ROUNDS, min_acceptance_rate=0.02)
        wall = time.perf_counter() - start
        frame, w = history.get_distribution()
        sims = int(history.total_nr_simulations)
        gens = history.max_t + 1
    return summarise(
        "pyabc 0.13.0 (ABCSMC, median epsilon)", frame[NAMES].to_numpy(), w, wall, sims, rounds=gens
    )


def run_blackit(seed: int = 1) -> dict:
    import tempfile

    from black_it.calibrator import Calibrator
    from black_it.loss_functions.msm import MethodOfMomentsLoss
    from black_it.samplers.best_batch import BestBatchSampler
    from black_it.samplers.halton import HaltonSampler
    from black_it.samplers.random_forest import RandomForestSampler

    series, _, sd = observed()

    def model(theta, n, seed):
        return simulate(theta[0], theta[1], theta[2], np.random.default_rng(seed))[:n].reshape(-1, 1)

    loss = MethodOfMomentsLoss(covariance_mat=np.diag(1.0 / sd**2), moment_calculator=stats)
    batch = POP // 8
    samplers = [
        HaltonSampler(batch_size=batch),
        RandomForestSampler(batch_size=batch),
        BestBatchSampler(batch_size=batch),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        cal = Calibrator(
            loss_function=loss,
            real_data=series.reshape(-1, 1),
            model=model,
            parameters_bounds=np.array([[BOUNDS[p][0] for p in NAMES], [BOUNDS[p][1] for p in NAMES]]),
            parameters_precision=np.array([1e-4] * 3),
            ensemble_size=1,
            samplers=samplers,
            saving_folder=tmp,
            random_state=seed,
            n_jobs=1,
            verbose=False,
        )
        start = time.perf_counter()
        params, losses = cal.calibrate(n_batches=ROUNDS * 8 // 3)
        wall = time.perf_counter() - start
    best = params[0]
    top = params[: max(5, len(params) // 20)]  # the best 5 % (not a posterior; only a spread)
    out = summarise(
        "black-it 0.3.3 (Halton + random forest + best batch)",
        top,
        np.ones(len(top)),
        wall,
        len(params),
        best_point=dict(zip(NAMES, np.round(best, 4).tolist(), strict=True)),
        best_loss=round(float(losses[0]), 4),
        note="no posterior: intervals are the spread of the best 5 % of points, not credible intervals",
    )
    return out


def run_elfi(seed: int = 1) -> dict:
    import elfi

    series, _, sd = observed()

    def sim(kappa, sigma, level, batch_size=1, random_state=None):
        rng = np.random.default_rng(random_state.randint(2**31) if random_state is not None else None)
        kappa, sigma, level = (
            np.broadcast_to(np.asarray(v, float), (batch_size,)) for v in (kappa, sigma, level)
        )
        return np.stack([simulate(kappa[i], sigma[i], level[i], rng) for i in range(batch_size)])

    def summary(x):
        return np.stack([stats(row) for row in np.atleast_2d(x)]) / sd

    m = elfi.ElfiModel()
    priors = [elfi.Prior("uniform", lo, hi - lo, model=m, name=p) for p, (lo, hi) in BOUNDS.items()]
    y = elfi.Simulator(sim, *priors, observed=series.reshape(1, -1), name="sim")
    s = elfi.Summary(summary, y, name="stats")
    d = elfi.Distance("sqeuclidean", s, name="d")
    smc = elfi.SMC(d, batch_size=50, seed=seed)
    start = time.perf_counter()
    result = smc.sample(POP, quantiles=[1.0] + [0.5] * (ROUNDS - 1))
    wall = time.perf_counter() - start
    samples = np.column_stack([result.samples[p] for p in NAMES])
    return summarise(
        "ELFI 0.8.8 (SMC, quantile 0.5)",
        samples,
        np.asarray(result.weights, float),
        wall,
        int(result.n_sim),
        rounds=len(result.populations),
    )


RUNNERS = {"pyabc": run_pyabc, "blackit": run_blackit, "elfi": run_elfi}

if __name__ == "__main__":
    which = sys.argv[1:] or ["pyabc"]
    for name in which:
        if name not in RUNNERS:
            sys.exit(f"unknown library {name!r} (allowed: {', '.join(RUNNERS)})")
        print(json.dumps(RUNNERS[name]()))
