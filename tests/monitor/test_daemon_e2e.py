"""The real daemon end to end: live sources -> PyAV -> windows -> engine -> /metrics over HTTP."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from engines.contract import ARTIFACTS
from servers import Scrape, free_port

pytestmark = pytest.mark.slow
SECRET = "pa55w0rdXYZ"
REPO = Path(__file__).resolve().parents[2]


def assert_scored_stream(scrape: Scrape, stream: str) -> None:
    """Every per-stream series is present with a sane value."""
    aqs = scrape.get("vqa_aqs", stream=stream)
    assert aqs is not None and 0.0 <= aqs <= 1.0
    quality = scrape.get("vqa_quality", stream=stream)
    assert quality is not None and 0.0 <= quality <= 1.0
    for artifact in ARTIFACTS:
        p = scrape.get("vqa_artifact_probability", stream=stream, artifact=artifact)
        s = scrape.get("vqa_artifact_intensity", stream=stream, artifact=artifact)
        assert p is not None and 0.0 <= p <= 1.0, artifact
        assert s is not None and 0.0 <= s <= 1.0, artifact
    assert scrape.get("vqa_stream_up", stream=stream) == 1.0
    assert scrape.get("vqa_frames_decoded_total", stream=stream) >= 7
    assert scrape.get("vqa_windows_scored_total", stream=stream) >= 1
    assert scrape.get("vqa_windows_dropped_total", stream=stream) is not None
    assert scrape.get("vqa_decode_errors_total", stream=stream) is not None
    assert scrape.get("vqa_stream_reconnects_total", stream=stream) is not None
    count = scrape.get("vqa_window_latency_seconds_count", stream=stream)
    total = scrape.get("vqa_window_latency_seconds_sum", stream=stream)
    assert count >= 1 and 0.0 <= total / count < 5.0
    assert scrape.get("vqa_last_window_scored_timestamp_seconds", stream=stream) > 1.7e9


def assert_engine_series(scrape: Scrape) -> str:
    (info,) = scrape.series("vqa_engine_info")
    assert scrape.get("vqa_engine_info", **info) == 1.0 and info["engine"] and info["model"] and info["provider"]
    assert scrape.get("vqa_inference_seconds_count", engine=info["engine"]) >= 1
    return info["engine"]


def test_rtsp_live_stream_to_metrics(rtsp_server, daemon) -> None:
    server = rtsp_server(pattern="ball")
    url = server.url.replace("rtsp://", f"rtsp://viewer:{SECRET}@") + f"?token={SECRET}"
    d = daemon([{"name": "cam", "url": url}])
    d.wait_value("vqa_windows_scored_total", lambda v: v >= 3, timeout=40, stream="cam")
    scrape = d.scrape()
    assert_scored_stream(scrape, "cam")
    assert scrape.get("vqa_decode_errors_total", stream="cam") == 0
    assert_engine_series(scrape)
    assert d.get("/healthz")[0] == 200
    status, body = d.get("/readyz")
    assert status == 200 and "1 of 1" in body
    # credentials appear nowhere: not in labels, not in logs
    assert SECRET not in scrape.text and SECRET not in d.logs()
    events = d.events()
    assert any(e.get("event") == "stream_up" and e.get("stream") == "cam" for e in events)
    assert any(e.get("event") == "engine_selected" for e in events)


def test_hls_live_playlist_to_metrics(hls_server, daemon) -> None:
    server = hls_server()
    d = daemon([{"name": "hls", "url": server.url}])
    d.wait_value("vqa_windows_scored_total", lambda v: v >= 3, timeout=40, stream="hls")
    assert_scored_stream(d.scrape(), "hls")


def test_looped_file_plays_on_without_counting_reconnects(daemon, test_clip) -> None:
    d = daemon([{"name": "file", "url": str(test_clip), "loop": True}])
    d.wait_value("vqa_frames_decoded_total", lambda v: v >= 130, timeout=40, stream="file")  # the clip has 100
    scrape = d.scrape()
    assert scrape.get("vqa_stream_reconnects_total", stream="file") == 0
    assert scrape.get("vqa_stream_up", stream="file") == 1
    assert not [e for e in d.events() if e.get("event") in ("stream_down", "stream_finished")]


def test_shipped_config_serves_demo_aqs(daemon, tmp_path: Path) -> None:
    """README command 1, minus the install: the shipped config.yaml shows vqa_aqs{stream="demo"}."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["metrics"]["listen"] = f"127.0.0.1:{free_port()}"
    d = daemon(yaml.safe_dump(config), wait="readyz")
    aqs = d.wait_value("vqa_aqs", lambda v: not math.isnan(v), timeout=40, stream="demo")
    assert 0.0 <= aqs <= 1.0
    assert 'vqa_aqs{stream="demo"}' in d.scrape().text


def test_daemon_runs_where_torch_cannot_be_imported(daemon, tmp_path: Path) -> None:
    """README command 1 installs no torch: the daemon, its default engine chain and scoring never need it."""
    blocker = tmp_path / "no-torch" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('torch is blocked in this test')\n")
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["metrics"]["listen"] = f"127.0.0.1:{free_port()}"
    d = daemon(yaml.safe_dump(config), wait="readyz", env={"PYTHONPATH": str(blocker.parent)})
    aqs = d.wait_value("vqa_aqs", lambda v: not math.isnan(v), timeout=40, stream="demo")
    assert 0.0 <= aqs <= 1.0
    assert d.scrape().series("vqa_engine_info")[0]["engine"] == "onnxruntime"
    assert "torch is blocked" not in d.log_path.read_text()
