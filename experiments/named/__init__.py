"""The ten named experiments behind docs/results.md: each is one or more experiment files in this folder (run by the
sweep runner, ``experiments.sweep``) plus an analysis in its own module next to them
(``experiments.named.<name>``; ``systemic_ranking``'s is ``experiments.named.systemic``; what they share is
in ``experiments.named.common``) that writes its figures, tables and a Markdown report.

``python run.py experiment NAME [--full] [--out DIR] [--workers N]`` runs one; ``python run.py experiment
all`` runs the ten. The default is the reduced size (the files in this folder: a handful of design
points, a few replicates, short horizons; all ten take a few minutes on two cores); ``--full`` runs the
paper-size files in ``full/``. An experiment that takes ``--scenario`` (``systemic_ranking``) completes
its files for that scenario (``NamedExperiment.design``) before they are planned. ``--docs`` also copies each key figure to ``docs/img/experiments/`` and
rewrites ``docs/results.md`` from the reports. Every sweep writes its manifest (``sweeps/FILE/manifest.json``);
``python run.py replay`` on it re-runs and checks the digest.

Some experiments add scheduled shocks to their base scenario (``SCENARIO_PATCHES``): the experiment
file schema has no place for them, so they are applied here, before the sweep is planned, and recorded in
the sweep's manifest (its ``config``), so a replay reproduces them. ``patch_files`` limits a patch to
some files (an experiment's reference file runs without it).
"""

from __future__ import annotations

import argparse
import importlib
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from core.config import ConfigError, canonical_dict, load_scenario

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SIZES = ("reduced", "full")


@dataclass(frozen=True)
class NamedExperiment:
    """One named experiment: its experiment files (stems in this folder), a scenario patch applied to
    every file's base scenario, and the analysis that turns the sweeps into figures and a report."""

    name: str
    number: int
    title: str
    question: str
    files: tuple[str, ...]
    analysis: str  # function name in the experiment's module experiments.named.<name>, or "module:function"
    patch: dict[str, Any] = field(default_factory=dict)
    patch_files: tuple[str, ...] | None = None  # the files the patch applies to (None: all)
    design: str = ""  # "module:function(text, scenario, patch) -> (text, patch)" completing each file
    default_scenario: str = ""  # the experiment takes --scenario (this is its default) when set


# Shocks added to the base scenario; the swept values (e.g. "shocks.0.size") override them per point.
SCENARIO_PATCHES: dict[str, dict[str, Any]] = {
    "btc_crash_month_6": {"shocks": [{"month": 6, "kind": "btc_crash", "size": 0.0}]},
    "largest_miner_fails_month_3": {"shocks": [{"month": 3, "kind": "default_largest_miner"}]},
    "largest_miner_fails_month_1": {"shocks": [{"month": 1, "kind": "default_largest_miner"}]},
    # the agent is swept ("shocks.0.agent"): the design hook puts the first one here, each point its own
    "one_agent_fails_month_1": {"shocks": [{"month": 1, "kind": "default_agent", "agent": ""}]},
}

