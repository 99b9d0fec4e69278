"""The web dashboard in a real browser (Debian's Chromium, driven by Playwright) against a real ``kubeinfer up -d
--dashboard-port 0``: the page shows the replicas, then a scale-up and a SIGKILLed replica's restart as they happen.

Screenshots and the measured figures (first contentful paint, how long after the platform's own status the page
showed each change) are kept in ``$KUBEINFER_TEST_ARTIFACTS/dashboard/`` when that is set, else in the test's
``tmp_path``. The figures are written down, not asserted: a loaded machine is slower, not wrong.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Platform, spec_text

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        "Debian's chromium is not installed (apt-get install -y chromium chromium-driver; ./install.sh --dev does)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package (the [dev] extra) is missing")

# As root there is no user namespace to sandbox in; the rest keeps Chromium off the network it cannot reach here.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
WAIT_MS = 30_000


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    root = os.environ.get("KUBEINFER_TEST_ARTIFACTS")
    folder = Path(root) / "dashboard" if root else tmp_path / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def dash(tmp_path: Path, cli_env: dict[str, str]) -> Iterator[tuple[Platform, str]]:
    """A one-replica service of fixed size (policy none) with its dashboard on a free port."""
    path = tmp_path / "dash.yaml"
    path.write_text(spec_text("dash", extra="  autoscaling: {policy: none}\n  replicas: 1\n"))
    p = Platform("dash", Path(cli_env["KUBEINFER_HOME"]), cli_env)
    try:
        r = p.cli("up", str(path), "-d", "--port", "0", "--no-grpc", "--timeout", "60", "--dashboard-port", "0")
        shown = re.search(r"dashboard at (http://127\.0\.0\.1:\d+/)", r.stdout)
        assert shown is not None, f"`up -d --dashboard-port 0` printed no dashboard URL:\n{r.stdout}"
        assert p.client.info()["dashboard"] == shown.group(1)
        yield p, shown.group(1)
    finally:
        p.down()


def _wait_status(p: Platform, what: str, pred: Any) -> float:
    p.wait(what, pred, 30)
    return time.monotonic()


def test_the_page_shows_the_replicas_a_scale_up_and_a_killed_replica_within_seconds(
    dash: tuple[Platform, str], artifacts: Path
) -> None:
    p, url = dash
    figures: dict[str, float] = {}
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            started = time.monotonic()
            page.goto(url)
            rows = page.locator("#replicas tbody tr[data-replica-id]")
            sync_api.expect(rows).to_have_count(1, timeout=WAIT_MS)
            sync_api.expect(rows.first).to_have_attribute("data-state", "Running", timeout=WAIT_MS)
            figures["replicas_shown_s"] = time.monotonic() - started
            paint = page.evaluate(
                "performance.getEntriesByType('paint').filter(e => e.name === 'first-contentful-paint')"
                ".map(e => e.startTime)[0] ?? null"
            )
            assert paint is not None, "the browser recorded no first contentful paint"
            figures["first_contentful_paint_ms"] = paint
            sync_api.expect(page.locator("#name")).to_have_text("dash")
            sync_api.expect(page.locator("#conn")).to_have_text("live", timeout=WAIT_MS)
            page.screenshot(path=str(artifacts / "1-loaded.png"), full_page=True)

            # Scale up: the page shows two ready replicas and the decision 1 -> 2.
            asked = time.monotonic()
            p.cli("scale", "dash", "--replicas", "2")
            status_at = _wait_status(p, "2 ready replicas", lambda s: s["ready_replicas"] == 2)
            ready = page.locator("#replicas tbody tr[data-ready='true']")
            sync_api.expect(ready).to_have_count(2, timeout=WAIT_MS)
            figures["scale_up_page_after_status_s"] = max(0.0, time.monotonic() - status_at)
            figures["scale_up_page_after_command_s"] = time.monotonic() - asked
            sync_api.expect(page.locator("#ready-count")).to_have_text("2")
            sync_api.expect(page.locator("#decisions tbody")).to_contain_text("1 → 2", timeout=WAIT_MS)
            sync_api.expect(page.locator("#decisions tbody")).to_contain_text("ScalingReplicaSet")
            page.screenshot(path=str(artifacts / "2-scaled-up.png"), full_page=True)

            # SIGKILL a replica: its row shows the restart and the exit (-9) that caused it.
            victim = p.status()["replicas"][0]
            killed = time.monotonic()
            os.kill(victim["pid"], signal.SIGKILL)
            status_at = _wait_status(
                p,
                "the killed replica to restart",
                lambda s: any(r["id"] == victim["id"] and r["restarts"] == 1 for r in s["replicas"]),
            )
            row = page.locator(f"#replicas tbody tr[data-replica-id='{victim['id']}']")
            sync_api.expect(row).to_have_attribute("data-restarts", "1", timeout=WAIT_MS)
            figures["restart_page_after_status_s"] = max(0.0, time.monotonic() - status_at)
            figures["restart_page_after_kill_s"] = time.monotonic() - killed
            sync_api.expect(row).to_contain_text("-9", timeout=WAIT_MS)
            page.screenshot(path=str(artifacts / "3-restarted.png"), full_page=True)
            sync_api.expect(row).to_have_attribute("data-ready", "true", timeout=WAIT_MS)
            page.screenshot(path=str(artifacts / "4-recovered.png"), full_page=True)
        finally:
            browser.close()
    (artifacts / "figures.json").write_text(json.dumps(figures, indent=2))
    print(f"dashboard figures ({artifacts}): {json.dumps(figures)}")


def test_a_bad_price_or_a_taken_dashboard_port_is_one_line_naming_it(tmp_path: Path, cli_env: dict[str, str]) -> None:
    path = tmp_path / "dash.yaml"
    path.write_text(spec_text("dash", extra="  autoscaling: {policy: none}\n  replicas: 1\n"))
    p = Platform("dash", Path(cli_env["KUBEINFER_HOME"]), {**cli_env, "KUBEINFER_PRICE_CPU_HOUR": "cheap"})
    r = p.cli("up", str(path), "-d", "--port", "0", "--no-grpc", "--dashboard-port", "0", check=False)
    assert r.returncode == 2 and "KUBEINFER_PRICE_CPU_HOUR has value 'cheap'" in r.stderr
    assert "Traceback" not in r.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = Platform("dash", Path(cli_env["KUBEINFER_HOME"]), cli_env)
        try:
            r = p.cli("up", str(path), "-d", "--port", "0", "--no-grpc", "--dashboard-port", str(port), check=False)
        finally:
            p.down()
    assert r.returncode != 0 and f"cannot listen on 127.0.0.1:{port} for the dashboard" in r.stderr
    assert "--dashboard-port 0 for a free port" in r.stderr and "Traceback" not in r.stderr
