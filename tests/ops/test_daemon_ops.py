"""The daemon's operations wiring, with real components: sd_notify over a real AF_UNIX datagram socket
(the daemon as a subprocess, as systemd runs it), the watchdog's health rule (in process, real engine
and lavfi stream), and the signal checks and quality state on real lavfi sources through /metrics and
the log. Every wait is bounded."""
from __future__ import annotations

import os
import re
import socket
import tempfile
import threading
import time
from typing import Callable, Iterator

import pytest
import yaml
from servers import DaemonProcess, Scrape, daemon_config, free_port, wait_until

from engines.contract import ARTIFACTS
from monitor.config import parse_config
from monitor.daemon import Daemon
from monitor.notify import Notifier

pytestmark = pytest.mark.slow

MOVING = "lavfi:testsrc2=size=320x240:rate=10"
BLACK = "lavfi:color=c=black:size=320x240:rate=10"
FROZEN = "lavfi:testsrc2=size=320x240:rate=10,loop=loop=-1:size=1"  # the first picture, repeated
STATUS_RE = re.compile(r"^scoring (\d+)/(\d+) streams, engine \w+:\w+")


# ------------------------------------------------------------------------------------------------
# A systemd stand-in: the notify socket
# ------------------------------------------------------------------------------------------------
class NotifyReceiver:
    """The receiving end of ``$NOTIFY_SOCKET``: every datagram, parsed into its ``KEY=VALUE`` lines."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages: list[tuple[float, dict[str, str]]] = []  # (time.monotonic() received, fields)

    def _receive(self, timeout: float) -> dict[str, str] | None:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            return None
        fields = dict(line.split("=", 1) for line in data.decode().splitlines())
        self.messages.append((time.monotonic(), fields))
        return fields

    def wait_for(self, predicate: Callable[[dict[str, str]], bool], timeout: float, what: str) -> dict[str, str]:
        """The next message satisfying ``predicate`` (those before it are kept in :attr:`messages`)."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            fields = self._receive(remaining)
            if fields is not None and predicate(fields):
                return fields
        raise TimeoutError(f"no {what} within {timeout} s; received {[m for _, m in self.messages]}")

    def drain(self, quiet_s: float = 0.3) -> list[dict[str, str]]:
        """Every message until none came for ``quiet_s``."""
        out = []
        while (fields := self._receive(quiet_s)) is not None:
            out.append(fields)
        return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket() -> Iterator[NotifyReceiver]:
    # A short folder in /tmp: AF_UNIX paths are limited to 107 bytes, pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="vqa-notify-") as folder:
        receiver = NotifyReceiver(os.path.join(folder, "notify.sock"))
        yield receiver
        receiver.close()


def _has(key: str, value: str | None = None) -> Callable[[dict[str, str]], bool]:
    return lambda fields: key in fields and (value is None or fields[key] == value)