EXPERIMENTS: dict[str, NamedExperiment] = {
    e.name: e
    for e in (
        NamedExperiment(
            "rent_deflation",
            1,
            "Rent deflation vs debt service",
            "How fast can rent per unit of compute fall before GPU-backed debt stops being serviced?",
            ("rent_deflation",),
            "rent_deflation",
        ),
        NamedExperiment(
            "duration_mismatch",
            2,
            "Duration mismatch",
            "How much principal is still owed when the financed GPUs are worth nothing, and what do lenders "
            "lose, by loan tenor and amortisation profile?",
            ("duration_mismatch",),
            "duration_mismatch",
        ),
        NamedExperiment(
            "double_leverage",
            3,
            "Double leverage and correlation convergence",
            "How much do BTC-backed loans on miners' books add to miner defaults when BTC crashes, and does a "
            "stress correlation between BTC and compute demand make it worse?",
            ("double_leverage",),
            "double_leverage",
            SCENARIO_PATCHES["btc_crash_month_6"],
        ),
        NamedExperiment(
            "repo_market",
            4,
            "The missing repo market",
            "Does a deeper or better-equipped buy side stop a fire sale from cascading, and how far does "
            "book LTV overstate what lenders recover?",
            ("repo_market",),
            "repo_market",
            SCENARIO_PATCHES["largest_miner_fails_month_3"],
        ),
        NamedExperiment(
            "concentration",
            5,
            "Concentration",
            "Where does a single default stop being contained, as lending concentrates and lenders owe "
            "each other more?",
            ("concentration", "concentration_lenders"),
            "concentration",
            SCENARIO_PATCHES["largest_miner_fails_month_1"],
        ),
        NamedExperiment(
            "credit_spreads",
            6,
            "Credit spreads",
            "What spread would price the simulated default risk, by borrower type and instrument, and how "
            "does it compare with market spreads?",
            ("credit_spreads",),
            "credit_spreads",
        ),
        NamedExperiment(
            "policies",
            7,
            "Policies",
            "Which policy lowers expected and tail (99 %) lender loss the most: an LTV cap, faster "
            "amortisation, age haircuts on GPU collateral, or a buyer of last resort?",
            ("policy_ltv_cap", "policy_amortisation", "policy_haircut", "policy_last_resort"),
            "policies",
        ),
        NamedExperiment(
            "miners_2022",
            8,
            "The 2022 bitcoin-miner credit crisis as a historical check",
            "Driven by the actual BTC and hashprice path of Nov 2021 - Dec 2022, does the model reproduce the "
            "collapse of rig prices and the recoveries lenders got on rig-backed loans?",
            ("miners_2022",),
            "miners_2022",
        ),
        NamedExperiment(
            "sensitivity",
            9,
            "Sensitivity",
            "Which parameters explain systemic loss (Sobol first-order and total indices)?",
            ("sobol_systemic",),
            "sensitivity",
        ),
        NamedExperiment(
            "systemic_ranking",
            10,
            "Which single default hurts most",
            "If one borrower or one lender of the public GPU-financed market fails at the start, how many "
            "further defaults, how much lender loss and how deep a fall in used-GPU prices follow, and how "
            "much of that does the fire-sale channel add to the network alone?",
            ("systemic_ranking", "systemic_ranking_reference"),
            "experiments.named.systemic:systemic_ranking",
            SCENARIO_PATCHES["one_agent_fails_month_1"],
            patch_files=("systemic_ranking",),
            design="experiments.named.systemic:fill_design",
            default_scenario="market_2026",
        ),
    )
}


def _function(target: str, default_module: str) -> Callable[..., Any]:
    """The function a "module:function" string (or a bare name in ``default_module``) names."""
    module, _, name = target.rpartition(":")
    return getattr(importlib.import_module(module or default_module), name)


@dataclass
class SweepResult:
    """A finished sweep: its runs table, plan, folder and manifest digest."""

    stem: str
    runs: pd.DataFrame
    sweep: Any  # experiments.sweep.Sweep
    digest: str
    folder: Path

    @property
    def scenario(self) -> dict[str, Any]:
        return self.sweep.plan.scenario

    @property
    def experiment(self) -> Any:
        return self.sweep.plan.experiment


@dataclass
class Report:
    """What an analysis hands back: the key figure, other files, a finding and the Markdown body."""

    key_figure: Path
    files: list[Path]
    finding: str
    body: str
    numbers: dict[str, Any] = field(default_factory=dict)


# --- running --------------------------------------------------------------------------------------


def experiment_path(stem: str, size: str) -> Path:
    return (HERE / "full" if size == "full" else HERE) / f"{stem}.toml"


def resize_text(text: str, replicates: int | None = None, months: int | None = None) -> str:
    """Rewrite the top-level ``replicates``/``months`` lines of an experiment file (tests run tiny sizes)."""
    for key, value in (("replicates", replicates), ("months", months)):
        if value is not None:
            text, n = re.subn(rf"(?m)^{key} = \d+", f"{key} = {int(value)}", text, count=1)
            if n != 1:
                raise ConfigError(f"experiment file: no top-level '{key} = N' line to resize")
    return text


def base_scenario(experiment: Any, path: Path, patch: dict[str, Any]) -> dict[str, Any]:
    """The experiment's base scenario as canonical data, with the named experiment's patch applied."""
    from experiments.design import scenario_for

    scenario = scenario_for(experiment, path)
    return canonical_dict(load_scenario(scenario, patch)) if patch else scenario


def experiment_file(
    named: NamedExperiment,
    stem: str,
    size: str,
    resize: dict[str, int] | None = None,
    scenario_name: str | None = None,
) -> tuple[Any, str, dict[str, Any]]:
    """One file of a named experiment as it runs: resized, completed by the experiment's design hook
    for the scenario, parsed; with its base scenario (the patch applied where it applies)."""
    from experiments.design import parse_experiment

    path = experiment_path(stem, size)
    text = resize_text(path.read_text(), **(resize or {}))
    patch = named.patch if named.patch_files is None or stem in named.patch_files else {}
    if named.design:
        text, patch = _function(named.design, "")(text, scenario_name, patch)
    experiment = parse_experiment(text, str(path))
    return experiment, text, base_scenario(experiment, path, patch)


