"""Sweeps: run an experiment file over serial, process-pool or Dask executors, resumably.

``python run.py sweep EXPERIMENT_FILE [--workers N] [--executor serial|processes|dask]
[--scheduler tcp://HOST:PORT] [--out DIR]`` validates the experiment and every design point, then runs
what is missing. Each finished run is written atomically to ``OUT/runs/RUN_ID.json``; an interrupted
sweep (Ctrl-C, a killed worker or coordinator) restarts with the same command and runs only what is
missing. When every run has a record, they are consolidated into ``OUT/runs.parquet`` (one row per
run) and ``OUT/timeseries.parquet`` (if asked for), with ``OUT/manifest.json`` (experiment, versions,
code revision, digests). ``python run.py replay OUT/manifest.json`` re-runs it and checks the digest.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from core.config import ConfigError
from core.streams import streams_record
from experiments.design import Experiment, Plan, build_plan, load_experiment, parse_experiment, plan_digest
from experiments.design import scenario_for as _scenario_for
from experiments.size import Estimate, check_size, estimate_run, estimate_sweep
from model.manifest import (
    atomic_write_bytes,
    atomic_write_json,
    check_output_folder,
    file_digest,
    parquet_bytes,
    read_key_file,
    read_table,
)

EXECUTORS = ("serial", "processes", "dask")
RUNS_DIR = "runs"
RESULTS = "runs.parquet"
PAIRED = "paired_differences.csv"  # every design point against point 0, paired by replicate
TIMESERIES = "timeseries.parquet"
MANIFEST = "manifest.json"
KEY_FILE = "sweep.json"
ID_COLUMNS = ["run_id", "point", "replicate", "seed"]
EXTRA_PACKAGES = ("SALib", "dask", "distributed", "duckdb", "tqdm")
LOCAL_WORKER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "1s",
}


class SweepInterrupted(Exception):
    """The sweep stopped before every run had a record (Ctrl-C or too many lost workers)."""


class WorkerMismatch(Exception):
    """A worker computed with different code or package versions than the coordinator."""


# --- small helpers --------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    """Versions and code revision (from the lead's ``model.manifest``) plus the sweep's own packages."""
    from importlib import metadata

    from model.manifest import code_revision, versions

    found = versions()
    for name in EXTRA_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return {"versions": found, "code_revision": code_revision()}


# --- executors ------------------------------------------------------------------------------------


class SerialExecutor(cf.Executor):
    """Runs each task at submission in this process (the reference executor)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        future: cf.Future = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


PRELOAD = ("model.model", "model.metrics", "experiments.runner")


def _preload_model() -> None:
    """Import the model in a worker so that the first run does not pay for it."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)


def process_pool(workers: int) -> cf.ProcessPoolExecutor:
    """A local process pool; workers fork from a server that has already imported the model."""
    import multiprocessing as mp

    from experiments.runner import ignore_sigint

    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(list(PRELOAD))
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=ignore_sigint)


@contextmanager
def dask_executor(workers: int, scheduler: str | None) -> Iterator[cf.Executor]:
    """A ``concurrent.futures`` executor on a Dask cluster: the one at ``scheduler``, or a LocalCluster
    of ``workers`` single-threaded worker processes on loopback."""
    import logging

    import dask
    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.ERROR)
    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise ConfigError(f"--scheduler {scheduler}: cannot connect ({exc})") from None
        cluster = None
    else:
        # Dask workers sample their own stack every 10 ms (the profiler) and poll the system monitor:
        # on a 2-core machine that steals ~20 % from CPU-bound runs, so local workers start without them
        # (measured in docs/experiments.md). Workers of a cluster at --scheduler keep their own config.
        with dask.config.set(LOCAL_WORKER_CONFIG):
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
        client = Client(cluster)
    # like the process pool's forkserver preload: every worker imports the model before the first run
    client.run(_preload_model)
    try:
        yield client.get_executor(pure=False)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


@contextmanager
def make_executor(kind: str, workers: int, scheduler: str | None = None) -> Iterator[cf.Executor]:
    if kind == "serial":
        yield SerialExecutor()
    elif kind == "processes":
        pool = process_pool(workers)
        try:
            yield pool
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    elif kind == "dask":
        with dask_executor(workers, scheduler) as ex:
            yield ex
    else:
        raise ConfigError(f"--executor {kind}: allowed {', '.join(EXECUTORS)}")


# --- the sweep ------------------------------------------------------------------------------------


@dataclass
class Sweep:
    """A planned sweep bound to its output folder."""

    plan: Plan
    out: Path
    experiment_text: str
    experiment_path: str
    metrics: list[str] | None = None
    timeseries: list[str] | bool = False
    metric_columns: list[str] = field(default_factory=list)
    series_columns: list[str] = field(default_factory=list)
    key: str = ""
    done: dict[str, dict[str, Any]] = field(default_factory=dict)
    damaged: list[str] = field(default_factory=list)  # run records found damaged on resume: rerun

    @property
    def runs_dir(self) -> Path:
        return self.out / RUNS_DIR

    def task(self, spec: Any) -> dict[str, Any]:
        return {
            "run_id": spec.run_id,
            "seed": spec.seed,
            "months": spec.months,
            "scenario": self.plan.scenario,
            "overrides": spec.overrides,
            "metrics": self.metrics,
            "timeseries": self.timeseries,
            "max_run_seconds": self.plan.experiment.max_run_seconds,
        }


def prepare(
    experiment: Experiment,
    text: str,
    scenario: dict[str, Any],
    out: Path,
    experiment_path: str = "",
) -> Sweep:
    """Plan the sweep, check its outputs, and bind it to ``out`` (refusing a folder of another sweep)."""
    from experiments.runner import fingerprint, known_metrics

    plan = build_plan(experiment, scenario, experiment_path=experiment_path or None)
    metric_names, step_names = known_metrics(plan.scenario)
    outputs = experiment.outputs
    metrics = None if outputs.metrics == "all" else list(outputs.metrics)
    for section, asked, known in (
        ("outputs.metrics", metrics or [], metric_names),
        (
            "outputs.timeseries",
            outputs.timeseries if isinstance(outputs.timeseries, list) else [],
            step_names,
        ),
        ("outputs.sensitivity", outputs.sensitivity, metrics or metric_names),
    ):
        unknown = [m for m in asked if m not in known]
        if unknown:
            raise ConfigError(f"experiment field '{section}': unknown name(s) {unknown} (allowed: {known})")
    if outputs.sensitivity and experiment.design.kind not in ("sobol", "morris"):
        raise ConfigError("experiment field 'outputs.sensitivity': needs design.kind = 'sobol' or 'morris'")
    plan.fingerprint = fingerprint()
    sweep = Sweep(plan, Path(out), text, experiment_path, metrics, outputs.timeseries)
    sweep.metric_columns = metrics or metric_names
    if outputs.timeseries is True:
        sweep.series_columns = step_names
    elif outputs.timeseries:
        sweep.series_columns = ["month", *[c for c in outputs.timeseries if c != "month"]]
    sweep.key = plan_digest(experiment, scenario, plan.posterior_sha256)
    check_output_folder(sweep.out)
    return sweep


RECORD_DIGEST = "record_digest"


def record_digest(record: dict[str, Any]) -> str:
    """The digest a run record carries of its own content, so an edited record is found on resume."""
    body = {k: v for k, v in record.items() if k != RECORD_DIGEST}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def read_run_record(path: Path) -> tuple[dict[str, Any] | None, str]:
    """A finished run's record, or (None, why it cannot be trusted): unreadable, not JSON, the wrong
    shape, or content that no longer matches the digest it was written with."""
    try:
        record = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"unreadable ({type(exc).__name__})"
    if not isinstance(record, dict) or not isinstance(record.get("summary"), dict):
        return None, "not a run record (wrong shape)"
    if record.get("status") not in ("ok", "failed") or record.get("run_id") != path.stem:
        return None, "not a run record of this run (status or run_id)"
    if record.get(RECORD_DIGEST) != record_digest(record):
        return None, "its content does not match its digest (edited after the run)"
    return record, ""


def _claim_folder(sweep: Sweep) -> None:
    """Mark ``out`` as this sweep's (or check it already is) and load the runs already finished; a
    damaged or edited run record is not trusted: it is listed in ``sweep.damaged`` and run again."""
    key_path = sweep.out / KEY_FILE
    if key_path.exists():
        stored = read_key_file(key_path)
        if stored.get("key") != sweep.key:
            raise ConfigError(
                f"--out {sweep.out}: holds runs of a different experiment or base scenario "
                f"('{stored.get('name')}'); choose another --out or remove that folder"
            )
    else:
        if sweep.out.exists() and any(sweep.out.iterdir()):
            raise ConfigError(f"--out {sweep.out}: folder is not empty and holds no sweep; choose another")
        atomic_write_json(
            key_path, {"key": sweep.key, "name": sweep.plan.experiment.name, "runs": len(sweep.plan.runs)}
        )
        atomic_write_bytes(sweep.out / "experiment.toml", sweep.experiment_text.encode())
    sweep.runs_dir.mkdir(parents=True, exist_ok=True)
    for stale in sweep.runs_dir.glob(".*.tmp"):  # left by a coordinator killed mid-write
        stale.unlink(missing_ok=True)
    planned = {r.run_id for r in sweep.plan.runs}
    stale_code = 0
    sweep.damaged = []
    for path in sorted(sweep.runs_dir.glob("*.json")):
        if path.stem not in planned:
            continue
        record, why = read_run_record(path)
        if record is None:
            sweep.damaged.append(f"{path}: {why}")
            continue
        if record.get("fingerprint") != sweep.plan.fingerprint:
            stale_code += 1
            continue
        sweep.done[path.stem] = record
    if stale_code:
        raise ConfigError(
            f"--out {sweep.out}: {stale_code} finished run(s) were computed by different code or package "
            "versions than now; results would mix the two. Choose another --out (or remove the folder)"
        )


@dataclass
class Outcome:
    total: int
    ok: int
    failed: list[tuple[str, str]]
    ran: int
    seconds: float
    manifest: dict[str, Any] | None
    damaged: list[str] = field(default_factory=list)  # run records not trusted on resume, run again


def execute(
    sweep: Sweep,
    executor: cf.Executor,
    workers: int,
    progress: bool = True,
    retry_failed: bool = False,
    pool_factory: Callable[[], cf.Executor] | None = None,
    max_pool_restarts: int = 3,
) -> int:
    """Run every missing run on ``executor``; returns how many ran. Each record is written atomically
    as it arrives. A broken process pool is rebuilt with ``pool_factory`` (at most ``max_pool_restarts``
    times); runs that were in flight go back to the queue."""
    from tqdm import tqdm

    if retry_failed:
        sweep.done = {k: v for k, v in sweep.done.items() if v["status"] == "ok"}
    todo = [r for r in sweep.plan.runs if r.run_id not in sweep.done]
    params = {r.run_id: r for r in sweep.plan.runs}
    window = max(2 * workers, 4)
    failed_now = sum(1 for v in sweep.done.values() if v["status"] != "ok")
    bar = tqdm(
        total=len(sweep.plan.runs),
        initial=len(sweep.done),
        unit="run",
        desc=sweep.plan.experiment.name,
        disable=not progress,
        dynamic_ncols=True,
        file=sys.stderr,
    )
    from experiments.runner import execute_run

    queue = list(reversed(todo))
    inflight: dict[cf.Future, str] = {}
    restarts = 0
    ran = 0
    try:
        while queue or inflight:
            while queue and len(inflight) < window:
                spec = queue.pop()
                inflight[executor.submit(execute_run, sweep.task(spec))] = spec.run_id
            finished, _ = cf.wait(list(inflight), return_when=cf.FIRST_COMPLETED)
            broken = False
            for future in finished:
                run_id = inflight.pop(future)
                try:
                    record = future.result()
                except cf.process.BrokenProcessPool:
                    broken = True
                    queue.append(params[run_id])
                    continue
                except Exception as exc:  # infrastructure failure (e.g. Dask KilledWorker): recorded
                    record = {
                        "run_id": run_id,
                        "status": "failed",
                        "error": f"{type(exc).__name__}: {exc}",
                        "traceback": None,
                        "summary": {},
                        "timeseries": None,
                        "fingerprint": sweep.plan.fingerprint,
                        "seconds": float("nan"),
                    }
                if record["fingerprint"] != sweep.plan.fingerprint:
                    raise WorkerMismatch(
                        f"run {run_id}: the worker runs different code or package versions than this "
                        "coordinator (install the same revision on every worker)"
                    )
                spec = params[run_id]
                record.update(point=spec.point, replicate=spec.replicate, seed=spec.seed, params=spec.params)
                record[RECORD_DIGEST] = record_digest(record)
                text = json.dumps(record, indent=1, sort_keys=True) + "\n"
                atomic_write_bytes(sweep.runs_dir / f"{run_id}.json", text.encode())
                sweep.done[run_id] = json.loads(text)  # exactly what a resumed sweep will read back
                ran += 1
                if record["status"] != "ok":
                    failed_now += 1
                    bar.set_postfix(failed=failed_now)
                bar.update(1)
            if broken:
                for run_id in inflight.values():
                    queue.append(params[run_id])
                inflight.clear()
                queue.sort(key=lambda s: s.run_id, reverse=True)
                restarts += 1
                if pool_factory is None or restarts > max_pool_restarts:
                    raise SweepInterrupted(
                        f"worker processes died {restarts} time(s); rerun the same command to resume"
                    )
                executor.shutdown(wait=False, cancel_futures=True)
                executor = pool_factory()
                bar.write(f"a worker process died; restarted the pool ({restarts}/{max_pool_restarts})")
    except KeyboardInterrupt:
        for future in inflight:
            future.cancel()
        raise
    finally:
        bar.close()
    return ran


# --- consolidation ------------------------------------------------------------------------------


def results_frames(sweep: Sweep) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The runs table (one row per run, in run-id order) and the long time-series table."""
    names = sweep.plan.parameter_names
    rows, series = [], []
    metric_cols = sweep.metric_columns
    for spec in sweep.plan.runs:
        rec = sweep.done[spec.run_id]
        row = {"run_id": spec.run_id, "point": spec.point, "replicate": spec.replicate, "seed": spec.seed}
        if spec.draw is not None:
            row["draw"] = spec.draw
        row.update({n: spec.params[n] for n in names})
        row.update(status=rec["status"], error=rec["error"])
        row.update({m: rec["summary"].get(m) for m in metric_cols})
        rows.append(row)
        if rec.get("timeseries"):
            ts = pd.DataFrame(rec["timeseries"])[sweep.series_columns]
            ts.insert(0, "replicate", spec.replicate)
            ts.insert(0, "point", spec.point)
            ts.insert(0, "run_id", spec.run_id)
            series.append(ts)
    ids = [*ID_COLUMNS, "draw"] if sweep.plan.posterior_draws else ID_COLUMNS
    columns = [*ids, *names, "status", "error", *metric_cols]
    runs = pd.DataFrame.from_records(rows, columns=columns)
    runs["seed"] = runs["seed"].astype("uint64")
    runs["error"] = runs["error"].astype("string")
    timeseries = pd.concat(series, ignore_index=True) if sweep.timeseries else None
    return runs, timeseries


def consolidate(sweep: Sweep, command: list[str]) -> dict[str, Any]:
    """Write runs.parquet (+ timeseries.parquet, + paired_differences.csv with more than one design
    point) and the sweep manifest; returns the manifest."""
    from model.manifest import combined_digest, sealed

    runs, timeseries = results_frames(sweep)
    outputs = {}
    data = parquet_bytes(runs)
    atomic_write_bytes(sweep.out / RESULTS, data)
    outputs[RESULTS] = hashlib.sha256(data).hexdigest()
    if timeseries is not None:
        data = parquet_bytes(timeseries)
        atomic_write_bytes(sweep.out / TIMESERIES, data)
        outputs[TIMESERIES] = hashlib.sha256(data).hexdigest()
    if len(sweep.plan.points) > 1:  # every design point against point 0, paired by replicate
        from experiments.paired import sweep_paired_differences

        points = pd.DataFrame([{"point": p, **params} for p, params in enumerate(sweep.plan.points)])
        paired = points.merge(sweep_paired_differences(runs, sweep.metric_columns), on="point")
        data = paired.to_csv(index=False).encode()
        atomic_write_bytes(sweep.out / PAIRED, data)
        outputs[PAIRED] = hashlib.sha256(data).hexdigest()
    exp = sweep.plan.experiment
    env = environment()
    manifest = {
        "kind": "sweep",
        "name": exp.name,
        "experiment_file": sweep.experiment_path,
        "experiment_text": sweep.experiment_text,
        "experiment": exp.model_dump(mode="json"),
        "config": sweep.plan.scenario,
        "seed": exp.master_seed,
        "random_streams": streams_record(None),
        "design": {
            "kind": exp.design.kind,
            "points": len(sweep.plan.points),
            "replicates": exp.replicates,
            "runs": len(sweep.plan.runs),
            "months": sweep.plan.months,
        },
        "status": {
            "ok": int((runs["status"] == "ok").sum()),
            "failed": int((runs["status"] != "ok").sum()),
        },
        **({"posterior": posterior_record(sweep.plan)} if sweep.plan.posterior_draws else {}),
        "code_fingerprint": sweep.plan.fingerprint,
        **env,
        "command": command,
        "outputs": outputs,
        "digest": combined_digest(outputs),
    }
    manifest = sealed(manifest)
    atomic_write_json(sweep.out / MANIFEST, manifest)
    return manifest


def posterior_record(plan: Plan) -> dict[str, Any]:
    """What a sweep over posterior draws records: the file, its digest and the draws themselves."""
    return {
        "file": plan.posterior_file,
        "sha256": plan.posterior_sha256,
        "draws": plan.posterior_draws,
    }


def write_analysis(sweep: Sweep, figures: bool = True) -> list[Path]:
    """Sensitivity tables/charts (Sobol or Morris designs) and the standard figures."""
    written: list[Path] = []
    runs = pd.read_parquet(sweep.out / RESULTS)
    exp = sweep.plan.experiment
    if exp.outputs.sensitivity and exp.design.kind in ("sobol", "morris"):
        from experiments.sensitivity import write_sensitivity

        for metric in exp.outputs.sensitivity:
            written += write_sensitivity(runs, exp, metric, sweep.out / "sensitivity", chart=figures)
    if figures:
        from experiments.figures import standard_figures

        written += standard_figures(runs, exp, sweep.out / "figures")
    return written


# --- the commands -------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit code 2, no traceback
        raise ConfigError(f"{self.prog}: {message}")


def _add_executor_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="processes",
        help="serial, local processes (default) or a Dask cluster",
    )
    parser.add_argument(
        "--workers", type=_positive_int, default=None, help="local workers (default: every core)"
    )
    parser.add_argument(
        "--scheduler", default=None, metavar="tcp://HOST:PORT", help="a running Dask scheduler (implies dask)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def sweep_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="run.py sweep",
        description="Run an experiment file (a parameter sweep); rerun the same command to resume.",
    )
    parser.add_argument("experiment", type=Path, help="experiment file (TOML), see docs/experiments.md")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: results/sweeps/NAME)")
    parser.add_argument("--retry-failed", action="store_true", help="run failed runs again on resume")
    parser.add_argument("--no-figures", action="store_true", help="skip figures and charts")
    parser.add_argument(
        "--yes", action="store_true", help="run a sweep estimated to be large (hours or GBs) without asking"
    )
    _add_executor_args(parser)
    return parser