# ------------------------------------------------------------------------------------------------
# sd_notify, the daemon as systemd runs it
# ------------------------------------------------------------------------------------------------
def test_sd_notify_ready_watchdog_status_reload_stopping(daemon, notify_socket: NotifyReceiver) -> None:
    port = free_port()
    cam = {"name": "cam", "url": MOVING}
    env = {"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": "2000000"}  # WatchdogSec=2 -> ping every 1 s
    d = daemon(daemon_config([cam], port), wait=None, env=env)

    # READY=1 first, once the engine is loaded and the metrics endpoint listens
    ready = notify_socket.wait_for(_has("READY", "1"), 90, "READY=1")
    assert len(notify_socket.messages) == 1, notify_socket.messages  # nothing before READY=1
    assert d.get("/healthz")[0] == 200
    assert d.scrape().series("vqa_engine_info"), "READY=1 came before the engine was loaded"
    assert STATUS_RE.match(ready["STATUS"]), ready
    d.wait_http("/readyz", 30)

    # STATUS= follows the streams; WATCHDOG=1 repeats while healthy
    status = notify_socket.wait_for(lambda m: STATUS_RE.match(m.get("STATUS", "")) is not None
                                    and "scoring 1/1 streams" in m["STATUS"], 30, "STATUS with 1/1 streams up")
    assert "not ready" not in status["STATUS"]
    notify_socket.drain(0.05)  # pings queued while the test was busy would arrive back to back
    pings = []
    for _ in range(3):
        notify_socket.wait_for(_has("WATCHDOG", "1"), 10, "WATCHDOG=1")
        pings.append(notify_socket.messages[-1][0])
    assert min(b - a for a, b in zip(pings, pings[1:])) >= 0.5  # paced (every 1 s), not every tick

    # SIGHUP: RELOADING=1 (with MONOTONIC_USEC) ... READY=1, and the status counts the new stream
    d.reload(daemon_config([cam, {"name": "cam2", "url": MOVING}], port))
    reloading = notify_socket.wait_for(_has("RELOADING", "1"), 30, "RELOADING=1")
    assert int(reloading["MONOTONIC_USEC"]) > 0
    reloaded = notify_socket.wait_for(_has("READY", "1"), 30, "READY=1 after the reload")
    if "/2 streams" not in reloaded.get("STATUS", ""):  # STATUS is sent on change: READY=1 may already carry it
        notify_socket.wait_for(lambda m: "/2 streams" in m.get("STATUS", ""), 30, "STATUS with 2 streams")

    # SIGTERM: STOPPING=1, exit 0
    assert d.terminate() < 5.0
    notify_socket.wait_for(_has("STOPPING", "1"), 5, "STOPPING=1")
    assert d.proc.returncode == 0


def test_without_notify_socket_nothing_is_sent(daemon) -> None:
    d = daemon([{"name": "cam", "url": MOVING}], wait="readyz", env={"WATCHDOG_USEC": "2000000"})
    assert not any(e.get("event") == "watchdog_enabled" for e in d.events())
    assert d.terminate() < 5.0 and d.proc.returncode == 0


# ------------------------------------------------------------------------------------------------
# The watchdog's health rule, in process
# ------------------------------------------------------------------------------------------------
class HungEngine:
    """A real engine whose calls block until released: what a wedged inference call looks like."""

    def __init__(self, engine, release: threading.Event) -> None:
        self.engine, self.release, self.info = engine, release, engine.info

    def infer(self, windows):
        self.release.wait(30)
        return self.engine.infer(windows)

    def close(self) -> None:
        pass


def test_watchdog_pings_only_while_healthy(notify_socket: NotifyReceiver) -> None:
    config = parse_config(yaml.safe_dump(daemon_config([{"name": "cam", "url": MOVING}], free_port(),
                                                       prefer=["classical"])))
    d = Daemon(config)
    notify = d.notify_systemd(Notifier(notify_socket.path), watchdog_s=0.01)

    def tick() -> list[dict[str, str]]:
        time.sleep(0.02)  # let the ping interval pass
        notify.tick()
        return notify_socket.drain()

    try:
        assert not d.health()[0]  # no scheduler yet
        d.start_engine()
        assert d.health() == (True, "scheduler running")  # not ready (no stream yet), but alive: outages don't count
        sent = tick()
        assert {"WATCHDOG": "1"} in sent and "not ready" in sent[0]["STATUS"], sent

        d.start_streams()
        wait_until(lambda: d.readiness()[0], 30, what="the lavfi stream up")
        assert {"WATCHDOG": "1"} in tick()

        release = threading.Event()
        d.scheduler_stall_s = 1.0
        real = d.scheduler.swap_engine(HungEngine(d.scheduler.engine, release))
        try:
            wait_until(lambda: not d.health()[0], 15, what="health to notice the hung engine call")
            assert "engine hung" in d.health()[1]
            assert not any("WATCHDOG" in m for m in tick())
        finally:
            release.set()
        d.scheduler.swap_engine(real)
        wait_until(lambda: d.health()[0], 15, what="health back once the engine call returns")

        d.scheduler.stop()  # a dead scheduler thread: no more pings, even though a stream is up
        assert d.scheduler.join(10)
        assert not d.health()[0]
        assert not any("WATCHDOG" in m for m in tick())
    finally:
        d.shutdown()
    assert {"STOPPING": "1", "STATUS": "stopping"} in notify_socket.drain()