def run_file(
    named: NamedExperiment,
    stem: str,
    size: str,
    out: Path,
    executor: Any,
    workers: int,
    resize: dict[str, int] | None = None,
    progress: bool = False,
    scenario_name: str | None = None,
) -> SweepResult:
    """Plan, run (or resume) and consolidate one experiment file's sweep into ``out/sweeps/STEM``."""
    from experiments.sweep import RESULTS, prepare, run_sweep

    path = experiment_path(stem, size)
    experiment, text, scenario = experiment_file(named, stem, size, resize, scenario_name)
    folder = out / "sweeps" / stem
    sweep = prepare(experiment, text, scenario, folder, str(path.relative_to(ROOT)))
    command = command_words(named, size, scenario_name)
    outcome = run_sweep(sweep, executor, workers, progress=progress, command=command)
    if outcome.failed:
        first = outcome.failed[0]
        raise RuntimeError(f"{stem}: {len(outcome.failed)} run(s) failed, e.g. {first[0]}: {first[1]}")
    runs = pd.read_parquet(folder / RESULTS)
    return SweepResult(stem, runs, sweep, outcome.manifest["digest"], folder)


def run_named(
    name: str,
    size: str = "reduced",
    out: Path | None = None,
    workers: int = 1,
    resize: dict[str, int] | None = None,
    executor: Any = None,
    progress: bool = False,
    scenario_name: str | None = None,
) -> tuple[Report, list[SweepResult], float]:
    """Run one named experiment and its analysis; returns the report, the sweeps and the seconds taken.
    ``scenario_name`` replaces the scenario of an experiment that takes one (``default_scenario``)."""
    if name not in EXPERIMENTS:
        raise ConfigError(f"experiment '{name}': unknown (allowed: {', '.join(EXPERIMENTS)}, all)")
    named = EXPERIMENTS[name]
    check_scenario_option(named, scenario_name)
    out = Path(out or ROOT / "results" / "experiments" / name)
    start = time.perf_counter()
    with _executor(workers, executor) as ex:
        sweeps = [
            run_file(named, s, size, out, ex, workers, resize, progress, scenario_name) for s in named.files
        ]
    report: Report = _function(named.analysis, f"experiments.named.{named.name}")(sweeps, out)
    check_finding(named.name, report.finding)
    seconds = time.perf_counter() - start
    write_report(named, report, sweeps, out, size, seconds, scenario_name)
    return report, sweeps, seconds


def check_scenario_option(named: NamedExperiment, scenario_name: str | None) -> None:
    """``--scenario`` is for the experiments that take one; the others are designed on their own files."""
    if scenario_name is not None and not named.default_scenario:
        takes = [e.name for e in EXPERIMENTS.values() if e.default_scenario]
        raise ConfigError(
            f"--scenario: experiment '{named.name}' is designed on its own scenario files and takes no "
            f"--scenario (only {', '.join(takes)} does)"
        )


SAME_NUMBER_TWICE = re.compile(r"\bfrom (\$?[-+]?\d[\d.,]*(?: ?%|x|B| bp)?) (?:to|vs) \1(?![\d.])")


def check_finding(name: str, finding: str) -> None:
    """A generated finding must not contradict its own numbers: "from 1.1 to 1.1" is a sentence the
    generator should have worded as no change (``experiments.named.common.change``)."""
    if bad := SAME_NUMBER_TWICE.search(finding):
        raise RuntimeError(f"experiment {name}: the finding says '{bad.group(0)}' (a change that is none)")


class _executor:
    """The executor for a named experiment: the caller's, serial for one worker, else one process pool
    shared by all its sweeps."""

    def __init__(self, workers: int, given: Any) -> None:
        self.workers, self.given, self.pool = workers, given, None

    def __enter__(self) -> Any:
        from experiments.sweep import SerialExecutor, process_pool

        if self.given is not None:
            return self.given
        if self.workers <= 1:
            return SerialExecutor()
        self.pool = process_pool(self.workers)
        return self.pool

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


# --- reports --------------------------------------------------------------------------------------


