"""The status page's routes, access rules and data over real HTTP (monitor.web.app on MetricsServer),
fed with real frames and window scores through StreamBoard and a real SnapshotWriter."""
from __future__ import annotations

import base64
import http.client
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from engines.contract import ARTIFACTS, NUM_ARTIFACTS
from engines.sampler import planes_from_rgb
from monitor.config import ConfigError, parse_config
from monitor.observers import WindowScore
from monitor.quality_state import QualityConfig, QualityState
from monitor.server import MetricsServer
from monitor.snapshots import SnapshotsConfig, SnapshotWriter
from monitor.web.app import WebApp
from monitor.web.board import StreamBoard
from monitor.web.settings import WebConfig

SECRET_TOKEN = "tok-7f3a9c-secret"
SECRET_PASSWORD = "pw-51be-secret"


def frame(height: int = 360, width: int = 640, seed: int = 0) -> Any:
    rng = np.random.default_rng(seed)
    return planes_from_rgb(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def score(stream: str, aqs: float, artifact_map: np.ndarray | None = None, seq: int = 0) -> WindowScore:
    probabilities = tuple([0.9] + [0.05] * (NUM_ARTIFACTS - 1))
    now = time.monotonic()
    return WindowScore(stream=stream, seq=seq, aqs=aqs, quality=aqs, probabilities=probabilities,
                       intensities=tuple([0.5] * NUM_ARTIFACTS), last_frame_time=now, published_time=now,
                       engine="classical", artifact_map=artifact_map)


class Fed:
    """A board with a writer, and a quality state per stream that drives it like QualityTracker does."""

    def __init__(self, tmp_path: Path, names: list[str]) -> None:
        self.names = names
        self.writer = SnapshotWriter(SnapshotsConfig(live_interval_s=0.2), tmp_path / "snapshots")
        self.writer.start()
        self.board = StreamBoard(lambda: list(self.names), self.writer, live_interval_s=0.2)
        self.states = {n: QualityState(QualityConfig(enter_windows=1, exit_windows=1)) for n in names}

    def window(self, stream: str, aqs: float, artifact_map: np.ndarray | None = None) -> None:
        self.board.on_frame(stream, frame(), time.monotonic())
        s = score(stream, aqs, artifact_map)
        events = self.states[stream].update(s.last_frame_time, s.aqs, s.probabilities, s.intensities)
        self.board.on_quality(s, events, self.states[stream].level)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., tuple[MetricsServer, Fed]]]:
    servers: list[MetricsServer] = []
    feds: list[Fed] = []

    def start(web: WebConfig | None = None, listen_host: str = "127.0.0.1", names: list[str] | None = None):
        fed = Fed(tmp_path, names or ["cam1", "cam2"])
        app = WebApp(web or WebConfig(), listen_host, fed.board, fed.writer)
        server = MetricsServer("127.0.0.1", 0, CollectorRegistry(), lambda: (True, "ready"), web=app)
        server.start()
        servers.append(server)
        feds.append(fed)
        return server, fed

    yield start
    for server in servers:
        server.stop()
    for fed in feds:
        fed.writer.stop()


