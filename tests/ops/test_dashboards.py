"""Grafana dashboards: committed JSON == generator output, structure, and the PromQL list for phase 2.

No Grafana server can be installed on these machines (not in Debian main; PyPI `grafana` is an empty
placeholder): the end-to-end check runs :func:`build_dashboards.panel_queries` against a real
Prometheus scraping the real daemon instead.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "grafana"))
pytest.importorskip("grafana_foundation_sdk", reason="pip install grafana-foundation-sdk (test extra)")
import build_dashboards  # noqa: E402

METRICS = {  # issue 2 names + issue 5 names; every panel must query only these (plus Prometheus' own)
    "vqa_aqs", "vqa_artifact_probability", "vqa_stream_up", "vqa_stream_reconnects_total",
    "vqa_frames_decoded_total", "vqa_decode_errors_total", "vqa_windows_scored_total",
    "vqa_windows_dropped_total", "vqa_inference_seconds_bucket", "vqa_inference_seconds_sum",
    "vqa_inference_seconds_count", "vqa_window_latency_seconds_bucket", "vqa_engine_info",
    "vqa_black", "vqa_frozen", "vqa_no_video", "vqa_bitrate_bits_per_second", "vqa_frame_rate",
    "vqa_expected_frame_rate", "vqa_frame_rate_deviation", "vqa_quality_state",
}


def test_committed_json_matches_generator():
    for name, text in build_dashboards.rendered().items():
        committed = (build_dashboards.OUT_DIR / name).read_text()
        assert committed == text, f"grafana/dashboards/{name} is stale: run grafana/build_dashboards.py"
    assert build_dashboards.main(["--check"]) == 0


def test_dashboards_structure():
    uids = set()
    for name in build_dashboards.DASHBOARDS:
        model = json.loads((build_dashboards.OUT_DIR / name).read_text())
        uids.add(model["uid"])
        variables = {v["name"]: v for v in model["templating"]["list"]}
        assert variables["datasource"]["query"] == "prometheus"
        for panel in model["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            refs = [t["refId"] for t in panel["targets"]]
            assert refs and len(set(refs)) == len(refs), panel["title"]
            assert panel["options"], panel["title"]
    assert uids == {"vqa-overview", "vqa-stream"}
    stream = json.loads((build_dashboards.OUT_DIR / "vqa-stream.json").read_text())
    var = {v["name"]: v for v in stream["templating"]["list"]}["stream"]
    assert var["query"]["query"] == "label_values(vqa_stream_up, stream)"


def test_panel_queries_expand_and_use_known_metrics():
    queries = build_dashboards.panel_queries("demo", rate_interval="30s")
    assert len(queries) >= 30
    titles = {q["panel"] for q in queries}
    for needed in ("AQS", "Quality state", "Stream up", "Engine", "Artifact probabilities", "Frame rate",
                   "Window latency (last frame decoded -> score published)", "Reconnects and decode errors",
                   "Windows scored and dropped", "Picture signals"):
        assert needed in titles
    for q in queries:
        assert "$" not in q["expr"], q
        names = set(re.findall(r"\b(vqa_[a-z_]+)", q["expr"]))
        assert names and names <= METRICS, q
        if q["dashboard"] == "vqa-stream" and "inference" not in q["expr"]:
            assert 'stream="demo"' in q["expr"], q
    assert any("[30s]" in q["expr"] for q in queries)


def test_provisioning_files():
    ds = yaml.safe_load((ROOT / "grafana/provisioning/datasources/vqa-monitor.yml").read_text())
    assert ds["apiVersion"] == 1 and ds["datasources"][0]["type"] == "prometheus"
    dash = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/vqa-monitor.yml").read_text())
    assert dash["providers"][0]["type"] == "file" and dash["providers"][0]["options"]["path"]
