"""Engine reload against the real daemon: model files that turned to garbage never silently demote the
running engine to a fallback; a deliberate change of engine still applies."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from servers import TEST_ENGINE, daemon_config, free_port, wait_until

pytestmark = pytest.mark.slow
MODELS = Path(__file__).resolve().parents[2] / "engines" / "models"


def test_reload_keeps_the_running_engine_when_only_a_worse_one_loads(daemon, tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(MODELS, models)
    port = free_port()
    streams = [{"name": "live", "url": "lavfi:testsrc2=size=320x240:rate=25"}]
    engine = {"prefer": TEST_ENGINE, "model_dir": str(models)}
    d = daemon(daemon_config(streams, port, engine=engine))
    d.wait_value("vqa_windows_scored_total", lambda v: v >= 1, timeout=60, stream="live")
    (running,) = d.scrape().series("vqa_engine_info")
    if running["engine"] != "onnxruntime":
        pytest.skip(f"the test engine {TEST_ENGINE[0]} does not load here: {running}")

    # the model file becomes garbage, and a reload changes the engine section: the chain would fall back
    (models / "aqs_mnv3_small.onnx").write_bytes(b"\x00garbage" * 1000)
    d.reload(daemon_config(streams, port, engine={**engine, "max_wait_ms": 60}))
    wait_until(lambda: any(e.get("event") == "engine_reload_failed" for e in d.events()), 60,
               what="the downgrade refused")
    (event,) = [e for e in d.events() if e.get("event") == "engine_reload_failed"]
    assert event["running"] == TEST_ENGINE[0] and event["offered"] == "classical" and event["reason"]
    assert d.scrape().series("vqa_engine_info") == [running]
    assert d.value("vqa_config_last_reload_successful") == 0
    scored = d.value("vqa_windows_scored_total", stream="live")
    d.wait_value("vqa_windows_scored_total", lambda v: v > scored, timeout=30, stream="live")

    # choosing the classical engine on purpose is no downgrade: it is applied
    d.reload(daemon_config(streams, port, engine={**engine, "prefer": ["classical"]}))
    wait_until(lambda: [s["engine"] for s in d.scrape().series("vqa_engine_info")] == ["classical"], 60,
               what="the classical engine swapped in")
    assert d.value("vqa_config_last_reload_successful") == 1
    assert d.terminate() < 5.0 and d.proc is not None and d.proc.returncode == 0
