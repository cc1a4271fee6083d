"""Likelihood-free calibration: ``python run.py calibrate FILE.toml`` (ABC-SMC with pyabc).

A calibration file (TOML, see ``docs/calibration-command.md``) names a simulator (``model``, the
GPU-credit model, or ``synthetic_ar1``, a small test problem with known parameters), the parameters
to estimate with their priors, and the targets: statistics of one simulated run (registered in
``experiments.calibration_statistics``) with observed values and the sd that scales each one's
distance. Everything is validated before anything runs; bad input raises ``ConfigError`` naming the
field and what is allowed (printed by ``run.py`` as one message, exit code 2).

Distance: ``sum over targets of ((simulated - observed) / sd) ** 2``; epsilon: the weighted median
(or another quantile) of the previous generation's distances, starting from infinity (generation 0
is a sample from the prior). Determinism: :class:`SlotSampler` evaluates numbered candidate slots in
batches on any ``concurrent.futures`` executor (the sweep's serial, process-pool or Dask ones); slot
``j`` of generation ``t`` is seeded from ``SeedSequence(seed, spawn_key=(t + 1, j))`` (numpy's global
state for pyabc's proposal, the model runs' seeds from a child), and results are accepted in slot
order until the population is full, so the posterior does not depend on the executor, the number of
workers or the batch size. pyabc's SQLite history (``OUT/history.db``) keeps every finished
generation; rerunning the same command (or ``--resume``) continues after the last one stored.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import random
import sys
import time
import tomllib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyabc
from pyabc.sampler import Sampler
from pydantic import ConfigDict, Field, ValidationError, model_validator
from scipy.special import ndtr

from core.config import ConfigError, Month, Strict, read_text
from experiments.calibration_statistics import STATISTICS, Steps, series_of

SIMULATORS = ("synthetic_ar1", "model")
PRIORS = ("uniform", "loguniform", "normal", "truncnormal")
HISTORY = "history.db"
KEY_FILE = "calibration.json"
PREDICTIVE_KEY = 2**31  # spawn_key of the posterior-predictive draws (generations use t + 1 < this)

# --- the calibration file -------------------------------------------------------------------------


class _Finite(Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class InferenceSpec(_Finite):
    """How ABC-SMC runs and when it stops."""

    library: Literal["pyabc"] = Field(default="pyabc", description="only pyabc (see docs)")
    population_size: int = Field(default=200, ge=2, le=100_000, description="accepted particles per gen")
    max_generations: int = Field(default=8, ge=1, le=200, description="stop after this many generations")
    min_acceptance_rate: float = Field(default=0.0, ge=0.0, lt=1.0, description="stop below this rate")
    replicates_per_particle: int = Field(default=1, ge=1, le=1000, description="runs averaged per particle")
    epsilon_quantile: float = Field(default=0.5, gt=0.0, lt=1.0, description="0.5: median epsilon")
    predictive_draws: int = Field(default=100, ge=0, le=100_000, description="posterior-predictive runs")
    transition: Literal["multivariate_normal", "local"] = Field(
        default="multivariate_normal",
        description="pyabc's perturbation kernel: one Gaussian whose covariance is the whole weighted "
        "population's (multivariate_normal), or one per particle from its k nearest neighbours (local: "
        "pyabc's LocalTransition, k = a quarter of the population)",
    )
    parameter_space: Literal["prior", "normal_scores"] = Field(
        default="prior",
        description="prior: ABC-SMC perturbs the parameters themselves; normal_scores: it perturbs each "
        "parameter's normal score Phi^-1(F(theta)) (F its prior's CDF; prior N(0, 1)), so no proposal falls "
        "outside a bounded prior and importance weights do not pile up at the prior's edges",
    )
    draw_from_prior: tuple[str, ...] = Field(
        default=(),
        description="parameter paths that every generation draws afresh from their prior instead of perturbing "
        "the last population (ABC rejection in those dimensions; their importance weight is 1). The posterior "
        "is the same; the sampler is more efficient when these are parameters the targets barely inform, "
        "whose kernel would only spread the importance weights (docs/calibration-command.md)",
    )


class PriorSpec(_Finite):
    """One estimated parameter and its prior."""

    path: str = Field(min_length=1, description="a dotted scenario path, or a synthetic_ar1 parameter")
    prior: Literal["uniform", "loguniform", "normal", "truncnormal"]
    low: float | None = None
    high: float | None = None
    mean: float | None = None
    sd: float | None = Field(default=None, gt=0.0)

    @model_validator(mode="after")
    def _shape(self) -> PriorSpec:
        bounded = self.prior in ("uniform", "loguniform", "truncnormal")
        centred = self.prior in ("normal", "truncnormal")
        if bounded and (self.low is None or self.high is None):
            raise ValueError(f"a {self.prior} prior needs low and high")
        if bounded and not self.low < self.high:
            raise ValueError(f"empty prior range: low ({self.low}) must be below high ({self.high})")
        if self.prior == "loguniform" and self.low <= 0:
            raise ValueError(f"a loguniform prior needs low > 0 (got {self.low})")
        if centred and (self.mean is None or self.sd is None):
            raise ValueError(f"a {self.prior} prior needs mean and sd")
        if self.prior == "normal" and (self.low is not None or self.high is not None):
            raise ValueError("a normal prior takes mean and sd only (use truncnormal for bounds)")
        if not centred and (self.mean is not None or self.sd is not None):
            raise ValueError(f"a {self.prior} prior takes low and high only")
        return self

    def rv(self) -> Any:
        if self.prior == "uniform":
            return pyabc.RV("uniform", self.low, self.high - self.low)
        if self.prior == "loguniform":
            return pyabc.RV("loguniform", self.low, self.high)
        if self.prior == "normal":
            return pyabc.RV("norm", self.mean, self.sd)
        a, b = (self.low - self.mean) / self.sd, (self.high - self.mean) / self.sd
        return pyabc.RV("truncnorm", a, b, loc=self.mean, scale=self.sd)

    def from_score(self, score: float) -> float:
        """The value whose prior CDF is Phi(score): a N(0, 1) score maps onto this prior exactly."""
        return float(self.rv().distribution.ppf(ndtr(score)))

    def interval(self, lo: float = 0.05, hi: float = 0.95) -> tuple[float, float]:
        dist = self.rv().distribution
        return float(dist.ppf(lo)), float(dist.ppf(hi))

    def test_values(self) -> list[float]:
        return [self.low, self.high] if self.low is not None else [self.mean]


class ObservedFrom(Strict):
    """An observed series to compute a target's value from, with the target's own statistic and args
    (the statistic's ``series`` names the model's column; this names the data's)."""

    series: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="a series in data/observed/series.csv")
    folder: str = Field(default="data/observed", description="observed-data folder (relative to the project)")
    first: Month | None = Field(default=None, description="the data's window, if not the target's own")
    last: Month | None = Field(default=None, description="the data's window, if not the target's own")


