"""HLS alerting end to end: a real ladder (ffmpeg per variant + http.server), the real daemon, a real
Prometheus loading the shipped rules. A stalled variant fires ``VqaHlsPlaylistStale`` for that
rendition only; a ladder whose master playlist cannot be read fires ``VqaHlsLadderEmpty``; Grafana's
``$stream`` variable lists the renditions.

The rules are a test copy of prometheus/vqa-monitor.rules.yml where only the ``for:`` of the two HLS
alerts is shortened; every expression, label and annotation is the shipped one.
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pytest
import yaml

from hls_server import HlsLadder, VariantSpec
from servers import free_port, make_clip, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "prometheus" / "vqa-monitor.rules.yml"
OVERVIEW = ROOT / "grafana" / "dashboards" / "vqa-overview.json"
TEST_FOR = {"VqaHlsPlaylistStale": "2s", "VqaHlsLadderEmpty": "2s"}


def rules_copy(directory: Path) -> Path:
    shipped = yaml.safe_load(RULES.read_text())
    rules = copy.deepcopy(shipped)
    changed = 0
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") in TEST_FOR:
                rule["for"] = TEST_FOR[rule["alert"]]
                changed += 1
    assert changed == len(TEST_FOR)
    path = directory / "rules.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def firing(prom, alertname: str) -> list[dict]:
    return [a["labels"] for a in prom.alerts() if a["labels"].get("alertname") == alertname and a["state"] == "firing"]


def test_stalled_rendition_and_unreadable_ladder_alert(factory, daemon, prometheus, test_clip, clip_dir,
                                                       tmp_path) -> None:
    small = make_clip(clip_dir / "testsrc2_180p.ts", seconds=4, size="320x180", fps=25)
    ladder = factory(lambda workdir, variants: HlsLadder(workdir, variants), "ladder")(
        [VariantSpec(test_clip, 800_000, "640x360"), VariantSpec(small, 300_000, "320x180")])
    hls = {"variants": "all", "master_reload_s": 1, "stale_target_durations": 3}
    d = daemon([{"name": "tv", "url": ladder.master_url, "hls": hls},
                {"name": "gone", "url": f"http://127.0.0.1:{free_port()}/master.m3u8", "hls": hls}])
    hd, sd = "tv/640x360@800k", "tv/320x180@300k"
    for stream in (hd, sd):
        d.wait_value("vqa_windows_scored_total", lambda v: v >= 1, timeout=60, stream=stream)
    prom = prometheus([f"127.0.0.1:{d.port}"], rule_files=[rules_copy(tmp_path)])

    # the ladder whose master playlist never answers: no variant monitored
    labels = wait_until(lambda: firing(prom, "VqaHlsLadderEmpty"), 40, what="VqaHlsLadderEmpty firing")
    assert [(a["ladder"], a["severity"]) for a in labels] == [("gone", "critical")]
    # Grafana's $stream variable (label_values(vqa_stream_up, stream)) lists one entry per rendition
    status, answer = prom.api("label/stream/values")
    assert status == 200 and {hd, sd} <= set(answer["data"])

    ladder.kill_variant(1, wipe=False)  # producer stopped, files kept
    stalled_at = time.monotonic()
    labels = wait_until(lambda: firing(prom, "VqaHlsPlaylistStale"), 40, what="VqaHlsPlaylistStale firing")
    print(f"\n[hls] VqaHlsPlaylistStale firing {time.monotonic() - stalled_at:.1f} s after the producer stopped "
          f"(N=3, target 1 s, for: {TEST_FOR['VqaHlsPlaylistStale']}, 1 s scrape and evaluation)")
    assert [a["stream"] for a in labels] == [sd]
    assert d.value("vqa_stream_up", stream=hd) == 1
    panel = next(p for p in json.loads(OVERVIEW.read_text())["panels"] if p.get("title") == "Streams with an alert signal")
    assert prom.value(panel["targets"][0]["expr"]) == 1  # the stalled rendition; the master-less ladder runs none
