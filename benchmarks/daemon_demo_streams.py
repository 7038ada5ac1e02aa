"""Windows/s, drops, latency, CPU and RSS of the real daemon watching N copies of the demo stream.

    .venv/bin/python benchmarks/daemon_demo_streams.py --streams 1 4 8 --seconds 20

Each run starts ``python -m monitor`` with N streams ``demo:`` (720p25, looped in real time), the
default engine chain (or ``--prefer``), waits ``--warmup`` seconds, then measures over ``--seconds``:
windows scored per second (all streams), windows expected in real time (N * 25 / 7 per second),
windows dropped, p50/p95 window latency (from the histogram buckets), process CPU (cores, from
/proc/PID/stat) and RSS. Prints a Markdown table; ``--json FILE`` writes the raw numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from servers import free_port, wait_until  # noqa: E402


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def total(samples: dict, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def latency_buckets(samples: dict) -> dict[float, float]:
    buckets: dict[float, float] = {}
    for (n, labels), v in samples.items():
        if n == "vqa_window_latency_seconds_bucket":
            le = float(dict(labels)["le"])
            buckets[le] = buckets.get(le, 0.0) + v
    return buckets


def quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    diff = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    count = diff[-1][1] if diff else 0
    if count <= 0:
        return float("nan")
    for le, c in diff:
        if c >= q * count:
            return le
    return float("inf")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(n: int, seconds: float, warmup: float, prefer: list[str] | None) -> dict:
    port = free_port()
    config = {"metrics": {"listen": f"127.0.0.1:{port}"}, "engine": {"prefer": prefer},
              "streams": [{"name": f"demo{i}", "url": "demo:"} for i in range(n)]}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        log = open(Path(tmp) / "daemon.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "monitor", "--config", str(path)], cwd=REPO,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: total(scrape(port), "vqa_windows_scored_total") > 0, 60, what="first window")
            time.sleep(warmup)
            s0, c0, t0 = scrape(port), cpu_seconds(proc.pid), time.monotonic()
            time.sleep(seconds)
            s1, c1, t1 = scrape(port), cpu_seconds(proc.pid), time.monotonic()
            rss = rss_mb(proc.pid)
            engine = next(dict(l) for (nm, l) in s1 if nm == "vqa_engine_info")
        finally:
            proc.terminate()
            proc.wait(10)
            log.close()
    dt = t1 - t0
    scored = total(s1, "vqa_windows_scored_total") - total(s0, "vqa_windows_scored_total")
    frames = total(s1, "vqa_frames_decoded_total") - total(s0, "vqa_frames_decoded_total")
    dropped = total(s1, "vqa_windows_dropped_total") - total(s0, "vqa_windows_dropped_total")
    b0, b1 = latency_buckets(s0), latency_buckets(s1)
    return {
        "streams": n, "seconds": round(dt, 1), "engine": f"{engine['engine']}:{engine['model']}",
        "frames_per_s": round(frames / dt, 1), "windows_per_s": round(scored / dt, 2),
        "windows_per_s_realtime": round(n * 25 / 7, 2), "dropped": int(dropped),
        "latency_p50_le_s": quantile(b0, b1, 0.5), "latency_p95_le_s": quantile(b0, b1, 0.95),
        "cpu_cores": round((c1 - c0) / dt, 2), "rss_mb": round(rss, 0),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--prefer", nargs="*", default=None, help="engine.prefer entries (default: the chain)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = [run(n, args.seconds, args.warmup, args.prefer) for n in args.streams]
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores; load avg {os.getloadavg()}")
    cols = list(results[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in results:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
