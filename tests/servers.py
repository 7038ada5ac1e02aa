"""Real servers on 127.0.0.1 for the tests, shared by every test package (fixtures in tests/conftest.py).

* :class:`RtspServer`: gst-rtsp-server (``tests/rtsp_server.py`` under Debian's ``/usr/bin/python3``),
  publishing a live ``videotestsrc`` pattern or relaying a clip in real time; ``pause()`` (SIGSTOP,
  a hung server), ``resume()``, ``kill()`` (SIGKILL), ``restart()`` on the same port.
* :class:`HlsServer`: ffmpeg's hls muxer writing a live playlist from a looped clip, served by
  ``python -m http.server``; ``kill_producer()``, ``restart_producer()`` (wipes old segments first so
  a reconnect cannot be faked by stale files), ``stop()``.
* :class:`DaemonProcess`: the real ``vqa-monitor`` daemon as a subprocess with a temporary config;
  ``scrape()`` reads ``/metrics`` over HTTP, ``reload()`` rewrites the config and sends SIGHUP,
  ``terminate()`` sends SIGTERM and returns how long the exit took.
* :func:`make_clip`: an H.264 test clip (ffmpeg ``lavfi``), with a keyframe every second by default.

Every wait is bounded (``timeout=``) and raises :class:`TimeoutError` with what was seen last.
Ports are chosen at run time (:func:`free_port`). Everything started is stopped by ``close()``.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

import yaml

REPO = Path(__file__).resolve().parent.parent
RTSP_SCRIPT = Path(__file__).resolve().parent / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"
T = TypeVar("T")


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.2, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns a truthy value (returned); TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = predicate()
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last error on timeout
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not met within {timeout:.1f} s (last: {last!r})")
        time.sleep(interval)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def ffmpeg_exe() -> str:
    """Debian's ffmpeg (it has the hls muxer and libx264)."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise RuntimeError("ffmpeg not found: install Debian's ffmpeg (scripts/install.sh --test)")
    return exe


