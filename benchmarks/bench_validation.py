"""Benchmark: the full Gai-Kapadia figure through the model's engine vs a bare numpy/scipy kernel.

Both run the same network draws (24 values of z x 1000 draws, n = 1000, one tie rule) in the same
process; the draws are generated once per z and excluded from both timings. The engine path is
``experiments.validation.gai_kapadia.GKEngine`` (ledger + ``model.cascade.run_cascade``); the kernel
is ``gai_kapadia.kernel_defaults``, a bare threshold cascade on a scipy.sparse exposure matrix (the
reduction's independent reference).
The two must agree on every draw's set of failed banks; the script exits non-zero if they do not.
The engine's time is also shown split into setting up the draw (balance sheet, ledger, market state)
and running the cascade.
``--clock process`` times with ``time.process_time`` (CPU time of this process) instead of the wall
clock: on a loaded machine the wall clock mostly measures waiting for a core, the process time does not.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_validation.py [--draws 1000] [--n 1000] [--tie survive]
        [--clock process]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from experiments.validation.gai_kapadia import Z_GRID, GKEngine, balance_sheet, draw_network, kernel_defaults


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tie", choices=("default", "survive"), default="default")
    parser.add_argument("--seed", type=int, default=2010)
    parser.add_argument("--clock", choices=("wall", "process"), default="wall")
    args = parser.parse_args(argv)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    tie = args.tie == "default"
    engine = GKEngine(default_at_zero_equity=tie)
    t_setup = t_cascade = t_kernel = t_draw = 0.0
    mismatches = 0
    for z, child in zip(Z_GRID, np.random.SeedSequence(args.seed).spawn(len(Z_GRID)), strict=True):
        rng = np.random.default_rng(child)
        for _ in range(args.draws):
            t0 = clock()
            draw = draw_network(args.n, z, rng)
            t1 = clock()
            state = engine.state_for(draw)
            t2 = clock()
            by_engine = engine.run(state, draw.shocked)
            t3 = clock()
            principal, _, _, unit = balance_sheet(draw)
            by_kernel = kernel_defaults(
                draw.n, draw.creditor, draw.debtor, principal, unit, draw.shocked, tie
            )
            t4 = clock()
            t_draw += t1 - t0
            t_setup += t2 - t1
            t_cascade += t3 - t2
            t_kernel += t4 - t3
            mismatches += int(not np.array_equal(by_engine, by_kernel))
    total = args.draws * len(Z_GRID)
    t_engine = t_setup + t_cascade
    print(
        f"Gai-Kapadia figure: {len(Z_GRID)} z x {args.draws} draws, n={args.n}, tie={args.tie}, "
        f"{args.clock} clock"
    )
    print(f"  network draws (shared, not timed below): {t_draw:8.2f} s")
    print(
        f"  engine (ledger + run_cascade):           {t_engine:8.2f} s  ({1e3 * t_engine / total:.2f} ms/draw)"
    )
    print(
        f"    of which balance sheet, ledger, state: {t_setup:8.2f} s  ({1e3 * t_setup / total:.2f} ms/draw)"
    )
    print(
        f"    of which run_cascade:                  {t_cascade:8.2f} s  ({1e3 * t_cascade / total:.2f} ms/draw)"
    )
    print(
        f"  bare numpy/scipy kernel:                 {t_kernel:8.2f} s  ({1e3 * t_kernel / total:.2f} ms/draw)"
    )
    print(f"  ratio engine / kernel:                   {t_engine / t_kernel:8.2f}  (target <= 2)")
    print(f"  draws where the two disagree:            {mismatches}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
