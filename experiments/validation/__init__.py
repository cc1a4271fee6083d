"""Validation reductions: the model's engine, with the AI-infrastructure features off, against the
classic contagion models it generalises (see docs/validation.md).

``python run.py validate NAME|all [--quick] [--out PATH] [--seed N] [--draws N]`` runs one reduction (or all),
prints the project's figures beside the reference's, writes a figure, and exits 1 if any check is
outside its stated tolerance.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import warnings
from pathlib import Path

from core.config import ConfigError
from model.manifest import check_output_folder

REDUCTIONS: dict[str, str] = {
    "eisenberg_noe": "experiments.validation.eisenberg_noe",
    "gai_kapadia": "experiments.validation.gai_kapadia",
    "fire_sales": "experiments.validation.fire_sales",
    "debtrank": "experiments.validation.debtrank",
    "leverage_fire_sale": "experiments.validation.leverage_fire_sale",
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run.py validate",
        description="Reproduce the classic contagion models with the model's engine and compare.",
    )
    p.add_argument("name", choices=[*REDUCTIONS, "all"], help="which reduction (or all)")
    p.add_argument("--quick", action="store_true", help="fewer draws (minutes instead of tens of minutes)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the figures, or a .png path for one reduction (default results/validation)",
    )
    p.add_argument("--seed", type=int, default=None, help="seed of the draws (default: each reduction's own)")
    p.add_argument(
        "--draws",
        type=int,
        default=None,
        help="draws per point of the sampled reductions, gai_kapadia and fire_sales (default: 1000 and "
        "50; --quick 200 and 30); more draws, smaller error bars on the figures",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the named reduction(s); 0 if every check is within tolerance, 1 otherwise."""
    args = parser().parse_args(argv)
    names = list(REDUCTIONS) if args.name == "all" else [args.name]
    if args.out is not None and args.out.suffix.lower() == ".png" and len(names) > 1:
        parser().error("--out: a .png path names one figure; give a folder for 'all'")
    if args.seed is not None and not 0 <= args.seed < 2**63:
        raise ConfigError(f"--seed {args.seed}: must be a whole number 0 <= seed < 2**63")
    if args.out is not None and args.out.suffix.lower() == ".png":
        if args.out.exists() and not args.out.is_file():
            raise ConfigError(f"--out {args.out}: exists and is not a file")
        check_output_folder(args.out.parent if str(args.out.parent) != "." else None)
    else:
        check_output_folder(args.out)
    ok = True
    for name in names:
        module = importlib.import_module(REDUCTIONS[name])
        kwargs: dict = {} if args.seed is None else {"seed": args.seed}
        if args.draws is not None and "draws" in inspect.signature(module.run).parameters:
            kwargs["draws"] = args.draws
        with warnings.catch_warnings():
            # the cascade's covenant test multiplies inf limits by zero collateral when no borrower exists
            warnings.filterwarnings("ignore", message="invalid value encountered in multiply")
            report = module.run(quick=args.quick, out=args.out, **kwargs)
        print(report.table(), flush=True)
        ok &= report.ok
    return 0 if ok else 1
