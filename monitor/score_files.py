"""``vqa-monitor score FILE [FILE ...]``: offline scoring of video files.

Scores every 7-frame window of each file with the same sampler (:mod:`engines.sampler`), engine chain
(:func:`engines.chain.select_engine`) and AQS (:mod:`engines.aqs`) as the daemon, and prints one
result per file: a short table, or JSON Lines with ``--json``. ``--csv`` writes one row per window,
``--plot`` draws AQS over time with the leading artifacts (needs the ``plot`` extra: matplotlib).
``--report`` writes one self-contained HTML file (:mod:`monitor.report`).

Windows are consecutive, non-overlapping runs of 7 decoded frames, written by the daemon's
:class:`monitor.windows.WindowRing` (here with backpressure instead of drops: every window is scored)
while a decoder thread runs ahead of inference, and AQS comes from :func:`engines.aqs.score_outputs`,
as in the daemon. A file that cannot be opened or decoded, or that is shorter than one window, gets
one error line on stderr (its path and the reason) and makes the exit status 1; the other files are
still scored. Damaged packets are skipped and counted (``decode_errors``), as the daemon
does; only :data:`monitor.ingest.MAX_CONSECUTIVE_DECODE_ERRORS` in a row abandon a file. URLs work too
(with ``--timeout`` on every network read) and are printed with their credentials masked.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence, TextIO

import numpy as np

from engines.aqs import QUALITY_BANDS, quality_level, score_outputs
from engines.contract import ARTIFACTS, INPUT_SHAPE, WINDOW_FRAMES
from engines.sampler import planes_from_frame
from monitor.config import NETWORK_SCHEMES
from monitor.ingest import MAX_CONSECUTIVE_DECODE_ERRORS, resilient_demux, timeout_options
from monitor.redact import redact_text, redact_url
from monitor.windows import WindowRing

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
DEFAULT_BATCH = 8
DEFAULT_TIMEOUT_S = 10.0
PROGRESS_MIN_SECONDS = 1.0  # a file shorter than this (by its header) gets no progress bar


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------
@dataclass
class FileWindowScore:
    """One window of a scored file: a row of its CSV, an entry of its JSON ``windows``."""

    start_s: float
    aqs: float
    quality: float
    artifacts: np.ndarray  # [10] probabilities
    intensities: np.ndarray  # [10]
    artifact_map: np.ndarray | None = None  # [10, 7, 7] per-fragment probabilities when the engine localises


@dataclass
class FileScore:
    path: str
    engine: dict[str, str]
    frames: int = 0
    decode_errors: int = 0
    elapsed_s: float = 0.0
    windows: list[FileWindowScore] = field(default_factory=list)
    source: str = field(default="", repr=False)  # the path as given (unredacted): --report decodes it again

    @property
    def aqs(self) -> float:
        return float(np.mean([w.aqs for w in self.windows]))

    @property
    def quality(self) -> float:
        return float(np.mean([w.quality for w in self.windows]))

    def mean_artifacts(self) -> np.ndarray:
        return np.mean([w.artifacts for w in self.windows], axis=0)

    def mean_intensities(self) -> np.ndarray:
        return np.mean([w.intensities for w in self.windows], axis=0)

    def to_json(self) -> dict[str, Any]:
        score = self.aqs
        return {
            "path": self.path,
            "aqs": _r(score),
            "quality_level": quality_level(score),
            "quality": _r(self.quality),
            "artifacts": _named(self.mean_artifacts()),
            "intensities": _named(self.mean_intensities()),
            "windows": [
                {"start_s": round(w.start_s, 3), "aqs": _r(w.aqs), "artifacts": _named(w.artifacts)} for w in self.windows
            ],
            "engine": self.engine,
            "frames": self.frames,
            "decode_errors": self.decode_errors,
            "elapsed_s": round(self.elapsed_s, 3),
        }


def _r(value: float) -> float:
    return round(float(value), 4)


def _named(values: np.ndarray) -> dict[str, float]:
    return {name: _r(v) for name, v in zip(ARTIFACTS, values)}


class ScoreError(Exception):
    """A file that cannot be scored; the message is the reason shown after its path."""


# ----------------------------------------------------------------------------------------------
# Decoding and windows
# ----------------------------------------------------------------------------------------------
class _Decoder(threading.Thread):
    """Decode one file and sample its frames into a :class:`~monitor.windows.WindowRing`, as the daemon's
    readers do, but never dropping a window: it waits while the ring is full (backpressure).

    Runs in its own thread so that decoding and sampling overlap inference (PyAV and numpy release the
    GIL while they work). ``error`` holds a :class:`ScoreError` when the file cannot be read.
    """

    def __init__(self, path: str, ring: WindowRing, progress: "Progress | None",
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        super().__init__(name="score-decode", daemon=True)
        self.path, self.ring, self.progress, self.timeout_s = path, ring, progress, timeout_s
        self.frames = 0
        self.decode_errors = 0
        self._errors_in_row = 0
        self.error: ScoreError | None = None
        self.done = False
        self.changed = threading.Condition()
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            self._decode()
        except ScoreError as exc:
            self.error = exc
        except Exception as exc:  # noqa: BLE001 - reported as this file's error line
            self.error = ScoreError(f"{type(exc).__name__}: {_reason(exc)}")
        finally:
            with self.changed:
                self.done = True
                self.changed.notify_all()

    def _decode(self) -> None:
        import av

        try:
            container = av.open(self.path, timeout=(self.timeout_s, self.timeout_s),
                                options=timeout_options(source_kind(self.path), self.timeout_s))
        except FileNotFoundError:
            raise ScoreError("no such file") from None
        except IsADirectoryError:
            raise ScoreError("is a directory") from None
        except PermissionError:
            raise ScoreError("permission denied") from None
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise ScoreError(f"cannot open: {_reason(exc)}") from None
        with container:
            if not container.streams.video:
                raise ScoreError("no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps = float(stream.average_rate or stream.guessed_rate or 25)
            if self.progress is not None:
                self.progress.start(_duration(container, stream), stream.frames or 0)
            try:
                self._frames_into_ring(container, stream, fps)
            except (av.error.FFmpegError, OSError, ValueError) as exc:
                if self.frames == 0:
                    raise ScoreError(f"cannot decode: {_reason(exc)}") from None
                raise ScoreError(f"decoding failed after {self.frames} frames: {_reason(exc)}") from None

    def _frames(self, container: Any, stream: Any) -> Any:
        """Every frame that decodes; damaged packets are skipped and counted."""
        import av

        codec = stream.codec_context
        for packet in resilient_demux(container, stream, self._damaged):
            try:
                frames = codec.decode(packet)
            except (av.error.FFmpegError, ValueError) as exc:
                self._damaged(exc)
                continue
            self._errors_in_row = 0
            yield from frames

    def _damaged(self, exc: Exception) -> None:
        self.decode_errors += 1
        self._errors_in_row += 1
        if self._errors_in_row >= MAX_CONSECUTIVE_DECODE_ERRORS:
            raise ScoreError(f"{self._errors_in_row} decode errors in a row after {self.frames} frames "
                             f"(last: {_reason(exc)})")

    def _frames_into_ring(self, container: Any, stream: Any, fps: float) -> None:
        ring = self.ring
        for frame in self._frames(container, stream):
            if self.stop.is_set():
                return
            t = float(frame.time) if frame.time is not None else self.frames / fps
            self.frames += 1
            planes = planes_from_frame(frame)
            with self.changed:  # backpressure: wait for the scorer instead of dropping
                while ring.ready() >= ring.capacity and not self.stop.is_set():
                    self.changed.wait(0.1)
            if ring.write(planes, t):
                with self.changed:
                    self.changed.notify_all()
            if self.progress is not None:
                self.progress.update(self.frames, t)


def _duration(container: Any, stream: Any) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return 0.0


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return redact_text(text.strip().splitlines()[0]) if text.strip() else type(exc).__name__


def source_kind(path: str) -> str:
    """``rtsp``, ``network`` (a URL of another network scheme) or ``file``: which read timeout applies."""
    scheme = path.split("://", 1)[0].lower() if "://" in path else ""
    if scheme in ("rtsp", "rtsps"):
        return "rtsp"
    return "network" if scheme in NETWORK_SCHEMES else "file"


def score_file(path: str, engine: Any, batch: int = DEFAULT_BATCH, progress: "Progress | None" = None,
               timeout_s: float = DEFAULT_TIMEOUT_S) -> FileScore:
    """Score every window of one file (raises :class:`ScoreError` when it cannot be scored).

    Windows are back-to-back 7-frame runs (``stride`` 7) written by the daemon's
    :class:`~monitor.windows.WindowRing`; a window's ``start_s`` is its first frame's timestamp.
    Scores come from :func:`engines.aqs.score_outputs`, the daemon's AQS step.
    """
    started = time.monotonic()
    result = FileScore(path=redact_url(path), engine=asdict(engine.info), source=path)
    ring = WindowRing(capacity=2 * batch, stride=WINDOW_FRAMES)
    buffer = np.empty((batch, *INPUT_SHAPE), dtype=np.uint8)
    decoder = _Decoder(path, ring, progress, timeout_s)
    decoder.start()
    try:
        while True:
            with decoder.changed:
                while ring.ready() < batch and not decoder.done:
                    decoder.changed.wait(0.1)
                finished = decoder.done
            starts = []
            while len(starts) < batch:
                meta = ring.pop_into(buffer[len(starts)])
                if meta is None:
                    break
                starts.append(meta.first_frame_time)
            with decoder.changed:
                decoder.changed.notify_all()  # room in the ring again
            if starts:
                outputs = engine.infer(buffer[: len(starts)])
                scores, probabilities, intensities = score_outputs(outputs)
                maps = outputs.artifact_map_probabilities
                for i, start_s in enumerate(starts):
                    result.windows.append(
                        FileWindowScore(start_s, float(scores[i]), float(outputs.quality[i]),
                                    probabilities[i].copy(), intensities[i].copy(),
                                    None if maps is None else maps[i].copy())
                    )
            elif finished:
                break
    finally:
        decoder.stop.set()
        with decoder.changed:
            decoder.changed.notify_all()
        decoder.join()
        result.frames = decoder.frames
        result.decode_errors = decoder.decode_errors
        if progress is not None:
            progress.finish()
    if decoder.error is not None:
        raise decoder.error
    if not result.windows:
        raise ScoreError(f"too short: {result.frames} frame(s) decoded, a window needs {WINDOW_FRAMES}")
    result.elapsed_s = time.monotonic() - started
    return result


# ----------------------------------------------------------------------------------------------
# Progress bar (stderr)
# ----------------------------------------------------------------------------------------------
class Progress:
    """A one-line progress bar on stderr, redrawn at most 5 times a second."""

    def __init__(self, label: str, stream: TextIO, width: int = 30) -> None:
        self.label, self.stream, self.width = label, stream, width
        self.total_s, self.total_frames = 0.0, 0
        self.started = self.last = 0.0
        self.active = False
        self.drawn = False

    def start(self, total_s: float, total_frames: int) -> None:
        self.total_s, self.total_frames = total_s, total_frames
        self.started = self.last = time.monotonic()
        self.active = total_s >= PROGRESS_MIN_SECONDS or total_frames >= 25 * PROGRESS_MIN_SECONDS

    def update(self, frames: int, t: float) -> None:
        now = time.monotonic()
        if not self.active or (self.drawn and now - self.last < 0.2):
            return
        self.last = now
        if self.total_frames:
            fraction = frames / self.total_frames
        elif self.total_s:
            fraction = t / self.total_s
        else:
            fraction = 0.0
        fraction = min(max(fraction, 0.0), 1.0)
        filled = int(round(fraction * self.width))
        bar = "#" * filled + "." * (self.width - filled)
        rate = frames / max(now - self.started, 1e-6)
        self.stream.write(f"\r{self.label} [{bar}] {fraction * 100:3.0f}% {frames} frames {rate:.0f} fps")
        self.stream.flush()
        self.drawn = True

    def finish(self) -> None:
        if self.drawn:  # a terminal gets the line erased; a log keeps the last state
            self.stream.write("\r\x1b[K" if self.stream.isatty() else "\n")
            self.stream.flush()
            self.drawn = False


# ----------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------
CSV_COLUMNS = (
    ["path", "window", "start_s", "aqs", "quality_level", "quality"]
    + [f"p_{name}" for name in ARTIFACTS]
    + [f"i_{name}" for name in ARTIFACTS]
    + ["engine"]
)


def write_csv(results: Sequence[FileScore], path: Path) -> None:
    """One row per window of every scored file."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for result in results:
            engine = f"{result.engine['engine']}:{result.engine['model']}"
            for index, w in enumerate(result.windows):
                writer.writerow(
                    [result.path, index, f"{w.start_s:.3f}", f"{w.aqs:.4f}", quality_level(w.aqs), f"{w.quality:.4f}"]
                    + [f"{v:.4f}" for v in w.artifacts]
                    + [f"{v:.4f}" for v in w.intensities]
                    + [engine]
                )