def observed_value(target: TargetSpec) -> float:
    """The target's statistic applied to the observed series: its months (a window's first..last, or
    the months a statistic reads) must all be in the data, without gaps."""
    from core.config import PROJECT_DIR, month_index
    from core.observed import load_observed, month_from_index

    source = target.observed_from
    args = target.parsed_args()
    if source.first or source.last:  # a window of the data other than the simulated one
        if not hasattr(args, "first"):
            raise ConfigError(f"observed_from: first/last need a windowed statistic, not {target.statistic}")
        args = args.model_copy(update={"first": source.first or args.first, "last": source.last or args.last})
    data = load_observed(PROJECT_DIR / source.folder)
    if source.series not in data.series_names:
        raise ConfigError(
            f"observed_from.series: no series '{source.series}' (known: {', '.join(data.series_names)})"
        )
    first, last = getattr(args, "first", None), getattr(args, "last", None)
    if first or last:
        first = first or data.first_month(source.series)
        last = last or data.last_month(source.series)
        months = [month_from_index(i) for i in range(month_index(first), month_index(last) + 1)]
        values = data.monthly_path(source.series, first, last)
    else:
        months = args.months()
        if not months:
            raise ConfigError(
                f"observed_from: statistic {target.statistic} reads no month; give first/last or a month"
            )
        values = [data.monthly_path(source.series, m, m)[0] for m in months]
    columns = series_of(args)
    steps = [{"date": m, **{c: float(v) for c in columns}} for m, v in zip(months, values, strict=True)]
    value = STATISTICS[target.statistic].fn(steps, args)
    if not math.isfinite(value):
        raise ConfigError(f"observed_from: {target.statistic} of {source.series} is not a finite number")
    return float(value)


