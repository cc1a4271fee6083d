"""The visualiser in a real browser: `solara run app.py` on a free localhost port, driven by Debian's
Chromium through Playwright (no browser download). Marked ``browser``; skipped without Chromium.

Checks: the page renders (offline), Step advances it, the "default the largest miner" shock raises
the defaults shown and changes the charts, one Step re-renders in under a second (the figure is
printed and written to ``visualiser-timing.txt``), rapid clicking leaves the page working with a
clean server log, Play steps on its own until Pause (with and without "Use Threads"), and two tabs
have separate models; market_2026 can be chosen and "Default this borrower" shows the cascade tree.
Saves ``visualiser.png`` and ``visualiser-market_2026.png``. These and the timing go to the test's
temporary folder (tests write nothing into the user's folders); set ``VISUALISER_ARTIFACTS=docs/img`` to refresh the documented ones.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from experiments.viz_attribution import counted_effect, recipe_of
from experiments.viz_default import default_borrower
from experiments.viz_model import LiveModel

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOG_PROBLEMS = re.compile(r"Traceback|Error|Exception|Could not load")
RENDER_BUDGET_S = 1.0

if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is absent (apt-get install chromium): the browser test needs it", allow_module_level=True
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`solara run app.py` as a subprocess on a free localhost port; (url, log file)."""
    port = free_port()
    log = tmp_path_factory.mktemp("solara") / "server.log"
    solara = Path(sys.executable).with_name("solara")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(solara), "run", "app.py", "--host", "127.0.0.1", "--port", str(port), "--production"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"solara exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"solara did not answer on {url} within 60 s:\n{log.read_text(errors='replace')}")
            time.sleep(0.3)
        yield url, log
    finally:
        print(
            "--- solara server log (tail) ---\n"
            + "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        )
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # its own process group (start_new_session): only ours
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1600, "height": 1500})
    page.js_errors = []
    page.on("pageerror", lambda exc: page.js_errors.append(str(exc)))
    page.goto(url)
    step_button(page).wait_for(timeout=60_000)
    page.locator(".viz-network img").wait_for(timeout=60_000)
    page.locator(".viz-charts img").wait_for(timeout=60_000)
    return page


def step_button(page):
    return page.get_by_role("button", name="Step", exact=True)


def status_text(page) -> str:
    return page.locator(".viz-status").inner_text()


def month(page) -> int:
    return int(re.search(r"Month (\d+)", status_text(page)).group(1))


def defaults(page) -> int:
    return int(re.search(r"Defaults: (\d+)", status_text(page)).group(1))


def image_sources(page) -> list[str]:
    return page.eval_on_selector_all(".viz-network img, .viz-charts img", "els => els.map(e => e.src)")


def chart_digest(page) -> str:
    """SHA-256 of the SVG bytes the charts image shows (fetched from its blob URL in the page)."""
    return page.evaluate(
        """async () => {
            const img = document.querySelector('.viz-charts img');
            const bytes = await (await fetch(img.src)).arrayBuffer();
            const digest = await crypto.subtle.digest('SHA-256', bytes);
            return [...new Uint8Array(digest)].map(b => b.toString(16).padStart(2, '0')).join('');
        }"""
    )


def images_loaded(page) -> None:
    page.wait_for_function(
        "[...document.querySelectorAll('img')].every(i => i.complete && i.naturalWidth > 0)", timeout=20_000
    )


def step_and_time(page) -> float:
    """Click Step; seconds until the month text and both figures (network, charts) are new."""
    before_month, before_images = month(page), image_sources(page)
    start = time.perf_counter()
    step_button(page).click()
    page.wait_for_function(
        """([m, old]) => {
            const status = document.querySelector('.viz-status');
            const imgs = [...document.querySelectorAll('.viz-network img, .viz-charts img')].map(e => e.src);
            return status && status.innerText.includes('Month ' + (m + 1) + ' ')
                && imgs.length === 2 && imgs.every(s => !old.includes(s) && s !== '');
        }""",
        arg=[before_month, before_images],
        timeout=20_000,
    )
    return time.perf_counter() - start


def server_problems(log: Path) -> list[str]:
    return [line for line in log.read_text(errors="replace").splitlines() if LOG_PROBLEMS.search(line)]


def close_cleanly(page, log: Path) -> None:
    """No error in the page's JavaScript or in the server log; close the page."""
    assert not page.js_errors, page.js_errors
    assert not server_problems(log), server_problems(log)
    page.close()


