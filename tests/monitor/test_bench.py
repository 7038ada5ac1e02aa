"""`vqa-monitor bench` (benchmarks/bench.py) runs with tiny parameters and writes well-formed results (no
timing assertions); the RTSP test server it shares with the tests serves a clip looped."""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import time
from pathlib import Path

import pytest

from monitor import cli
from servers import make_clip

bench = cli.load_bench_tool()  # as `vqa-monitor bench` loads it


def _args(tmp_path: Path, *extra: str) -> argparse.Namespace:
    return bench.build_parser().parse_args(["--json", str(tmp_path / "b.json"), "--markdown", str(tmp_path / "b.md"),
                                            *extra])


def test_engines_and_per_frame_parts_write_json_and_markdown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _args(tmp_path, "--parts", "engines,per-frame", "--engines", "onnxruntime:aqs_mnv3_small,classical,tflite:x",
                 "--batch-sizes", "1,2", "--min-seconds", "0.05", "--frames", "14", "--batch", "2")
    assert bench.run(args) == 0
    results = json.loads((tmp_path / "b.json").read_text())
    machine = results["machine"]
    assert machine["cores"] >= 1 and machine["cpu"] and "numpy" in machine["versions"]
    rows = [r for r in results["engines"] if "skipped" not in r]
    assert {(r["variant"], r["batch"]) for r in rows} >= {("classical", 1), ("classical", 2)}
    for row in rows:
        assert row["windows_per_s"] > 0 and math.isclose(row["frames_per_s"], row["windows_per_s"] * 7, rel_tol=0.02)
        assert row["iterations"] >= 3
    assert any(r["variant"] == "tflite:x" and "unknown engine backend" in r["skipped"] for r in results["engines"])
    per_frame = results["per_frame"]
    assert per_frame["frames"] == 14 and per_frame["resolution"] == "1280x720"
    assert per_frame["ours"]["frames_per_s"] > 0
    if importlib.util.find_spec("torch") is not None:
        assert per_frame["per_frame"]["frames_per_s"] > 0 and per_frame["ratio"] > 0
        assert {a["threads"] for a in per_frame["per_frame"]["attempts"]} >= {1}
    report = (tmp_path / "b.md").read_text()
    assert "## 1. Engine throughput" in report and "## 2. The per-frame way" in report
    assert "| classical | classical.json | cpu | 2 |" in report
    assert "`tflite:x`: skipped" in report
    assert report in capsys.readouterr().out


def test_default_variants_cover_every_shipped_onnx_file() -> None:
    from engines.modelfiles import read_manifest

    variants = bench.default_variants()
    for entry in read_manifest().values():
        if entry.format == "onnx":
            assert f"onnxruntime:{entry.architecture}@{entry.precision}" in variants
    assert variants[-1] == "classical"


def test_bad_part_is_a_usage_error(tmp_path: Path) -> None:
    assert bench.run(_args(tmp_path, "--parts", "engines,speed")) == 2


def test_an_engine_that_ignores_threads_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.run(_args(tmp_path, "--parts", "per-frame", "--engine", "tensorrt", "--threads", "2")) == 2
    assert "--engine: " in capsys.readouterr().err


def test_the_subcommand_runs_the_tool_with_its_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.build_parser().parse_args(["--parts", "engines", "--streams", "1,2"]).streams == "1,2"
    assert cli.main(["bench", "--parts", "engines,speed"]) == 2
    assert "vqa-monitor bench: unknown part(s) speed" in capsys.readouterr().err


def test_the_subcommand_without_the_tool_says_where_it_is(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "BENCH_TOOL", tmp_path / "benchmarks" / "bench.py")  # an installed wheel has none
    assert cli.main(["bench", "--parts", "engines"]) == 1
    err = capsys.readouterr().err
    assert "source checkout" in err and "benchmarks/bench.py" in err and "Traceback" not in err


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    buckets = [(0.1, 0.0), (0.5, 50.0), (1.0, 90.0), (float("inf"), 100.0)]
    assert bench.histogram_quantile(0.5, buckets) == pytest.approx(0.5)
    assert bench.histogram_quantile(0.25, buckets) == pytest.approx(0.3)
    assert bench.histogram_quantile(0.95, buckets) == pytest.approx(1.0)  # in +Inf: the highest finite bound
    assert bench.histogram_quantile(0.5, []) is None


def test_parse_metrics_reads_labelled_series() -> None:
    text = ('# TYPE vqa_windows_scored_total counter\nvqa_windows_scored_total{stream="a"} 12.0\n'
            '# TYPE vqa_window_latency_seconds histogram\n'
            'vqa_window_latency_seconds_bucket{stream="a",le="0.5"} 3.0\n'
            'vqa_window_latency_seconds_bucket{stream="a",le="+Inf"} 4.0\n'
            'vqa_window_latency_seconds_count{stream="a"} 4.0\nvqa_window_latency_seconds_sum{stream="a"} 1.0\n')
    series = bench.parse_metrics(text)
    assert bench._per_stream(series, "vqa_windows_scored_total") == {"a": 12.0}  # noqa: SLF001
    assert bench._latency_buckets(series) == {0.5: 3.0, float("inf"): 4.0}  # noqa: SLF001


def _open_rtsp(url: str, timeout: float = 20.0):  # -> av container
    import av

    deadline = time.monotonic() + timeout
    while True:
        try:
            return av.open(url, options={"rtsp_transport": "tcp", "timeout": "3000000"}, timeout=(5.0, 3.0))
        except (av.error.FFmpegError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.usefixtures("_rtsp_available")
def test_rtsp_server_serves_the_clip_in_real_time() -> None:
    with bench.rtsp_server(bench.DEMO_CLIP) as url, _open_rtsp(url) as container:
        frame = next(container.decode(video=0))
        assert (frame.width, frame.height) == (1280, 720)


@pytest.mark.slow
def test_rtsp_server_keeps_serving_an_mp4_clip_past_its_end(rtsp_server, clip_dir: Path) -> None:
    """The clip is relayed looped: frames keep coming after it wraps (an MP4 fed to the relay as it is
    stops at the first wrap)."""
    clip = make_clip(clip_dir / "testsrc2_2s.mp4", seconds=2, size="320x240", fps=25)
    server = rtsp_server(clip=clip)
    past_the_end = 2 * 25 + 25  # the clip's frames and one more second
    frames = 0
    deadline = time.monotonic() + 20
    with _open_rtsp(server.url) as container:
        for _ in container.decode(video=0):
            frames += 1
            if frames >= past_the_end or time.monotonic() > deadline:
                break
    assert frames >= past_the_end


@pytest.mark.slow
@pytest.mark.usefixtures("_rtsp_available")
def test_streams_part_runs_the_daemon_on_live_rtsp(tmp_path: Path) -> None:
    args = _args(tmp_path, "--parts", "streams", "--streams", "1", "--duration", "4", "--warmup", "1")
    assert bench.run(args) == 0
    streams = json.loads((tmp_path / "b.json").read_text())["streams"]
    assert "skipped" not in streams, streams
    (run,) = streams["runs"]
    assert "error" not in run, run
    assert run["streams"] == 1 and run["windows_scored"] > 0 and run["rss_mb_peak"] > 0
    assert {"latency_p50_s", "latency_p95_s", "cpu_cores_used", "sustained"} <= set(run)
    assert "## 3. Concurrent 720p25 RTSP streams" in (tmp_path / "b.md").read_text()