def sweep_estimate(experiment: Experiment, scenario: dict[str, Any], workers: int) -> Estimate:
    """The sweep's size before its design is drawn: runs, memory and time at the base scenario with
    the experiment's fixed values (design points may differ)."""
    from core.config import load_scenario
    from experiments.design import design_size, resolve_overrides

    try:
        base = load_scenario(
            scenario, resolve_overrides(scenario, dict(experiment.fixed)), months=experiment.months
        )
    except ConfigError:  # a bad fixed value: reported with its field when the plan is built
        base = load_scenario(scenario, months=experiment.months)
    runs = design_size(experiment) * experiment.replicates
    what = f"sweep '{experiment.name}' ({design_size(experiment):,} design points x {experiment.replicates} replicates)"
    return estimate_sweep(estimate_run(base), runs, workers, what)


def _executor_choice(args: argparse.Namespace) -> tuple[str, int]:
    if args.scheduler:
        if args.executor not in ("dask", "processes"):
            raise ConfigError(f"--scheduler needs --executor dask (got --executor {args.executor})")
        if not args.scheduler.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
            raise ConfigError(f"--scheduler {args.scheduler}: expected an address like tcp://HOST:PORT")
        return "dask", args.workers or 1
    workers = args.workers or (os.cpu_count() or 1)
    return args.executor, (1 if args.executor == "serial" else workers)