def design_line(sweeps: list[SweepResult]) -> str:
    parts = []
    for s in sweeps:
        e = s.experiment
        varied = ", ".join(f"`{p}`" for p in e.parameters)
        over = (
            f", each replicate at its own draw from `{s.sweep.plan.posterior_file}`"
            if s.sweep.plan.posterior_draws
            else ""
        )
        parts.append(
            f"`{s.stem}.toml`: {e.design.kind} over {varied}; {len(s.sweep.plan.points)} design points x "
            f"{e.replicates} replicates x {s.sweep.plan.months} months = {len(s.runs)} runs "
            f"(master seed {e.master_seed}{over})"
        )
    return "; ".join(parts)


def run_seconds(sweeps: list[SweepResult]) -> float:
    """Compute time of the sweeps' runs (summed per run, so a resumed sweep reports the original runs)."""
    return float(sum(rec.get("seconds") or 0.0 for s in sweeps for rec in s.sweep.done.values()))


def command_words(named: NamedExperiment, size: str, scenario_name: str | None = None) -> list[str]:
    """The command that runs a named experiment (``--scenario`` as given, else the experiment's default)."""
    scenario = scenario_name or named.default_scenario
    return (
        ["run.py", "experiment", named.name]
        + (["--scenario", scenario] if scenario else [])
        + (["--full"] if size == "full" else [])
    )


def command_line(named: NamedExperiment, size: str, scenario_name: str | None = None) -> str:
    return "python " + " ".join(command_words(named, size, scenario_name))


def section_markdown(
    named: NamedExperiment,
    report: Report,
    sweeps: list[SweepResult],
    size: str,
    seconds: float,
    figure_refs: list[str],
    scenario_name: str | None = None,
) -> str:
    digests = ", ".join(f"`{s.stem}` `{s.digest[:16]}`" for s in sweeps)
    compute = run_seconds(sweeps)
    return "\n".join(
        [
            f"## {named.number}. {named.title}",
            "",
            f"**Question.** {named.question}",
            "",
            f"**Design ({size} size).** {design_line(sweeps)}. Intervals are 95 % confidence intervals "
            "across replicates (normal approximation) unless stated.",
            "",
            *(f"![{named.title}]({ref})\n" for ref in figure_refs),
            f"**Finding.** {report.finding}",
            "",
            report.body.strip(),
            "",
            f"**Reproduce.** `{command_line(named, size, scenario_name)}` ({compute:.0f} run-seconds); manifest digest(s): "
            f"{digests}. Replay a sweep with `python run.py replay DIR/sweeps/FILE/manifest.json`.",
            "",
        ]
    )


def figures_of(report: Report) -> list[Path]:
    """The key figure first, then any other figure the analysis wrote."""
    others = [f for f in report.files if f.suffix == ".png" and f != report.key_figure]
    return [report.key_figure, *others]


def write_report(
    named: NamedExperiment,
    report: Report,
    sweeps: list[SweepResult],
    out: Path,
    size: str,
    seconds: float,
    scenario_name: str | None = None,
) -> Path:
    from model.manifest import atomic_write_bytes

    text = section_markdown(
        named, report, sweeps, size, seconds, [f.name for f in figures_of(report)], scenario_name
    )
    path = out / "report.md"
    atomic_write_bytes(path, text.encode())
    return path


def publish(
    results: list[tuple[NamedExperiment, Report, list[SweepResult], float]],
    size: str,
    scenario_name: str | None = None,
) -> Path:
    """Copy each key figure to docs/img/experiments/ and write docs/results.md from the reports: the whole
    page when every experiment ran, else only the sections of those that ran (the others are kept)."""
    img = ROOT / "docs" / "img" / "experiments"
    img.mkdir(parents=True, exist_ok=True)
    sections = []
    for named, report, sweeps, seconds in results:
        refs = []
        for figure in figures_of(report):
            name = f"{named.name}.png" if figure == report.key_figure else f"{named.name}-{figure.stem}.png"
            shutil.copyfile(figure, img / name)
            refs.append(f"img/experiments/{name}")
        sections.append(section_markdown(named, report, sweeps, size, seconds, refs, scenario_name))
    path = ROOT / "docs" / "results.md"
    if {r[0].name for r in results} != set(EXPERIMENTS) and path.is_file():
        path.write_text(replace_sections(path.read_text(), [r[0] for r in results], sections))
        return path
    total = sum(run_seconds(r[2]) for r in results)
    if size == "full":
        other = (
            "the reduced-size runs (`python run.py experiment NAME`) take a few minutes. Read the intervals."
        )
    else:
        other = (
            "the full-size runs for a paper are `python run.py experiment NAME --full`. Findings at reduced"
            " size rest on few replicates: read the intervals."
        )
    regenerate = "python run.py experiment all" + (" --full" if size == "full" else "") + " --docs"
    head = RESULTS_HEAD.format(size=size, total=total, n=len(results), other=other, regenerate=regenerate)
    path.write_text(head + "\n".join(sections))
    return path


