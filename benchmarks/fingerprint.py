"""Fingerprint of ten model runs, bit for bit: the check that a speed change leaves results unchanged.

    python benchmarks/fingerprint.py OUT.json                 # write the fingerprints
    python benchmarks/fingerprint.py OUT.json --compare REF   # ... and compare them with REF.json

Runs the baseline with seeds 1, 2, 7 and 16, seed 9 with the visualiser's shocks between steps (a
forced default of the largest miner, a BTC crash, a generation launch), the lender-failure reference
(seed 5, 36 months, faster deflation and more volatile rents), ``fire_sale_demo``, ``miners_2022``,
``history_2023_2026`` and seed 3 with ``buyers_as_they_are``. Each run is hashed (SHA-256, first 16 hex
digits) per part: the steps, generations and defaults tables, Mesa's DataCollector frame, every array
and number of the ledger, the loan book, the lots, the marks and the world, and the states of Mesa's
generators. Run it on the base commit and on the change (with the same interpreter and libraries) and
compare: a speed change must leave every hash the same. Used since session 10 (docs/performance.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RUNS: dict[str, dict[str, Any]] = {
    "base1": {"scenario": "baseline", "seed": 1},
    "base2": {"scenario": "baseline", "seed": 2},
    "base16": {"scenario": "baseline", "seed": 16},
    "base7": {"scenario": "baseline", "seed": 7},
    "lf5": {"scenario": "baseline", "seed": 5, "months": 36, "rent_deflation": 0.8, "rent_volatility": 0.15},
    "fsd": {"scenario": "fire_sale_demo"},
    "m22": {"scenario": "miners_2022"},
    "hist": {"scenario": "history_2023_2026"},
    "bata": {"scenario": "baseline", "seed": 3, "buyers_as_they_are": True},
}


def _hash_into(h: Any, value: Any) -> None:
    """Feed ``value`` (arrays, frames, numbers, strings, nested dicts and lists) into the hash ``h``."""
    if isinstance(value, np.ndarray):
        h.update(str(value.dtype).encode())
        h.update(str(value.shape).encode())
        h.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, pd.DataFrame):
        h.update(pd.util.hash_pandas_object(value, index=True).values.tobytes())
        h.update(str(list(value.columns)).encode())
    elif isinstance(value, float | int | bool | str | type(None) | np.generic):
        h.update(repr(value).encode())
    elif isinstance(value, dict):
        for key in value:
            h.update(repr(key).encode())
            _hash_into(h, value[key])
    elif isinstance(value, list | tuple):
        for item in value:
            _hash_into(h, item)


# Arrays that are functions of hashed arrays, kept to save work (added by speed changes): left out, so
# fingerprints stay comparable with those of the code before them.
DERIVED = {"_log_anchor_path", "_option_drift"}  # MarketWorld: np.log(_anchor_path), np.exp(_option_sd^2 / 2)


def _numbers_of(obj: Any) -> dict[str, Any]:
    """The object's arrays and numbers, by attribute name (its state, without helpers or caches of
    other types)."""
    return {
        k: v
        for k, v in sorted(vars(obj).items())
        if isinstance(v, np.ndarray | float | int | bool) and k not in DERIVED
    }


def _digest(value: Any) -> str:
    h = hashlib.sha256()
    _hash_into(h, value)
    return h.hexdigest()[:16]


def fingerprint(model: Any) -> dict[str, str]:
    """One hash per part of a finished run."""
    out = {
        name: _digest(getattr(model.metrics, name)())
        for name in ("steps_table", "generations_table", "defaults_table")
    }
    led = model.ledger
    parts = {
        "ledger": led,
        "loans": led.loans,
        "lots": led.lots,
        "marks": model.state.marks,
        "world": model.state.world,
    }
    out.update({label: _digest(_numbers_of(obj)) for label, obj in parts.items()})
    out["dc"] = _digest(model.datacollector.get_model_vars_dataframe())
    h = hashlib.sha256()
    h.update(repr(model.rng.bit_generator.state).encode())
    h.update(repr(model.random.getstate()).encode())
    out["rng"] = h.hexdigest()[:16]
    return out


def fingerprints() -> dict[str, Any]:
    from model.model import GPUCreditModel

    result: dict[str, Any] = {}
    for name, spec in RUNS.items():
        kwargs = dict(spec)
        model = GPUCreditModel(kwargs.pop("scenario"), **kwargs)
        model.run()
        result[name] = fingerprint(model)
    shocked = GPUCreditModel("baseline", seed=9, months=24)  # the visualiser's shocks between steps
    shocked.step()
    shocked.default_largest_miner()
    shocked.crash_btc(0.4)
    shocked.launch_next_generation()
    shocked.run()
    result["shocks9"] = fingerprint(shocked)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="where to write the fingerprints (JSON)")
    parser.add_argument("--compare", type=Path, help="a reference written by this script")
    args = parser.parse_args()
    result = fingerprints()
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    if args.compare is None:
        print(f"wrote {args.out}")
        return 0
    reference = json.loads(args.compare.read_text())
    differ = [
        f"{run}.{part}"
        for run in sorted(set(reference) | set(result))
        for part in sorted(set(reference.get(run, {})) | set(result.get(run, {})))
        if reference.get(run, {}).get(part) != result.get(run, {}).get(part)
    ]
    if differ:
        print(f"DIFFERENT from {args.compare}: {', '.join(differ)}")
        return 1
    print(f"identical to {args.compare} ({len(result)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