class TargetSpec(_Finite):
    """One observed quantity: a statistic of a run, its observed value and the sd that scales it."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.+-]+$")
    statistic: str = Field(description="a registered statistic (see docs/calibration-command.md)")
    args: dict[str, Any] = Field(default_factory=dict)
    observed: float | None = None
    observed_from: ObservedFrom | None = Field(
        default=None,
        description="take the observed value from data/observed: the same statistic of that series",
    )
    sd: float = Field(gt=0.0, description="standard error / tolerance of the target (> 0)")
    source: str = ""
    role: Literal["fit", "check"] = Field(
        default="fit",
        description="fit: in the distance; check: out of sample, only compared with the posterior predictive",
    )

    @model_validator(mode="after")
    def _valid(self) -> TargetSpec:
        if self.statistic not in STATISTICS:
            raise ValueError(
                f"unknown statistic '{self.statistic}' (allowed: {', '.join(sorted(STATISTICS))})"
            )
        if (self.observed is None) == (self.observed_from is None):
            raise ValueError("give exactly one of observed = NUMBER or observed_from = { series = ... }")
        try:
            STATISTICS[self.statistic].args.model_validate(self.args)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'args'}: {e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors()
            )
            raise ValueError(f"args of {self.statistic}: {problems}") from None
        return self

    def parsed_args(self) -> Strict:
        return STATISTICS[self.statistic].args.model_validate(self.args)


class Calibration(_Finite):
    name: str = Field(pattern=r"^[A-Za-z0-9_.+-]+$", description="an identifier (the output folder)")
    description: str = ""
    seed: int = Field(ge=0, lt=2**63)
    simulator: Literal["synthetic_ar1", "model"]
    scenario: str = Field(default="baseline", description="simulator = model: a scenario name or .toml")
    months: int | None = Field(default=None, ge=1, le=600, description="horizon (default: the scenario's)")
    fixed: dict[str, Any] = Field(default_factory=dict, description="overrides applied to every run")
    inference: InferenceSpec = InferenceSpec()
    parameters: list[PriorSpec] = Field(min_length=1)
    targets: list[TargetSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> Calibration:
        for what, names in (
            ("parameters", [p.path for p in self.parameters]),
            ("targets", [t.name for t in self.targets]),
        ):
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"{what}: repeated {repeated}")
        paths = [p.path for p in self.parameters]
        unknown = [p for p in self.inference.draw_from_prior if p not in paths]
        if unknown:
            raise ValueError(
                f"inference.draw_from_prior: {unknown} are not declared parameters (allowed: the paths of "
                f"[[parameters]]: {paths})"
            )
        return self


def _format_errors(error: ValidationError, source: str) -> str:
    lines = [f"invalid calibration file {source}:"]
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"] if not str(p).startswith("function-after"))
        msg = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            msg = "unknown field (see docs/calibration-command.md for the allowed fields)"
        elif item["type"] == "missing":
            msg = "required field is missing"
        elif item["type"] == "finite_number":
            msg = "must be a finite number"
        got = item.get("input")
        shown = "" if item["type"] == "missing" or isinstance(got, dict | list) else f" (got {got!r})"
        lines.append(f"  {loc or 'calibration'}: {msg}{shown}")
    return "\n".join(dict.fromkeys(lines))


def parse_calibration(text: str, source: str = "(text)") -> Calibration:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"calibration file {source}: malformed TOML: {exc}") from None
    try:
        return Calibration.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None


# --- simulators -----------------------------------------------------------------------------------


def _month_name(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


@dataclass(frozen=True)
class SyntheticAR1:
    """The test problem: a geometric random walk with mean reversion, monthly from 2025-01,
    ``log x[t] = log x[t-1] + kappa * (level - log x[t-1]) + sigma * eps[t]``, ``log x[0] = 0``.
    Series: ``value`` (x) and ``log_value``."""

    months: int = 36
    fixed: tuple[tuple[str, float], ...] = ()
    PARAMETERS = {"kappa": 0.15, "sigma": 0.08, "level": 0.5}  # defaults (the example's true values)
    SERIES = ("value", "log_value")
    START = 2025 * 12  # 2025-01

    def dates(self) -> list[str]:
        return [_month_name(self.START + t) for t in range(self.months)]

    def steps(self, params: dict[str, float], seed: int) -> list[dict[str, Any]]:
        p = {**self.PARAMETERS, **dict(self.fixed), **params}
        shocks = np.random.default_rng(seed).standard_normal(self.months)
        log_x, rows = 0.0, []
        for t, date in enumerate(self.dates()):
            log_x = log_x + p["kappa"] * (p["level"] - log_x) + p["sigma"] * shocks[t]
            rows.append({"month": t + 1, "date": date, "value": math.exp(log_x), "log_value": log_x})
        return rows


@dataclass(frozen=True)
class ModelSimulator:
    """The GPU-credit model: a particle's parameters become dotted overrides of the scenario."""

    scenario: dict[str, Any]  # canonical, validated base scenario
    months: int | None
    fixed: dict[str, Any]

    def steps(self, params: dict[str, float], seed: int) -> list[dict[str, Any]]:
        from experiments.runner import _flatten
        from model.metrics import run_summary
        from model.model import GPUCreditModel

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            model = GPUCreditModel(
                self.scenario, seed=seed, months=self.months, overrides={**self.fixed, **params}
            )
            model.run()
        return Steps(model.metrics.steps, _flatten(run_summary(model)))


# --- the problem pyabc sees -------------------------------------------------------------------------

_SLOT: dict[str, Any] = {"seeds": None}  # set by the worker for the slot being evaluated


def _slot_sequences(seed: int, t: int, j: int) -> tuple[np.random.SeedSequence, np.random.SeedSequence]:
    """(proposal, model) seed sequences of slot j of generation t (t = -1: a calibration sample)."""
    proposal, runs = np.random.SeedSequence(seed, spawn_key=(t + 1, j)).spawn(2)
    return proposal, runs


def _run_seeds(runs: np.random.SeedSequence, replicates: int) -> list[int]:
    return [int(s.generate_state(1, np.uint64)[0] >> np.uint64(1)) for s in runs.spawn(replicates)]