def replace_sections(page: str, named: list[NamedExperiment], sections: list[str]) -> str:
    """``page`` with each experiment's section ("## N. ...") replaced, or inserted in number order."""
    parts = re.split(r"(?m)^(?=## \d+\. )", page)
    head, body = parts[0], {int(re.match(r"## (\d+)\.", p).group(1)): p for p in parts[1:]}
    for experiment, text in zip(named, sections, strict=True):
        body[experiment.number] = text
    return head + "\n\n".join(body[k].rstrip("\n") for k in sorted(body)) + "\n"


RESULTS_HEAD = """# Results of the named experiments

Each section below answers one of the named experiments with the model as it stands: the question,
the design, the key figure, the finding (two sentences drawn from the measured numbers of the run shown),
and the command that reproduces it with the digest of each sweep's manifest. The figures in
`docs/img/experiments/` are from the **{size}-size** runs actually made for this page ({n} experiments,
{total:.0f} run-seconds in all, run on a shared two-core machine with two workers); {other}
The baseline is the calibrated forward scenario (`docs/calibration.md` section 20), and every experiment on
it but the Sobol analysis (which varies its own parameters) runs over the calibration's posterior: each
replicate at its own weighted draw of the parameters, so the intervals include parameter uncertainty
(`docs/experiments.md`). Which findings of the uncalibrated
world and of the first calibration moved, reversed or went is in section 20.7 there. The model's own limits are in
`docs/calibration.md` (sections 19-20) and `docs/ODD.md`. Regenerate this page with `{regenerate}`;
`python run.py experiment NAME --full --docs` rewrites one section.

"""

# --- command line -------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    from experiments.sweep import _Parser, _positive_int

    p = _Parser(
        prog="run.py experiment",
        description="Run a named experiment and write its figures, tables and report.",
    )
    p.add_argument("name", help=f"one of: {', '.join(EXPERIMENTS)}, or all")
    p.add_argument("--full", action="store_true", help="paper size (default: the reduced size)")
    p.add_argument(
        "--out", type=Path, default=None, help="output folder (default: results/experiments[/NAME])"
    )
    p.add_argument("--workers", type=_positive_int, default=2, help="local worker processes (default 2)")
    p.add_argument("--docs", action="store_true", help="also write docs/results.md and docs/img/experiments/")
    p.add_argument("--progress", action="store_true", help="progress bars")
    p.add_argument(
        "--scenario",
        default=None,
        help="the scenario of an experiment that takes one (systemic_ranking: default market_2026); "
        "a name in experiments/scenarios or a .toml path",
    )
    return p


def main(argv: list[str]) -> int:
    """``run.py experiment NAME|all [--full] [--out DIR] [--workers N] [--docs]``."""
    args = parser().parse_args(argv)
    names = list(EXPERIMENTS) if args.name == "all" else [args.name]
    if args.name != "all" and args.name not in EXPERIMENTS:
        raise ConfigError(f"experiment '{args.name}': unknown (allowed: {', '.join(EXPERIMENTS)}, all)")
    from model.manifest import check_output_folder

    check_output_folder(args.out)
    if args.scenario is not None and args.name == "all":
        raise ConfigError(
            "--scenario: give one experiment that takes a scenario (e.g. systemic_ranking), not all"
        )
    if args.scenario is not None:
        check_scenario_option(EXPERIMENTS[args.name], args.scenario)
    size = "full" if args.full else "reduced"
    base = args.out or ROOT / "results" / "experiments"
    results = []
    from experiments.sweep import SerialExecutor, process_pool

    pool = process_pool(args.workers) if args.workers > 1 else SerialExecutor()
    try:
        for name in names:
            out = base / name if (args.name == "all" or args.out is None) else base
            report, sweeps, seconds = run_named(
                name,
                size,
                out,
                args.workers,
                executor=pool,
                progress=args.progress,
                scenario_name=args.scenario,
            )
            named = EXPERIMENTS[name]
            results.append((named, report, sweeps, seconds))
            print(
                f"[{named.number}] {name}: {seconds:.1f} s, {sum(len(s.runs) for s in sweeps)} runs -> {out}/"
            )
            print(f"    {report.finding}")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if args.docs:
        print(f"wrote {publish(results, size, args.scenario)}")
    print(f"total {sum(r[3] for r in results):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

Analysis = Callable[[list[SweepResult], Path], Report]