def run_sweep(
    sweep: Sweep,
    executor: str | cf.Executor = "processes",
    workers: int = 1,
    scheduler: str | None = None,
    progress: bool = False,
    retry_failed: bool = False,
    command: list[str] | None = None,
    figures: bool = False,
) -> Outcome:
    """Run (or resume) a prepared sweep and consolidate it; the Python entry point behind the CLI.
    ``executor`` is a name (serial, processes, dask) or any ``concurrent.futures.Executor``."""
    from contextlib import nullcontext

    _claim_folder(sweep)
    factory = (lambda: process_pool(workers)) if executor == "processes" else None
    given = isinstance(executor, cf.Executor)  # any concurrent.futures executor the caller manages
    with nullcontext(executor) if given else make_executor(executor, workers, scheduler) as ex:
        start = time.perf_counter()
        ran = execute(sweep, ex, workers, progress, retry_failed, pool_factory=factory)
        seconds = time.perf_counter() - start
    manifest = consolidate(sweep, command or [])
    if figures:
        write_analysis(sweep, figures=True)
    elif sweep.plan.experiment.outputs.sensitivity:
        write_analysis(sweep, figures=False)
    failed = [(k, v["error"]) for k, v in sorted(sweep.done.items()) if v["status"] != "ok"]
    return Outcome(
        len(sweep.plan.runs),
        len(sweep.plan.runs) - len(failed),
        failed,
        ran,
        seconds,
        manifest,
        sweep.damaged,
    )


