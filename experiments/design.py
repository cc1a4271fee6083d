"""Experiment files: what a sweep varies, how it samples, how many replicates, and which seeds.

An experiment file (TOML, see ``docs/experiments.md``) names a base scenario, the parameters to vary
(short names from ``model.model.PARAMETER_ALIASES`` or dotted scenario paths), a design (full grid,
Latin hypercube, Sobol or Morris via SALib), replicates per design point, a master seed and the outputs
to keep. :func:`load_experiment` validates it and :func:`build_plan` turns it into one :class:`RunSpec`
per run, validating every design point's scenario before anything runs. Bad input raises
``core.config.ConfigError`` with one line per problem naming the field and what is allowed.

Seeds: the master seed spawns one child ``SeedSequence`` per replicate index; replicate ``r`` gets the
same seed at every design point (common random numbers), so differences between points are not noise.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.config import (
    IDENTIFIER_PATTERN,
    PATTERN_MEANING,
    ConfigError,
    canonical_dict,
    load_scenario,
    read_text,
    resolve_scenario_path,
)

ROOT = Path(__file__).resolve().parent.parent
POSTERIOR_KEY = 0x9057  # mixed with the master seed: the posterior draws' own stream
DesignKind = Literal["grid", "lhs", "sobol", "morris"]
Scalar = float | int | bool | str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ParameterSpec(_Strict):
    """One varied parameter: explicit ``values`` (grid only) or a range ``min``..``max``."""

    values: list[Scalar] | None = Field(default=None, description="grid: the values to use")
    min: float | None = Field(default=None, description="lower end of the range")
    max: float | None = Field(default=None, description="upper end of the range")
    steps: int | None = Field(default=None, ge=1, le=10_000, description="grid: evenly spaced values")
    type: Literal["float", "int"] = Field(default="float", description="int: sampled values are rounded")

    @model_validator(mode="after")
    def _shape(self) -> ParameterSpec:
        if self.values is not None:
            if self.min is not None or self.max is not None or self.steps is not None:
                raise ValueError("give either values = [...] or min/max (with steps for a grid), not both")
            if len(self.values) == 0:
                raise ValueError("values is empty: give at least one value")
            if len(set(map(repr, self.values))) != len(self.values):
                raise ValueError(f"values has repeats: {self.values}")
            return self
        if self.min is None or self.max is None:
            raise ValueError("give values = [...] or both min and max")
        if not self.min < self.max:
            raise ValueError(f"empty range: min ({self.min}) must be below max ({self.max})")
        return self


class DesignSpec(_Strict):
    """How design points are chosen."""

    kind: DesignKind = Field(description="grid | lhs | sobol | morris")
    samples: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="lhs: points; sobol: base sample N (a power of 2); morris: trajectories",
    )
    second_order: bool = Field(default=False, description="sobol: also second-order indices")
    levels: int = Field(default=4, ge=2, le=100, description="morris: grid levels")

    @model_validator(mode="after")
    def _samples(self) -> DesignSpec:
        if self.kind == "grid":
            if self.samples is not None:
                raise ValueError("samples is not used by a grid (its size is the product of the values)")
        elif self.samples is None:
            raise ValueError(f"a {self.kind} design needs samples = N")
        elif self.kind == "sobol" and self.samples & (self.samples - 1):
            raise ValueError(f"sobol: samples must be a power of 2 (got {self.samples})")
        return self


class OutputSpec(_Strict):
    """What each run keeps."""

    metrics: list[str] | Literal["all"] = Field(default="all", description="summary metrics to keep")
    timeseries: list[str] | bool = Field(default=False, description="monthly columns to keep (true: all)")
    sensitivity: list[str] = Field(default_factory=list, description="metrics for Sobol/Morris indices")


class PosteriorSpec(_Strict):
    """Parameter uncertainty inside the intervals: replicate ``r`` runs at posterior draw ``r mod
    draws`` (drawn by weight from the master seed), so every design point sees the same draws with the
    same seeds. Precedence: a draw's values < ``fixed`` < the design point's parameters."""

    file: str = Field(
        description="a calibration's posterior.parquet: relative to the experiment file, else the project root"
    )
    draws: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="distinct draws, cycled over replicates (default: replicates)",
    )
    exclude: list[str] = Field(
        default_factory=list,
        description="posterior columns not applied (e.g. the calibration's start state, not the scenario's)",
    )


class Experiment(_Strict):
    """A sweep: base scenario, parameters, design, replicates, master seed, outputs."""

    name: str = Field(pattern=IDENTIFIER_PATTERN, description="an identifier: the default output folder")
    description: str = ""
    scenario: str = Field(default="baseline", description="a scenario name or a .toml path")
    months: int | None = Field(default=None, ge=1, le=600, description="horizon (default: scenario's)")
    master_seed: int = Field(ge=0, lt=2**63)
    replicates: int = Field(default=1, ge=1, le=100_000)
    max_run_seconds: float = Field(
        default=0.0, ge=0.0, le=604_800.0, description="stop a run after this; 0 = no limit"
    )
    fixed: dict[str, Any] = Field(default_factory=dict, description="overrides applied to every run")
    design: DesignSpec
    parameters: dict[str, ParameterSpec] = Field(min_length=1)
    outputs: OutputSpec = OutputSpec()
    posterior: PosteriorSpec | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Experiment:
        for name, spec in self.parameters.items():
            if self.design.kind == "grid":
                if spec.values is None and spec.steps is None:
                    raise ValueError(f"parameters.{name}: a grid needs values = [...] or min/max with steps")
            else:
                if spec.values is not None or spec.steps is not None:
                    raise ValueError(
                        f"parameters.{name}: a {self.design.kind} design samples a range; "
                        "give min and max (values/steps are for grids)"
                    )
        if self.design.kind == "morris" and len(self.parameters) < 1:
            raise ValueError("morris needs at least one parameter")
        if self.posterior is not None and (self.posterior.draws or 0) > self.replicates:
            raise ValueError(
                f"posterior.draws ({self.posterior.draws}) exceeds replicates ({self.replicates}): "
                "each replicate runs at one draw"
            )
        return self


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: its id, design point, replicate, seed and resolved overrides."""

    run_id: str
    point: int
    replicate: int
    seed: int
    params: dict[str, Any]
    overrides: dict[str, Any]
    months: int
    draw: int | None = None  # index into Plan.posterior_draws


