"""Sweeps: identical results across executors (serial, process pool, a real Dask LocalCluster), resume
after Ctrl-C and SIGKILL, failed runs recorded, replay with digest checks, clear errors for bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.config import ConfigError
from experiments.design import build_plan, load_experiment, parse_experiment, replicate_seeds
from experiments.sweep import (
    RESULTS,
    TIMESERIES,
    main_replay,
    main_sweep,
    prepare,
    replay_sweep,
    run_sweep,
)

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

TINY = """
name = "tiny"
scenario = "baseline"
months = 12
master_seed = 11
replicates = 2
[design]
kind = "grid"
[parameters.rent_deflation]
values = [0.2, 0.55]
[parameters."world.btc.volatility_per_year"]
values = [0.5, 1.0]
[outputs]
metrics = ["share_failed", "defaults_total", "time_to_first_default", "first_default", "systemic_event"]
timeseries = ["defaults_total", "rent_index"]
"""


def write(tmp: Path, text: str, name: str = "exp.toml") -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def prepared(exp_path: Path, out: Path):
    from experiments.design import scenario_for

    experiment, text = load_experiment(exp_path)
    return prepare(experiment, text, scenario_for(experiment, exp_path), out, str(exp_path))


@pytest.fixture(scope="module")
def serial_sweep(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("serial")
    exp = write(tmp, TINY)
    outcome = run_sweep(prepared(exp, tmp / "out"), "serial", 1)
    assert outcome.ok == 8 and not outcome.failed
    return tmp / "out"


# --- seeds ---------------------------------------------------------------------------------------


def test_common_random_numbers(tmp_path):
    experiment, _ = load_experiment(write(tmp_path, TINY))
    from experiments.design import scenario_for

    plan = build_plan(experiment, scenario_for(experiment, None))
    seeds = {}
    for run in plan.runs:
        seeds.setdefault(run.replicate, set()).add(run.seed)
    assert all(len(s) == 1 for s in seeds.values()), "replicate r must use one seed at every point"
    assert len({next(iter(s)) for s in seeds.values()}) == 2, "replicates must differ"
    expected = [
        int(c.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
        for c in np.random.SeedSequence(11).spawn(2)
    ]
    assert replicate_seeds(11, 2) == expected
    assert [r.run_id for r in plan.runs][:3] == ["p00000-r00", "p00000-r01", "p00001-r00"]


# --- executors -----------------------------------------------------------------------------------


def test_serial_processes_dask_identical(serial_sweep, tmp_path):
    from distributed import Client, LocalCluster

    exp = write(tmp_path, TINY)
    reference = {name: (serial_sweep / name).read_bytes() for name in (RESULTS, TIMESERIES)}
    ref_digest = json.loads((serial_sweep / "manifest.json").read_text())["digest"]

    outcome = run_sweep(prepared(exp, tmp_path / "proc"), "processes", 2)
    assert outcome.manifest["digest"] == ref_digest
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        outcome = run_sweep(prepared(exp, tmp_path / "dask"), client.get_executor(pure=False), 2)
    assert outcome.manifest["digest"] == ref_digest
    for out in ("proc", "dask"):
        for name, data in reference.items():
            assert (tmp_path / out / name).read_bytes() == data, f"{out}/{name} differs from serial"

    runs = pd.read_parquet(serial_sweep / RESULTS)
    assert list(runs["run_id"]) == sorted(runs["run_id"]) and len(runs) == 8
    assert runs["share_failed"].notna().all() and runs["status"].eq("ok").all()
    # common random numbers: same seed for a replicate index across the four design points
    assert runs.groupby("replicate")["seed"].nunique().eq(1).all()
    import duckdb

    n = duckdb.sql(f"SELECT count(*) FROM '{serial_sweep / RESULTS}' WHERE status = 'ok'").fetchall()[0][0]
    assert n == 8


# --- resume --------------------------------------------------------------------------------------


RESUME_REPLICATES = 16
RESUME_RUNS = 4 * RESUME_REPLICATES  # the tiny design's 2 x 2 points
RESUME = (
    TINY.replace('name = "tiny"', 'name = "resume"')
    .replace("months = 12", "months = 60")
    .replace("replicates = 2", f"replicates = {RESUME_REPLICATES}")
)
"""Long enough that the sweep is still running when a signal follows its second saved run, even on a
busy machine (with 12 runs, a test process starved of CPU once saw the sweep finish first; after the
session-7 speed work 32 runs of 24 months also finished first)."""


def _count(folder: Path) -> int:
    return len(list((folder / "runs").glob("*.json"))) if (folder / "runs").exists() else 0


def _snapshot(tmp: Path) -> Path:
    """A copy of the code, so that edits made to the working tree meanwhile cannot change the code
    between the interrupted and the resumed sweep (the sweep refuses to mix runs of different code)."""
    root = tmp / "code"
    for name in (
        "core",
        "model",
        "agents",
        "experiments",
        "data",
    ):  # data: the observed series history mode reads
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "validation"))
    shutil.copy(ROOT / "run.py", root / "run.py")
    return root


def _start(code: Path, exp: Path, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [
        PY,
        "run.py",
        "sweep",
        str(exp),
        "--out",
        str(out),
        "--workers",
        "2",
        "--no-progress",
        "--no-figures",
    ]
    return subprocess.Popen(
        [*cmd, *extra],
        cwd=code,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # a parent that ignores SIGINT (some test runners) would pass SIG_IGN on, and Python then
        # installs no KeyboardInterrupt handler: restore the default so Ctrl-C reaches the sweep
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for_runs(proc: subprocess.Popen, out: Path, at_least: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _count(out) < at_least:
        assert proc.poll() is None, f"sweep ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, "sweep made no progress"
        time.sleep(0.02)


def test_interrupt_and_kill_then_resume(tmp_path):
    exp = write(tmp_path, RESUME)
    code = _snapshot(tmp_path)
    out = tmp_path / "out"
    total = RESUME_RUNS
    # 1. Ctrl-C to the coordinator: it stops, keeps finished runs, exits 130
    proc = _start(code, exp, out)
    _wait_for_runs(proc, out, 2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "rerun the same command" in err
    after_int = _count(out)
    assert 2 <= after_int < total
    # 2. SIGKILL the coordinator and its workers (the whole process group) mid-way
    proc = _start(code, exp, out)
    _wait_for_runs(proc, out, after_int + 2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    after_kill = _count(out)
    assert after_kill < total, "the sweep finished before it could be killed; make it longer"
    assert not (out / RESULTS).exists()
    # 3. the same command finishes only what is missing
    proc = _start(code, exp, out)
    stdout, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert f"({total - after_kill} run now, {after_kill} resumed" in stdout
    resumed = pd.read_parquet(out / RESULTS)
    assert resumed["run_id"].is_unique and len(resumed) == total and _count(out) == total
    assert not list((out / "runs").glob(".*.tmp"))
    # values equal an uninterrupted sweep, to the byte
    fresh = _start(code, exp, tmp_path / "fresh", "--executor", "serial")
    stdout, err = fresh.communicate(timeout=120)
    assert fresh.returncode == 0 and f"({total} run now, 0 resumed" in stdout, err
    assert (out / RESULTS).read_bytes() == (tmp_path / "fresh" / RESULTS).read_bytes()
    assert (out / TIMESERIES).read_bytes() == (tmp_path / "fresh" / TIMESERIES).read_bytes()


def test_a_killed_worker_is_replaced_and_its_run_redone(tmp_path):
    """SIGKILL one worker process mid-sweep: the pool is rebuilt, the runs it held go back to the
    queue, and the sweep completes with every run exactly once, equal to an uninterrupted sweep."""
    psutil = pytest.importorskip("psutil")
    exp = write(tmp_path, RESUME)
    code = _snapshot(tmp_path)
    out = tmp_path / "out"
    proc = _start(code, exp, out, "--executor", "processes")
    _wait_for_runs(proc, out, 2)
    servers = [c for c in psutil.Process(proc.pid).children() if "forkserver" in " ".join(c.cmdline())]
    workers = [w for server in servers for w in server.children()]  # pool workers fork from the server
    assert workers, "no worker process found"
    workers[-1].kill()
    stdout, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "a worker process died; restarted the pool" in stdout + err
    runs = pd.read_parquet(out / RESULTS)
    assert runs["run_id"].is_unique and len(runs) == RESUME_RUNS and (runs["status"] == "ok").all()
    fresh = _start(code, exp, tmp_path / "fresh", "--executor", "serial")
    assert fresh.wait(timeout=120) == 0
    assert (out / RESULTS).read_bytes() == (tmp_path / "fresh" / RESULTS).read_bytes()


def test_out_folder_of_another_experiment_is_refused(serial_sweep, tmp_path):
    other = write(tmp_path, TINY.replace("master_seed = 11", "master_seed = 12"))
    with pytest.raises(ConfigError, match="different experiment"):
        run_sweep(prepared(other, serial_sweep), "serial", 1)


# --- failures ------------------------------------------------------------------------------------

FAILING = """
name = "failing"
scenario = "baseline"
master_seed = 3
replicates = 2
max_run_seconds = 0.4
[design]
kind = "grid"
[parameters.months]             # 600 months cannot finish within 0.4 s (~1.7 s); 3 months can (~0.02 s)
values = [3, 600]
[outputs]
metrics = ["share_failed", "defaults_total"]
"""


def test_failed_run_is_recorded_and_the_rest_complete(tmp_path, capsys):
    exp = write(tmp_path, FAILING)
    code = main_sweep(
        [
            str(exp),
            "--out",
            str(tmp_path / "out"),
            "--executor",
            "processes",
            "--workers",
            "2",
            "--no-progress",
            "--no-figures",
        ]
    )
    assert code == 1
    printed = capsys.readouterr().out
    assert "4 runs: 2 ok, 2 failed" in printed
    assert "FAILED p00001-r00: RunTimeout: run exceeded max_run_seconds=0.4" in printed
    runs = pd.read_parquet(tmp_path / "out" / RESULTS).set_index("run_id")
    assert list(runs["status"]) == ["ok", "ok", "failed", "failed"]
    assert runs.loc["p00001-r01", "error"] == "RunTimeout: run exceeded max_run_seconds=0.4"
    assert runs.loc["p00000-r00", "share_failed"] >= 0 and np.isnan(runs.loc["p00001-r00", "share_failed"])
    record = json.loads((tmp_path / "out" / "runs" / "p00001-r00.json").read_text())
    assert "RunTimeout" in record["traceback"]


# --- replay --------------------------------------------------------------------------------------


def test_replay_reproduces_and_detects_tampering(serial_sweep, tmp_path, capsys):
    assert main_replay([str(serial_sweep / "manifest.json"), "--executor", "serial", "--no-progress"]) == 0
    assert "replay OK" in capsys.readouterr().out

    copy = tmp_path / "tampered"
    shutil.copytree(serial_sweep, copy)
    runs = pd.read_parquet(copy / RESULTS)
    runs.loc[runs["run_id"] == "p00001-r00", "share_failed"] += 0.25
    runs.to_parquet(copy / RESULTS, index=False)
    ok, problems, _ = replay_sweep(copy / "manifest.json", executor="serial")
    assert not ok
    assert any("does not match the manifest" in p for p in problems)
    assert any(p.startswith("run p00001-r00 share_failed: recorded") for p in problems)
    assert main_replay([str(copy / "manifest.json"), "--executor", "serial", "--no-progress"]) == 1
    assert "REPLAY MISMATCH" in capsys.readouterr().err

    # a forged digest in the manifest: the replayed results do not reproduce it
    forged = tmp_path / "forged"
    shutil.copytree(serial_sweep, forged)
    manifest = json.loads((forged / "manifest.json").read_text())
    manifest["digest"] = "0" * 64
    (forged / "manifest.json").write_text(json.dumps(manifest))
    ok, problems, _ = replay_sweep(forged / "manifest.json", executor="serial", only=None)
    assert not ok and any("results digest differs" in p for p in problems)

    # one run of the sweep on its own
    ok, problems, _ = replay_sweep(serial_sweep / "manifest.json", executor="serial", only=["p00002-r01"])
    assert ok, problems


def test_replay_dispatches_a_single_run_manifest(tmp_path, capsys):
    import run

    out = tmp_path / "single"
    assert run.main_run(["--months", "3", "--out", str(out), "--no-progress", "--no-figures"]) == 0
    capsys.readouterr()
    assert main_replay([str(out / "manifest.json")]) == 0
    assert "replay OK" in capsys.readouterr().out


# --- sensitivity and figures ---------------------------------------------------------------------


def test_sobol_indices_of_a_known_function():
    """y = 4 x1 + x2**2 on [0,1]^2 plus an inert x3: x1 dominates, x3 has no effect."""
    from experiments.design import design_points
    from experiments.sensitivity import sobol_table

    experiment = parse_experiment(
        """