def main_sweep(argv: list[str]) -> int:
    """``run.py sweep``: validate everything, run what is missing, consolidate, summarise."""
    args = sweep_parser().parse_args(argv)
    kind, workers = _executor_choice(args)
    experiment, text = load_experiment(args.experiment)
    scenario = _scenario_for(experiment, args.experiment)
    check_size(sweep_estimate(experiment, scenario, workers), args.yes)
    out = args.out or Path("results") / "sweeps" / experiment.name
    sweep = prepare(experiment, text, scenario, out, str(args.experiment))
    n = len(sweep.plan.runs)
    print(
        f"sweep '{experiment.name}': {len(sweep.plan.points)} design points x {experiment.replicates} "
        f"replicates = {n} runs of {sweep.plan.months} months; executor {kind}"
        + (f" ({workers} workers)" if kind != "serial" else "")
        + f"; output {out}/",
        file=sys.stderr,
    )
    try:
        outcome = run_sweep(
            sweep,
            kind,
            workers,
            args.scheduler,
            progress=not args.no_progress,
            retry_failed=args.retry_failed,
            command=["run.py", "sweep", *argv],
            figures=not args.no_figures,
        )
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: {len(sweep.done)} of {n} runs are saved in {sweep.runs_dir}/; "
            "rerun the same command to run the rest",
            file=sys.stderr,
        )
        return 130
    except SweepInterrupted as exc:
        print(f"stopped: {exc} ({len(sweep.done)} of {n} runs saved)", file=sys.stderr)
        return 1
    except WorkerMismatch as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    rate = outcome.ran / outcome.seconds if outcome.seconds > 0 else math.nan
    print(
        f"{outcome.total} runs: {outcome.ok} ok, {len(outcome.failed)} failed "
        f"({outcome.ran} run now, {outcome.total - outcome.ran} resumed; {rate:.2f} runs/s)"
    )
    for line in outcome.damaged:
        print(f"  RERUN (damaged record) {line}")
    for run_id, error in outcome.failed[:10]:
        print(f"  FAILED {run_id}: {error}")
    if len(outcome.failed) > 10:
        print(f"  ... and {len(outcome.failed) - 10} more (status/error columns of {out / RESULTS})")
    print(
        f"wrote {out / RESULTS}"
        + (f", {out / TIMESERIES}" if sweep.timeseries else "")
        + f", {out / MANIFEST}"
    )
    print(f"results digest {outcome.manifest['digest']}")
    print(f"load: pandas.read_parquet('{out / RESULTS}')  |  duckdb.sql(\"FROM '{out / RESULTS}'\")")
    return 1 if outcome.failed else 0


