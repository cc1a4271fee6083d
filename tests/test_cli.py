"""The command line as a user runs it (a subprocess): a run writes its outputs; bad input stops with
one clear message naming the field, exit code 2, no traceback, and nothing already written is touched."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_run_writes_tables_manifest_and_figures(tmp_path):
    out = tmp_path / "out"
    result = run_cli("--months", "12", "--seed", "7", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "defaults:" in result.stdout and "lender losses" in result.stdout
    assert "fire-sale amplification:" in result.stdout
    for name in (
        "steps.parquet",
        "generations.parquet",
        "defaults.parquet",
        "summary.json",
        "manifest.json",
        "figures/overview.png",
    ):
        assert (out / name).is_file(), name
    steps = pd.read_parquet(out / "steps.parquet")
    assert list(steps["month"]) == list(range(13))
    summary = json.loads((out / "summary.json").read_text())
    amplification = summary["fire_sale_amplification"]  # the run and its twin without the price channel
    assert amplification["defaults_price_channel_on"] == summary["defaults_total"]
    assert set(amplification) == {"defaults_price_channel_on", "defaults_price_channel_off", "ratio"}
    assert sum(summary["defaults_by_channel"].values()) == summary["defaults_total"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 7 and manifest["config"]["months"] == 12
    assert {"python", "mesa", "numpy"} <= set(manifest["versions"])
    assert (
        len(manifest["code_revision"]["commit"]) in (40, 7)
        or manifest["code_revision"]["commit"] == "unknown"
    )
    replay = run_cli("replay", str(out / "manifest.json"))
    assert replay.returncode == 0, replay.stderr
    assert "replay OK" in replay.stdout


def test_replay_detects_a_tampered_table(tmp_path):
    out = tmp_path / "out"
    assert run_cli("--months", "6", "--out", str(out), "--no-figures").returncode == 0
    steps = pd.read_parquet(out / "steps.parquet")
    steps.loc[3, "btc_price"] *= 1.01
    steps.to_parquet(out / "steps.parquet", index=False)
    result = run_cli("replay", str(out / "manifest.json"))
    assert result.returncode == 1
    assert "REPLAY MISMATCH" in result.stderr
    assert "steps.parquet no longer matches" in result.stderr
    assert "steps.btc_price: 1 value(s) differ, first at row 3" in result.stderr


def test_replay_detects_a_changed_config(tmp_path):
    out = tmp_path / "out"
    assert run_cli("--months", "6", "--out", str(out), "--no-figures").returncode == 0
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["config"]["world"]["rent"]["shock_volatility"] = 0.5  # claims outputs it did not produce
    (out / "manifest.json").write_text(json.dumps(manifest))
    result = run_cli("replay", str(out / "manifest.json"))
    assert result.returncode == 1
    assert "output steps.parquet: digest differs" in result.stderr


BAD_SCENARIO = """
[world
start = "2025-01"
"""


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--set", "world.rent.deflation_per_yeer=0.3"], "world.rent.deflation_per_yeer: unknown parameter"),
        (
            ["--set", "world.rent.new_price_decline_per_year=abc"],
            "world.rent.new_price_decline_per_year: Input should be a valid number",
        ),
        (
            ["--set", "world.rent.new_price_decline_per_year=1.5"],
            "world.rent.new_price_decline_per_year: Input should be less than or equal to 0.95",
        ),
        (
            ["--set", "generated.miners.loan_to_cost=1.2"],
            "generated.miners.loan_to_cost: Input should be less than or equal to 1",
        ),
        (
            ["--set", "world.regime.factor_loading=1"],
            "world.regime.factor_loading: Input should be less than 1",
        ),
        (["--set", "nosuch.section.x=1"], "unknown section 'nosuch'"),
        (["--set", "world.rent.new_price_decline_per_year"], "expected KEY=VALUE"),
        (["--months", "0"], "months: Input should be greater than or equal to 1"),
        (["--seed", "abc"], "argument --seed: invalid int value"),
        (["--scenario", "no_such_scenario"], "scenario 'no_such_scenario': no such file"),
        (["frobnicate"], "unknown command 'frobnicate'"),
    ],
)
def test_bad_input_gives_one_clear_message(tmp_path, args, expected):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("from an earlier run")
    result = run_cli(*args, "--out", str(out))
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert (out / "precious.txt").read_text() == "from an earlier run"
    assert sorted(p.name for p in out.iterdir()) == ["precious.txt"]


def _ghost_loan() -> str:
    return (
        (ROOT / "experiments/scenarios/fire_sale_demo.toml")
        .read_text()
        .replace('debtor = "small-3"', 'debtor = "ghost"')
    )


def _covenant_out_of_range() -> str:
    demo = (ROOT / "experiments/scenarios/fire_sale_demo.toml").read_text()
    return demo.replace('debtor = "small-3"', 'debtor = "small-3"\ndscr_min = 7')


def _missing_parameter() -> str:
    return (ROOT / "experiments/scenarios/baseline.toml").read_text().replace("utilisation = 0.85\n", "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(lambda: BAD_SCENARIO, "malformed TOML", id="malformed"),
        pytest.param(_ghost_loan, "loans[3].debtor: no agent with id 'ghost'", id="loan-to-missing-agent"),
        pytest.param(
            _missing_parameter, "world.rent.utilisation: required parameter is missing", id="missing"
        ),
        pytest.param(
            _covenant_out_of_range,
            "explicit.loans.3.dscr_min: Input should be less than or equal to 5",
            id="covenant-out-of-range",
        ),
    ],
)
def test_bad_scenario_file(tmp_path, text, expected):
    path = tmp_path / "bad.toml"
    path.write_text(text())
    result = run_cli("--scenario", str(path))
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_result_files_honour_the_umask(tmp_path):
    """Files written atomically (mkstemp + rename) get the permissions a plain open() would give."""
    import os

    from model.manifest import atomic_write_bytes

    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.json", b"{}")
        os.umask(0o077)
        atomic_write_bytes(tmp_path / "b.json", b"{}")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o600


def test_default_run_folder_is_unique_to_what_was_run():
    """A run with --set or --months never lands in the folder of the scenario's own run."""
    from core.config import load_scenario
    from run import default_run_folder

    plain = default_run_folder("baseline", load_scenario("baseline"))
    assert plain.name == "baseline-seed20250101"
    assert default_run_folder("baseline", load_scenario("baseline", seed=7)).name == "baseline-seed7"
    shorter = default_run_folder("baseline", load_scenario("baseline", months=36))
    changed = default_run_folder("baseline", load_scenario("baseline", {"world.rent.shock_volatility": 0.2}))
    assert len({plain, shorter, changed}) == 3
    assert shorter.name.startswith("baseline-seed20250101-") and len(shorter.name) == len(plain.name) + 11
    assert default_run_folder("baseline", load_scenario("baseline", months=36)) == shorter  # stable


def test_set_reaches_every_section_of_the_schema():
    """--set may name a section the scenario file leaves at its defaults (policy is not in the baseline
    file); a misspelt section is still one clear message listing the schema's sections."""
    from core.config import ConfigError, load_scenario

    scenario = load_scenario("baseline", {"policy.buyer_of_last_resort_budget": 1.0})
    assert scenario.policy.buyer_of_last_resort_budget == 1.0
    with pytest.raises(ConfigError, match=r"unknown section 'polcy' \(known: .*'policy'"):
        load_scenario("baseline", {"polcy.buyer_of_last_resort_budget": 1.0})


def start_viz(port: int):
    """``python run.py viz`` on ``port`` as a real child process, its output captured as text."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), "viz", "--port", str(port), "--skip-assets"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_viz_stops_its_server_on_sigterm_and_refuses_a_busy_port():
    """`kill` on `run.py viz` stops the solara server too (no orphan left listening); a busy port is one
    clear message with a free port to try."""
    import signal
    import time

    from experiments.viz import free_port, port_in_use

    port = free_port("127.0.0.1")
    viz = start_viz(port)
    try:
        deadline = time.monotonic() + 90
        while not port_in_use("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert port_in_use("127.0.0.1", port), "the visualiser never listened"
        second = subprocess.run(  # a second visualiser on the same port is refused
            [sys.executable, str(ROOT / "run.py"), "viz", "--port", str(port), "--skip-assets"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2 and f"--port {port}" in second.stderr and "try --port" in second.stderr
        assert "Traceback" not in second.stderr
        viz.send_signal(signal.SIGTERM)
        assert viz.wait(timeout=30) == 0
        deadline = time.monotonic() + 10
        while port_in_use("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not port_in_use("127.0.0.1", port), "the solara server was left listening"
        assert f"http://127.0.0.1:{port}/" in viz.stdout.read()
    finally:
        viz.kill()


def test_viz_output_is_quiet_and_names_the_readme_url():
    """`run.py viz` prints the http://127.0.0.1 URL the README gives, and a page load prints nothing
    (solara's ten-line cookie warning for hosts other than "localhost" is silenced)."""
    import signal
    import time
    import urllib.request

    from experiments.viz import free_port

    port = free_port("127.0.0.1")
    viz = start_viz(port)
    try:
        deadline, page = time.monotonic() + 90, None
        while page is None and time.monotonic() < deadline:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read()
            except OSError:
                time.sleep(0.5)
        assert page, "the visualiser never served its page"
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read()  # a second load, too
        viz.send_signal(signal.SIGTERM)
        assert viz.wait(timeout=30) == 0
        out, err = viz.stdout.read(), viz.stderr.read()
    finally:
        viz.kill()
    assert f"visualiser: http://127.0.0.1:{port}/" in out
    assert "localhost" not in out + err
    assert "Cookies with samesite" not in err and "warn" not in err.lower(), err
    assert "http://127.0.0.1:8765" in (ROOT / "README.md").read_text()