def check_plot_available() -> str | None:
    """None if matplotlib can be imported, else the message to show."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "--plot needs matplotlib: pip install 'vqa-monitor[plot]'"
    return None


def write_plot(results: Sequence[FileScore], path: Path, leading: int = 3) -> None:
    """AQS over time per file, with the probabilities of its ``leading`` artifacts and the quality bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(10, 3.2 * len(results)), squeeze=False)
    band_colours = ("#d8f0d8", "#eef6d8", "#fbf3d5", "#fbe3d0", "#f6d5d5")
    for ax, result in zip(axes[:, 0], results):
        t = np.array([w.start_s for w in result.windows])
        upper = 1.0
        for (bound, name), colour in zip(QUALITY_BANDS, band_colours):
            ax.axhspan(bound, upper, color=colour, zorder=0)
            ax.text(1.005, (bound + upper) / 2, name.replace("_", " "), transform=ax.get_yaxis_transform(), fontsize=7, va="center")
            upper = bound
        ax.plot(t, [w.aqs for w in result.windows], color="black", linewidth=2, label="AQS", marker="o" if len(t) < 30 else None)
        probs = np.array([w.artifacts for w in result.windows])
        evidence = probs * np.array([w.intensities for w in result.windows])
        for k in np.argsort(-evidence.mean(axis=0))[:leading]:
            ax.plot(t, probs[:, k], linestyle="--", linewidth=1.2, label=f"p({ARTIFACTS[k]})")
        ax.set_ylim(0, 1)
        ax.set_xlim(t.min(), max(t.max(), t.min() + 1e-3))
        ax.set_xlabel("time (s)")
        ax.set_ylabel("score / probability")
        ax.set_title(f"{Path(result.path).name}: AQS {result.aqs:.2f} ({quality_level(result.aqs)}), {result.engine['engine']}", fontsize=10)
        ax.legend(loc="lower left", fontsize=8, ncol=4)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