@dataclass
class Plan:
    """Every run of a sweep, in run-id order, plus what the workers need."""

    experiment: Experiment
    scenario: dict[str, Any]  # canonical base scenario (fixed overrides not yet applied)
    points: list[dict[str, Any]]
    runs: list[RunSpec]
    months: int
    fingerprint: str = field(default="")
    posterior_draws: list[dict[str, float]] = field(default_factory=list)
    posterior_file: str = ""
    posterior_sha256: str = ""

    @property
    def parameter_names(self) -> list[str]:
        return list(self.experiment.parameters)


# --- reading ---------------------------------------------------------------------------------------


def _format_errors(error: ValidationError, source: str) -> str:
    lines = [f"invalid experiment file {source}:"]
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"] if not str(p).startswith("function-after"))
        loc = loc.replace(".list[union[float,int,bool,str]]", "").replace(".literal['all']", "")
        msg = item["msg"].removeprefix("Value error, ")
        if item["type"] == "string_pattern_mismatch" and item["ctx"]["pattern"] in PATTERN_MEANING:
            msg = PATTERN_MEANING[item["ctx"]["pattern"]]
        elif item["type"] == "extra_forbidden":
            msg = "unknown field (see docs/experiments.md for the allowed fields)"
        elif item["type"] == "missing":
            msg = "required field is missing"
        got = item.get("input")
        shown = "" if item["type"] == "missing" or isinstance(got, dict | list) else f" (got {got!r})"
        lines.append(f"  {loc or 'experiment'}: {msg}{shown}")
    return "\n".join(dict.fromkeys(lines))


def parse_experiment(text: str, source: str = "(text)") -> Experiment:
    """Validate an experiment from TOML text (structure only; see :func:`build_plan` for the rest)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"experiment file {source}: malformed TOML: {exc}") from None
    try:
        return Experiment.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None


def load_experiment(path: str | Path) -> tuple[Experiment, str]:
    """Read and validate an experiment file; returns the experiment and the file's text."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"experiment file {path}: no such file")
    text = read_text(path, "experiment file")
    return parse_experiment(text, str(path)), text


def scenario_for(experiment: Experiment, experiment_path: str | Path | None) -> dict[str, Any]:
    """The base scenario as canonical data; a relative .toml path is read next to the experiment file."""
    name = experiment.scenario
    if name.endswith(".toml") and experiment_path is not None and not Path(name).is_absolute():
        candidate = Path(experiment_path).resolve().parent / name
        if candidate.is_file():
            name = str(candidate)
    try:
        resolve_scenario_path(name)
        return canonical_dict(load_scenario(name))
    except ConfigError as exc:
        raise ConfigError(f"experiment field 'scenario': {exc}") from None


# --- parameters ------------------------------------------------------------------------------------


