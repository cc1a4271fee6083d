"""The worker side of a sweep: run one simulation and return a plain, picklable record.

``execute_run`` never raises for a failure of the run itself: a model exception or a run that exceeds
``max_run_seconds`` comes back as ``status="failed"`` with its error, so the other runs continue. Only
infrastructure failures (a killed worker, a lost connection) surface as exceptions to the coordinator.
"""

from __future__ import annotations

import hashlib
import signal
import time
import traceback
import warnings
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CODE_DIRS = ("core", "agents", "model")
CODE_FILES = ("experiments/runner.py",)
NUMERIC_PACKAGES = ("mesa", "numpy", "networkx", "scipy", "pandas", "pydantic")


class RunTimeout(Exception):
    """A run took longer than the experiment's ``max_run_seconds``."""


@cache
def fingerprint() -> str:
    """Digest of the source that computes a run (core/, agents/, model/, this file) and the numeric packages.
    The coordinator refuses results from a worker (or an earlier, resumed sweep) whose print differs."""
    h = hashlib.sha256()
    files = sorted(p for d in CODE_DIRS for p in (ROOT / d).rglob("*.py")) + [ROOT / f for f in CODE_FILES]
    for path in files:
        h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    for name in NUMERIC_PACKAGES:
        try:
            h.update(f"{name}={metadata.version(name)}\0".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{name}=none\0".encode())
    return h.hexdigest()


def ignore_sigint() -> None:
    """Pool initializer: Ctrl-C is the coordinator's to handle; workers keep going until shut down."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _flatten(summary: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}_"))
        else:
            flat[name] = value.item() if isinstance(value, np.generic) else value
    return flat


def execute_run(task: dict[str, Any]) -> dict[str, Any]:
    """Run one simulation described by ``task`` (see ``experiments.sweep``) and return its record."""
    from model.metrics import run_summary
    from model.model import GPUCreditModel

    record: dict[str, Any] = {
        "run_id": task["run_id"],
        "status": "ok",
        "error": None,
        "traceback": None,
        "summary": {},
        "timeseries": None,
        "fingerprint": fingerprint(),
    }
    start = time.perf_counter()
    limit = float(task.get("max_run_seconds") or 0.0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            model = GPUCreditModel(
                task["scenario"], seed=task["seed"], months=task["months"], overrides=task["overrides"]
            )
            while not model.finished:
                model.step()
                if limit and time.perf_counter() - start > limit:
                    raise RunTimeout(f"run exceeded max_run_seconds={limit:g}")
            summary = _flatten(run_summary(model))
        keep = task.get("metrics")
        record["summary"] = summary if keep is None else {k: summary.get(k) for k in keep}
        series = task.get("timeseries")
        if series:
            steps = model.metrics.steps_table()
            cols = list(steps.columns) if series is True else ["month", *[c for c in series if c != "month"]]
            record["timeseries"] = {c: steps[c].tolist() for c in cols}
    except Exception as exc:  # a failed run is a result, recorded with its id; the sweep goes on
        record.update(
            status="failed",
            error=f"{type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(limit=20),
            summary={},
            timeseries=None,
        )
    record["seconds"] = time.perf_counter() - start
    return record


def known_metrics(scenario: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Names of the flattened summary metrics and of the monthly columns (from a one-month run)."""
    from model.metrics import run_summary
    from model.model import GPUCreditModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        model = GPUCreditModel({**scenario, "shocks": []}, months=1)  # names only: no shock needed
        model.step()
        return list(_flatten(run_summary(model))), list(model.metrics.steps_table().columns)


fingerprint()  # at import: in a worker this is when the model code is loaded (forkserver preload)