def rtsp_server_available() -> str | None:
    """None if gst-rtsp-server can run here, else the reason."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} missing"
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
         "from gi.repository import GstRtspServer"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return "gst-rtsp-server / python3-gi not installed (scripts/install.sh --test)"
    return None


def make_clip(path: Path, seconds: float = 4.0, size: str = "640x360", fps: int = 25, keyint: int | None = None,
              source: str = "testsrc2", extra_filters: str = "", codec: str = "libx264",
              audio: str | None = None) -> Path:
    """Write an H.264 clip from an ffmpeg lavfi source (keyframe every ``keyint`` frames, default 1 s).

    ``extra_filters`` is appended to the filter chain (e.g. ``"noise=alls=60:allf=t"``). ``audio``: an
    ffmpeg lavfi audio graph (e.g. ``"sine=frequency=1000:sample_rate=48000"``) encoded as stereo AAC
    beside the video. Cached: an existing file is reused.
    """
    path = Path(path)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    keyint = keyint or fps
    graph = f"{source}=size={size}:rate={fps}" + (f",{extra_filters}" if extra_filters else "")
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    audio_args = (["-f", "lavfi", "-i", audio, "-c:a", "aac", "-b:a", "128k", "-ac", "2", "-ar", "48000"]
                  if audio else [])
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", graph, *audio_args,
           "-t", str(seconds), "-c:v", codec, "-pix_fmt", "yuv420p", "-g", str(keyint), "-keyint_min", str(keyint), "-sc_threshold", "0",
           "-bf", "0", "-preset", "veryfast", str(tmp)]
    subprocess.run(cmd, check=True, timeout=120)
    tmp.rename(path)
    return path


def _stop_process(proc: subprocess.Popen[Any] | None, timeout: float = 3.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGCONT)  # a paused process cannot handle SIGTERM
        proc.terminate()
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)
    except ProcessLookupError:
        pass


# ------------------------------------------------------------------------------------------------
# RTSP
# ------------------------------------------------------------------------------------------------
class RtspServer:
    """gst-rtsp-server on 127.0.0.1:``port`` serving ``/mount``.

    ``pattern``/``width``/``height``/``fps``: the live videotestsrc. ``clip``: instead serve this
    H.264 file in real time, looped (the server's ``--clip``).
    """

    def __init__(self, port: int | None = None, *, pattern: str = "ball", width: int = 640, height: int = 360,
                 fps: int = 25, clip: Path | None = None, mount: str = "live", log_dir: Path | None = None,
                 audio: bool = False) -> None:
        self.port = port or free_port()
        self.pattern, self.width, self.height, self.fps = pattern, width, height, fps
        self.clip = Path(clip) if clip else None
        self.audio = audio  # with clip: serve its audio track too (Opus, a second RTP payload)
        self.mount = mount
        self.log_dir = log_dir
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{self.mount}"

    def start(self, timeout: float = 15.0) -> "RtspServer":
        cmd = [SYSTEM_PYTHON, str(RTSP_SCRIPT), "--port", str(self.port), "--mount", self.mount,
               "--pattern", self.pattern, "--width", str(self.width), "--height", str(self.height),
               "--fps", str(self.fps)]
        if self.clip:
            cmd += ["--clip", str(self.clip)] + (["--audio"] if self.audio else [])
        stderr = open(self.log_dir / f"rtsp_{self.port}.log", "a") if self.log_dir else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True)
        ready: list[str] = []
        reader = threading.Thread(target=lambda: ready.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        if not ready or not ready[0].startswith("READY"):
            self.close()
            raise TimeoutError(f"RTSP server on port {self.port} did not start: {ready!r}")
        wait_until(lambda: port_open(self.port), timeout, what=f"RTSP port {self.port} open")
        return self

    def pause(self) -> None:
        """Hang the server (SIGSTOP): connections stay open, no data flows."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        """Kill the server abruptly (SIGKILL); its clip relay, if any, dies with it."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(5)

    def restart(self, timeout: float = 15.0) -> "RtspServer":
        self.kill()
        wait_until(lambda: not port_open(self.port), 5, what="old RTSP port closed")
        return self.start(timeout)

    def close(self) -> None:
        _stop_process(self.proc)

    def __enter__(self) -> "RtspServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------------------------------
# HLS
# ------------------------------------------------------------------------------------------------
class HlsServer:
    """A live HLS playlist: ``ffmpeg -re -stream_loop -1 -i clip -f hls`` into ``directory`` + http.server.

    The clip should have a keyframe every ``segment_s`` seconds (see :func:`make_clip`).
    """

    def __init__(self, clip: Path, directory: Path, port: int | None = None, *, segment_s: int = 1,
                 list_size: int = 5, audio: bool = False) -> None:
        self.clip = Path(clip)
        self.audio = audio  # keep the clip's audio track
        self.directory = Path(directory)
        self.port = port or free_port()
        self.segment_s = segment_s
        self.list_size = list_size
        self.producer: subprocess.Popen[bytes] | None = None
        self.http: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/live.m3u8"

    @property
    def playlist(self) -> Path:
        return self.directory / "live.m3u8"

    def segments(self) -> list[str]:
        try:
            return [line for line in self.playlist.read_text().splitlines() if line.endswith(".ts")]
        except OSError:
            return []

    def start(self, timeout: float = 20.0) -> "HlsServer":
        self.start_producer(timeout)
        self.http = subprocess.Popen(
            [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(self.directory),
             str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: port_open(self.port), timeout, what=f"HTTP port {self.port} open")
        return self

    def start_producer(self, timeout: float = 20.0, wipe: bool = True) -> None:
        if wipe and self.directory.exists():
            for child in self.directory.iterdir():
                child.unlink()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.producer = subprocess.Popen(
            [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(self.clip),
             "-c", "copy", *([] if self.audio else ["-an"]), "-f", "hls", "-hls_time", str(self.segment_s), "-hls_list_size", str(self.list_size),
             "-hls_flags", "delete_segments+independent_segments",
             "-hls_segment_filename", str(self.directory / "seg_%05d.ts"), str(self.playlist)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: len(self.segments()) >= 2, timeout, what="HLS playlist with 2 segments")

    def kill_producer(self, wipe: bool = False) -> None:
        """Kill the producer; ``wipe`` also deletes the playlist and segments (HTTP then answers 404)."""
        if self.producer is not None and self.producer.poll() is None:
            self.producer.kill()
            self.producer.wait(5)
        if wipe and self.directory.exists():
            for child in self.directory.iterdir():
                child.unlink()

    def restart_producer(self, timeout: float = 20.0) -> None:
        """Kill the producer, wipe every old segment and playlist, start a fresh live playlist."""
        self.kill_producer()
        self.start_producer(timeout, wipe=True)

    def close(self) -> None:
        _stop_process(self.producer)
        _stop_process(self.http)

    def __enter__(self) -> "HlsServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------------------------------
# The daemon
# ------------------------------------------------------------------------------------------------
class Scrape:
    """One parsed ``/metrics`` response."""

    def __init__(self, text: str) -> None:
        from prometheus_client.parser import text_string_to_metric_families

        self.text = text
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def get(self, name: str, **labels: str) -> float | None:
        """The value of the series with exactly these labels, or None."""
        return self.samples.get((name, frozenset(labels.items())))

    def series(self, name: str) -> list[dict[str, str]]:
        return [dict(labels) for (n, labels) in self.samples if n == name]

    def streams(self, name: str = "vqa_stream_up") -> set[str]:
        return {labels["stream"] for labels in self.series(name) if "stream" in labels}


def daemon_config(streams: Iterable[dict[str, Any]], port: int, *, prefer: list[str] | None = None,
                  **sections: Any) -> dict[str, Any]:
    """A config dict for tests: fast timeouts and backoff, the given streams."""
    config: dict[str, Any] = {
        "metrics": {"listen": f"127.0.0.1:{port}"},
        "engine": {"prefer": prefer if prefer is not None else TEST_ENGINE, "max_wait_ms": 50, "threads": 1},
        "defaults": {"open_timeout_s": 3, "read_timeout_s": 2, "reconnect_min_s": 0.3, "reconnect_max_s": 2},
        "streams": list(streams),
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


# The lightest real engine for tests: the small ONNX model, the classical engine if that fails.
TEST_ENGINE = ["onnxruntime:aqs_mnv3_small", "classical"]


class DaemonProcess:
    """``python -m monitor --config <tmp>/config.yaml --log-format json`` with stderr captured to a file."""

    def __init__(self, workdir: Path, config: dict[str, Any] | str, *, env: dict[str, str] | None = None,
                 port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "config.yaml"
        self.log_path = self.workdir / "daemon.log"
        self.env = env or {}
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self.write_config(config)

    def write_config(self, config: dict[str, Any] | str) -> None:
        if isinstance(config, dict):
            text = yaml.safe_dump(config, sort_keys=False)
        else:
            text = config
            try:
                config = yaml.safe_load(text)
            except yaml.YAMLError:
                config = None  # a deliberately broken file (reload tests): keep the port
        try:
            self.port = int(config["metrics"]["listen"].rsplit(":", 1)[1])  # type: ignore[index]
        except (TypeError, KeyError, ValueError, AttributeError):
            pass
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.config_path)  # atomic: a SIGHUP never reads half a file

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: str | None = "healthz", timeout: float = 30.0) -> "DaemonProcess":
        """Start; ``wait`` = "healthz" (endpoint up), "readyz" (engine + a stream up) or None."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "--config", str(self.config_path), "--log-format", "json"],
            cwd=self.workdir, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_http(f"/{wait}", timeout)
        return self

    def get(self, path: str, timeout: float = 3.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def wait_http(self, path: str, timeout: float = 30.0) -> str:
        def ok() -> str | None:
            self.assert_running()
            status, body = self.get(path)
            return body if status == 200 else None

        return wait_until(ok, timeout, what=f"{path} answering 200")

    def scrape(self) -> Scrape:
        status, body = self.get("/metrics")
        assert status == 200, body
        return Scrape(body)

    def value(self, name: str, **labels: str) -> float | None:
        return self.scrape().get(name, **labels)

    def wait_value(self, name: str, predicate: Callable[[float], bool], timeout: float = 30.0, **labels: str) -> float:
        """Wait until the series exists and ``predicate(value)`` holds; returns the value."""
        def check() -> tuple[float] | None:
            self.assert_running()
            v = self.value(name, **labels)
            return (v,) if v is not None and predicate(v) else None  # a tuple: 0.0 is a valid answer

        return float(wait_until(check, timeout, what=f"{name}{labels} predicate")[0])

    def reload(self, config: dict[str, Any] | str) -> None:
        self.write_config(config)
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def assert_running(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.logs()[-4000:]}")

    def terminate(self, timeout: float = 10.0) -> float:
        """SIGTERM; returns the seconds until the process exited."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout)
        return time.monotonic() - started

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines (other lines are skipped)."""
        out = []
        for line in self.logs().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if getattr(self, "_log", None):
            self._log.close()

    def __enter__(self) -> "DaemonProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
