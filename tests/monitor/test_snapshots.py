"""Snapshots on disk: pictures from real frames, heatmaps, retention, a bounded queue."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engines.contract import ARTIFACTS, NUM_ARTIFACTS
from engines.sampler import planes_from_rgb
from monitor.config import ConfigError, parse_config
from monitor.snapshots import (
    ARTIFACT_COLOURS,
    SnapshotJob,
    SnapshotsConfig,
    SnapshotWriter,
    draw_heatmap,
    planes_to_rgb,
    snapshot_root,
    stream_dirname,
)


def test_planes_to_rgb_keeps_colours_and_aspect() -> None:
    rgb = np.zeros((720, 1280, 3), dtype=np.uint8)
    rgb[:, :640] = (200, 30, 30)
    rgb[:, 640:] = (30, 30, 200)
    out = planes_to_rgb(planes_from_rgb(rgb), 640)
    assert out.shape == (360, 640, 3)
    assert np.abs(out[180, 100].astype(int) - (200, 30, 30)).max() < 12
    assert np.abs(out[180, 540].astype(int) - (30, 30, 200)).max() < 12
    assert planes_to_rgb(planes_from_rgb(rgb[:240, :320]), 640).shape[1] == 320  # never scaled up


def test_heatmap_tints_the_cells_of_the_leading_artifact() -> None:
    rgb = np.full((350, 700, 3), 128, dtype=np.uint8)
    artifact_map = np.zeros((NUM_ARTIFACTS, 7, 7), dtype=np.float32)
    artifact_map[ARTIFACTS.index("blocking"), 0, 0] = 0.9
    artifact_map[ARTIFACTS.index("judder"), 6, 6] = 0.1  # below the threshold: left clear
    out = np.asarray(draw_heatmap(rgb, artifact_map)).astype(int)
    colour = np.array(Image.new("RGB", (1, 1), ARTIFACT_COLOURS["blocking"]).getpixel((0, 0)))
    inner = out[30:45, 50:95].reshape(-1, 3).mean(axis=0)  # inside cell (0, 0), clear of the label
    assert np.dot(inner - 128, colour - 128) > 0  # moved towards the artifact's colour
    assert np.abs(out[320:345, 620:695] - 128).max() <= 1  # cell (6, 6) untouched
    assert np.abs(out[170:180, 340:360] - 128).max() <= 1


def test_snapshot_root_follows_systemd_state_directory(tmp_path: Path) -> None:
    config = SnapshotsConfig()
    assert snapshot_root(config, None, {"STATE_DIRECTORY": "/var/lib/vqa-monitor"}) == Path("/var/lib/vqa-monitor/snapshots")
    assert snapshot_root(SnapshotsConfig(dir="snaps"), tmp_path, {}) == tmp_path / "snaps"
    assert stream_dirname("ladder/720p") == "ladder%2F720p"


def _incident(writer: SnapshotWriter, stream: str, started_ms: int, planes) -> str:
    incident_id = f"{started_ms:013d}-quality"
    writer.submit(SnapshotJob(stream, "incident", planes, {"id": incident_id, "new": True}, None))
    return incident_id


def test_retention_by_count_and_age(tmp_path: Path) -> None:
    writer = SnapshotWriter(SnapshotsConfig(max_incidents=3, max_age_hours=1), tmp_path)
    writer.start()
    planes = planes_from_rgb(np.full((240, 320, 3), 90, dtype=np.uint8))
    now_ms = int(time.time() * 1000)
    try:
        old = _incident(writer, "cam", now_ms - 2 * 3600 * 1000, planes)  # older than max_age_hours
        ids = [_incident(writer, "cam", now_ms + i, planes) for i in range(5)]
        assert writer.wait_idle(10)
    finally:
        writer.stop()
    kept = sorted(p.name for p in (tmp_path / "cam" / "incidents").iterdir())
    assert kept == sorted(f"{i}{suffix}" for i in ids[-3:] for suffix in (".jpg", ".json"))
    assert not any(old in name for name in kept)
    assert [r["id"] for r in writer.incidents("cam")] == ids[-3:][::-1]


def test_a_full_queue_drops_and_counts(tmp_path: Path) -> None:
    writer = SnapshotWriter(SnapshotsConfig(queue_size=2), tmp_path)  # not started: nothing drains the queue
    planes = planes_from_rgb(np.zeros((240, 320, 3), dtype=np.uint8))
    results = [writer.submit(SnapshotJob("cam", "live", planes)) for _ in range(5)]
    assert results == [True, True, False, False, False] and writer.dropped == 3


def test_results_reach_the_snapshots_counter(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from monitor.metrics import Metrics

    registry = CollectorRegistry()
    metrics = Metrics(registry)
    writer = SnapshotWriter(SnapshotsConfig(queue_size=1), tmp_path,
                            on_result=lambda result: metrics.snapshots.labels(result=result).inc())
    planes = planes_from_rgb(np.zeros((240, 320, 3), dtype=np.uint8))
    writer.submit(SnapshotJob("cam", "live", planes))
    writer.submit(SnapshotJob("cam", "live", planes))  # the queue holds one: dropped
    writer.start()
    try:
        assert writer.wait_idle(10)
    finally:
        writer.stop()
    text = generate_latest(registry).decode()
    assert 'vqa_snapshots_total{result="written"} 1.0' in text
    assert 'vqa_snapshots_total{result="dropped"} 1.0' in text


def test_a_failing_write_is_counted_and_the_worker_goes_on(tmp_path: Path) -> None:
    writer = SnapshotWriter(SnapshotsConfig(), tmp_path)
    writer.start()
    planes = planes_from_rgb(np.zeros((240, 320, 3), dtype=np.uint8))
    (tmp_path / "cam").write_text("a file where the stream's folder should be")
    try:
        writer.submit(SnapshotJob("cam", "live", planes))
        writer.submit(SnapshotJob("cam2", "live", planes))
        assert writer.wait_idle(10)
    finally:
        writer.stop()
    assert writer.failed == 1 and (tmp_path / "cam2" / "live.jpg").read_bytes()[:2] == b"\xff\xd8"


def test_config_section_defaults_and_limits() -> None:
    config = parse_config("snapshots: {max_incidents: 5, width: 320}\n")
    assert config.snapshots.max_incidents == 5 and config.snapshots.width == 320 and config.snapshots.enabled
    with pytest.raises(ConfigError) as error:
        parse_config("snapshots: {width: 10}\n")
    assert "snapshots.width" in str(error.value.problems)


def test_a_picture_is_claimed_only_once_the_worker_has_written_it(tmp_path: Path) -> None:
    """The page asks for what the API says exists: a picture still in the queue is not claimed (no 404)."""
    from monitor.web.board import StreamBoard

    writer = SnapshotWriter(SnapshotsConfig(), tmp_path)
    board = StreamBoard(lambda: ["cam"], writer)
    planes = planes_from_rgb(np.zeros((240, 320, 3), dtype=np.uint8))
    board.on_up("cam", time.monotonic())
    assert writer.submit(SnapshotJob("cam", "live", planes))
    assert not writer.has_picture("cam", "live") and board.summaries()[0]["has_live_picture"] is False
    writer.start()
    try:
        assert writer.wait_idle(10)
    finally:
        writer.stop()
    assert writer.has_picture("cam", "live") and board.summaries()[0]["has_live_picture"] is True
    assert not writer.has_picture("cam", "../../etc/passwd") and not writer.has_picture("cam", "nope.heat")