@dataclass(frozen=True)
class Problem:
    """Simulator + targets: maps a particle's parameters to the targets' statistics (averaged over
    ``replicates`` runs). Picklable, so it travels to process-pool and Dask workers."""

    simulator: Any
    names: tuple[str, ...]  # pyabc's parameter names p0, p1, ...
    paths: tuple[str, ...]  # the parameters' paths
    targets: tuple[tuple[str, str, Any], ...]  # (name, statistic, parsed args)
    replicates: int
    priors: tuple[PriorSpec, ...] | None = None  # set: pyabc's parameters are normal scores of these

    def values(self, parameter: Any) -> dict[str, float]:
        """A pyabc particle's parameters as the model takes them (path -> value)."""
        if self.priors is None:
            return {path: float(parameter[n]) for n, path in zip(self.names, self.paths, strict=True)}
        return {
            path: prior.from_score(float(parameter[n]))
            for n, path, prior in zip(self.names, self.paths, self.priors, strict=True)
        }

    def statistics(self, params: dict[str, float], seeds: list[int]) -> dict[str, float]:
        values = np.zeros(len(self.targets))
        for seed in seeds:
            try:
                steps = self.simulator.steps(params, seed)
                values += [STATISTICS[stat].fn(steps, args) for _, stat, args in self.targets]
            except Exception:  # a failed run (e.g. a value the scenario rejects): the particle is rejected
                values[:] = math.nan
                break
        values /= len(seeds)
        return {name: float(v) for (name, _, _), v in zip(self.targets, values, strict=True)}

    def __call__(self, parameter: dict[str, float]) -> dict[str, float]:
        """pyabc's model: seeds come from the slot being evaluated (see :class:`SlotSampler`)."""
        seeds = _SLOT["seeds"]
        if seeds is None:  # called outside a slot (a stock pyabc sampler): draw from numpy's state
            seeds = [int(np.random.randint(2**62)) for _ in range(self.replicates)]
        return self.statistics(self.values(parameter), seeds)


@dataclass(frozen=True)
class ScaledDistance:
    """sum over targets of ((simulated - observed) / sd) ** 2; a non-finite statistic is infinitely far."""

    sds: tuple[tuple[str, float], ...]

    def __call__(self, x: dict[str, float], x0: dict[str, float]) -> float:
        total = 0.0
        for name, sd in self.sds:
            value = float(x[name])
            if not math.isfinite(value):
                return math.inf
            total += ((value - float(x0[name])) / sd) ** 2
        return total


# --- the deterministic sampler ----------------------------------------------------------------------

_LOADED: dict[str, Any] = {}


def _load_simulate(payload: bytes) -> Callable:
    import cloudpickle

    key = hashlib.sha256(payload).hexdigest()
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = cloudpickle.loads(payload)
    return _LOADED[key]


def run_slots(payload: bytes, seed: int, t: int, first: int, count: int, replicates: int) -> list:
    """Worker side: evaluate slots first..first+count-1 of generation t; returns (slot, particle)s."""
    simulate_one = _load_simulate(payload)
    out = []
    for j in range(first, first + count):
        proposal, runs = _slot_sequences(seed, t, j)
        np.random.seed(proposal.generate_state(4))  # pyabc's proposal uses numpy's global state
        random.seed(int(proposal.generate_state(1)[0]))
        _SLOT["seeds"] = _run_seeds(runs, replicates)
        try:
            out.append((j, simulate_one()))
        finally:
            _SLOT["seeds"] = None
    return out


def predict_batch(problem: Problem, seed: int, items: list[tuple[int, dict[str, float]]]) -> list:
    """Worker side: posterior-predictive statistics of draws (index, parameters)."""
    out = []
    for j, params in items:
        _, runs = _slot_sequences(seed, PREDICTIVE_KEY - 1, j)
        out.append((j, problem.statistics(params, _run_seeds(runs, problem.replicates))))
    return out


class PriorTransition(pyabc.transition.Transition):
    """A proposal that ignores the population and draws from the prior: ABC rejection in these
    dimensions. The importance weight prior / proposal is then 1 in them, so parameters the targets
    barely inform no longer spread the weights, as a kernel over them does in many dimensions
    (docs/calibration.md 20.9)."""

    def __init__(self, priors: dict[str, Any] | None = None):
        self.priors = priors or {}

    def fit(self, X: Any, w: np.ndarray) -> None:
        """Nothing to fit: the proposal is the prior."""

    def rvs_single(self) -> Any:
        return pyabc.Parameter({name: float(rv.rvs()) for name, rv in self.priors.items()})

    def pdf(self, x: Any) -> Any:
        density = 1.0
        for name, rv in self.priors.items():
            value = x[name]
            density = density * (rv.pdf(value.to_numpy()) if hasattr(value, "to_numpy") else rv.pdf(value))
        return density