def format_table(results: Sequence[FileScore]) -> str:
    headers = ("FILE", "AQS", "LEVEL", "QUALITY", "LEADING ARTIFACT", "WINDOWS", "FRAMES", "SECONDS")
    rows = []
    for r in results:
        probs = r.mean_artifacts()
        evidence = probs * r.mean_intensities()
        k = int(np.argmax(evidence))
        leading = f"{ARTIFACTS[k]} ({probs[k]:.2f})" if probs[k] >= 0.5 else "none"
        rows.append(
            (r.path, f"{r.aqs:.3f}", quality_level(r.aqs), f"{r.quality:.3f}", leading, str(len(r.windows)), str(r.frames), f"{r.elapsed_s:.1f}")
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Command
# ----------------------------------------------------------------------------------------------
def register(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "score",
        help="score video files offline (same sampler, engines and AQS as the daemon)",
        description="Score every 7-frame window of each file with the same sampler, engine chain and AQS as "
        "the daemon; print a table, or JSON Lines with --json. An unreadable file gets an error line and "
        "exit status 1, and the other files are still scored.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="video files (anything FFmpeg opens)")
    parser.add_argument("--json", action="store_true", help="JSON Lines on stdout, one object per file")
    parser.add_argument("--csv", metavar="FILE", type=Path, help="write one CSV row per window")
    parser.add_argument("--plot", metavar="FILE.png", type=Path, help="plot AQS over time with the leading artifacts")
    parser.add_argument("--report", metavar="FILE.html", type=Path, help=(
        "write one self-contained HTML report (AQS and artifact timelines, the worst windows' key frames with "
        "their artifact heatmaps, the --json data); opens offline"))
    parser.add_argument(
        "--engine",
        metavar="NAME",
        help="engine to use instead of the fastest-first chain: backend[:model], e.g. classical or "
        "onnxruntime:aqs_effnet_b0; a comma-separated list is tried in order",
    )
    parser.add_argument("--model-dir", metavar="DIR", type=Path, help="folder with model files (default: the shipped ones)")
    parser.add_argument("--threads", type=int, metavar="N", help="inference threads (default: the engine's choice)")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, metavar="N", help="windows per inference call (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                        help="URLs: seconds allowed to open and between reads (default: %(default)s)")
    parser.add_argument(
        "--progress", choices=("auto", "always", "never"), default="auto",
        help="progress bar on stderr: auto = when stderr is a terminal (default: %(default)s)",
    )
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    err = sys.stderr
    if args.batch < 1:
        print("vqa-monitor score: --batch must be >= 1", file=err)
        return EXIT_USAGE
    if not 0.1 <= args.timeout <= 600:
        print("vqa-monitor score: --timeout must be from 0.1 to 600 seconds", file=err)
        return EXIT_USAGE
    if args.plot is not None and (message := check_plot_available()):
        print(f"vqa-monitor score: {message}", file=err)
        return EXIT_USAGE

    from engines.base import EngineUnavailable
    from engines.chain import parse_preference, select_engine

    preference = [s.strip() for s in args.engine.split(",")] if args.engine else None
    try:
        parse_preference(preference, threads=args.threads)
    except ValueError as exc:
        print(f"vqa-monitor score: --engine: {exc}", file=err)
        return EXIT_USAGE
    try:
        selection = select_engine(preference, model_dir=args.model_dir, threads=args.threads, warm_up_batch=1)
    except EngineUnavailable as exc:
        print(f"vqa-monitor score: {exc}", file=err)
        return EXIT_FAILURE
    engine = selection.engine
    info = engine.info
    for skipped in selection.skipped:
        print(f"vqa-monitor score: engine {skipped.spec} skipped: {skipped.reason}", file=err)
    if not args.json:
        print(f"engine: {info.engine} ({info.model}, {info.provider})", file=err)

    show_progress = args.progress == "always" or (args.progress == "auto" and err.isatty())
    results: list[FileScore] = []
    failed = 0
    try:
        for path in args.files:
            shown = redact_url(path)
            progress = Progress(_short(shown), err) if show_progress else None
            try:
                result = score_file(path, engine, batch=args.batch, progress=progress, timeout_s=args.timeout)
            except ScoreError as exc:
                failed += 1
                print(redact_text(f"vqa-monitor score: {shown}: {exc}", [path]), file=err)
                continue
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
                failed += 1
                print(redact_text(f"vqa-monitor score: {shown}: {type(exc).__name__}: {_reason(exc)}", [path]), file=err)
                continue
            results.append(result)
            if result.decode_errors:
                print(f"vqa-monitor score: {shown}: {result.decode_errors} damaged packet(s) skipped", file=err)
            if args.json:
                sys.stdout.write(json.dumps(result.to_json(), allow_nan=False) + "\n")
                sys.stdout.flush()
    finally:
        engine.close()

    if not args.json and results:
        print(format_table(results))
    try:
        if args.csv is not None:
            write_csv(results, args.csv)
        if args.plot is not None and results:
            write_plot(results, args.plot)
        if args.report is not None and results:
            from monitor.localise import Localiser
            from monitor.report import write_report

            write_report(results, args.report, Localiser.load(args.model_dir))
    except OSError as exc:
        print(f"vqa-monitor score: cannot write output: {exc}", file=err)
        return EXIT_FAILURE
    if failed:
        print(f"vqa-monitor score: {failed} of {len(args.files)} file(s) could not be scored", file=err)
        return EXIT_FAILURE
    return EXIT_OK


def _short(path: str, limit: int = 32) -> str:
    name = Path(path).name
    return name if len(name) <= limit else "..." + name[-(limit - 3) :]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``score`` on its own (the same as ``vqa-monitor score ...``)."""
    parser = argparse.ArgumentParser(prog="vqa-monitor")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["score", *(argv if argv is not None else sys.argv[1:])])
    return int(args.handler(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