# --- replay -------------------------------------------------------------------------------------


def compare_tables(recorded: pd.DataFrame, fresh: pd.DataFrame, limit: int = 20) -> list[str]:
    """Value-by-value differences between two results tables, keyed by run id."""
    problems: list[str] = []
    rec = recorded.set_index("run_id") if "run_id" in recorded else recorded
    new = fresh.set_index("run_id")
    missing = sorted(set(new.index) - set(rec.index))
    extra = sorted(set(rec.index) - set(new.index))
    if missing:
        problems.append(f"runs missing from the recorded table: {missing[:10]}")
    if extra:
        problems.append(f"runs in the recorded table but not in the replay: {extra[:10]}")
    cols_missing = [c for c in new.columns if c not in rec.columns]
    if cols_missing:
        problems.append(f"columns missing from the recorded table: {cols_missing}")
    common = [r for r in new.index if r in rec.index]
    for col in [c for c in new.columns if c in rec.columns]:
        for run_id in common:
            a, b = rec.at[run_id, col], new.at[run_id, col]
            if _same(a, b):
                continue
            problems.append(f"run {run_id} {col}: recorded {a!r}, replay {b!r}")
            if len(problems) >= limit:
                problems.append("(more differences not shown)")
                return problems
    return problems


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None or a is pd.NA or b is pd.NA:
        return (a is None or a is pd.NA or (isinstance(a, float) and math.isnan(a))) and (
            b is None or b is pd.NA or (isinstance(b, float) and math.isnan(b))
        )
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def replay_sweep(
    manifest_path: Path,
    out: Path | None = None,
    executor: str = "processes",
    workers: int = 1,
    scheduler: str | None = None,
    progress: bool = False,
    only: list[str] | None = None,
) -> tuple[bool, list[str], list[str]]:
    """Re-run a sweep from its manifest (its recorded experiment and scenario, not today's files).
    Returns (ok, problems, notes): problems are digest/value mismatches and tampered files; notes are
    version or revision differences that did not change the results."""
    from model.manifest import manifest_edited, read_manifest

    manifest = read_manifest(manifest_path)
    folder = Path(manifest_path).resolve().parent
    problems: list[str] = [edited] if (edited := manifest_edited(manifest)) else []
    notes: list[str] = []
    for name, digest in manifest["outputs"].items():
        path = folder / name
        if not path.exists():
            notes.append(f"{name}: not next to the manifest; comparing digests only")
        elif (on_disk := file_digest(path) if path.is_file() else "not a file") != digest:
            problems.append(
                f"{name}: the file on disk does not match the manifest's digest "
                f"(recorded {digest[:12]}, file {on_disk[:12]}): it was changed after the sweep"
            )
    env = environment()
    for pkg, version in manifest.get("versions", {}).items():
        if env["versions"].get(pkg) != version:
            notes.append(f"version of {pkg}: recorded {version}, now {env['versions'].get(pkg)}")
    rec_rev, now_rev = manifest.get("code_revision", {}), env["code_revision"]
    if rec_rev.get("commit") != now_rev.get("commit") or rec_rev.get("dirty") != now_rev.get("dirty"):
        notes.append(
            f"code revision: recorded {rec_rev.get('commit')} (dirty={rec_rev.get('dirty')}), "
            f"now {now_rev.get('commit')} (dirty={now_rev.get('dirty')})"
        )
    experiment = parse_experiment(manifest["experiment_text"], f"{manifest_path} (experiment_text)")
    recorded_posterior = manifest.get("posterior")
    if experiment.posterior is not None and recorded_posterior:
        # the file as the sweep resolved it (its experiment file's folder is not known here)
        experiment = experiment.model_copy(
            update={"posterior": experiment.posterior.model_copy(update={"file": recorded_posterior["file"]})}
        )
    tmp = None
    if out is None:
        tmp = tempfile.TemporaryDirectory(prefix="replay-")
        out = Path(tmp.name) / "sweep"
    try:
        sweep = prepare(experiment, manifest["experiment_text"], manifest["config"], out, "replay")
        if sweep.plan.fingerprint != manifest.get("code_fingerprint"):
            notes.append("the model's code or numeric packages differ from the sweep's (code fingerprint)")
        if recorded_posterior and sweep.plan.posterior_sha256 != recorded_posterior["sha256"]:
            problems.append(
                f"posterior file {recorded_posterior['file']}: its content differs from the sweep's "
                f"(recorded {recorded_posterior['sha256'][:12]}, now {sweep.plan.posterior_sha256[:12]})"
            )
        if only:
            unknown = sorted(set(only) - {r.run_id for r in sweep.plan.runs})
            if unknown:
                raise ConfigError(f"--runs: unknown run id(s) {unknown[:5]}")
            sweep.plan.runs = [r for r in sweep.plan.runs if r.run_id in set(only)]
        outcome = run_sweep(sweep, executor, workers, scheduler, progress=progress)
        recorded_path = folder / RESULTS
        if only:
            fresh = pd.read_parquet(out / RESULTS)
            if recorded_path.exists():
                recorded = read_table(recorded_path)
                recorded = recorded[recorded["run_id"].isin(only)]
                problems += compare_tables(recorded, fresh)
            else:
                problems.append(f"{RESULTS} is not next to the manifest: cannot compare single runs")
        else:
            fresh_manifest = outcome.manifest or {}
            if fresh_manifest.get("digest") != manifest["digest"]:
                problems.append(
                    f"results digest differs: recorded {manifest['digest'][:12]}, "
                    f"replay {fresh_manifest.get('digest', '')[:12]}"
                )
                for name, digest in manifest["outputs"].items():
                    if fresh_manifest["outputs"].get(name) != digest:
                        problems.append(
                            f"{name}: recorded {digest[:12]}, replay {fresh_manifest['outputs'].get(name, '')[:12]}"
                        )
            if recorded_path.exists() and any(RESULTS in p for p in problems):
                try:
                    problems += compare_tables(read_table(recorded_path), pd.read_parquet(out / RESULTS))
                except ConfigError as exc:  # a damaged recorded table: say so, next to its digest
                    problems.append(str(exc))
    finally:
        if tmp is not None:
            tmp.cleanup()
    return not problems, problems, notes