def _path_exists(data: Any, dotted: str) -> bool:
    node = data
    for key in dotted.split("."):
        if isinstance(node, list):
            names = [item.get("name") for item in node if isinstance(item, dict)]
            if key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            elif key in names:
                node = node[names.index(key)]
            else:
                return False
        elif isinstance(node, dict) and key in node:
            node = node[key]
        else:
            return False
    return not isinstance(node, dict | list)


def _check_names(experiment: Experiment, scenario: dict[str, Any]) -> None:
    from model.model import PARAMETER_ALIASES

    problems = []
    for section, names in (("parameters", experiment.parameters), ("fixed", experiment.fixed)):
        for name in names:
            if name in ("seed",):
                problems.append(f"  {section}.{name}: seeds come from master_seed and replicates")
            elif name not in PARAMETER_ALIASES and not _path_exists(scenario, name):
                problems.append(
                    f"  {section}.{name}: unknown parameter (allowed: a short name "
                    f"{sorted(PARAMETER_ALIASES)} or a dotted scenario path such as "
                    "world.rent.deflation_per_year)"
                )
    if problems:
        raise ConfigError("invalid experiment:\n" + "\n".join(problems))


def resolve_overrides(scenario: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Short names and dotted paths -> dotted overrides (short names may fan out to several paths)."""
    from model.model import PARAMETER_ALIASES, _resolve_aliases

    short = {k: v for k, v in params.items() if k in PARAMETER_ALIASES}
    dotted = {k: v for k, v in params.items() if k not in PARAMETER_ALIASES}
    return {**_resolve_aliases(scenario, short), **dotted} if short else dotted


def _native(value: Any) -> Any:
    """numpy scalars -> Python scalars (exact), so plans pickle and serialise the same everywhere."""
    return value.item() if isinstance(value, np.generic) else value


def design_seed(master_seed: int) -> int:
    """The seed of the sampler (LHS, Sobol scrambling, Morris), derived from the master seed."""
    return int(np.random.SeedSequence([master_seed, 0x5EED]).generate_state(1, dtype=np.uint32)[0])


def replicate_seeds(master_seed: int, replicates: int) -> list[int]:
    """One seed per replicate index (common random numbers), spawned from the master seed."""
    children = np.random.SeedSequence(master_seed).spawn(replicates)
    return [int(c.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)) for c in children]


def salib_problem(experiment: Experiment) -> dict[str, Any]:
    names = list(experiment.parameters)
    return {
        "num_vars": len(names),
        "names": names,
        "bounds": [[experiment.parameters[n].min, experiment.parameters[n].max] for n in names],
    }


def design_points(experiment: Experiment) -> list[dict[str, Any]]:
    """The design points, in a fixed order (grid: product in file order; SALib: sample order)."""
    names = list(experiment.parameters)
    specs = experiment.parameters
    kind = experiment.design.kind
    if kind == "grid":
        axes = []
        for n in names:
            s = specs[n]
            if s.values is not None:
                axes.append(list(s.values))
            else:
                vals = np.linspace(s.min, s.max, s.steps) if s.steps > 1 else np.array([s.min])
                axes.append([_cast(v, s.type) for v in vals])
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes)]
    import warnings

    problem = salib_problem(experiment)
    seed = design_seed(experiment.master_seed)
    n = experiment.design.samples
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "lhs":
            from SALib.sample import latin

            x = latin.sample(problem, n, seed=seed)
        elif kind == "sobol":
            from SALib.sample import sobol

            x = sobol.sample(problem, n, calc_second_order=experiment.design.second_order, seed=seed)
        else:
            from SALib.sample import morris

            x = morris.sample(problem, n, num_levels=experiment.design.levels, seed=seed)
    return [{n_: _cast(v, specs[n_].type) for n_, v in zip(names, row, strict=True)} for row in x]


def design_size(experiment: Experiment) -> int:
    """How many design points ``design_points`` will give, computed without drawing them (SALib: lhs N,
    Sobol N(D+2) or N(2D+2) with second order, Morris N(D+1))."""
    specs = experiment.parameters.values()
    d, n = len(experiment.parameters), experiment.design.samples or 0
    kind = experiment.design.kind
    if kind == "grid":
        return math.prod(len(s.values) if s.values is not None else s.steps or 1 for s in specs)
    if kind == "lhs":
        return n
    if kind == "sobol":
        return n * (2 * d + 2 if experiment.design.second_order else d + 2)
    return n * (d + 1)


def _cast(value: Any, kind: str) -> Any:
    value = _native(value)
    return int(round(value)) if kind == "int" else float(value)


def posterior_path(experiment: Experiment, experiment_path: str | Path | None) -> Path:
    """Where ``posterior.file`` points: absolute, next to the experiment file, else under the project root."""
    given = Path(experiment.posterior.file)
    if given.is_absolute():
        return given
    if experiment_path is not None:
        candidate = Path(experiment_path).resolve().parent / given
        if candidate.is_file():
            return candidate
    return ROOT / given


def posterior_draws(
    experiment: Experiment, scenario: dict[str, Any], experiment_path: str | Path | None
) -> tuple[list[dict[str, float]], Path]:
    """The experiment's posterior draws (validated against the scenario) and the file they came from."""
    from experiments.posterior import draw_parameters, parameter_columns, read_posterior

    spec = experiment.posterior
    path = posterior_path(experiment, experiment_path)
    frame = read_posterior(path)
    columns = parameter_columns(frame)
    problems = [
        f"  posterior.exclude: '{name}' is not a column of {path.name} (columns: {columns})"
        for name in spec.exclude
        if name not in columns
    ]
    problems += [
        f"  posterior.file: column '{name}' is not a scenario parameter (a dotted path such as "
        "world.rent.shock_volatility)"
        for name in columns
        if name not in spec.exclude and not _path_exists(scenario, name)
    ]
    if problems:
        raise ConfigError("invalid experiment:\n" + "\n".join(problems))
    seed = np.random.SeedSequence([experiment.master_seed, POSTERIOR_KEY])
    return draw_parameters(frame, spec.draws or experiment.replicates, seed, spec.exclude), path


def build_plan(
    experiment: Experiment,
    scenario: dict[str, Any],
    max_errors: int = 5,
    experiment_path: str | Path | None = None,
) -> Plan:
    """Every run of the sweep; each design point's scenario (and each posterior draw's) is validated
    here, before anything runs."""
    _check_names(experiment, scenario)
    base = copy.deepcopy(scenario)
    fixed = resolve_overrides(base, dict(experiment.fixed))
    points = design_points(experiment)
    months = experiment.months or int(scenario["months"])
    seeds = replicate_seeds(experiment.master_seed, experiment.replicates)
    draws: list[dict[str, float]] = []
    posterior_file = None
    if experiment.posterior is not None:
        draws, posterior_file = posterior_draws(experiment, base, experiment_path)
    runs: list[RunSpec] = []
    errors: list[str] = []
    for d, draw in enumerate(draws):
        try:
            load_scenario(base, {**draw, **fixed}, seed=seeds[0], months=months)
        except ConfigError as exc:
            raise ConfigError(
                f"experiment '{experiment.name}': posterior draw {d} gives an invalid scenario: {exc}"
            ) from None
    width = max(5, len(str(len(points) - 1)))
    rwidth = max(2, len(str(experiment.replicates - 1)))
    for p, params in enumerate(points):
        try:
            overrides = {**fixed, **resolve_overrides(base, params)}
            run_months = int(overrides.pop("months", months))  # months may be a swept parameter
            load_scenario(
                base, {**(draws[0] if draws else {}), **overrides}, seed=seeds[0], months=run_months
            )
        except ConfigError as exc:
            shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
            errors.append(f"design point {p} ({shown}) gives an invalid scenario: {exc}")
            if len(errors) >= max_errors:
                break
            continue
        for r, seed in enumerate(seeds):
            run_id = f"p{p:0{width}d}-r{r:0{rwidth}d}"
            if draws:
                d = r % len(draws)
                runs.append(RunSpec(run_id, p, r, seed, params, {**draws[d], **overrides}, run_months, d))
            else:
                runs.append(RunSpec(run_id, p, r, seed, params, overrides, run_months))
    if errors:
        more = "" if len(errors) < max_errors else f"\n(stopped after {max_errors} invalid points)"
        raise ConfigError(f"experiment '{experiment.name}':\n" + "\n".join(errors) + more)
    plan = Plan(experiment, base, points, runs, months, posterior_draws=draws)
    if posterior_file is not None:
        from model.manifest import file_digest

        plan.posterior_file = _shown_path(posterior_file)
        plan.posterior_sha256 = file_digest(posterior_file)
    return plan


def _shown_path(path: Path) -> str:
    """A path as recorded: relative to the project root when inside it."""
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(resolved)


def plan_digest(experiment: Experiment, scenario: dict[str, Any], posterior_sha256: str = "") -> str:
    """Identifies a sweep's inputs: the validated experiment, the base scenario's full config and the
    content of the posterior file it draws from (if any)."""
    payload = {"experiment": experiment.model_dump(mode="json"), "scenario": scenario}
    if posterior_sha256:
        payload["posterior_sha256"] = posterior_sha256
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