def get(server: MetricsServer, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    host, port = server.address
    connection = http.client.HTTPConnection(host, port, timeout=5)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_overview_api_sorts_the_stream_in_trouble_first(serve) -> None:
    server, fed = serve()
    for _ in range(3):
        fed.window("cam1", 0.9)
        fed.window("cam2", 0.2)
    status, body, headers = get(server, "/api/streams")
    assert status == 200 and headers["content-type"] == "application/json"
    rows = json.loads(body)["streams"]
    assert [r["name"] for r in rows] == ["cam1", "cam2"]  # both down (never up yet): by name
    fed.board.on_up("cam1", time.monotonic())
    fed.board.on_up("cam2", time.monotonic())
    rows = json.loads(get(server, "/api/streams")[1])["streams"]
    assert [(r["name"], r["state"]) for r in rows] == [("cam2", "crit"), ("cam1", "ok")]
    assert rows[0]["last_incident"]["kind"] == "quality" and rows[0]["last_incident"]["ended"] is None
    fed.board.on_down("cam1", "server closed the stream", time.monotonic())
    rows = json.loads(get(server, "/api/streams")[1])["streams"]
    assert [(r["name"], r["state"]) for r in rows] == [("cam1", "down"), ("cam2", "crit")]
    counts = json.loads(get(server, "/api/streams")[1])["snapshots"]
    assert fed.writer.wait_idle(10) and counts["dropped"] == 0 and counts["failed"] == 0


def test_pages_are_html_with_a_strict_content_security_policy(serve) -> None:
    server, _ = serve()
    for path in ("/", "/streams/cam1"):
        status, body, headers = get(server, path)
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in headers["content-security-policy"] and headers["cache-control"] == "no-store"
        assert b'<script src="/static/web.js">' in body
    assert get(server, "/streams/nope")[0] == 404
    assert get(server, "/static/web.js")[0] == 200
    assert get(server, "/static/../app.py")[0] == 404
    assert get(server, "/snapshots/cam1/..%2F..%2Fetc.jpg")[0] == 404


def test_a_hostile_stream_name_is_escaped(serve) -> None:
    name = '<img src=x onerror=alert(1)>"&'
    server, fed = serve(names=[name])
    fed.window(name, 0.9)
    status, body, _ = get(server, "/streams/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E%22%26")
    assert status == 200
    assert b"<img src=x" not in body and b"&lt;img src=x onerror=alert(1)&gt;&quot;&amp;" in body
    assert json.loads(get(server, "/api/streams")[1])["streams"][0]["name"] == name


def test_incident_snapshot_and_heatmap_are_served(serve) -> None:
    server, fed = serve()
    artifact_map = np.zeros((NUM_ARTIFACTS, 7, 7), dtype=np.float32)
    artifact_map[ARTIFACTS.index("blocking"), :, :3] = 0.95  # the left side is damaged
    fed.window("cam1", 0.2, artifact_map)
    assert fed.writer.wait_idle(10)
    detail = json.loads(get(server, "/api/streams/cam1")[1])
    incident = detail["incidents"][0]
    assert incident["has_picture"] and incident["has_heatmap"]
    assert incident["map_artifact"][0][0] == "blocking" and incident["map_probability"][3][0] == 0.95
    for suffix in ("", ".heat"):
        status, body, headers = get(server, f"/snapshots/cam1/{incident['id']}{suffix}.jpg")
        assert status == 200 and headers["content-type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
    from PIL import Image
    import io

    heat = np.asarray(Image.open(io.BytesIO(get(server, f"/snapshots/cam1/{incident['id']}.heat.jpg")[1])), dtype=float)
    plain = np.asarray(Image.open(io.BytesIO(get(server, f"/snapshots/cam1/{incident['id']}.jpg")[1])), dtype=float)
    changed = np.abs(heat - plain).mean(axis=(0, 2))  # per column
    assert changed[: 640 * 3 // 7 - 4].mean() > 20 and changed[640 * 3 // 7 + 4:].mean() < 3
    assert get(server, "/snapshots/cam1/live.jpg")[0] == 200


def test_a_window_without_map_gets_no_heatmap(serve) -> None:
    server, fed = serve()
    fed.window("cam1", 0.2, None)
    assert fed.writer.wait_idle(10)
    incident = json.loads(get(server, "/api/streams/cam1")[1])["incidents"][0]
    assert incident["has_picture"] and not incident["has_heatmap"] and "map" not in incident
    assert get(server, f"/snapshots/cam1/{incident['id']}.heat.jpg")[0] == 404


def test_pictures_off_serves_the_page_without_them(serve) -> None:
    server, fed = serve(WebConfig(pictures=False))
    fed.window("cam1", 0.2)
    assert get(server, "/api/streams")[0] == 200
    assert json.loads(get(server, "/api/streams")[1])["pictures"] is False
    assert get(server, "/snapshots/cam1/live.jpg")[0] == 404


@pytest.mark.parametrize("path", ["/", "/streams/cam1", "/api/streams", "/api/streams/cam1", "/snapshots/cam1/live.jpg",
                                  "/static/web.js"])
def test_credentials_are_required_when_configured(serve, path: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server, fed = serve(WebConfig(username="ops", password=SECRET_PASSWORD, token=SECRET_TOKEN), listen_host="0.0.0.0")
    fed.window("cam1", 0.9)
    assert fed.writer.wait_idle(10)
    status, _, headers = get(server, path)
    assert status == 401 and headers["www-authenticate"].startswith("Basic")
    assert get(server, path, basic("ops", "wrong"))[0] == 401
    assert get(server, path, basic("nobody", SECRET_PASSWORD))[0] == 401
    assert get(server, path, {"Authorization": "Bearer wrong"})[0] == 401
    assert get(server, path, {"Authorization": "Basic !!notbase64"})[0] == 401
    assert get(server, path, basic("ops", SECRET_PASSWORD))[0] == 200
    assert get(server, path, {"Authorization": f"Bearer {SECRET_TOKEN}"})[0] == 200
    for open_path in ("/metrics", "/healthz", "/readyz"):
        assert get(server, open_path)[0] == 200
    assert SECRET_PASSWORD not in caplog.text and SECRET_TOKEN not in caplog.text


def test_no_credentials_on_a_non_loopback_address_means_403(serve) -> None:
    server, _ = serve(WebConfig(), listen_host="0.0.0.0")
    assert get(server, "/")[0] == 403
    assert get(server, "/api/streams")[0] == 403
    assert get(server, "/metrics")[0] == 200


def test_web_disabled_leaves_the_plain_root(tmp_path: Path) -> None:
    server = MetricsServer("127.0.0.1", 0, CollectorRegistry(), lambda: (True, "ready"), web=None)
    server.start()
    try:
        status, body, _ = get(server, "/")
        assert status == 200 and body.startswith(b"vqa-monitor: /metrics")
        assert get(server, "/api/streams")[0] == 404
    finally:
        server.stop()


def test_config_secrets_come_from_the_environment_and_stay_out_of_repr() -> None:
    config = parse_config("web: {username: ops, password: '${WEB_PW}', token: '${WEB_TOKEN}'}\n",
                          environ={"WEB_PW": SECRET_PASSWORD, "WEB_TOKEN": SECRET_TOKEN})
    assert config.web.password == SECRET_PASSWORD and config.web.token == SECRET_TOKEN
    assert SECRET_PASSWORD not in repr(config) and SECRET_TOKEN not in repr(config)
    with pytest.raises(ConfigError) as error:
        parse_config("web: {username: ops}\n")
    assert any("web" in p and "username and password go together" in p for p in error.value.problems)
    with pytest.raises(ConfigError) as error:
        parse_config("web: {token: '${WEB_TOKEN:-}'}\n", environ={})
    assert any("token is empty" in p for p in error.value.problems)


def test_a_stopped_stream_ends_its_open_incident(serve) -> None:
    server, fed = serve()
    fed.window("cam1", 0.2)
    events = fed.states["cam1"].close(time.monotonic(), "stream removed")
    fed.board.on_closed("cam1", events)
    assert fed.writer.wait_idle(10)
    incident = json.loads(get(server, "/api/streams/cam1")[1])["incidents"][0]
    assert incident["ended"] is not None and incident["reason"] == "stream removed"
    on_disk = json.loads(next((fed.writer.stream_dir("cam1") / "incidents").glob("*.json")).read_text())
    assert on_disk["ended"] == incident["ended"]


def test_a_black_picture_is_an_incident_with_its_frame(serve) -> None:
    from monitor.signals import SignalEvent

    server, fed = serve()
    fed.board.on_up("cam1", time.monotonic())
    black = planes_from_rgb(np.zeros((360, 640, 3), dtype=np.uint8))
    fed.board.on_signals("cam1", [SignalEvent("black", True, time.monotonic())], black)
    rows = json.loads(get(server, "/api/streams")[1])["streams"]
    assert rows[1]["name"] == "cam1" and rows[1]["state"] == "black"  # cam2 never came up: down first
    fed.board.on_signals("cam1", [SignalEvent("black", False, time.monotonic())], black)
    assert fed.writer.wait_idle(10)
    incident = json.loads(get(server, "/api/streams/cam1")[1])["incidents"][0]
    assert incident["kind"] == "black" and incident["ended"] is not None and incident["has_picture"]
    status, body, _ = get(server, f"/snapshots/cam1/{incident['id']}.jpg")
    assert status == 200 and body[:2] == b"\xff\xd8"
    history = json.loads(get(server, "/api/streams/cam1")[1])["signal_history"]
    assert [(h["check"], h["active"]) for h in history] == [("black", False), ("black", True), ("stream_up", True)]