def test_watchdog_pings_go_on_while_a_reload_loads_a_slow_engine(notify_socket: NotifyReceiver, tmp_path,
                                                                  monkeypatch) -> None:
    """A reload's engine load runs beside the main loop: the running engine keeps scoring, so the
    watchdog must keep being fed (a first TensorRT build takes longer than WatchdogSec=30s)."""
    import monitor.daemon as daemon_module
    from monitor.config import load_config

    path = tmp_path / "config.yaml"
    config = daemon_config([{"name": "cam", "url": MOVING}], free_port(), prefer=["classical"])
    path.write_text(yaml.safe_dump(config))
    d = Daemon(load_config(path), config_path=path)
    d.notify_systemd(Notifier(notify_socket.path), watchdog_s=0.1)
    real_load = daemon_module.load_engine

    def slow_load(*args, **kwargs):  # the real engine, after the time a long build takes here
        time.sleep(2.0)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(daemon_module, "load_engine", slow_load)
    loop = threading.Thread(target=d.loop, daemon=True)
    try:
        d.start_engine()
        d.start_streams()
        wait_until(lambda: d.readiness()[0], 30, what="the lavfi stream up")
        loop.start()
        config["engine"]["max_wait_ms"] = 80  # an engine change: the reload loads an engine
        path.write_text(yaml.safe_dump(config))
        notify_socket.drain(0.05)
        d.request_reload()
        notify_socket.wait_for(_has("RELOADING", "1"), 10, "RELOADING=1")
        during = len(notify_socket.messages)
        notify_socket.wait_for(_has("READY", "1"), 15, "READY=1 after the slow load")
        pings = [m for _, m in notify_socket.messages[during:] if m.get("WATCHDOG") == "1"]
        assert len(pings) >= 5, notify_socket.messages[during:]  # ~every 0.1 s for 2 s; none if the load blocked
        assert d.scheduler is not None and d.scheduler.max_wait_s == pytest.approx(0.08)
        assert d.registry.get_sample_value("vqa_config_last_reload_successful") == 1
    finally:
        d.request_stop()
        loop.join(5)
        d.shutdown()


# ------------------------------------------------------------------------------------------------
# Signal checks and quality state through the real daemon
# ------------------------------------------------------------------------------------------------
SIGNAL_STREAMS = [
    {"name": "black", "url": BLACK},
    {"name": "frozen", "url": FROZEN},
    # per-stream overrides: an expected rate it cannot meet, and thresholds no window reaches
    {"name": "moving", "url": MOVING,
     "checks": {"frame_rate": {"expected": 25, "min_duration": 1}},
     "quality": {"warn": 0.999, "crit": 0.998, "enter_windows": 2}},
]
SHORT_CHECKS = {"black": {"min_duration": 1, "clear_duration": 0.5},
                "freeze": {"min_duration": 2, "clear_duration": 0.5}}


def _watch(d: DaemonProcess, done: Callable[[Scrape], bool], timeout: float) -> list[Scrape]:
    """Scrape every 0.3 s until ``done`` holds (TimeoutError after ``timeout``); returns every scrape."""
    scrapes: list[Scrape] = []

    def check() -> bool:
        d.assert_running()
        scrapes.append(d.scrape())
        return done(scrapes[-1])

    wait_until(check, timeout, interval=0.3, what="signal gauges")
    return scrapes