def test_step_shock_screenshot_and_render_time(server, browser, tmp_path) -> None:
    url, log = server
    page = open_page(browser, url)
    assert month(page) == 0
    charts_at_start = chart_digest(page)
    times = [step_and_time(page) for _ in range(6)]
    assert month(page) == 6
    assert chart_digest(page) != charts_at_start, "the charts did not change over six steps"

    # the shock early in a fresh run, while miners are still alive (later ones may all have failed)
    page.get_by_role("button", name="Reset", exact=True).click()
    page.wait_for_function(
        "document.querySelector('.viz-status').innerText.includes('Month 0 ')", timeout=30_000
    )
    step_and_time(page)
    charts_after_steps = chart_digest(page)
    before = defaults(page)
    page.get_by_role("button", name="Default the largest miner").click()
    page.locator(".viz-status").get_by_text(re.compile(r"Defaulted \S+: \d+ cascade round")).wait_for(
        timeout=60_000
    )
    page.wait_for_function(
        f"document.querySelector('.viz-status').innerText.match(/Defaults: (\\d+)/)[1] > {before}"
    )
    assert defaults(page) > before
    deadline = time.monotonic() + 20  # the charts image follows the status text by a moment
    while chart_digest(page) == charts_after_steps and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert chart_digest(page) != charts_after_steps, "the shock did not change the charts"
    page.locator(".viz-cascade").get_by_text("Latest cascade: started by").wait_for(timeout=20_000)

    times += [step_and_time(page) for _ in range(3)]  # a few months after the shock, for the screenshot
    images_loaded(page)
    artifacts = Path(os.environ.get("VISUALISER_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(artifacts / "visualiser.png"), full_page=True)
    median, worst = statistics.median(times), max(times)
    summary = (
        f"one Step of the baseline, click to both figures and the status re-rendered in Chromium: "
        f"median {median * 1000:.0f} ms, max {worst * 1000:.0f} ms over {len(times)} steps "
        f"({', '.join(f'{t * 1000:.0f}' for t in times)} ms); machine load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print(summary)
    (artifacts / "visualiser-timing.txt").write_text(summary + "\n")
    assert median < RENDER_BUDGET_S, summary
    close_cleanly(page, log)


def test_rapid_clicking_leaves_the_page_working(server, browser) -> None:
    url, log = server
    page = open_page(browser, url)
    buttons = [
        step_button(page),
        step_button(page),
        page.get_by_role("button", name="Reset", exact=True),
        page.get_by_role("button", name="Default the largest miner"),
        step_button(page),
        page.get_by_role("button", name="BTC falls 50 %"),
        page.get_by_role("button", name="Next GPU generation launches"),
    ]
    for i in range(50):  # as fast as the page accepts clicks; the server queues the events
        buttons[i % len(buttons)].click(timeout=30_000, force=True, no_wait_after=True)
    page.get_by_role("button", name="Reset", exact=True).click(timeout=60_000, force=True)
    page.wait_for_function(
        "document.querySelector('.viz-status').innerText.includes('Month 0 ')", timeout=90_000
    )
    assert step_and_time(page) < 20
    assert month(page) == 1
    assert page.locator(".viz-network img").is_visible() and page.locator(".viz-charts img").is_visible()
    close_cleanly(page, log)


@pytest.mark.parametrize("threads", [False, True], ids=["play", "play-with-threads"])
def test_play_steps_on_its_own_and_pause_stops_it(server, browser, threads: bool) -> None:
    """With "Use Threads" the model steps in one thread while another redraws the page."""
    url, log = server
    page = open_page(browser, url)
    if threads:
        page.get_by_text("Use Threads", exact=True).click()  # Vuetify covers the input with its ripple
        sync_api.expect(page.get_by_role("checkbox", name="Use Threads")).to_be_checked()
    start, charts_at_start = month(page), chart_digest(page)
    page.get_by_role("button", name="▶", exact=True).click()
    page.wait_for_function(
        f"document.querySelector('.viz-status').innerText.match(/Month (\\d+)/)[1] >= {start + 3}",
        timeout=60_000,
    )
    sync_api.expect(step_button(page)).to_be_disabled()  # no Step while playing
    clicked = month(page)
    page.get_by_role("button", name="❚❚", exact=True).click()
    sync_api.expect(step_button(page)).to_be_enabled(timeout=30_000)
    page.wait_for_timeout(1_500)  # Mesa lets a step already under way finish (one at most)
    paused = month(page)
    if threads:  # the page shows the latest month it had time to draw: the model may be months ahead
        assert paused >= clicked
    else:
        assert clicked <= paused <= clicked + 1
    page.wait_for_timeout(2_000)  # several play intervals (300 ms): nothing may move now
    assert month(page) == paused, "the model kept stepping after Pause"
    assert chart_digest(page) != charts_at_start, "the charts did not follow the played months"
    assert step_and_time(page) < 20 and month(page) == paused + 1  # Step works again after Pause
    close_cleanly(page, log)


def test_each_tab_has_its_own_model(server, browser) -> None:
    url, _ = server
    first, second = open_page(browser, url), open_page(browser, url)
    for _ in range(3):
        step_and_time(first)
    second.reload()
    step_button(second).wait_for(timeout=60_000)
    second.locator(".viz-status").wait_for()
    assert month(first) == 3
    assert month(second) == 0, "a new tab saw another tab's model"
    first.close()
    second.close()


def default_terawulf_in_market_2026(browser, url: str):
    """Open the page, choose market_2026, Reset, and default TeraWulf with one click; returns the page
    and the cascade panel once it shows TeraWulf's cascade."""
    page = open_page(browser, url)
    page.locator(".v-select").filter(has_text="Scenario").click()
    page.get_by_role("option", name="market_2026").click()
    page.get_by_role("button", name="Reset", exact=True).click()
    page.wait_for_function(
        "document.querySelector('.viz-status').innerText.includes('market_2026')", timeout=60_000
    )
    page.locator(".viz-default .v-select").click()
    page.get_by_role("option", name="TeraWulf", exact=True).click()
    page.get_by_role("button", name="Default this borrower").click()
    cascade = page.locator(".viz-cascade")
    cascade.get_by_text("Latest cascade: started by TeraWulf").wait_for(timeout=30_000)
    return page, cascade


def test_market_2026_default_this_borrower(server, browser, tmp_path) -> None:
    """The public market from filings, chosen in the sidebar: real names on the page; pick TeraWulf and one
    click defaults it; the cascade panel shows its tree (its two lender groups; tests/test_systemic_ranking.py
    checks the numbers by hand). Saves ``visualiser-market_2026.png`` next to the other artifacts."""
    url, log = server
    page, cascade = default_terawulf_in_market_2026(browser, url)
    text = cascade.inner_text()
    assert "caused 2 further default(s)" in text
    assert "TeraWulf noteholders (bond_investors) <- insolvency" in text
    assert "TeraWulf convert holders (bond_investors) <- insolvency" in text
    assert "TeraWulf noteholders $2.55B" in page.locator(".viz-default").inner_text()
    assert defaults(page) == 3
    images_loaded(page)
    artifacts = Path(os.environ.get("VISUALISER_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(artifacts / "visualiser-market_2026.png"), full_page=True)
    close_cleanly(page, log)


def test_market_2026_count_what_a_default_did(server, browser) -> None:
    """The cascade panel's counted attribution in the browser: TeraWulf defaulted at month 0, "Count
    what it did" shows a progress bar while the model re-runs in the server, then the extra defaults
    and those brought forward with months (the same as the count made here in-process) and marks the
    tree; the page keeps stepping."""
    url, log = server
    page, cascade = default_terawulf_in_market_2026(browser, url)
    count = cascade.get_by_role("button", name="Count what it did")
    count.click()
    cascade.locator(".v-progress-linear").wait_for(timeout=10_000)  # busy while it re-runs
    sync_api.expect(count).to_be_disabled()
    cascade.get_by_text("What TeraWulf's default did").wait_for(timeout=60_000)
    sync_api.expect(cascade.locator(".v-progress-linear")).to_have_count(0)

    model = LiveModel(scenario_name="market_2026")
    default_borrower(model, "TeraWulf")
    expected = counted_effect(recipe_of(model), "terawulf")
    labels = dict(zip(model.names, model.labels, strict=True))
    text = cascade.inner_text()
    assert f"{len(expected['extra_defaults'])} extra default(s)" in text
    assert f"{len(expected['brought_forward'])} brought forward" in text
    for row in expected["extra_defaults"]:
        assert f"{labels[row['name']]} (month {row['month']})" in text
    extra, forward = len(expected["extra_defaults"]), len(expected["brought_forward"])
    assert f"counted: {extra} extra, {forward} brought forward" in text  # on the tree
    assert "The cause tree credits TeraWulf with 2 further default(s) so far." in text
    sync_api.expect(count).to_be_disabled()  # counted: kept until the next shock
    step_and_time(page)
    assert month(page) == 1 and "counted:" in cascade.inner_text()
    close_cleanly(page, log)
