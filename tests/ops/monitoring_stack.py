"""Real Prometheus, real Alertmanager and a loopback webhook receiver for the end-to-end ops tests.

* :class:`Prometheus`: Debian's ``/usr/bin/prometheus`` on 127.0.0.1 with its own storage dir, scraping
  the given targets (job ``vqa-monitor``) every second and evaluating rules every second.
* :class:`Alertmanager`: Debian's ``/usr/bin/prometheus-alertmanager`` on 127.0.0.1, gossip off
  (``--cluster.listen-address=``), its own storage dir.
* :class:`WebhookReceiver`: a ``http.server`` on 127.0.0.1 in a thread of the test process that records
  every POST (Alertmanager's webhook JSON) with the monotonic time it arrived.
* :func:`degraded_clip`: the demo clip starved of bits (big blocks; a clearly degraded source);
  :func:`concat_clip`: clips played one after the other in one MPEG-TS file (degraded, then clean).

Ports are chosen at run time; every wait is bounded and raises ``TimeoutError`` with what was seen last;
``close()`` kills what was started (the fixtures call it in their finalizers).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from servers import REPO, _stop_process, ffmpeg_exe, free_port, wait_until

PROMETHEUS = "/usr/bin/prometheus"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
DEMO_CLIP = REPO / "monitor" / "demo" / "demo.mp4"


def missing_binaries(*paths: str) -> str | None:
    """The skip reason if one of the Debian binaries is missing, else None."""
    absent = [p for p in paths if not Path(p).exists() and shutil.which(Path(p).name) is None]
    return f"not installed: {', '.join(absent)} (scripts/install.sh --test)" if absent else None


def _binary(path: str) -> str:
    return path if Path(path).exists() else (shutil.which(Path(path).name) or path)


def _http_json(url: str, timeout: float = 5.0, data: bytes | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=data)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read().decode() or "null")
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")
        try:
            return exc.code, json.loads(body)
        except ValueError:
            return exc.code, body


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            return response.status == 200
    except (OSError, urllib.error.HTTPError):
        return False


# ------------------------------------------------------------------------------------------------
# A Debian server binary run in its own folder, logging to a file
# ------------------------------------------------------------------------------------------------
class _Server:
    name = "server"
    binary = ""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log_path = self.workdir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _start(self, args: list[str], timeout: float) -> None:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([_binary(self.binary), *args], stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=self.workdir)
        wait_until(lambda: self._alive() and _http_ok(self.url + "/-/ready"), timeout, what=f"{self.name} ready")

    def _alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.logs()[-3000:]}")
        return True

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        _stop_process(self.proc)
        if getattr(self, "_log", None):
            self._log.close()


# ------------------------------------------------------------------------------------------------
# Prometheus
# ------------------------------------------------------------------------------------------------
class Prometheus(_Server):
    """``prometheus`` scraping ``targets`` (``host:port`` of daemons) as job ``vqa-monitor``."""

    name, binary = "prometheus", PROMETHEUS

    def __init__(self, workdir: Path, targets: Iterable[str], *, rule_files: Iterable[Path] = (),
                 alertmanager: str | None = None, interval: str = "1s") -> None:
        super().__init__(workdir)
        self.config_path = self.workdir / "prometheus.yml"
        config: dict[str, Any] = {
            "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [{"job_name": "vqa-monitor", "static_configs": [{"targets": list(targets)}]}],
        }
        if alertmanager:
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def start(self, timeout: float = 30.0) -> "Prometheus":
        self._start([f"--config.file={self.config_path}", f"--storage.tsdb.path={self.workdir / 'data'}",
                     f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=info"], timeout)
        return self

    def api(self, path: str, **params: Any) -> tuple[int, Any]:
        return _http_json(f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}")

    def query(self, expr: str, at: float | None = None) -> dict[str, Any]:
        """Instant query: the whole API answer (``status``, ``data`` or ``errorType``/``error``)."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return self.api("query", **params)[1]

    def query_range(self, expr: str, start: float, end: float, step: float) -> dict[str, Any]:
        return self.api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=step)[1]

    def value(self, expr: str) -> float | None:
        """The value of a query that yields one series, None when empty."""
        answer = self.query(expr)
        result = answer.get("data", {}).get("result") or []
        return float(result[0]["value"][1]) if result else None

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts Prometheus evaluates right now (pending and firing)."""
        return self.api("alerts")[1]["data"]["alerts"]

    def targets_up(self) -> bool:
        active = self.api("targets")[1]["data"]["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)


# ------------------------------------------------------------------------------------------------
# Alertmanager
# ------------------------------------------------------------------------------------------------
def alertmanager_test_config(example: Path, webhook_url: str, *, group_wait: str = "1s",
                             group_interval: str = "1s", repeat_interval: str = "4h",
                             resolve_timeout: str = "5s") -> dict[str, Any]:
    """The shipped example config (routes, grouping, inhibit rules kept) with test timings and every
    receiver's webhook pointed at ``webhook_url``."""
    config = yaml.safe_load(Path(example).read_text())
    config.setdefault("global", {})["resolve_timeout"] = resolve_timeout

    def retime(route: dict[str, Any]) -> None:
        for key, value in (("group_wait", group_wait), ("group_interval", group_interval),
                           ("repeat_interval", repeat_interval)):
            if key in route or route is config["route"]:
                route[key] = value
        for child in route.get("routes", []) or []:
            retime(child)

    retime(config["route"])
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []) or []:
            hook["url"] = webhook_url
            hook["send_resolved"] = True
    return config


