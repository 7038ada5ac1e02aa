"""``vqa-monitor bench``: how fast is scoring here, measured three ways.

    vqa-monitor bench --json FILE --markdown FILE     # from a source checkout, or:
    .venv/bin/python benchmarks/bench.py --parts engines,per-frame

1. **engines**: every engine/model/precision that loads here, per batch size: milliseconds per batch,
   windows/s and frames/s (a window covers 7 frames). Real windows sampled from the demo clip.
2. **per-frame**: the default model's backbone, "the per-frame way" (torch eager fp32, one frame at a time
   in a Python loop, each whole decoded 720p frame converted to RGB and resized to 224x224) against the
   default engine path (fragment sampling from the decoded YUV planes into 7-frame windows by the
   daemon's window ring, batched, default engine) on the same decoded frames; reported as a ratio of
   frames/s. Decoding is common to both and timed separately.
3. **streams**: N concurrent 720p25 RTSP streams from a real gst-rtsp-server on loopback (the test
   suite's ``tests/rtsp_server.py``, serving the clip looped), scored by the real daemon
   (``vqa-monitor --config``, a subprocess) for ``--duration`` seconds each, N rising until a run is
   not sustained: real time (>= 97% of 25 frames/s per stream decoded), every window scored (scored >=
   expected - 1 per stream, none dropped). Reports windows/s, p50/p95 window latency (interpolated from
   the daemon's ``vqa_window_latency_seconds`` histogram), CPU (process time over wall time, in cores)
   and peak RSS of the daemon.

Results: ``--json FILE`` and ``--markdown FILE`` (both include the machine: CPU model, cores, memory, GPU,
library versions, load average before/after, since other work on the machine skews the figures).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from engines.chain import DEFAULT_MODEL, parse_preference
from engines.contract import INPUT_SHAPE, WINDOW_FRAMES

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_CLIP = REPO_ROOT / "monitor" / "demo" / "demo.mp4"
RTSP_SERVER = REPO_ROOT / "tests" / "rtsp_server.py"  # run by Debian's python3 (python3-gi), never imported
GST_PYTHON = "/usr/bin/python3"
DEFAULT_BATCH_SIZES = (1, 4, 8, 16)
DEFAULT_STREAMS = (1, 2, 4, 6, 8, 10, 12)
FPS = 25
REALTIME_FRACTION = 0.97
PARTS = ("engines", "per-frame", "streams")


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None, prog: str = "vqa-monitor bench") -> int:
    return run(build_parser(prog).parse_args(argv))


def build_parser(prog: str = "vqa-monitor bench") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated parts to run, of {', '.join(PARTS)} (default: all)")
    parser.add_argument("--engines", default=None,
                        help="part 1: comma-separated 'backend[:model][@precision]' (default: every ONNX file, "
                        "classical, torch/TensorRT where usable)")
    parser.add_argument("--batch-sizes", default=",".join(map(str, DEFAULT_BATCH_SIZES)),
                        help="part 1: batch sizes in windows (default: %(default)s)")
    parser.add_argument("--min-seconds", type=float, default=3.0,
                        help="part 1: measure each engine/batch size for at least this long (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None,
                        help="inference threads for parts 1 and 2 (default: the engine's choice, cores - 1)")
    parser.add_argument("--clip", default=str(DEMO_CLIP), help="720p clip for parts 1-3 (default: the demo clip)")
    parser.add_argument("--frames", type=int, default=70,
                        help="part 2: decoded frames scored both ways (default: %(default)s = 10 windows)")
    parser.add_argument("--batch", type=int, default=8, help="part 2: windows per batch on our path (default: %(default)s)")
    parser.add_argument("--engine", default=None,
                        help="parts 2-3: engine preference for our path, comma-separated (default: the default chain)")
    parser.add_argument("--streams", default=",".join(map(str, DEFAULT_STREAMS)),
                        help="part 3: stream counts to try, rising; stops after the first that is not sustained "
                        "(default: %(default)s)")
    parser.add_argument("--duration", type=float, default=60.0,
                        help="part 3: seconds measured per stream count, after warm-up (default: %(default)s)")
    parser.add_argument("--warmup", type=float, default=10.0,
                        help="part 3: seconds after all streams are up before measuring (default: %(default)s)")
    parser.add_argument("--keep-going", action="store_true",
                        help="part 3: try every stream count even after one is not sustained")
    parser.add_argument("--audio", action="store_true",
                        help="part 3: the streams also carry a stereo 48 kHz tone (Opus over RTP), metered by the daemon")
    parser.add_argument("--no-snapshots", dest="snapshots", action="store_false",
                        help="part 3: the daemon keeps no snapshots (they are on by default, as in the daemon)")
    parser.add_argument("--stride", type=int, default=WINDOW_FRAMES,
                        help="part 3: the streams' `stride` (7 = every window; 25 = one window a second at 25 fps)")
    parser.add_argument("--json", dest="json_path", default=None, help="write the results as JSON")
    parser.add_argument("--markdown", default=None, help="write the results as a Markdown report")


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"vqa-monitor bench: expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise SystemExit(f"vqa-monitor bench: expected positive integers, got {text!r}")
    return values


def run(args: argparse.Namespace) -> int:
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        print(f"vqa-monitor bench: unknown part(s) {', '.join(unknown)}; expected {', '.join(PARTS)}", file=sys.stderr)
        return 2
    clip = Path(args.clip)
    if not clip.is_file():
        print(f"vqa-monitor bench: clip {clip} not found", file=sys.stderr)
        return 2
    preference = [s.strip() for s in args.engine.split(",")] if args.engine else None
    try:
        parse_preference(preference, threads=args.threads)
    except ValueError as exc:
        print(f"vqa-monitor bench: --engine: {exc}", file=sys.stderr)
        return 2
    results: dict[str, Any] = {"machine": machine_info(), "started_utc": _utc(), "clip": _clip_info(clip),
                               "load_before": _loadavg()}
    if "engines" in parts:
        _progress("part 1: engine throughput")
        specs = [s.strip() for s in args.engines.split(",")] if args.engines else default_variants()
        results["engines"] = bench_engines(specs, _ints(args.batch_sizes), clip, args.min_seconds, args.threads)
    if "per-frame" in parts:
        _progress("part 2: per-frame way vs our engine")
        results["per_frame"] = bench_per_frame(clip, args.frames, args.batch, preference, args.threads)
    if "streams" in parts:
        _progress("part 3: concurrent RTSP streams through the daemon")
        results["streams"] = bench_streams(clip, _ints(args.streams), args.duration, args.warmup, preference,
                                           args.threads, keep_going=args.keep_going, stride=args.stride,
                                           snapshots=args.snapshots, audio=args.audio)
    results["load_after"] = _loadavg()
    results["finished_utc"] = _utc()
    report = to_markdown(results)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if args.markdown:
        Path(args.markdown).write_text(report, encoding="utf-8")
    print(report)
    return 0


def _progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _loadavg() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


# ----------------------------------------------------------------------------------------------
# Machine
# ----------------------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    from engines.onnxruntime_engine import available_cores, cpu_flags, cpu_precisions

    flags = cpu_flags()
    info: dict[str, Any] = {
        "cpu": cpu,
        "cpu_flags": sorted(f for f in flags if f.startswith(("avx", "amx")) or f in ("fma", "asimddp")),
        "cpu_precision": cpu_precisions(flags)[1],
        "cores": available_cores(),
        "memory_gb": memory_gb,
        "gpu": _gpu_name(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {},
    }
    for module in ("numpy", "av", "onnxruntime", "torch", "tensorrt", "cv2"):
        version = _module_version(module)
        if version:
            info["versions"][module] = version
    return info


def _module_version(name: str) -> str | None:
    import importlib.util

    if importlib.util.find_spec(name) is None:
        return None
    if name in ("torch", "tensorrt") and name not in sys.modules:
        from importlib.metadata import PackageNotFoundError, version

        for dist in (name, f"{name}-cu13", "opencv-contrib-python-headless"):
            try:
                return version(dist)
            except PackageNotFoundError:
                continue
        return "installed"
    module = __import__(name)
    return str(getattr(module, "__version__", "installed"))


def _gpu_name() -> str | None:
    from engines.chain import cuda_device_present

    if not cuda_device_present():
        return None
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                                 timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired):
            pass
    return "NVIDIA GPU"


def _clip_info(clip: Path) -> dict[str, Any]:
    import av

    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        return {"path": str(clip.relative_to(REPO_ROOT) if clip.is_relative_to(REPO_ROOT) else clip),
                "width": stream.width, "height": stream.height, "fps": float(stream.average_rate or 0),
                "codec": stream.codec_context.name}


# ----------------------------------------------------------------------------------------------
# Frames and windows from the clip
# ----------------------------------------------------------------------------------------------
def decode_frames(clip: Path, count: int) -> tuple[list[Any], float]:
    """``count`` decoded frames (looping the clip if needed) and the decode time in seconds."""
    import av

    frames: list[Any] = []
    elapsed = 0.0
    while len(frames) < count:
        with av.open(str(clip)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            start = time.perf_counter()
            for frame in container.decode(stream):
                frames.append(frame)
                if len(frames) >= count:
                    break
            elapsed += time.perf_counter() - start
    return frames, elapsed


def sample_windows(frames: Sequence[Any], out: np.ndarray | None = None, ring: Any = None) -> np.ndarray:
    """Back-to-back 7-frame windows of ``frames`` into ``out``, written by a window ring as the daemon's
    readers write them (``ring``: a :class:`monitor.windows.WindowRing` to reuse, with room for them all)."""
    from engines.sampler import planes_from_frame
    from monitor.windows import WindowRing

    count = len(frames) // WINDOW_FRAMES
    if out is None:
        out = np.empty((count, *INPUT_SHAPE), dtype=np.uint8)
    ring = ring or WindowRing(capacity=max(count, 1))
    if ring.capacity < count:
        raise ValueError(f"a ring for {ring.capacity} windows cannot hold {count}")
    for frame in frames[: count * WINDOW_FRAMES]:
        ring.write(planes_from_frame(frame), time.monotonic())
    for window in out[:count]:
        ring.pop_into(window)
    return out


# ----------------------------------------------------------------------------------------------
# Part 1: engines
# ----------------------------------------------------------------------------------------------
def default_variants() -> list[str]:
    """Every engine variant that can be tried here: each shipped ONNX file, classical, torch, TensorRT."""
    from engines.chain import cuda_device_present, library_installed
    from engines.modelfiles import read_manifest

    variants: list[str] = []
    try:
        entries = sorted(read_manifest().values(), key=lambda e: (e.architecture != DEFAULT_MODEL, e.architecture,
                                                                  e.precision != "int8", e.precision))
    except Exception:  # noqa: BLE001 - a broken manifest shows up as skipped variants below
        entries = []
    cuda = cuda_device_present()
    for entry in entries:
        if entry.format == "onnx":
            variants.append(f"onnxruntime:{entry.architecture}@{entry.precision}")
            if cuda and library_installed("tensorrt"):
                variants.append(f"tensorrt:{entry.architecture}@{entry.precision}")
        elif entry.format in ("safetensors", "torch-tensors") and library_installed("torch"):
            variants.append(f"torch:{entry.architecture}")
    variants.append("classical")
    return list(dict.fromkeys(variants))


def load_variant(variant: str, threads: int | None) -> Any:
    """Load ``backend[:model][@precision]`` directly (no chain), raising EngineUnavailable."""
    from engines.chain import load_spec, parse_spec

    spec_text, _, precision = variant.partition("@")
    spec = parse_spec(spec_text)
    if spec.backend == "onnxruntime":
        from engines import onnxruntime_engine

        return onnxruntime_engine.load(spec.model or "", None, threads, precision=precision or None)
    if spec.backend == "torch":
        from engines import torch_engine

        return torch_engine.load(spec.model or "", None, threads)
    return load_spec(spec, threads=threads)


def bench_engines(variants: Sequence[str], batch_sizes: Sequence[int], clip: Path, min_seconds: float,
                  threads: int | None) -> list[dict[str, Any]]:
    from engines.base import EngineUnavailable

    largest = max(batch_sizes)
    frames, _ = decode_frames(clip, largest * WINDOW_FRAMES)
    pool = sample_windows(frames)
    del frames
    rows: list[dict[str, Any]] = []
    for variant in variants:
        try:
            engine = load_variant(variant, threads)
        except (EngineUnavailable, ValueError) as exc:
            rows.append({"variant": variant, "skipped": str(exc)})
            _progress(f"  {variant}: skipped ({exc})")
            continue
        info = engine.info
        try:
            for batch in batch_sizes:
                windows = pool[:batch]
                engine.infer(windows)  # warm-up at this size (allocations, CUDA graphs)
                engine.infer(windows)
                times: list[float] = []
                start = time.perf_counter()
                while (time.perf_counter() - start < min_seconds or len(times) < 3) and len(times) < 1000:
                    t0 = time.perf_counter()
                    engine.infer(windows)
                    times.append(time.perf_counter() - t0)
                median = statistics.median(times)
                row = {"variant": variant, "engine": info.engine, "model": info.model, "provider": info.provider,
                       "threads": threads, "batch": batch, "iterations": len(times),
                       "ms_per_batch_median": round(median * 1000, 2),
                       "ms_per_batch_p90": round(_quantile(times, 0.9) * 1000, 2),
                       "windows_per_s": round(batch / median, 1),
                       "frames_per_s": round(batch * WINDOW_FRAMES / median, 1)}
                rows.append(row)
                _progress(f"  {variant} batch {batch}: {row['windows_per_s']} windows/s, {row['frames_per_s']} frames/s")
        finally:
            engine.close()
    return rows


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


# ----------------------------------------------------------------------------------------------
# Part 2: the per-frame way vs our path
# ----------------------------------------------------------------------------------------------
def bench_per_frame(clip: Path, count: int, batch: int, preference: Sequence[str] | None,
                    threads: int | None) -> dict[str, Any]:
    from engines.chain import select_engine
    from monitor.windows import WindowRing

    count = max(WINDOW_FRAMES, count - count % WINDOW_FRAMES)
    frames, decode_s = decode_frames(clip, count)
    result: dict[str, Any] = {"frames": count, "resolution": f"{frames[0].width}x{frames[0].height}",
                              "decode_s": round(decode_s, 3), "decode_fps": round(count / decode_s, 1)}

    # --- ours: sampler -> windows -> batched default engine (every frame is in exactly one window) ---
    selection = select_engine(preference, threads=threads, warm_up_batch=batch)
    engine = selection.engine
    buffer = np.empty((batch, *INPUT_SHAPE), dtype=np.uint8)
    ring = WindowRing(capacity=batch)
    sample_windows(frames[: WINDOW_FRAMES * batch], out=buffer, ring=ring)  # warm-up of the sampler path
    engine.infer(buffer)
    windows = count // WINDOW_FRAMES
    sample_s = infer_s = 0.0
    for first in range(0, windows, batch):
        n = min(batch, windows - first)
        t0 = time.perf_counter()
        sample_windows(frames[first * WINDOW_FRAMES : (first + n) * WINDOW_FRAMES], out=buffer[:n], ring=ring)
        t1 = time.perf_counter()
        engine.infer(buffer[:n])
        infer_s += time.perf_counter() - t1
        sample_s += t1 - t0
    ours_s = sample_s + infer_s
    info = engine.info
    engine.close()
    result["ours"] = {"engine": info.engine, "model": info.model, "provider": info.provider, "batch": batch,
                      "sample_s": round(sample_s, 3), "infer_s": round(infer_s, 3), "total_s": round(ours_s, 3),
                      "frames_per_s": round(count / ours_s, 1),
                      "sample_ms_per_frame": round(sample_s / count * 1000, 2)}

    # --- the per-frame way: torch eager fp32, one whole frame at a time, resized to 224 ---
    try:
        import torch
        import torch.nn.functional as F

        from engines.architectures import build_model
    except ImportError as exc:
        result["per_frame"] = {"skipped": f"torch / engines.architectures not importable: {exc}"}
        return result
    model = build_model(DEFAULT_MODEL).eval()
    backbone = model.backbone  # the same backbone the default AQS model runs on its key frame
    mean = torch.tensor(backbone.input_mean).view(1, 3, 1, 1)  # 0..255 scale, as the backbone expects
    std = torch.tensor(backbone.input_std).view(1, 3, 1, 1)

    def per_frame(frame: Any) -> Any:
        rgb = torch.from_numpy(frame.to_ndarray(format="rgb24"))  # the whole 720p frame
        x = rgb.permute(2, 0, 1).unsqueeze(0).float()
        x = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
        return backbone((x - mean) / std)

    # torch's OpenMP pool collapses when the cores are shared (other processes, a busy machine): time the
    # per-frame way with 1 thread and with all cores and keep the faster, so the ratio never flatters us.
    from engines.onnxruntime_engine import available_cores

    default_threads = torch.get_num_threads()
    attempts = []
    with torch.inference_mode():
        for n_threads in sorted({1, available_cores()}):
            torch.set_num_threads(n_threads)
            for frame in frames[:3]:
                per_frame(frame)
            t0 = time.perf_counter()
            for frame in frames:
                per_frame(frame)
            elapsed = time.perf_counter() - t0
            attempts.append({"threads": n_threads, "total_s": round(elapsed, 3), "frames_per_s": round(count / elapsed, 1)})
    torch.set_num_threads(default_threads)
    best = max(attempts, key=lambda a: a["frames_per_s"])
    result["per_frame"] = {"runtime": f"torch {torch.__version__} eager fp32 (NCHW), {best['threads']} thread(s)",
                           "model": f"{type(backbone).__name__} (engines.architectures, {DEFAULT_MODEL}'s backbone)",
                           "total_s": best["total_s"],
                           "frames_per_s": best["frames_per_s"], "attempts": attempts}
    result["ratio"] = round(result["ours"]["frames_per_s"] / result["per_frame"]["frames_per_s"], 2)
    return result


# ----------------------------------------------------------------------------------------------
# Part 3: N live RTSP streams through the daemon
# ----------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(proc: subprocess.Popen[Any], timeout: float = 8.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def with_tone(clip: Path, out: Path) -> Path:
    """``clip``'s video with a 1 kHz stereo 48 kHz AAC tone (Debian's ffmpeg), for ``--audio``."""
    subprocess.run([shutil.which("ffmpeg") or "ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(clip),
                    "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000", "-map", "0:v:0", "-map", "1:a:0",
                    "-c:v", "copy", "-c:a", "aac", "-b:a", "128k", "-ac", "2", "-shortest", str(out)],
                   check=True, timeout=120)
    return out


@contextmanager
def rtsp_server(clip: Path, audio: bool = False) -> Iterator[str]:
    """The test suite's gst-rtsp-server on loopback serving ``clip`` in real time, looped (its ``--clip``;
    with ``audio`` also the clip's audio track, as Opus)."""
    if not Path(GST_PYTHON).exists() or shutil.which("ffmpeg") is None or not RTSP_SERVER.is_file():
        raise RuntimeError(f"part 3 needs Debian's python3-gi + gst-rtsp-server and ffmpeg (scripts/install.sh --test) "
                           f"and {RTSP_SERVER}")
    port = _free_port()
    server = subprocess.Popen([GST_PYTHON, str(RTSP_SERVER), "--port", str(port), "--clip", str(clip),
                               *(["--audio"] if audio else [])],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = server.stdout.readline() if server.stdout else ""
        if not line.startswith("READY"):
            raise RuntimeError(f"gst-rtsp-server did not start ({line.strip() or 'no output'}; "
                               "is gir1.2-gst-rtsp-server-1.0 installed?)")
        yield line.split()[1]
    finally:
        _stop(server)


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus text format -> {name: [(labels, value), ...]} (enough for our own metrics)."""
    from prometheus_client.parser import text_string_to_metric_families

    series: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return series


def _scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return parse_metrics(response.read().decode())


def _per_stream(series: dict, name: str) -> dict[str, float]:
    return {labels.get("stream", ""): value for labels, value in series.get(name, [])}


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus-style quantile from cumulative ``(le, count)`` buckets (linear within a bucket)."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    previous_le, previous_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return previous_le
            if count == previous_count:
                return le
            return previous_le + (le - previous_le) * (rank - previous_count) / (count - previous_count)
        previous_le, previous_count = le, count
    return previous_le


def _latency_buckets(series: dict) -> dict[float, float]:
    """Window-latency histogram buckets summed over all streams: {le: cumulative count}."""
    totals: dict[float, float] = {}
    for labels, value in series.get("vqa_window_latency_seconds_bucket", []):
        le = float(labels["le"])
        totals[le] = totals.get(le, 0.0) + value
    return totals


class _ProcStats:
    """CPU seconds and RSS of a process and its children, from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.tick = os.sysconf("SC_CLK_TCK")
        self.peak_rss_mb = 0.0

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self.tick  # utime + stime

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
                self.peak_rss_mb = max(self.peak_rss_mb, rss)
                return rss
        return 0.0


def bench_stream_count(url: str, n: int, duration: float, warmup: float, preference: Sequence[str] | None,
                       threads: int | None, workdir: Path, stride: int = WINDOW_FRAMES,
                       snapshots: bool = True) -> dict[str, Any]:
    """Run the daemon on ``n`` copies of ``url`` and measure ``duration`` seconds after ``warmup``."""
    port = _free_port()
    config = {
        "metrics": {"listen": f"127.0.0.1:{port}"},
        "engine": {"prefer": list(preference) if preference else None, "threads": threads},
        "defaults": {"stride": stride},
        "snapshots": {"enabled": snapshots, "dir": str(workdir / f"snapshots-{n}")},
        "streams": [{"name": f"s{i:02d}", "url": url} for i in range(n)],
    }
    config_path = workdir / f"bench-{n}.yaml"
    config_path.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
    log_path = workdir / f"daemon-{n}.log"
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    with open(log_path, "w", encoding="utf-8") as log:
        started = time.monotonic()
        daemon = subprocess.Popen([sys.executable, "-m", "monitor", "--config", str(config_path)],
                                  cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    stats = _ProcStats(daemon.pid)
    first_score_s = None
    try:
        deadline = time.monotonic() + 60
        while True:  # every stream up and producing
            if daemon.poll() is not None:
                raise RuntimeError(f"daemon exited ({daemon.returncode}): {log_path.read_text()[-800:]}")
            try:
                series = _scrape(metrics_url)
                up = _per_stream(series, "vqa_stream_up")
                scored = _per_stream(series, "vqa_windows_scored_total")
                if first_score_s is None and any(scored.values()):
                    first_score_s = time.monotonic() - started
                if len(up) == n and all(v == 1 for v in up.values()) and len(scored) == n and all(scored.values()):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{n} streams not all up and scored within 60 s")
            time.sleep(0.1)
        all_scored_s = time.monotonic() - started
        end_warmup = time.monotonic() + warmup
        while time.monotonic() < end_warmup:
            stats.rss_mb()
            time.sleep(0.5)
        before = _scrape(metrics_url)
        cpu0, t0 = stats.cpu_seconds(), time.monotonic()
        end = t0 + duration
        while time.monotonic() < end:
            stats.rss_mb()
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
        after = _scrape(metrics_url)
        cpu1, t1 = stats.cpu_seconds(), time.monotonic()
        rss_end = stats.rss_mb()
    finally:
        _stop(daemon)
    wall = t1 - t0

    def delta(name: str) -> dict[str, float]:
        a, b = _per_stream(before, name), _per_stream(after, name)
        return {s: b.get(s, 0.0) - a.get(s, 0.0) for s in b}

    frames = delta("vqa_frames_decoded_total")
    scored = delta("vqa_windows_scored_total")
    dropped = delta("vqa_windows_dropped_total")
    reconnects = delta("vqa_stream_reconnects_total")
    lat_a, lat_b = _latency_buckets(before), _latency_buckets(after)
    lat = [(le, lat_b[le] - lat_a.get(le, 0.0)) for le in lat_b]
    fps = {s: v / wall for s, v in frames.items()}
    expected_windows = {s: frames[s] / stride for s in frames}  # one window every `stride` frames
    realtime = bool(fps) and min(fps.values()) >= REALTIME_FRACTION * FPS
    all_scored = all(scored.get(s, 0.0) >= expected_windows[s] - 1.5 for s in frames)
    none_dropped = sum(dropped.values()) == 0
    p50, p95 = histogram_quantile(0.5, lat), histogram_quantile(0.95, lat)
    engine = [labels for labels, _ in after.get("vqa_engine_info", [])]
    return {
        "streams": n, "stride": stride, "seconds": round(wall, 1),
        "first_score_s": None if first_score_s is None else round(first_score_s, 2),
        "all_streams_scored_s": round(all_scored_s, 2),
        "engine": engine[0] if engine else None,
        "min_stream_fps": round(min(fps.values()), 2) if fps else 0.0,
        "mean_stream_fps": round(sum(fps.values()) / len(fps), 2) if fps else 0.0,
        "windows_scored": int(sum(scored.values())), "windows_expected": round(sum(expected_windows.values()), 1),
        "windows_per_s": round(sum(scored.values()) / wall, 2),
        "windows_dropped": int(sum(dropped.values())), "reconnects": int(sum(reconnects.values())),
        "latency_p50_s": None if p50 is None else round(p50, 3),
        "latency_p95_s": None if p95 is None else round(p95, 3),
        "cpu_cores_used": round((cpu1 - cpu0) / wall, 2),
        "rss_mb_end": round(rss_end, 1), "rss_mb_peak": round(stats.peak_rss_mb, 1),
        "audio_metered_streams": len(_per_stream(after, "vqa_audio_loudness_short_term_lufs")),
        "realtime": realtime, "all_scored": all_scored, "none_dropped": none_dropped,
        "sustained": realtime and all_scored and none_dropped,
    }


def bench_streams(clip: Path, counts: Sequence[int], duration: float, warmup: float,
                  preference: Sequence[str] | None, threads: int | None, keep_going: bool = False,
                  stride: int = WINDOW_FRAMES, snapshots: bool = True, audio: bool = False) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    result: dict[str, Any] = {"duration_s": duration, "warmup_s": warmup, "fps": FPS, "stride": stride,
                              "snapshots": snapshots, "audio": audio, "runs": runs}
    try:
        with tempfile.TemporaryDirectory(prefix="vqa-bench-") as tmp, \
                rtsp_server(with_tone(clip, Path(tmp) / "tone.mp4") if audio else clip, audio) as url:
            for n in sorted(counts):
                _progress(f"  {n} stream(s) for {duration:g} s")
                try:
                    row = bench_stream_count(url, n, duration, warmup, preference, threads, Path(tmp), stride, snapshots)
                except RuntimeError as exc:
                    row = {"streams": n, "error": str(exc), "sustained": False}
                runs.append(row)
                _progress(f"  {n} stream(s): {json.dumps(row)}")
                if not row["sustained"] and not keep_going:
                    break
    except RuntimeError as exc:
        result["skipped"] = str(exc)
        return result
    sustained = [r["streams"] for r in runs if r.get("sustained")]
    result["max_sustained_streams"] = max(sustained) if sustained else 0
    return result


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------
def to_markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "# vqa-monitor bench",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores (flags: {' '.join(m.get('cpu_flags', [])) or 'unknown'}; ONNX Runtime "
        f"on CPU: {m.get('cpu_precision', '?')}), {m['memory_gb']} GB RAM, GPU: {m['gpu'] or 'none'}; "
        f"{m['os']}; Python {m['python']}; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
        f"Run {results.get('started_utc')} .. {results.get('finished_utc')}; load average before "
        f"{results.get('load_before')}, after {results.get('load_after')}. Clip: {results['clip']['path']} "
        f"({results['clip']['width']}x{results['clip']['height']} {results['clip']['codec']} "
        f"{results['clip']['fps']:g} fps).",
        "",
    ]
    if "engines" in results:
        lines += ["## 1. Engine throughput", "",
                  "| engine | model file | provider | batch | ms / batch (median) | windows/s | frames/s |",
                  "|---|---|---|---:|---:|---:|---:|"]
        skipped = []
        for row in results["engines"]:
            if "skipped" in row:
                skipped.append(f"- `{row['variant']}`: skipped: {row['skipped']}")
                continue
            lines.append(f"| {row['engine']} | {row['model']} | {row['provider']} | {row['batch']} | "
                         f"{row['ms_per_batch_median']} | {row['windows_per_s']} | {row['frames_per_s']} |")
        lines += [""] + skipped + ([""] if skipped else [])
        lines += ["frames/s = windows/s x 7 (each window covers 7 frames). Threads: "
                  f"{_threads_note(results['engines'])}.", ""]
    if "per_frame" in results:
        p = results["per_frame"]
        lines += ["## 2. The per-frame way vs our engine (same decoded frames, one run)", ""]
        ours = p["ours"]
        lines += [f"{p['frames']} decoded {p['resolution']} frames (decoding, common to both, "
                  f"{p['decode_fps']} frames/s, not counted).", "",
                  "| path | what runs | frames/s |", "|---|---|---:|"]
        if "frames_per_s" in p.get("per_frame", {}):
            pf = p["per_frame"]
            lines.append(f"| per-frame way | {pf['model']}, {pf['runtime']}; each whole frame -> RGB -> resized to "
                         f"224, one frame per call | {pf['frames_per_s']} |")
        lines.append(f"| ours | fragment sampler on YUV planes ({ours['sample_ms_per_frame']} ms/frame) + "
                     f"{ours['engine']} {ours['model']} on {ours['provider']}, batches of {ours['batch']} windows | "
                     f"{ours['frames_per_s']} |")
        if "ratio" in p:
            lines += ["", f"**Ratio: {p['ratio']}x** the per-frame way."]
        elif "skipped" in p.get("per_frame", {}):
            lines += ["", f"Per-frame way skipped: {p['per_frame']['skipped']}"]
        lines.append("")
    if "streams" in results:
        s = results["streams"]
        lines += ["## 3. Concurrent 720p25 RTSP streams through the daemon", ""]
        if "skipped" in s:
            lines += [f"Skipped: {s['skipped']}", ""]
        else:
            lines += [f"gst-rtsp-server on 127.0.0.1 relaying the clip in real time; the real daemon "
                      f"(`python -m monitor`), {s['duration_s']:g} s measured per stream count after "
                      f"{s['warmup_s']:g} s warm-up. Sustained = every stream decoded at >= "
                      f"{REALTIME_FRACTION:.0%} of {s['fps']} fps, every window scored, none dropped. "
                      f"Stride {s.get('stride', WINDOW_FRAMES)}: "
                      + ("every window of every stream." if s.get("stride", WINDOW_FRAMES) == WINDOW_FRAMES else
                         f"one 7-frame window every {s['stride']} frames (duty cycle {WINDOW_FRAMES / s['stride']:.0%}).")
                      + (" Snapshots on (the default)." if s.get("snapshots", True) else " Snapshots off (`--no-snapshots`).")
                      + (" Every stream also carries a stereo 48 kHz tone (`--audio`); streams whose loudness the "
                         "daemon published: " + ", ".join(f"{r['audio_metered_streams']} of {r['streams']}"
                                                          for r in s["runs"] if "error" not in r) + "."
                         if s.get("audio") else "")
                      + " First score: seconds from starting the daemon to its first published score.", "",
                      "| streams | sustained | min stream fps | windows/s | dropped | p50 latency s | p95 latency s "
                      "| CPU (cores) | RSS MB (peak) | first score s |",
                      "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for r in s["runs"]:
                if "error" in r:
                    lines.append(f"| {r['streams']} | error: {r['error'][:120]} | | | | | | | | |")
                    continue
                lines.append(f"| {r['streams']} | {'yes' if r['sustained'] else 'no'} | {r['min_stream_fps']} | "
                             f"{r['windows_per_s']} | {r['windows_dropped']} | {r['latency_p50_s']} | "
                             f"{r['latency_p95_s']} | {r['cpu_cores_used']} | {r['rss_mb_peak']} | "
                             f"{r.get('first_score_s')} |")
            lines += ["", f"**Largest N sustained: {s.get('max_sustained_streams', 0)}**", ""]
    return "\n".join(lines)


def _threads_note(rows: list[dict[str, Any]]) -> str:
    threads = {row.get("threads") for row in rows if "skipped" not in row}
    if threads == {None}:
        return "each engine's default (ONNX Runtime: cores - 1)"
    return ", ".join(str(t) for t in sorted(t for t in threads if t is not None))


if __name__ == "__main__":
    sys.exit(main(prog="bench.py"))