def _transition(inf: InferenceSpec, problem: Problem, prior: dict[str, Any]) -> Any:
    """pyabc's perturbation kernel for the declared transition, with the draw_from_prior parameters
    drawn from their prior instead."""
    kernel = (
        pyabc.transition.LocalTransition if inf.transition == "local" else pyabc.MultivariateNormalTransition
    )
    fresh = tuple(
        n for n, path in zip(problem.names, problem.paths, strict=True) if path in inf.draw_from_prior
    )
    if not fresh:
        return kernel()
    perturbed = tuple(n for n in problem.names if n not in fresh)
    mapping: dict[tuple[str, ...], Any] = {fresh: PriorTransition({n: prior[n] for n in fresh})}
    if perturbed:
        mapping[perturbed] = kernel()
    return pyabc.AggregatedTransition(mapping)


class ResumableQuantileEpsilon(pyabc.QuantileEpsilon):
    """pyabc's quantile epsilon, which on a resumed run (t > 0) starts from the weighted quantile of
    the last stored generation, as an uninterrupted run does (pyabc's own falls back to the initial
    epsilon, infinity here, whenever no calibration sample is asked for)."""

    def initialize(self, t, get_weighted_distances, get_all_records, max_nr_populations, acceptor_config):
        if t > 0:
            self._update(t, get_weighted_distances())
            return
        super().initialize(t, get_weighted_distances, get_all_records, max_nr_populations, acceptor_config)


class SlotSampler(Sampler):
    """Evaluates numbered slots in fixed-size batches on a ``concurrent.futures`` executor and
    accepts them in slot order until ``n`` are accepted: the same particles whatever the executor,
    the number of workers or the batch size. Slots evaluated past the n-th acceptance are dropped
    (and not counted), so the simulation count is deterministic too."""

    def __init__(self, executor, seed, workers, replicates, report=None):
        super().__init__()
        self.executor, self.seed, self.workers = executor, seed, max(1, workers)
        self.replicates, self.report = replicates, report

    def __getstate__(self):
        d = dict(self.__dict__)
        d.pop("executor", None)
        return d

    def sample_until_n_accepted(
        self, n, simulate_one, t, *, max_eval=np.inf, all_accepted=False, ana_vars=None
    ):
        import concurrent.futures as cf

        import cloudpickle

        start = time.perf_counter()
        payload = cloudpickle.dumps(simulate_one)
        batch = max(1, min(64, math.ceil(n / (2 * self.workers))))
        window = max(2 * self.workers, 2)
        limit = math.inf if not math.isfinite(max_eval) else math.ceil(max_eval)
        sample = self._create_empty_sample()
        pending: dict[int, cf.Future] = {}
        next_batch = done_batch = accepted = evaluated = 0
        finished = False
        try:
            while not finished:
                while len(pending) < window and next_batch * batch < limit:
                    first = next_batch * batch
                    count = int(min(batch, limit - first))
                    pending[next_batch] = self.executor.submit(
                        run_slots, payload, self.seed, t, first, count, self.replicates
                    )
                    next_batch += 1
                if done_batch not in pending:
                    break  # the evaluation budget is spent
                for j, particle in pending.pop(done_batch).result():
                    sample.append(particle)
                    evaluated = j + 1
                    if particle.accepted:
                        accepted += 1
                        if accepted == n:
                            finished = True
                            break
                done_batch += 1
        finally:
            for future in pending.values():
                future.cancel()
        self.nr_evaluations_ = evaluated
        if accepted < n:
            sample.ok = False
        if self.report is not None:
            eps = ana_vars.eps(t) if ana_vars is not None and t >= 0 else math.nan
            self.report(t, eps, accepted, evaluated, time.perf_counter() - start)
        return sample


# --- resolving a file into a runnable problem ----------------------------------------------------------


