"""``vqa-monitor score FILE --report out.html``: one self-contained HTML file, checked as text and
rendered offline in headless Chromium (skipped without it)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from servers import ffmpeg_exe

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "monitor" / "demo" / "demo.mp4"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SCREENSHOTS = os.environ.get("VQA_WEB_SCREENSHOTS")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """A report on a half-damaged clip (left half starved) and the clean demo clip, plus --json of both."""
    work = tmp_path_factory.mktemp("report")
    half = work / "half <damaged>.mp4"  # a name that must be escaped
    graph = ("[0:v]split[a][b];[a]crop=iw/2:ih:0:0,scale=iw/8:ih/8,scale=iw*8:ih*8:flags=neighbor[l];"
             "[b]crop=iw/2:ih:iw/2:0[r];[l][r]hstack,format=yuv420p")
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(DEMO), "-filter_complex", graph,
                    "-an", "-c:v", "libx264", "-crf", "32", "-preset", "veryfast", "-g", "25", "-bf", "0", str(half)],
                   check=True, timeout=120)
    out = work / "report.html"
    done = subprocess.run([sys.executable, "-m", "monitor", "score", "--engine", "classical", "--progress", "never",
                           "--json", "--report", str(out), str(half), str(DEMO)],
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return out, [json.loads(line) for line in done.stdout.splitlines()]


def test_report_is_self_contained_and_carries_the_json(report) -> None:
    path, scored = report
    text = path.read_text()
    data = json.loads(re.search(r'<script type="application/json" id="vqa-data">(.*?)</script>', text, re.S).group(1))
    for a, b in zip(data, scored):
        a.pop("elapsed_s"), b.pop("elapsed_s")
    assert data == scored
    assert not re.search(r'(src|href)="(?!data:)', text)  # nothing fetched: every picture inline
    assert text.count('<section class="file">') == 2
    assert text.count("data:image/jpeg;base64,") >= 2 * 4  # the 4 worst windows of each file, key frame at least
    assert 'alt="artifact heatmap"' in text  # the classical regressions localise
    assert "half &lt;damaged&gt;.mp4" in text and "half <damaged>" not in text.split('id="vqa-data"')[0]


def test_report_renders_offline_in_chromium(report) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python not installed")
    path, _ = report
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(offline=True, viewport={"width": 1100, "height": 900})
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(path.as_uri(), timeout=15_000)
            page.wait_for_function("[...document.images].every(i => i.complete)", timeout=15_000)
            sizes = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
            assert sizes and all(w == 480 for w in sizes), sizes
            assert page.eval_on_selector_all("svg polyline", "els => els.length") == 2 * 11
            assert errors == []
            if SCREENSHOTS:
                page.screenshot(path=str(Path(SCREENSHOTS) / "report.png"), full_page=False)
        finally:
            browser.close()
