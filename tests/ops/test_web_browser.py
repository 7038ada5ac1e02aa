"""The status page in a real browser: Debian's headless Chromium driven by Playwright, against the
real daemon scoring real streams (the classical engine, which localises damage per fragment).

Streams: two clean ones (the demo clip), ``half`` (the demo clip with its left half starved: scaled down
8x and blown back up, big blocks) and ``cam`` (a live RTSP server, killed during the test). The half
damaged clip scores AQS ~0.49 with the classical engine (windows 0.32 .. 0.64), the clean clip ~0.77,
so with warn 0.65 / crit 0.55 only ``half`` enters an incident; ``cam`` (a synthetic ball on black)
gets thresholds it cannot reach and no black or freeze check.

Checks: N tiles for N streams; ``half`` sorts first and its incident shows a snapshot and, when the
engine produced a map, a heatmap whose blocking layer is stronger on the damaged (left) side, where it
marks most cells; ``cam`` moves to the top when its server dies; no console errors; pages escape what they show (the API is the data).
Set ``VQA_WEB_SCREENSHOTS=docs/images`` to refresh the README's screenshots.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from engines.contract import ARTIFACTS
from servers import DaemonProcess, RtspServer, daemon_config, ffmpeg_exe, free_port, rtsp_server_available, wait_until

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
DEMO = Path(__file__).resolve().parents[2] / "monitor" / "demo" / "demo.mp4"
QUALITY = {"warn": 0.65, "crit": 0.55, "enter_windows": 3, "exit_windows": 5}
UNREACHABLE_QUALITY = {"warn": 0.02, "crit": 0.01}
TILE_STATES = "els => els.map(e => [e.dataset.stream, e.dataset.state])"
INCIDENT_TIMEOUT_S = 60.0
DOWN_TIMEOUT_S = 30.0
SCREENSHOTS = os.environ.get("VQA_WEB_SCREENSHOTS")


def browser_missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} not installed (apt-get install chromium; scripts/install.sh --test)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def half_damaged_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo clip with its left half starved (8x down, nearest up); keyframe every second."""
    path = tmp_path_factory.mktemp("webclips") / "half_blocky.mp4"
    graph = ("[0:v]split[a][b];[a]crop=iw/2:ih:0:0,scale=iw/8:ih/8,scale=iw*8:ih*8:flags=neighbor[l];"
             "[b]crop=iw/2:ih:iw/2:0[r];[l][r]hstack,format=yuv420p")
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(DEMO), "-filter_complex", graph,
                    "-an", "-c:v", "libx264", "-crf", "32", "-preset", "veryfast", "-g", "25", "-bf", "0", str(path)],
                   check=True, timeout=120)
    return path


class Page:
    """A browser page that records console errors and uncaught exceptions."""

    def __init__(self, browser: Any, base_url: str) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=base_url)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.set_default_timeout(10_000)

    def tiles(self) -> list[list[str]]:
        return self.page.eval_on_selector_all(".tile", TILE_STATES)

    def wait_tiles(self, predicate: Any, timeout: float, what: str) -> list[list[str]]:
        return wait_until(lambda: (lambda t: t if predicate(t) else None)(self.tiles()), timeout, interval=0.5, what=what)

    def close(self) -> None:
        self.context.close()


def thirds(grid: list[list[float]]) -> tuple[list[float], list[float]]:
    """The cells of a [7][7] grid's left and right thirds."""
    return [p for row in grid for p in row[:3]], [p for row in grid for p in row[4:]]


def test_status_page_in_chromium(browser: Any, half_damaged_clip: Path, tmp_path: Path) -> None:
    if rtsp_server_available():
        pytest.skip(f"RTSP server unavailable: {rtsp_server_available()}")
    from monitor.snapshots import HEAT_MIN_PROBABILITY

    rtsp = RtspServer(log_dir=tmp_path).start()
    streams = [{"name": "clean-a", "url": "demo:"}, {"name": "clean-b", "url": "demo:"},
               {"name": "half", "url": str(half_damaged_clip)},
               # a ball on black; under load the test server can repeat frames (read as frozen once in CI)
               {"name": "cam", "url": rtsp.url, "quality": UNREACHABLE_QUALITY,
                "checks": {"black": {"enabled": False}, "freeze": {"enabled": False}}}]
    config = daemon_config(streams, free_port(), prefer=["classical"], quality=QUALITY,
                           snapshots={"dir": str(tmp_path / "snapshots"), "live_interval_s": 0.5})
    daemon = DaemonProcess(tmp_path / "daemon", config)
    page = None
    try:
        daemon.start("readyz")
        page = Page(browser, daemon.base_url)
        page.page.goto("/")
        tiles = page.wait_tiles(lambda t: len(t) == len(streams), 20, "a tile per stream")
        assert sorted(name for name, _ in tiles) == sorted(s["name"] for s in streams)

        tiles = page.wait_tiles(lambda t: t[0] == ["half", "crit"] or t[0] == ["half", "warn"], INCIDENT_TIMEOUT_S,
                                "the degraded stream first")
        assert all(state == "ok" for name, state in tiles[1:]), tiles
        page.page.wait_for_selector('.tile[data-stream="half"] img.thumb', state="visible")
        if SCREENSHOTS:
            time.sleep(3)  # let the tiles' thumbnails fill in
            page.page.screenshot(path=str(Path(SCREENSHOTS) / "web-overview.png"))

        page.page.click('.tile[data-stream="half"]')
        page.page.wait_for_url("**/streams/half")
        snapshot = page.page.wait_for_selector("li.incident img.snapshot", timeout=INCIDENT_TIMEOUT_S * 1000)
        page.page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=snapshot)
        assert page.page.eval_on_selector("li.incident img.snapshot", "i => i.naturalWidth") == 640

        record = json.loads(daemon.get("/api/streams/half")[1])["incidents"][0]
        assert record["kind"] == "quality" and record["worst_aqs"] < QUALITY["warn"]
        # the classical engine localises windows in trouble (monitor.localise): the incident gets a map
        record = wait_until(lambda: _heatmap_incident(daemon), 20, interval=0.5, what="an incident with a heatmap")
        heat = page.page.wait_for_selector("li.incident img.heatmap", timeout=15_000)
        page.page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=heat)
        # the starved half is blocky: its blocking layer leads; a temporal artifact (judder at a cut) may light
        # the whole grid, so the clean side's marked cells are not counted
        blocking_left, blocking_right = (float(np.mean(cells)) for cells in thirds(record["map"][ARTIFACTS.index("blocking")]))
        assert blocking_left >= blocking_right + 0.2, (blocking_left, blocking_right)
        marked_left = sum(p >= HEAT_MIN_PROBABILITY for p in thirds(record["map_probability"])[0])
        assert marked_left >= 12, f"the heatmap marks {marked_left} of the damaged left third's 21 cells"
        if SCREENSHOTS:
            page.page.screenshot(path=str(Path(SCREENSHOTS) / "web-stream.png"), full_page=True)

        page.page.goto("/")
        rtsp.kill()
        tiles = page.wait_tiles(lambda t: t and t[0] == ["cam", "down"], DOWN_TIMEOUT_S, "the stream that went down first")
        assert tiles[1][0] == "half", tiles
        assert page.errors == [], "\n".join(page.errors)
    finally:
        if page is not None:
            page.close()
        daemon.close()
        rtsp.close()


def _heatmap_incident(daemon: DaemonProcess) -> dict[str, Any] | None:
    status, body = daemon.get("/api/streams/half")
    incidents = json.loads(body)["incidents"] if status == 200 else []
    return incidents[0] if incidents and incidents[0].get("has_heatmap") else None