@dataclass
class Resolved:
    calibration: Calibration
    text: str
    source: str
    problem: Problem
    scenario: dict[str, Any] | None  # simulator = model: the canonical base scenario

    @property
    def key(self) -> str:
        """What must match for a folder to be resumed: the validated file and the base scenario, less the
        number of generations. Generation t draws only from (seed, t), so a finished calibration extended
        to more generations is the calibration that ran them all at once."""
        calibration = self.calibration.model_dump(mode="json")
        del calibration["inference"]["max_generations"]
        blob = json.dumps({"calibration": calibration, "scenario": self.scenario}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


def _check_targets(
    cal: Calibration, known: list[str], dates: list[str], summary: list[str] | None = None
) -> None:
    problems = []
    for i, target in enumerate(cal.targets):
        args = target.parsed_args()
        metrics = getattr(args, "metrics", [])
        if metrics and summary is None:
            problems.append(f"  targets.{i}: {target.statistic} needs simulator = 'model' (a run summary)")
        elif metrics and any(m not in summary for m in metrics):
            bad = [m for m in metrics if m not in summary]
            problems.append(
                f"  targets.{i}.args: unknown summary metric(s) {bad} (allowed: {sorted(summary)})"
            )
        unknown = [s for s in series_of(args) if s not in known]
        if unknown:
            problems.append(f"  targets.{i}.args: unknown series {unknown} (allowed: {sorted(known)})")
        outside = [m for m in args.months() if m not in dates]
        if outside:
            problems.append(
                f"  targets.{i}.args: month(s) {outside} outside the simulated months {dates[0]}..{dates[-1]}"
            )
    if problems:
        raise ConfigError("invalid calibration file:\n" + "\n".join(problems))


def resolve(cal: Calibration, text: str, source: str) -> Resolved:
    """Check parameter paths, series and months against the simulator; fill observed values taken from
    data (``observed_from``); build the problem."""
    filled = []
    for i, target in enumerate(cal.targets):
        if target.observed_from is not None:
            try:
                target = target.model_copy(update={"observed": observed_value(target)})
            except ConfigError as exc:
                raise ConfigError(f"invalid calibration file {source}:\n  targets.{i}.{exc}") from None
        filled.append(target)
    cal = cal.model_copy(update={"targets": filled})
    if not any(t.role == "fit" for t in cal.targets):
        raise ConfigError(f"invalid calibration file {source}:\n  targets: no target with role = 'fit'")
    names = tuple(f"p{i}" for i in range(len(cal.parameters)))
    paths = tuple(p.path for p in cal.parameters)
    scenario = None
    if cal.simulator == "synthetic_ar1":
        allowed = set(SyntheticAR1.PARAMETERS)
        bad = [(i, p) for i, p in enumerate(paths) if p not in allowed] + [
            ("fixed", k) for k in cal.fixed if k not in allowed
        ]
        if bad:
            where, path = bad[0]
            field = f"parameters.{where}.path" if where != "fixed" else f"fixed.{path}"
            raise ConfigError(
                f"invalid calibration file {source}:\n  {field}: unknown synthetic_ar1 parameter "
                f"'{path}' (allowed: {sorted(allowed)})"
            )
        simulator = SyntheticAR1(cal.months or 36, tuple(sorted((k, float(v)) for k, v in cal.fixed.items())))
        _check_targets(cal, list(SyntheticAR1.SERIES), simulator.dates())
    else:
        simulator, scenario = _model_simulator(cal, source)
    targets = tuple((t.name, t.statistic, t.parsed_args()) for t in cal.targets)
    scores = cal.inference.parameter_space == "normal_scores"
    problem = Problem(
        simulator,
        names,
        paths,
        targets,
        cal.inference.replicates_per_particle,
        tuple(cal.parameters) if scores else None,
    )
    return Resolved(cal, text, source, problem, scenario)


def _model_simulator(cal: Calibration, source: str) -> tuple[ModelSimulator, dict[str, Any]]:
    from core.config import canonical_dict, load_scenario, month_index
    from experiments.design import _path_exists
    from experiments.runner import known_metrics

    try:
        base = load_scenario(cal.scenario)
    except ConfigError as exc:
        raise ConfigError(f"calibration field 'scenario': {exc}") from None
    scenario = canonical_dict(base)
    for i, spec in enumerate(cal.parameters):
        if not _path_exists(scenario, spec.path):
            raise ConfigError(
                f"invalid calibration file {source}:\n  parameters.{i}.path: '{spec.path}' is not a "
                "parameter of the scenario (a dotted path to a value, e.g. world.rent.shock_volatility; "
                "see docs/calibration.md)"
            )
        for value in spec.test_values():  # the prior's ends must be values the scenario accepts
            try:
                load_scenario(scenario, {**cal.fixed, spec.path: value}, months=cal.months)
            except ConfigError as exc:
                detail = str(exc).splitlines()[-1].strip()
                raise ConfigError(
                    f"invalid calibration file {source}:\n  parameters.{i}: the scenario rejects "
                    f"{spec.path} = {value} ({detail})"
                ) from None
    try:
        fixed_scenario = load_scenario(scenario, dict(cal.fixed), months=cal.months)
    except ConfigError as exc:
        raise ConfigError(f"calibration field 'fixed': {exc}") from None
    summary, series = known_metrics(canonical_dict(fixed_scenario))
    start = month_index(fixed_scenario.world.start)
    dates = [_month_name(start + m) for m in range(fixed_scenario.months + 1)]
    _check_targets(cal, series, dates, summary)
    return ModelSimulator(scenario, cal.months, dict(cal.fixed)), scenario


def load_calibration(path: str | Path) -> Resolved:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"calibration file {path}: no such file")
    text = read_text(path, "calibration file")
    return resolve(parse_calibration(text, str(path)), text, str(path))


def quick(cal: Calibration) -> Calibration:
    """--quick: a smoke run (at most 50 particles, 3 generations, 20 predictive draws)."""
    inf = cal.inference
    return cal.model_copy(
        update={
            "inference": inf.model_copy(
                update={
                    "population_size": min(inf.population_size, 50),
                    "max_generations": min(inf.max_generations, 3),
                    "predictive_draws": min(inf.predictive_draws, 20),
                }
            )
        }
    )


# --- running -----------------------------------------------------------------------------------------