name = "analytic"
master_seed = 5
[design]
kind = "sobol"
samples = 256
[parameters.a]
min = 0.0
max = 1.0
[parameters.b]
min = 0.0
max = 1.0
[parameters.c]
min = 0.0
max = 1.0
"""
    )
    points = design_points(experiment)
    assert len(points) == 256 * 5
    y = [4 * p["a"] + p["b"] ** 2 for p in points]
    runs = pd.DataFrame({"point": range(len(points)), "status": "ok", "y": y})
    table = sobol_table(runs, experiment, "y").set_index("parameter")
    # exact: V(4a) = 16/12, V(b^2) = 4/45; S1_a = 0.9375
    assert table.loc["a", "S1"] == pytest.approx(0.9375, abs=0.05)
    assert table.loc["b", "ST"] == pytest.approx(0.0625, abs=0.03)
    assert abs(table.loc["c", "ST"]) < 0.01
    assert (table.loc[["a", "b"], "S1_conf"] > 0).all() and (table.loc[["a", "b"], "ST_conf"] > 0).all()


def test_sobol_sweep_writes_table_and_chart(tmp_path):
    exp = write(
        tmp_path,
        """
name = "sobol_small"
scenario = "baseline"
months = 4
master_seed = 9
[design]
kind = "sobol"
samples = 2
[parameters.rent_deflation]
min = 0.1
max = 0.6
[parameters.btc_volatility]
min = 0.3
max = 1.0
[outputs]
metrics = ["share_failed", "defaults_total"]
sensitivity = ["share_failed"]
""",
    )
    outcome = run_sweep(prepared(exp, tmp_path / "out"), "serial", 1, figures=True)
    assert outcome.ok == 8
    table = pd.read_csv(tmp_path / "out" / "sensitivity" / "sobol_share_failed.csv")
    assert list(table.columns) == ["parameter", "S1", "S1_conf", "ST", "ST_conf", "metric"]
    assert list(table["parameter"]) == ["rent_deflation", "btc_volatility"]
    assert (tmp_path / "out" / "sensitivity" / "sobol_share_failed.png").stat().st_size > 1000
    assert (tmp_path / "out" / "figures" / "share_failed_vs_rent_deflation.png").exists()


def test_band_and_heatmap(serial_sweep, tmp_path):
    from experiments.figures import band, heatmap

    runs = pd.read_parquet(serial_sweep / RESULTS)
    b = band(runs, "rent_deflation", "share_failed").set_index("rent_deflation")
    sub = runs.loc[runs["rent_deflation"] == 0.55, "share_failed"]
    assert b.loc[0.55, "mean"] == pytest.approx(sub.mean())
    half = 1.959964 * sub.std(ddof=1) / np.sqrt(len(sub))
    assert b.loc[0.55, "high"] - b.loc[0.55, "mean"] == pytest.approx(half, rel=1e-5)
    ax = heatmap(runs, "rent_deflation", "world.btc.volatility_per_year", "share_failed")
    assert ax.images[0].get_array().shape == (2, 2)


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("[parameters.rent_deflation]", "[parameters.rent_deflaton]"),
            "parameters.rent_deflaton: unknown parameter",
        ),
        (
            ("values = [0.2, 0.55]", "min = 0.5\nmax = 0.5\nsteps = 3"),
            "empty range: min (0.5) must be below max",
        ),
        (("values = [0.2, 0.55]", "values = []"), "values is empty"),
        (
            ('kind = "grid"', 'kind = "factorial"'),
            "design.kind: Input should be 'grid', 'lhs', 'sobol' or 'morris'",
        ),
        (('kind = "grid"', 'kind = "sobol"\nsamples = 3'), "samples must be a power of 2"),
        (("replicates = 2", "replicates = 0"), "replicates: Input should be greater than or equal to 1"),
        (("master_seed = 11", "master_sed = 11"), "master_sed: unknown field"),
        (
            ("values = [0.2, 0.55]", "values = [0.2, 1.5]"),
            "design point 2 (rent_deflation=1.5, world.btc.volatility_per_year=0.5) gives an invalid",
        ),
        (
            ('"share_failed", "defaults_total"', '"share_fialed"'),
            "outputs.metrics': unknown name(s) ['share_fialed']",
        ),
        (('scenario = "baseline"', 'scenario = "nosuch"'), "scenario 'nosuch': no such file"),
    ],
)
def test_bad_experiment_files(tmp_path, change, message):
    exp = write(tmp_path, TINY.replace(*change))
    with pytest.raises(ConfigError) as err:
        prepared(exp, tmp_path / "out")
    assert message in str(err.value)
    assert not (tmp_path / "out").exists(), "nothing may run or be written for a bad experiment"


def test_bad_input_on_the_command_line_is_one_clear_message(tmp_path):
    exp = write(tmp_path, TINY.replace('kind = "grid"', 'kind = "factorial"'))
    for args, message in (
        ([str(exp)], "design.kind: Input should be 'grid', 'lhs', 'sobol' or 'morris'"),
        ([str(tmp_path / "none.toml")], "no such file"),
        ([str(exp), "--workers", "0"], "--workers: expected a whole number >= 1, got 0"),
        ([str(exp), "--executor", "mpi"], "argument --executor: invalid choice: 'mpi'"),
    ):
        proc = subprocess.run(
            [PY, "run.py", "sweep", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr


# --- paired comparisons (issue 19) ---------------------------------------------------------------


def test_sweep_reports_paired_differences_with_intervals(serial_sweep):
    """Each design point against point 0, paired by replicate (same seed): the mean of the per-seed
    differences and its 95 % interval, recomputed here by hand."""
    from experiments.sweep import PAIRED

    runs = pd.read_parquet(serial_sweep / RESULTS)
    table = pd.read_csv(serial_sweep / PAIRED).set_index("point")
    assert list(table.index) == [0, 1, 2, 3]
    base = runs[runs["point"] == 0].set_index("replicate")["defaults_total"].astype(float)
    for point in (1, 3):
        arm = runs[runs["point"] == point].set_index("replicate")["defaults_total"].astype(float)
        d = (arm - base).to_numpy()
        half = 1.959964 * d.std(ddof=1) / np.sqrt(len(d))
        row = table.loc[point]
        assert row["defaults_total_pairs"] == 2
        assert row["defaults_total_diff"] == pytest.approx(d.mean())
        assert row["defaults_total_high"] - row["defaults_total_diff"] == pytest.approx(
            half, rel=1e-5, abs=1e-12
        )
    assert table.loc[0, "defaults_total_diff"] == 0.0 and table.loc[0, "defaults_total_high"] == 0.0
    assert table.loc[1, "rent_deflation"] == 0.2 or table.loc[1, "rent_deflation"] == 0.55


def test_paired_interval_is_narrower_than_unpaired_under_common_random_numbers():
    """Two arms sharing a seed-level component: the paired interval removes it."""
    from experiments.paired import paired_difference

    rng = np.random.default_rng(3)
    common = rng.normal(0.0, 10.0, 50)
    base = pd.Series(common + rng.normal(0.0, 1.0, 50))
    arm = pd.Series(common + 0.5 + rng.normal(0.0, 1.0, 50))
    mean, low, high, n = paired_difference(arm, base)
    assert n == 50 and low < 0.5 < high
    unpaired_half = 1.959964 * np.sqrt(arm.var() / 50 + base.var() / 50)
    assert high - mean < unpaired_half / 3
