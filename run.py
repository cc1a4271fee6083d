"""The command line: run | sweep | experiment | replay | viz | validate | calibrate.

``python run.py`` runs the baseline scenario with its fixed seed, prints a summary and writes tables,
figures and a manifest to ``results/``. ``python run.py COMMAND --help`` explains each command.
Bad input stops before anything runs with one message naming the field and what is allowed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

from core.config import ConfigError

# Each command is "module:function"; the function takes the remaining arguments and returns an exit code.
COMMANDS: dict[str, str] = {
    "run": "run:main_run",
    "replay": "experiments.sweep:main_replay",  # a sweep manifest runs there, a run's in experiments.run_report
    "sweep": "experiments.sweep:main_sweep",
    "experiment": "experiments.named:main",
    "validate": "experiments.validation:main",
    "viz": "experiments.viz:main",
    "calibrate": "experiments.calibrate:main",  # likelihood-free calibration (ABC-SMC, pyabc)
}
USAGE_ERROR = 2


class CliError(ConfigError):
    """A bad argument: printed as one line, exit code 2, no traceback (like a bad scenario)."""


def _parse_sets(pairs: list[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CliError(
                f"--set {pair!r}: expected KEY=VALUE with a dotted parameter path, e.g. --set world.rent.shock_volatility=0.1"
            )
        overrides[key.strip()] = value.strip()
    return overrides


def run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run.py run",
        description="Run one scenario, print a summary, write tables (Parquet), figures (PNG) and a manifest.",
    )
    parser.add_argument(
        "--scenario",
        default="baseline",
        help="a scenario name in experiments/scenarios or a .toml path (default: baseline)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="the run's seed (default: the scenario's, so runs are reproducible)",
    )
    parser.add_argument(
        "--months",
        type=int,
        default=None,
        help="horizon in months (default: the scenario's, 60 for the baseline)",
    )
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any parameter by its dotted path; repeatable; buyers_as_they_are=true turns on the "
        "buy side and lenders' disposal of issue 16 part 2 (docs/calibration.md section 15a)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: results/SCENARIO-seedSEED, plus a digest of the settings when --set or --months change them)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    parser.add_argument(
        "--yes", action="store_true", help="run a network estimated to be large (hours or GBs) without asking"
    )
    return parser


def default_run_folder(name: str, scenario: Any) -> Path:
    """results/SCENARIO-seedSEED for the scenario as its file has it; a run with other settings (--set,
    --months) gets a short digest of its resolved configuration, so it never overwrites another run."""
    import hashlib
    import json

    from core.config import canonical_dict, load_scenario

    folder = f"{scenario.name}-seed{scenario.seed}"
    config = canonical_dict(scenario)
    if config != canonical_dict(load_scenario(name, seed=scenario.seed)):
        folder += "-" + hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]
    return Path("results") / folder


def main_run(argv: list[str]) -> int:
    from core.config import load_scenario
    from experiments.size import check_size, estimate_run
    from model.manifest import check_output_folder

    args = run_parser().parse_args(argv)
    overrides = _parse_sets(args.sets)
    if "buyers_as_they_are" in overrides:  # the one short name --set takes: it fans out to many fields
        from core.config import _parse_value
        from model.model import _resolve_aliases

        flag = _parse_value(overrides.pop("buyers_as_they_are"))
        overrides = {**_resolve_aliases(args.scenario, {"buyers_as_they_are": flag}), **overrides}
    scenario = load_scenario(args.scenario, overrides, seed=args.seed, months=args.months)  # validate first
    check_output_folder(args.out)
    check_size(estimate_run(scenario), args.yes)

    from experiments.run_report import format_summary, run_command_summary, write_run_outputs
    from model.model import GPUCreditModel

    model = GPUCreditModel(scenario)
    model.run(progress=not args.no_progress and sys.stderr.isatty())
    out = args.out or default_run_folder(args.scenario, scenario)
    summary = run_command_summary(model)
    manifest = write_run_outputs(
        model, out, command=["run.py", *argv], figures=not args.no_figures, summary=summary
    )
    print(format_summary(model, summary))
    print(f"\nwrote {out}/ (steps, generations, defaults as Parquet; summary.json; manifest.json; figures/)")
    print(f"output digest {manifest['digest']}")
    return 0


def _call(target: str, argv: list[str]) -> int:
    module, _, function = target.partition(":")
    return int(getattr(importlib.import_module(module), function)(argv) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        print("\ncommands: " + ", ".join(COMMANDS) + "  (no command: run)")
        return 0
    command = argv.pop(0) if argv and not argv[0].startswith("-") else "run"
    if command not in COMMANDS:
        print(f"error: unknown command '{command}' (allowed: {', '.join(COMMANDS)})", file=sys.stderr)
        return USAGE_ERROR
    try:
        return _call(COMMANDS[command], argv)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