def _claim(resolved: Resolved, out: Path, resume: bool) -> None:
    from model.manifest import atomic_write_bytes, atomic_write_json, read_key_file

    key_path = out / KEY_FILE
    if key_path.exists():
        stored = read_key_file(key_path)
        if stored.get("key") != resolved.key:
            raise ConfigError(
                f"--out {out}: holds a different calibration ('{stored.get('name')}') or one with other "
                "settings; choose another --out or remove that folder"
            )
        atomic_write_bytes(out / "calibration.toml", resolved.text.encode())  # its max_generations may be new
        return
    if resume:
        raise ConfigError(f"--resume: {out} holds no calibration to resume (run without --resume first)")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out {out}: folder is not empty and holds no calibration; choose another")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "calibration.toml", resolved.text.encode())
    atomic_write_json(key_path, {"key": resolved.key, "name": resolved.calibration.name})


def _stopped_early(history: Any, inf: InferenceSpec) -> bool:
    """Whether the last stored generation met a stop rule (as pyabc checks after each generation)."""
    pops = history.get_all_populations()
    pops = pops[pops.t >= 0]
    if pops.empty:
        return False
    last = pops.iloc[-1]
    return bool(last.epsilon <= 0.0 or last.particles / last.samples < inf.min_acceptance_rate)


class _Progress:
    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.times = total, enabled, []

    def __call__(self, t: int, eps: float, accepted: int, evaluated: int, seconds: float) -> None:
        self.times.append(seconds)
        if not self.enabled or t < 0:
            return
        rate = accepted / evaluated if evaluated else math.nan
        eta = (self.total - t - 1) * float(np.mean(self.times))
        print(
            f"generation {t + 1}/{self.total}: epsilon {eps:.4g}, accepted {accepted}/{evaluated} "
            f"({rate:.1%}), {seconds:.1f}s, ETA {eta:.0f}s (at most)",
            file=sys.stderr,
            flush=True,
        )


@dataclass
class Outcome:
    out: Path
    generations: int
    simulations: int
    seconds: float
    resumed_from: int
    manifest: dict[str, Any]


def run_calibration(
    resolved: Resolved,
    out: Path,
    executor: str = "serial",
    workers: int = 1,
    scheduler: str | None = None,
    resume: bool = False,
    progress: bool = False,
    command: list[str] | None = None,
    figures: bool = True,
) -> Outcome:
    """Run (or resume) a calibration into ``out`` and write its outputs; the entry point behind the CLI."""
    from experiments.sweep import make_executor
    from model.manifest import code_revision

    for name in ("ABC", "pyabc", "Sampler", "History", "Epsilon", "Distance", "Acceptor"):
        logging.getLogger(name).setLevel(logging.WARNING)
    cal = resolved.calibration
    inf = cal.inference
    out = Path(out)
    _claim(resolved, out, resume)
    db = out / HISTORY
    url = f"sqlite:///{db.resolve()}"
    problem = resolved.problem
    prior_rvs = {
        name: pyabc.RV("norm", 0.0, 1.0) if problem.priors else spec.rv()
        for name, spec in zip(problem.names, cal.parameters, strict=True)
    }
    prior = pyabc.Distribution(**prior_rvs)
    distance = ScaledDistance(tuple((t.name, t.sd) for t in cal.targets if t.role == "fit"))
    observed = {t.name: float(t.observed) for t in cal.targets}
    start = time.perf_counter()
    revision = code_revision()  # of the code the workers load now, not of a tree edited while it runs
    report = _Progress(inf.max_generations, progress)
    with make_executor(executor, workers, scheduler) as ex:
        sampler = SlotSampler(ex, cal.seed, workers, inf.replicates_per_particle, report)
        abc = pyabc.ABCSMC(
            problem,
            prior,
            distance,
            population_size=inf.population_size,
            sampler=sampler,
            transitions=_transition(inf, problem, prior_rvs),
            eps=ResumableQuantileEpsilon(initial_epsilon=np.inf, alpha=inf.epsilon_quantile, weighted=True),
        )
        done = 0
        if db.exists():
            try:
                history = pyabc.History(url)
                history.id = 1
                done = history.n_populations if history.get_all_populations().shape[0] else 0
            except Exception:  # a database left unfinished by a kill during its creation
                done = 0
            if done > 0:
                abc.load(url, 1)
        if done == 0:
            for path in out.glob(HISTORY + "*"):  # a run killed before its first generation was stored
                path.unlink()
            abc.new(url, observed)
        if done and progress:
            print(f"resuming after generation {done} of {inf.max_generations}", file=sys.stderr)
        remaining = inf.max_generations - done
        if remaining > 0 and not (done and _stopped_early(abc.history, inf)):
            with warnings.catch_warnings():  # pyabc compares epsilon inf - inf after generation 0
                warnings.simplefilter("ignore", RuntimeWarning)
                abc.run(max_nr_populations=remaining, min_acceptance_rate=inf.min_acceptance_rate)
        history = abc.history
        posterior = _posterior(history, resolved)
        predictive = _predictive(posterior, resolved, ex, workers)
    seconds = time.perf_counter() - start
    from experiments.calibration_report import write_outputs

    manifest = write_outputs(resolved, out, history, posterior, predictive, command or [], figures, revision)
    pops = history.get_all_populations()
    return Outcome(
        out, int((pops.t >= 0).sum()), int(pops.samples[pops.t >= 0].sum()), seconds, done, manifest
    )


