"""Grafana dashboards: committed JSON == generator output, structure, and the PromQL list for phase 2.

No Grafana server can be installed on these machines (not in Debian main; PyPI `grafana` is an empty
placeholder): the end-to-end check (slow) runs every target of the committed JSON, with Grafana's
variables expanded, against a real Prometheus scraping the real daemon instead.
"""
from __future__ import annotations

import json
import math
import re
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "grafana"))
pytest.importorskip("grafana_foundation_sdk", reason="pip install grafana-foundation-sdk (test extra)")
import build_dashboards  # noqa: E402
from servers import make_clip  # noqa: E402

METRICS = {  # issue 2 names + issue 5 names; every panel must query only these (plus Prometheus' own)
    "vqa_aqs", "vqa_artifact_probability", "vqa_stream_up", "vqa_stream_reconnects_total",
    "vqa_frames_decoded_total", "vqa_decode_errors_total", "vqa_windows_scored_total",
    "vqa_windows_dropped_total", "vqa_inference_seconds_bucket", "vqa_inference_seconds_sum",
    "vqa_inference_seconds_count", "vqa_window_latency_seconds_bucket", "vqa_engine_info",
    "vqa_black", "vqa_frozen", "vqa_no_video", "vqa_bitrate_bits_per_second", "vqa_frame_rate",
    "vqa_expected_frame_rate", "vqa_frame_rate_deviation", "vqa_quality_state",
    "vqa_hls_playlist_stale",  # issue 17
    "vqa_audio_loudness_momentary_lufs", "vqa_audio_loudness_short_term_lufs", "vqa_audio_loudness_integrated_lufs",
    "vqa_audio_loudness_range_lu", "vqa_audio_true_peak_dbtp", "vqa_audio_silence", "vqa_audio_clipping",
    "vqa_audio_loudness_out_of_range", "vqa_audio_missing", "vqa_audio_decode_errors_total",  # issue 17: audio
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


# ------------------------------------------------------------------------------------------------
# Every panel query of the committed JSON against a real Prometheus scraping the real daemon
# ------------------------------------------------------------------------------------------------
RATE_INTERVAL = "10s"  # stands in for $__rate_interval / $__interval: ten 1 s scrapes
RANGE_S, STEP_S = 30.0, 1.0  # range panels: the last 30 s at a 1 s step (Grafana picks the step from the width)
QUERY_DEADLINE_S = 120.0  # first samples after ~6 s, rate() after ~8 s, a scored window after a few s


def _committed_targets() -> list[dict]:
    """Every target of the committed dashboards, exactly as Grafana would send it (before variables)."""
    out = []
    for name in build_dashboards.DASHBOARDS:
        model = json.loads((build_dashboards.OUT_DIR / name).read_text())
        variables = {v["name"] for v in model["templating"]["list"]}
        for panel in _panels(model):
            for target in panel.get("targets") or []:
                if not target.get("expr"):
                    continue
                out.append({"dashboard": model["uid"], "panel": f"{panel.get('title')} ({panel.get('type')})",
                            "ref_id": target.get("refId"), "expr": target["expr"],
                            "legend": target.get("legendFormat", ""), "instant": bool(target.get("instant")),
                            "per_stream": "stream" in variables})
    return out


def _panels(model: dict):
    for panel in model.get("panels", []):
        yield panel
        yield from _panels(panel)  # rows may nest panels


def _expand(expr: str, stream: str | None) -> str:
    """Grafana's variables as Grafana would expand them for one chosen stream."""
    for var in ("$__rate_interval", "${__rate_interval}", "$__interval", "${__interval}"):
        expr = expr.replace(var, RATE_INTERVAL)
    if stream is not None:
        expr = expr.replace("${stream}", stream).replace("$stream", stream)
    assert "$" not in expr, f"unexpanded variable in {expr!r}"
    return expr


def needs_audio(target: dict) -> bool:
    """A panel of audio metrics: it has data only for streams with an audio track."""
    return "vqa_audio_" in target["expr"]


def _run_panel_query(prom, target: dict, stream: str | None, now: float) -> tuple[str, dict]:
    """One panel query as Grafana runs it (instant, or a range over the last RANGE_S): (PromQL, answer)."""
    expr = _expand(target["expr"], stream)
    answer = (prom.query(expr, at=now) if target["instant"]
              else prom.query_range(expr, now - RANGE_S, now, STEP_S))
    return expr, answer


def _check_answer(answer: dict, target: dict, stream: str | None) -> str | None:
    """None if the answer has data Grafana can draw, else what is wrong. Hard errors start with 'ERROR'."""
    if answer.get("status") != "success":
        return f"ERROR {answer.get('errorType')}: {answer.get('error')}"
    data = answer["data"]
    if data["resultType"] == "scalar":
        series = [{"metric": {}, "value": data["result"]}]
    else:
        series = data["result"]
    if not series:
        return "empty result"
    finite = []
    for s in series:
        points = s.get("values") or ([s["value"]] if "value" in s else [])
        if any(math.isfinite(float(v)) for _, v in points):
            finite.append(s)
        # the legend must be drawable: every {{label}} it names is on every series
        for label in re.findall(r"{{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*}}", target["legend"]):
            if label not in s["metric"]:
                return f"legend {target['legend']!r} names label {label!r}, missing on {s['metric']}"
        if stream is not None and "stream" in s["metric"] and s["metric"]["stream"] != stream:
            return f"series of another stream leaked in: {s['metric']}"
    if not finite:
        return f"only NaN/Inf values ({len(series)} series)"
    return None


@pytest.mark.slow
def test_every_committed_panel_query_returns_data(daemon, prometheus, degraded_demo_clip, clip_dir):
    """Run every panel target of grafana/dashboards/*.json, with $stream set to each real stream, against
    Prometheus' HTTP API: no query may fail, come back empty or hold only NaN, and every legend's
    {{label}} must exist on the returned series.

    No panel is exempt: none of the queries is legitimately empty on a healthy daemon (counters start at
    0, the 0/1 signal gauges exist from a stream's start, "Streams with an alert signal" ends in
    ``or vector(0)``). Two sources: the clean demo clip and the same clip starved of bits, so the
    per-stream dashboard is checked on a good and on a degraded stream and the stream filter on both.
    A third source carries an audio tone (audio expected): the audio panels (``vqa_audio_*``, no data
    for a stream without audio, rightly) are checked on it, every other panel on all three.
    """
    tone = make_clip(clip_dir / "dashboard_tone.ts", seconds=6, size="320x180",
                     audio="sine=frequency=1000:sample_rate=48000")
    streams = {"demo": "demo:", "degraded": str(degraded_demo_clip), "tone": str(tone)}
    audio_streams = ["tone"]
    d = daemon([{"name": n, "url": u, **({"checks": {"audio": {"expected": True}}} if n in audio_streams else {})}
                for n, u in streams.items()], wait="healthz")
    prom = prometheus([f"127.0.0.1:{d.port}"])
    targets = _committed_targets()
    assert len(targets) >= 30
    runs = [(t, s) for t in targets
            for s in ((audio_streams if needs_audio(t) else streams) if t["per_stream"] else [None])]

    started = time.monotonic()
    failures: dict[tuple, str] = {}
    while True:
        d.assert_running()
        now = time.time()
        failures = {}
        for target, stream in runs:
            expr, answer = _run_panel_query(prom, target, stream, now)
            problem = _check_answer(answer, target, stream)
            if problem:
                failures[(target["dashboard"], target["panel"], target["ref_id"], stream, expr)] = problem
        hard = {k: v for k, v in failures.items() if v.startswith("ERROR") or v.startswith("legend")}
        assert not hard, "panel queries rejected by Prometheus:\n" + "\n".join(f"{k}: {v}" for k, v in hard.items())
        if not failures or time.monotonic() - started > QUERY_DEADLINE_S:
            break
        time.sleep(1.0)
    assert not failures, (f"after {QUERY_DEADLINE_S:.0f} s, panel queries without data:\n"
                          + "\n".join(f"{k}: {v}" for k, v in failures.items()))
    print(f"\n[dashboards] {len(runs)} panel queries ({len(targets)} targets) all returned data "
          f"{time.monotonic() - started:.1f} s after Prometheus started")

    # The $stream variable: Grafana's label_values(vqa_stream_up, stream) == the label values API.
    var = {v["name"]: v for v in json.loads((build_dashboards.OUT_DIR / "vqa-stream.json").read_text())
           ["templating"]["list"]}["stream"]
    metric, label = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", var["query"]["query"]).groups()
    status, answer = prom.api(f"label/{label}/values", **{"match[]": metric})
    assert status == 200 and set(answer["data"]) == set(streams), answer
