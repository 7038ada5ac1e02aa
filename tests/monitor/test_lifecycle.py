"""SIGHUP reload (add, remove, change, invalid) and SIGTERM timing."""
from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from servers import Scrape, daemon_config, free_port, wait_until

pytestmark = pytest.mark.slow


def stream_series(scrape: Scrape, stream: str) -> list[str]:
    return sorted({name for (name, labels) in scrape.samples if ("stream", stream) in labels})


def test_sighup_add_remove_change_and_invalid(daemon, test_clip: Path) -> None:
    port = free_port()
    clip = str(test_clip)
    config = daemon_config([{"name": "a", "url": clip}, {"name": "b", "url": clip}], port)
    d = daemon(config)
    for name in ("a", "b"):
        d.wait_value("vqa_windows_scored_total", lambda v: v >= 1, timeout=40, stream=name)
    assert "vqa_aqs" in stream_series(d.scrape(), "b")

    # add c, remove b, change a (stride): c appears, every series of b disappears, a keeps its counters
    a_before = d.value("vqa_windows_scored_total", stream="a")
    d.reload(daemon_config([{"name": "a", "url": clip, "stride": 5}, {"name": "c", "url": clip}], port))
    d.wait_value("vqa_windows_scored_total", lambda v: v >= 1, timeout=30, stream="c")
    wait_until(lambda: not stream_series(d.scrape(), "b"), 10, what="series of b removed")
    assert d.value("vqa_windows_scored_total", stream="a") >= a_before
    assert d.value("vqa_config_last_reload_successful") == 1
    assert any(e.get("event") == "reloaded" and e.get("added") == "c" and e.get("removed") == "b"
               and e.get("restarted") == "a" for e in d.events())

    # an invalid config is logged and the running one stays
    c_before = d.value("vqa_windows_scored_total", stream="c")
    d.reload("streams: [{name: a, url: 'lavfi:testsrc2', bogus: 1}]\n")
    d.wait_value("vqa_config_last_reload_successful", lambda v: v == 0, timeout=10)
    rejected = [e for e in d.events() if e.get("event") == "reload_rejected"]
    assert any("streams[0].bogus: unknown key" in str(e.get("problem")) for e in rejected)
    d.wait_value("vqa_windows_scored_total", lambda v: v >= c_before + 2, timeout=20, stream="c")
    assert d.scrape().streams() == {"a", "c"}

    # an engine section that cannot load: the stream changes apply, the running engine stays, the reload
    # counts as failed, and the engine section is not taken as applied (the same file is retried next time)
    engine_before = d.scrape().series("vqa_engine_info")
    empty_models = Path(d.config_path).parent / "no-models"
    empty_models.mkdir()
    d.reload(daemon_config([{"name": "a", "url": clip, "stride": 5}, {"name": "c", "url": clip},
                            {"name": "e", "url": clip}], port,
                           engine={"prefer": ["onnxruntime:aqs_effnet_b0"], "model_dir": str(empty_models)}))
    d.wait_value("vqa_windows_scored_total", lambda v: v >= 1, timeout=30, stream="e")
    assert d.value("vqa_config_last_reload_successful") == 0
    assert any(e.get("event") == "engine_reload_failed" for e in d.events())
    assert d.scrape().series("vqa_engine_info") == engine_before
    failures = d.value("vqa_config_reloads_total", result="failure")
    d.reload(Path(d.config_path).read_text())  # the same file again: the engine load is retried
    wait_until(lambda: d.value("vqa_config_reloads_total", result="failure") == failures + 1, 20,
               what="the engine section retried")
    assert len([e for e in d.events() if e.get("event") == "engine_reload_failed"]) == 2

    # a changed web section is not applied by a reload: logged, and the page goes on being served
    d.reload(daemon_config([{"name": "a", "url": clip, "stride": 5}, {"name": "c", "url": clip},
                            {"name": "e", "url": clip}], port, web={"enabled": False}))
    wait_until(lambda: any(e.get("event") == "reload_needs_restart" and e.get("sections") == "web" for e in d.events()),
               20, what="the web change reported as needing a restart")
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).status == 200

    # SIGTERM: gone within 5 s (the contract), cleanly
    elapsed = d.terminate()
    assert elapsed < 5.0, elapsed
    assert d.proc.returncode == 0
    assert any(e.get("event") == "stopped" for e in d.events())


def test_readyz_and_failed_listen(daemon, tmp_path: Path) -> None:
    port = free_port()
    # a stream that never comes up: alive, not ready
    d = daemon(daemon_config([{"name": "dead", "url": f"rtsp://127.0.0.1:{free_port()}/x"}], port))
    wait_until(lambda: d.get("/readyz")[0] == 503 and "no stream is up" in d.get("/readyz")[1], 30, what="503")
    assert d.get("/healthz")[0] == 200
    d.wait_value("vqa_stream_reconnects_total", lambda v: v >= 2, timeout=20, stream="dead")
    assert d.value("vqa_stream_up", stream="dead") == 0
    # a second daemon on the same port fails with exit 1 and a clear line
    other = daemon(daemon_config([], port), wait=None)
    assert other.proc.wait(30) == 1
    assert "cannot listen on the metrics address" in other.logs()