def _posterior(history: Any, resolved: Resolved) -> Any:
    """The final generation: one row per particle in slot order (parameters, weight, distance)."""
    import pandas as pd

    problem = resolved.problem
    t = history.max_t
    population = history.get_population(t=t)
    rows = []
    for i, particle in enumerate(population.particles):
        row = {"generation": int(t), "particle": i}
        row.update(problem.values(particle.parameter))
        row.update(weight=float(particle.weight), distance=float(particle.distance))
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame["weight"] = frame["weight"] / frame["weight"].sum()
    return frame


def _predictive(posterior: Any, resolved: Resolved, executor: Any, workers: int) -> Any:
    """Statistics of ``predictive_draws`` runs at parameters drawn from the posterior (by weight)."""
    import pandas as pd

    from experiments.posterior import draw_rows

    cal, problem = resolved.calibration, resolved.problem
    draws = cal.inference.predictive_draws
    if draws == 0:
        return pd.DataFrame(columns=["draw", *[t.name for t in cal.targets]])
    seed = np.random.SeedSequence(cal.seed, spawn_key=(PREDICTIVE_KEY,))
    picks = draw_rows(posterior["weight"].to_numpy(), draws, seed)
    items = [
        (j, {path: float(posterior.iloc[k][path]) for path in problem.paths}) for j, k in enumerate(picks)
    ]
    size = max(1, math.ceil(draws / (2 * max(1, workers))))
    futures = [
        executor.submit(predict_batch, problem, cal.seed, items[i : i + size]) for i in range(0, draws, size)
    ]
    results = sorted((j, stats) for f in futures for j, stats in f.result())
    rows = [{"draw": j, "particle": int(picks[j]), **stats} for j, stats in results]
    return pd.DataFrame(rows)


# --- the command --------------------------------------------------------------------------------------


def calibrate_parser() -> argparse.ArgumentParser:
    from experiments.sweep import _add_executor_args, _Parser

    parser = _Parser(
        prog="run.py calibrate",
        description="Calibrate a simulator to targets with ABC-SMC (pyabc); rerun the same command to resume.",
    )
    parser.add_argument(
        "calibration", type=Path, help="calibration file (TOML), see docs/calibration-command.md"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: results/calibration/NAME)"
    )
    parser.add_argument("--resume", action="store_true", help="continue the calibration stored in --out")
    parser.add_argument("--quick", action="store_true", help="a smoke run: <= 50 particles, <= 3 generations")
    parser.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    _add_executor_args(parser)
    for (
        action
    ) in parser._actions:  # calibrate runs serially unless asked for workers (docs/calibration-command.md)
        if action.dest == "executor":
            action.default = None
            action.help = (
                "serial (default), local processes (the default when --workers > 1) or a Dask cluster"
            )
    return parser


def executor_choice(args: argparse.Namespace) -> tuple[str, int]:
    """The sweep's executor choice, with calibrate's default: serial, unless workers or a scheduler
    are asked for."""
    from experiments.sweep import _executor_choice

    if args.executor is None:
        args.executor = "dask" if args.scheduler else "processes" if (args.workers or 1) > 1 else "serial"
    return _executor_choice(args)


def main(argv: list[str]) -> int:
    args = calibrate_parser().parse_args(argv)
    kind, workers = executor_choice(args)
    resolved = load_calibration(args.calibration)
    if args.quick:
        resolved.calibration = quick(resolved.calibration)
    cal = resolved.calibration
    out = args.out or Path("results") / "calibration" / cal.name
    inf = cal.inference
    print(
        f"calibration '{cal.name}': {len(cal.parameters)} parameter(s), {len(cal.targets)} target(s); "
        f"{inf.population_size} particles x up to {inf.max_generations} generations; executor {kind}"
        + (f" ({workers} workers)" if kind != "serial" else "")
        + f"; output {out}/",
        file=sys.stderr,
    )
    try:
        outcome = run_calibration(
            resolved,
            out,
            kind,
            workers,
            args.scheduler,
            resume=args.resume,
            progress=not args.no_progress,
            command=["run.py", "calibrate", *argv],
            figures=not args.no_figures,
        )
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: finished generations are kept in {out / HISTORY}; rerun to resume",
            file=sys.stderr,
        )
        return 130
    print(
        f"{outcome.generations} generations, {outcome.simulations} simulations in {outcome.seconds:.1f}s"
        + (f" (resumed after generation {outcome.resumed_from})" if outcome.resumed_from else "")
    )
    from experiments.calibration_report import format_parameters

    print(format_parameters(out))
    print(
        f"wrote {out}/ (posterior.parquet, generations.parquet, parameters.csv, fit.csv, figures/, manifest.json)"
    )
    print(f"posterior digest {outcome.manifest['outputs']['posterior.parquet']}")
    return 0
