"""Soak: the real daemon with N healthy streams and flapping sources for a given time, sampling its RSS,
threads and open file descriptors; the growth over the run is the result.

    .venv/bin/python benchmarks/soak.py --duration 3600 --streams 4 --flapping 2 --out benchmarks/soak-1h

Flapping sources: a loopback HTTP server serving an MPEG-TS clip (read in real time) that is switched
off and on every ``--flap-period`` seconds (connection refused while off, the stream ends at the switch),
plus a looped file that is replaced by garbage and back at the same period. Healthy streams are
``lavfi:testsrc2`` graphs. Growth is measured from the first sample after ``--warmup`` seconds to the last
sample; the run also reports windows scored and reconnects. Writes ``OUT.json`` (every sample) and
``OUT.md`` (the summary).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]


def make_clip(path: Path, seconds: int = 6) -> Path:
    subprocess.run([shutil.which("ffmpeg") or "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", "testsrc2=size=320x240:rate=25", "-t", str(seconds), "-c:v", "libx264", "-g", "25",
                    "-pix_fmt", "yuv420p", str(path)], check=True, timeout=120)
    return path


class FlappingHttp:
    """Serves ``directory`` on loopback, switched off and on every ``period`` seconds."""

    def __init__(self, directory: Path, port: int, period: float) -> None:
        self.directory, self.port, self.period = directory, port, period
        self.server: ThreadingHTTPServer | None = None
        self.flaps = 0

    def _start(self) -> None:
        handler = partial(_QuietHandler, directory=str(self.directory))
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self._start()
            if stop.wait(self.period):
                break
            self._stop()
            self.flaps += 1
            stop.wait(self.period / 2)
        self._stop()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def handle_error(self) -> None:  # pragma: no cover - client went away
        pass


def flap_file(path: Path, good: bytes, period: float, stop: threading.Event) -> None:
    """Replace a looped file by garbage and back every ``period`` seconds (atomically)."""
    garbage = os.urandom(len(good) // 4)
    bad = False
    while not stop.wait(period):
        bad = not bad
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(garbage if bad else good)
        tmp.replace(path)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sample(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {"rss_mb": int(fields["VmRSS"].split()[0]) / 1024, "threads": int(fields["Threads"]),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def scrape_totals(port: int) -> dict[str, float]:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return {}
    totals: dict[str, float] = {}
    for line in text.splitlines():
        for name in ("vqa_windows_scored_total", "vqa_stream_reconnects_total", "vqa_decode_errors_total"):
            if line.startswith(name + "{"):
                totals[name] = totals.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


def growth(first: float, last: float) -> float:
    return (last - first) / first * 100.0 if first else 0.0


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="vqa-soak-"))
    clip = make_clip(work / "clip.ts")
    served = work / "served"
    served.mkdir()
    shutil.copy(clip, served / "clip.ts")
    http_port, metrics_port = free_port(), free_port()
    streams = [{"name": f"healthy-{i}", "url": "lavfi:testsrc2=size=320x240:rate=25"} for i in range(args.streams)]
    flapping_files = []
    for i in range(args.flapping):
        if i % 2 == 0:
            streams.append({"name": f"flap-http-{i}", "url": f"http://127.0.0.1:{http_port}/clip.ts", "realtime": True})
        else:
            path = work / f"flap-{i}.ts"
            shutil.copy(clip, path)
            flapping_files.append(path)
            streams.append({"name": f"flap-file-{i}", "url": str(path)})
    config = {"metrics": {"listen": f"127.0.0.1:{metrics_port}"},
              "engine": {"prefer": args.engine.split(","), "threads": 1},
              "defaults": {"open_timeout_s": 3, "read_timeout_s": 2, "reconnect_min_s": 0.5, "reconnect_max_s": 4},
              "streams": streams}
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    stop = threading.Event()
    flapper = FlappingHttp(served, http_port, args.flap_period)
    helpers = [threading.Thread(target=flapper.run, args=(stop,), daemon=True)]
    helpers += [threading.Thread(target=flap_file, args=(p, clip.read_bytes(), args.flap_period, stop), daemon=True)
                for p in flapping_files]
    log = open(work / "daemon.log", "wb")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "monitor", "--config", str(work / "config.yaml"),
                             "--log-format", "json"], stdout=log, stderr=subprocess.STDOUT, env=env)
    for helper in helpers:
        helper.start()
    samples: list[dict[str, float]] = []
    started = time.monotonic()
    try:
        while time.monotonic() - started < args.duration:
            if proc.poll() is not None:
                raise SystemExit(f"the daemon exited with {proc.returncode}; log: {work / 'daemon.log'}")
            samples.append({"t_s": round(time.monotonic() - started, 1), **sample(proc.pid), **scrape_totals(metrics_port)})
            print(json.dumps(samples[-1]), flush=True)
            time.sleep(args.interval)
    finally:
        stop.set()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    steady = [s for s in samples if s["t_s"] >= args.warmup] or samples
    first, last = steady[0], steady[-1]
    tracebacks = (work / "daemon.log").read_text(errors="replace").count("Traceback")
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "args": vars(args),
        "duration_s": samples[-1]["t_s"] if samples else 0,
        "exit_code": proc.returncode,
        "tracebacks_in_log": tracebacks,
        "steady_from_s": first["t_s"],
        "rss_mb": {"first": round(first["rss_mb"], 1), "last": round(last["rss_mb"], 1),
                   "max": round(max(s["rss_mb"] for s in steady), 1),
                   "growth_pct": round(growth(first["rss_mb"], last["rss_mb"]), 2)},
        "threads": {"first": first["threads"], "last": last["threads"], "max": max(s["threads"] for s in steady)},
        "fds": {"first": first["fds"], "last": last["fds"], "max": max(s["fds"] for s in steady)},
        "windows_scored": last.get("vqa_windows_scored_total"),
        "reconnects": last.get("vqa_stream_reconnects_total"),
        "decode_errors": last.get("vqa_decode_errors_total"),
        "http_flaps": flapper.flaps,
        "samples": samples,
    }
    shutil.rmtree(work, ignore_errors=True)
    return result


def write_report(result: dict[str, Any], out: Path) -> None:
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    a = result["args"]
    rss, threads, fds = result["rss_mb"], result["threads"], result["fds"]
    lines = [
        f"# Soak: {a['streams']} healthy + {a['flapping']} flapping streams for {result['duration_s']:.0f} s",
        "",
        f"Machine: {result['machine']}. Engine: `{a['engine']}`. Flap period {a['flap_period']} s; "
        f"samples every {a['interval']} s, growth measured from {result['steady_from_s']:.0f} s (warm-up) to the end.",
        f"Command: `.venv/bin/python benchmarks/soak.py --duration {a['duration']} --streams {a['streams']} "
        f"--flapping {a['flapping']} --out {a['out']}`",
        "",
        "| measure | first | last | max | growth |",
        "|---|---|---|---|---|",
        f"| RSS (MB) | {rss['first']} | {rss['last']} | {rss['max']} | {rss['growth_pct']:+.2f} % |",
        f"| threads | {threads['first']} | {threads['last']} | {threads['max']} | {threads['last'] - threads['first']:+d} |",
        f"| open fds | {fds['first']} | {fds['last']} | {fds['max']} | {fds['last'] - fds['first']:+d} |",
        "",
        f"Windows scored: {result['windows_scored']:.0f}; reconnects: {result['reconnects']:.0f}; "
        f"decode errors: {result['decode_errors']:.0f}; HTTP source switched off {result['http_flaps']} times; "
        f"daemon exit code {result['exit_code']}; tracebacks in the log: {result['tracebacks_in_log']}.",
        "",
    ]
    out.with_suffix(".md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3600.0, help="seconds (default: %(default)s)")
    parser.add_argument("--streams", type=int, default=4, help="healthy lavfi streams (default: %(default)s)")
    parser.add_argument("--flapping", type=int, default=2, help="flapping sources, HTTP and file alternately (default: %(default)s)")
    parser.add_argument("--flap-period", type=float, default=20.0, help="seconds between flaps (default: %(default)s)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples (default: %(default)s)")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before growth is measured (default: %(default)s)")
    parser.add_argument("--engine", default="onnxruntime:aqs_mnv3_small,classical", help="engine.prefer, comma-separated")
    parser.add_argument("--out", type=Path, required=True, help="report path without extension")
    args = parser.parse_args()
    result = run(args)
    args.out = str(args.out)
    write_report(result, Path(args.out))
    print(Path(args.out).with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
