"""Every Prometheus metric the daemon publishes: names, help, labels and buckets, spelled once.

The names are a contract (alert rules, dashboards and users' queries rely on them). Metrics live in
a registry passed in (never prometheus_client's global default registry), so tests and tools can
make as many independent daemons as they like.

Per-stream series are created when a stream starts (:meth:`Metrics.stream`) and all removed when it
is removed (:meth:`Metrics.remove_stream`), so a stream deleted on reload leaves nothing behind.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from engines.contract import ARTIFACTS
from monitor.signals import SignalState

# name -> (type, help, labels); counters are declared without the _total suffix prometheus_client adds.
AQS = "vqa_aqs"
QUALITY = "vqa_quality"
ARTIFACT_PROBABILITY = "vqa_artifact_probability"
ARTIFACT_INTENSITY = "vqa_artifact_intensity"
STREAM_UP = "vqa_stream_up"
STREAM_RECONNECTS = "vqa_stream_reconnects"  # exposed as vqa_stream_reconnects_total
FRAMES_DECODED = "vqa_frames_decoded"  # _total
DECODE_ERRORS = "vqa_decode_errors"  # _total
WINDOWS_SCORED = "vqa_windows_scored"  # _total
WINDOWS_DROPPED = "vqa_windows_dropped"  # _total
LAST_SCORED = "vqa_last_window_scored_timestamp_seconds"
INFERENCE_SECONDS = "vqa_inference_seconds"
INFERENCE_BATCH = "vqa_inference_batch_windows"
WINDOW_LATENCY = "vqa_window_latency_seconds"
ENGINE_INFO = "vqa_engine_info"
CONFIG_RELOAD_OK = "vqa_config_last_reload_successful"
CONFIG_RELOADS = "vqa_config_reloads"  # _total
QUALITY_STATE = "vqa_quality_state"
BLACK = "vqa_black"
FROZEN = "vqa_frozen"
NO_VIDEO = "vqa_no_video"
FRAME_RATE_DEVIATION = "vqa_frame_rate_deviation"
FRAME_RATE = "vqa_frame_rate"
EXPECTED_FRAME_RATE = "vqa_expected_frame_rate"
BITRATE = "vqa_bitrate_bits_per_second"
SHARD_INFO = "vqa_shard_info"
STREAMS_OWNED = "vqa_streams_owned"

INFERENCE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass
class StreamMetrics:
    """The children of one stream, so hot paths do not look labels up per frame."""

    name: str
    up: Gauge
    reconnects: Counter
    frames: Counter
    decode_errors: Counter
    scored: Counter
    dropped: Counter
    last_scored: Gauge
    latency: Histogram
    quality_state: Gauge
    black: Gauge
    frozen: Gauge
    no_video: Gauge
    frame_rate_deviation: Gauge


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        self.aqs = Gauge(AQS, "Aggregate Quality Score of the last scored window, 0 (worst) to 1 (best)", ["stream"], registry=r)
        self.quality = Gauge(QUALITY, "Model quality estimate (VMAF/100-like, before artifact penalties) of the last window", ["stream"], registry=r)
        self.artifact_probability = Gauge(ARTIFACT_PROBABILITY, "Probability that the artifact is present in the last window", ["stream", "artifact"], registry=r)
        self.artifact_intensity = Gauge(ARTIFACT_INTENSITY, "Estimated strength (0..1) of the artifact in the last window, if present", ["stream", "artifact"], registry=r)
        self.stream_up = Gauge(STREAM_UP, "1 while the stream delivers frames, 0 during an outage", ["stream"], registry=r)
        self.reconnects = Counter(STREAM_RECONNECTS, "Attempts to re-open the stream after it failed or ended", ["stream"], registry=r)
        self.frames = Counter(FRAMES_DECODED, "Frames decoded", ["stream"], registry=r)
        self.decode_errors = Counter(DECODE_ERRORS, "Packets that failed to decode", ["stream"], registry=r)
        self.scored = Counter(WINDOWS_SCORED, "7-frame windows scored", ["stream"], registry=r)
        self.dropped = Counter(WINDOWS_DROPPED, "Windows dropped unscored because scoring fell behind", ["stream"], registry=r)
        self.last_scored = Gauge(LAST_SCORED, "Unix time when the stream's last window was scored", ["stream"], registry=r)
        self.inference_seconds = Histogram(INFERENCE_SECONDS, "Engine time per inference batch", ["engine"], buckets=INFERENCE_BUCKETS, registry=r)
        self.inference_batch = Histogram(INFERENCE_BATCH, "Windows per inference batch", ["engine"], buckets=BATCH_BUCKETS, registry=r)
        self.window_latency = Histogram(WINDOW_LATENCY, "Time from a window's last frame being decoded to its score being published", ["stream"], buckets=LATENCY_BUCKETS, registry=r)
        self.engine_info = Gauge(ENGINE_INFO, "The inference engine in use (value 1)", ["engine", "model", "provider"], registry=r)
        self.config_reload_ok = Gauge(CONFIG_RELOAD_OK, "1 if the last config (re)load succeeded, 0 if it was rejected", registry=r)
        self.config_reloads = Counter(CONFIG_RELOADS, "Config reloads (SIGHUP) by result", ["result"], registry=r)
        self.quality_state = Gauge(QUALITY_STATE, "Quality state with hysteresis: 0 ok, 1 warn, 2 crit", ["stream"], registry=r)
        self.black = Gauge(BLACK, "1 while the picture is black (after the black check's min_duration)", ["stream"], registry=r)
        self.frozen = Gauge(FROZEN, "1 while the picture is frozen (after the freeze check's min_duration)", ["stream"], registry=r)
        self.no_video = Gauge(NO_VIDEO, "1 while the source is connected but delivers no decoded frame", ["stream"], registry=r)
        self.frame_rate_deviation = Gauge(FRAME_RATE_DEVIATION, "1 while the measured frame rate deviates from the expected one beyond the tolerance", ["stream"], registry=r)
        self.frame_rate = Gauge(FRAME_RATE, "Measured frame rate (frames/s) over the frame-rate check's window; absent until measured", ["stream"], registry=r)
        self.expected_frame_rate = Gauge(EXPECTED_FRAME_RATE, "Expected frame rate (frames/s): configured, or else declared by the stream; absent if unknown", ["stream"], registry=r)
        self.bitrate = Gauge(BITRATE, "Video bitrate from demuxed packet sizes over the bitrate window; absent until measured", ["stream"], registry=r)
        self.shard_info = Gauge(SHARD_INFO, "This instance's shard (value 1): shard number (from 0) of shards instances sharing the config", ["shard", "shards"], registry=r)
        self.streams_owned = Gauge(STREAMS_OWNED, "Streams this instance runs: its shard of the configured streams", registry=r)
        self.config_reload_ok.set(1)
        self._streams: dict[str, StreamMetrics] = {}
        self._lock = threading.Lock()

    # per-stream series ---------------------------------------------------------------------------
    def _per_stream(self) -> list[MetricWrapperBase]:
        return [self.aqs, self.quality, self.stream_up, self.reconnects, self.frames, self.decode_errors,
                self.scored, self.dropped, self.last_scored, self.window_latency, self.quality_state,
                self.black, self.frozen, self.no_video, self.frame_rate_deviation, self.frame_rate,
                self.expected_frame_rate, self.bitrate]

    def stream(self, name: str) -> StreamMetrics:
        """Create (or return) the series of stream ``name``; counters start at 0, up at 0."""
        with self._lock:
            existing = self._streams.get(name)
            if existing is not None:
                return existing
            return self._new_stream(name)

    def _new_stream(self, name: str) -> StreamMetrics:
        handle = StreamMetrics(
            name=name,
            up=self.stream_up.labels(name),
            reconnects=self.reconnects.labels(name),
            frames=self.frames.labels(name),
            decode_errors=self.decode_errors.labels(name),
            scored=self.scored.labels(name),
            dropped=self.dropped.labels(name),
            last_scored=self.last_scored.labels(name),
            latency=self.window_latency.labels(name),
            quality_state=self.quality_state.labels(name),
            black=self.black.labels(name),
            frozen=self.frozen.labels(name),
            no_video=self.no_video.labels(name),
            frame_rate_deviation=self.frame_rate_deviation.labels(name),
        )
        self._streams[name] = handle
        return handle

    def publish_score(self, handle: StreamMetrics, aqs: float, quality: float,
                      probabilities: Sequence[float], intensities: Sequence[float]) -> bool:
        """Set the score gauges of one stream. They are absent until a stream's first window is scored."""
        name = handle.name
        with self._lock:
            if self._streams.get(name) is not handle:
                return False  # the stream was removed (or replaced) while its window was being scored
            self.aqs.labels(name).set(aqs)
            self.quality.labels(name).set(quality)
            for artifact, p, s in zip(ARTIFACTS, probabilities, intensities):
                self.artifact_probability.labels(name, artifact).set(p)
                self.artifact_intensity.labels(name, artifact).set(s)
            return True

    def publish_signals(self, handle: StreamMetrics, state: SignalState) -> bool:
        """Set the signal-check gauges of one stream; a value not measured (None) has no series."""
        name = handle.name
        with self._lock:
            if self._streams.get(name) is not handle:
                return False  # removed meanwhile: never resurrect its series
            handle.black.set(state.black)
            handle.frozen.set(state.frozen)
            handle.no_video.set(state.no_video)
            handle.frame_rate_deviation.set(state.frame_rate_deviation)
            _set_or_remove(self.frame_rate, name, state.frame_rate)
            _set_or_remove(self.expected_frame_rate, name, state.expected_frame_rate)
            _set_or_remove(self.bitrate, name, state.bitrate_bps)
            return True

    def publish_quality_state(self, handle: StreamMetrics, level: int) -> bool:
        with self._lock:
            if self._streams.get(handle.name) is not handle:
                return False
            handle.quality_state.set(level)
            return True

    def remove_stream(self, name: str) -> None:
        """Remove every series of stream ``name`` (it was removed from the config)."""
        with self._lock:
            self._streams.pop(name, None)
            for metric in self._per_stream():
                _remove(metric, name)
            for artifact in ARTIFACTS:
                _remove(self.artifact_probability, name, artifact)
                _remove(self.artifact_intensity, name, artifact)

    def streams(self) -> list[str]:
        return list(self._streams)

    # engine ---------------------------------------------------------------------------------------
    def set_engine(self, engine: str, model: str, provider: str) -> None:
        self.engine_info.clear()
        self.engine_info.labels(engine, model, provider).set(1)

    # sharding -------------------------------------------------------------------------------------
    def set_shard(self, index: int, count: int, owned: int) -> None:
        self.shard_info.clear()
        self.shard_info.labels(str(index), str(count)).set(1)
        self.streams_owned.set(owned)


def _set_or_remove(gauge: Gauge, name: str, value: float | None) -> None:
    if value is None:
        _remove(gauge, name)
    else:
        gauge.labels(name).set(value)


def _remove(metric: MetricWrapperBase, *labels: str) -> None:
    try:
        metric.remove(*labels)
    except KeyError:
        pass