class Alertmanager(_Server):
    name, binary = "alertmanager", ALERTMANAGER

    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        super().__init__(workdir)
        self.config_path = self.workdir / "alertmanager.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> "Alertmanager":
        # an empty cluster address: no gossip port on 0.0.0.0:9094
        self._start([f"--config.file={self.config_path}", f"--storage.path={self.workdir / 'data'}",
                     f"--web.listen-address={self.address}", "--cluster.listen-address=", "--log.level=info"], timeout)
        return self

    def alerts(self) -> list[dict[str, Any]]:
        return _http_json(self.url + "/api/v2/alerts")[1]


# ------------------------------------------------------------------------------------------------
# Webhook receiver
# ------------------------------------------------------------------------------------------------
class WebhookReceiver:
    """Records Alertmanager webhook POSTs as ``(monotonic time, path, payload)``."""

    def __init__(self) -> None:
        self.received: list[tuple[float, str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = {"unparsed": body.decode(errors="replace")}
                with receiver._lock:
                    receiver.received.append((time.monotonic(), self.path, payload))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:  # keep pytest's output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                       name="webhook", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/vqa-alerts"

    def start(self) -> "WebhookReceiver":
        self.thread.start()
        return self

    def notifications(self) -> list[tuple[float, dict[str, Any]]]:
        """Every delivered alert as ``(arrival time, alert)``; an alert carries ``status``
        (firing/resolved), ``labels``, ``annotations``, ``startsAt``, ``endsAt``."""
        with self._lock:
            received = list(self.received)
        return [(t, alert) for t, _, payload in received for alert in payload.get("alerts", [])]

    def find(self, alertname: str, status: str, since: float = 0.0, **labels: str) -> list[tuple[float, dict]]:
        return [(t, a) for t, a in self.notifications()
                if t >= since and a.get("status") == status and a["labels"].get("alertname") == alertname
                and all(a["labels"].get(k) == v for k, v in labels.items())]

    def wait_for(self, alertname: str, status: str, timeout: float, since: float = 0.0,
                 poll: Callable[[], None] | None = None, **labels: str) -> tuple[float, dict[str, Any]]:
        """The first matching notification that arrived at or after ``since``; ``poll`` runs each round
        (e.g. to assert the daemon still runs, or to record intermediate timings)."""
        def check() -> tuple[float, dict[str, Any]] | None:
            if poll is not None:
                poll()
            found = self.find(alertname, status, since, **labels)
            return found[0] if found else None

        return wait_until(check, timeout, interval=0.1,
                          what=f"webhook notification {alertname} {status} {labels} "
                               f"(received so far: {self.summary()})")

    def summary(self) -> list[str]:
        return [f"+{t:.1f} {a['labels'].get('alertname')}{{stream={a['labels'].get('stream')}}} {a.get('status')}"
                for t, a in self.notifications()]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ------------------------------------------------------------------------------------------------
# Clips
# ------------------------------------------------------------------------------------------------
def degraded_clip(path: Path, source: Path = DEMO_CLIP, factor: int = 8, crf: int = 40) -> Path:
    """``source`` as a starved encoder delivers it: down-scaled ``factor`` x, blown back up with nearest
    neighbour (big blocks) and x264 CRF 40; a keyframe every second, no B-frames; cached."""
    path = Path(path)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    subprocess.run(
        ["nice", "-n", "5", ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(source),
         "-vf", f"scale=iw/{factor}:ih/{factor},scale=iw*{factor}:ih*{factor}:flags=neighbor", "-an",
         "-c:v", "libx264", "-crf", str(crf), "-preset", "veryfast",
         "-pix_fmt", "yuv420p", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0", "-bf", "0", str(tmp)],
        check=True, timeout=300)
    tmp.rename(path)
    return path


def concat_clip(path: Path, parts: Iterable[Path]) -> Path:
    """The H.264 ``parts`` one after the other in one MPEG-TS file, without re-encoding (each part is
    remuxed to Annex B first, so every part's keyframes carry its own SPS/PPS); cached."""
    path, parts = Path(path), [Path(p) for p in parts]
    if path.exists():
        return path
    work = path.with_name(path.stem + ".parts")
    work.mkdir(parents=True, exist_ok=True)
    remuxed: dict[Path, Path] = {}
    for part in parts:
        if part not in remuxed:
            ts = work / f"{len(remuxed)}.ts"
            subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(part), "-an",
                            "-c", "copy", "-bsf:v", "h264_mp4toannexb", "-f", "mpegts", str(ts)],
                           check=True, timeout=120)
            remuxed[part] = ts
    listing = work / "list.txt"
    listing.write_text("".join(f"file '{remuxed[p]}'\n" for p in parts))
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0",
                    "-i", str(listing), "-c", "copy", "-f", "mpegts", str(tmp)], check=True, timeout=120)
    tmp.rename(path)
    for ts in remuxed.values():
        ts.unlink()
    return path