def test_black_and_frozen_sources_raise_their_gauges_moving_one_does_not(daemon) -> None:
    port = free_port()
    d = daemon(daemon_config(SIGNAL_STREAMS, port, prefer=["classical"], checks=SHORT_CHECKS), wait="readyz")
    scrapes = _watch(d, lambda s: s.get("vqa_black", stream="black") == 1 and s.get("vqa_frozen", stream="frozen") == 1
                     and s.get("vqa_frame_rate_deviation", stream="moving") == 1, timeout=40)
    started = time.monotonic()
    scrapes += _watch(d, lambda s: time.monotonic() - started > 2.5, timeout=10)  # > freeze.min_duration more
    _assert_signal_gauges(scrapes)
    _assert_signal_events(d)
    _assert_incident_logged(d)
    _assert_reload_rebuilds_and_drops_state(d, port)
    assert d.terminate() < 5.0


def _assert_signal_gauges(scrapes: list[Scrape]) -> None:
    for s in scrapes:  # never raised on the moving picture, nor black on the frozen (grey) one
        assert s.get("vqa_black", stream="moving") == 0 and s.get("vqa_frozen", stream="moving") == 0
        assert s.get("vqa_black", stream="frozen") == 0
    last = scrapes[-1]
    assert last.get("vqa_black", stream="black") == 1 and last.get("vqa_frozen", stream="frozen") == 1
    for name in ("black", "frozen", "moving"):
        assert last.get("vqa_quality_state", stream=name) in (0, 1, 2), name
        assert last.get("vqa_no_video", stream=name) == 0
        assert last.get("vqa_frame_rate", stream=name) == pytest.approx(10, rel=0.3)
        assert last.get("vqa_bitrate_bits_per_second", stream=name) > 0
    assert last.get("vqa_expected_frame_rate", stream="moving") == 25  # its own checks: override
    assert last.get("vqa_expected_frame_rate", stream="black") == 10  # declared by the source
    assert last.get("vqa_frame_rate_deviation", stream="black") == 0


def _assert_signal_events(d: DaemonProcess) -> None:
    raised = {(e["stream"], e["check"]) for e in d.events() if e.get("event") == "signal_raised"}
    assert {("black", "black"), ("frozen", "frozen"), ("moving", "frame_rate_deviation")} <= raised
    assert not {("moving", "black"), ("moving", "frozen"), ("frozen", "black")} & raised


def _assert_incident_logged(d: DaemonProcess) -> None:
    """The moving stream's own quality thresholds put it in crit, with an incident log line."""
    d.wait_value("vqa_quality_state", lambda v: v == 2, timeout=30, stream="moving")
    (start,) = [e for e in d.events() if e.get("event") == "quality_incident_start" and e["stream"] == "moving"]
    assert start["level"] == "warning" and start["quality_level"] == "crit" and start["previous_quality_level"] == "ok"
    assert 0 <= start["worst_aqs"] < 0.998
    assert start["dominant_artifact"] in ARTIFACTS and start["window_artifact"] in ARTIFACTS


def _assert_reload_rebuilds_and_drops_state(d: DaemonProcess, port: int) -> None:
    """black removed (every series goes), moving changed (incident closed, fresh checks), frozen unchanged."""
    d.reload(daemon_config([SIGNAL_STREAMS[1], {"name": "moving", "url": MOVING}], port, prefer=["classical"],
                           checks=SHORT_CHECKS))
    wait_until(lambda: "black" not in d.scrape().streams("vqa_quality_state"), 20, what="black's series removed")
    after = d.scrape()
    assert not [name for (name, labels) in after.samples if ("stream", "black") in labels]
    assert after.get("vqa_frozen", stream="frozen") == 1
    ended = wait_until(lambda: [e for e in d.events() if e.get("event") == "quality_incident_end"
                                and e["stream"] == "moving"], 10, what="moving's incident closed")
    assert ended[0]["reason"] == "stream restarted (config changed)" and "worst_aqs" in ended[0]
    d.wait_value("vqa_expected_frame_rate", lambda v: v == 10, timeout=10, stream="moving")
    assert d.value("vqa_frame_rate_deviation", stream="moving") == 0