def main_replay(argv: list[str]) -> int:
    """``run.py replay MANIFEST``: a sweep manifest is re-run here; a single run's goes to run.py."""
    parser = _Parser(
        prog="run.py replay",
        description="Re-run a single run or a whole sweep from its manifest and check the digest.",
    )
    parser.add_argument("manifest", type=Path, help="manifest.json of a run or a sweep")
    parser.add_argument("--out", type=Path, default=None, help="keep the replayed sweep here (default: temp)")
    parser.add_argument("--runs", default=None, help="comma-separated run ids: replay only these runs")
    _add_executor_args(parser)
    args = parser.parse_args(argv)
    from model.manifest import read_manifest

    manifest = read_manifest(args.manifest)
    if manifest["kind"] == "run":
        from experiments.run_report import main_replay_run

        return main_replay_run([str(args.manifest)])
    ekind, workers = _executor_choice(args)
    only = [r.strip() for r in args.runs.split(",") if r.strip()] if args.runs else None
    ok, problems, notes = replay_sweep(
        args.manifest, args.out, ekind, workers, args.scheduler, progress=not args.no_progress, only=only
    )
    digest = manifest["digest"]
    if ok:
        what = f"{len(only)} run(s) reproduced" if only else f"digest {digest} reproduced"
        print(f"replay OK: {what}")
        for line in notes:
            print(f"  note: {line}")
        return 0
    print("=" * 72, file=sys.stderr)
    print(f"REPLAY MISMATCH for {args.manifest}", file=sys.stderr)
    print("=" * 72, file=sys.stderr)
    for line in problems:
        print(f"  {line}", file=sys.stderr)
    for line in notes:
        print(f"  possible cause: {line}", file=sys.stderr)
    return 1
