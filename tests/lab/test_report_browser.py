"""The Allure HTML report of a real gated run, opened in headless Chromium.

`hil report` builds the report from the good-candidate run of tests/lab/test_gate_e2e.py
(tests/lab/gate_e2e_runs.py; run here if that module did not run first); it is served on
127.0.0.1 and driven with Playwright on the Debian `chromium` (never a downloaded
browser). The page must show the suites, a test case's steps and attachments, and the
rack-wide latency plot as a loaded image. Screenshots go to the test's tmp dir and, when
Allure is on, into this test's own Allure result.
"""

from __future__ import annotations

import functools
import http.server
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import allure
import pytest
from gate_e2e_runs import ROOT, GatedSession, good_candidate_run

if not (ROOT / "lab" / ".state" / "known_hosts").is_file():
    pytest.skip("virtual lab not built (hil lab up)", allow_module_level=True)

pytestmark = [pytest.mark.lab, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
# no GPU, no sandbox (root in a container), and no traffic to anything but the report server
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
UI_TIMEOUT_MS = 30_000
HIL = Path(sys.executable).with_name("hil")
SUITES = ("smoke", "functional", "latency")
STEP_CASE = "test_reachable_over_ssh[hub-01]"
STEP_CASE_ATTACHMENT = "ssh echo"
RACK_LATENCY_CASE = "rack-wide latency"
RACK_PLOT = "rack-ssh_rtt"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # the request log would clutter the output
        pass


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`hil report` on the good-candidate run's allure-results -> the report folder."""
    good: GatedSession = good_candidate_run(tmp_path_factory.getbasetemp() / "gate-good")
    assert good.allure.is_dir(), good.output_tail()
    out = tmp_path_factory.mktemp("allure-report")
    proc = subprocess.run([str(HIL), "report", "--results", str(good.allure), "--report", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert str(out / "index.html") in proc.stdout.replace("\n", ""), proc.stdout
    return out


@pytest.fixture(scope="module")
def report_url(report: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(report))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="allure-report-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing (Debian: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as pw:
        # a persistent context is Playwright's way to give Chromium its own --user-data-dir
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000})
        ctx.set_default_timeout(UI_TIMEOUT_MS)
        try:
            yield ctx.new_page()
        finally:
            ctx.close()


def _screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    # a no-op unless this test run itself writes allure-results
    allure.attach.file(str(path), name=name, attachment_type=allure.attachment_type.PNG)  # type: ignore[no-untyped-call]
    return path


def _open_group(page: Any, *names: str) -> None:
    """Expand the tree path ``names`` (top-level group first) in the suites view."""
    scope = page.locator(".tree__content")
    for name in names:
        node = scope.locator("[data-node-kind='group']", has=page.locator(
            ":scope > .node__title .node__name", has_text=name)).first
        title = node.locator(":scope > .node__title")
        if "node__expanded" not in (node.get_attribute("class") or ""):
            title.click()
        scope = node.locator(":scope > .node__children")
        scope.first.wait_for()


def _open_case(page: Any, name: str) -> None:
    page.locator(".node__leaf .node__name", has_text=name).first.click()
    page.locator(".test-result__name", has_text=name).first.wait_for()


def _top_level_groups(page: Any) -> list[str]:
    page.locator(".tree__content .node__name").first.wait_for()
    names: list[str] = page.locator(".tree__content > .node > .node__title .node__name").all_inner_texts()
    return [n.strip() for n in names]


def test_report_shows_suites_steps_attachments_and_the_latency_plot(
        page: Any, report_url: str, tmp_path: Path) -> None:
    page.goto(f"{report_url}#suites")
    groups = _top_level_groups(page)
    for suite in SUITES:
        assert any(g == suite or g.endswith(f".{suite}") for g in groups), f"suite {suite} not in {groups}"
    shot = _screenshot(page, tmp_path, "suites")

    # a smoke test case: its steps (driver actions) and its evidence attachment
    _open_group(page, "suites.smoke", "smoke")
    _open_case(page, STEP_CASE)
    result = page.locator(".test-result")
    steps = [s.strip() for s in result.locator(".step__name").all_inner_texts()]
    assert steps, "the test case lists no steps"
    assert any("hub-01" in s for s in steps), steps
    attachments = [a.strip() for a in result.locator(".attachment-row__name").all_inner_texts()]
    assert STEP_CASE_ATTACHMENT in attachments, attachments
    row = result.locator(".attachment-row", has=page.locator(".attachment-row__name",
                                                             has_text=STEP_CASE_ATTACHMENT)).first
    row.click()
    # the attachment loads asynchronously ("Loading..."): wait for its content, bounded
    deadline = time.monotonic() + 15.0
    while "exit_status" not in result.inner_text():
        assert time.monotonic() < deadline, "the evidence attachment did not open within 15 s"
        page.wait_for_timeout(200)
    _screenshot(page, tmp_path, "test-case")

    # the rack-wide latency plot: a PNG attachment that the browser actually decodes
    page.goto(f"{report_url}#suites")
    _open_group(page, "latency")
    _open_case(page, RACK_LATENCY_CASE)
    plot_row = page.locator(".attachment-row", has=page.locator(".attachment-row__name", has_text=RACK_PLOT))
    plot_row.first.click()
    img = page.locator(".test-result img").first
    img.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img.element_handle())
    width, height = img.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert width >= 300 and height >= 200, (width, height)
    plot = _screenshot(page, tmp_path, "latency-plot")
    print(f"screenshots: {shot.parent} ({shot.name}, test-case.png, {plot.name}); plot {width}x{height}")
