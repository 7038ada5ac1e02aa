"""Every Prometheus metric the daemon publishes, declared once in :data:`METRICS`.

The names are a contract (alert rules, dashboards and users' queries rely on them). Metrics live in
a registry passed in (never prometheus_client's global default registry), so tests and tools can
make as many independent daemons as they like. docs/metrics.md is rendered from the same table
(:func:`reference_markdown`).

Per-stream series are created when a stream starts (:meth:`Metrics.stream`, which returns the
stream's :class:`StreamMetrics` handle) and all removed when it is removed
(:meth:`Metrics.remove_stream`), so a stream deleted on reload leaves nothing behind. Per-stream
gauges are plain values on the handle that a collector reads at scrape time: setting one is an
attribute write, and a removed stream's handle can never bring its series back.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics import MetricWrapperBase

from engines.contract import ARTIFACTS
from monitor.audio_checks import AudioState
from monitor.signals import SignalState

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"
_WRAPPERS: dict[str, type[MetricWrapperBase]] = {COUNTER: Counter, GAUGE: Gauge, HISTOGRAM: Histogram}
STREAM = ("stream",)
STREAM_ARTIFACT = ("stream", "artifact")

INFERENCE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its Prometheus name, type, help, labels and buckets, and its attribute in code.

    ``attr`` names it on :class:`StreamMetrics` when its labels start with ``stream``, else on
    :class:`Metrics`. A counter's ``name`` is without the ``_total`` suffix prometheus_client adds.
    A per-stream gauge that is ``absent_until_set`` has no series before its first value (and none
    while it is set to None); the others start at 0 when the stream starts. A per-stream counter that
    is ``absent_until_set`` has no series before its first ``inc`` (``inc(0)`` makes it appear). An ``hls`` per-stream metric
    has series only for the streams whose HLS playlist is watched (:mod:`monitor.hls`).
    """

    attr: str
    name: str
    kind: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    absent_until_set: bool = False
    hls: bool = False

    @property
    def per_stream(self) -> bool:
        return self.labels[:1] == STREAM

    @property
    def exposed_name(self) -> str:
        return f"{self.name}_total" if self.kind == COUNTER else self.name


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("aqs", "vqa_aqs", GAUGE, "Aggregate Quality Score of the last scored window, 0 (worst) to 1 (best)",
               STREAM, absent_until_set=True),
    MetricSpec("quality", "vqa_quality", GAUGE,
               "Model quality estimate (VMAF/100-like, before artifact penalties) of the last window",
               STREAM, absent_until_set=True),
    MetricSpec("artifact_probability", "vqa_artifact_probability", GAUGE,
               "Probability that the artifact is present in the last window", STREAM_ARTIFACT, absent_until_set=True),
    MetricSpec("artifact_intensity", "vqa_artifact_intensity", GAUGE,
               "Estimated strength (0..1) of the artifact in the last window, if present",
               STREAM_ARTIFACT, absent_until_set=True),
    MetricSpec("up", "vqa_stream_up", GAUGE, "1 while the stream delivers frames, 0 during an outage", STREAM),
    MetricSpec("reconnects", "vqa_stream_reconnects", COUNTER,
               "Attempts to re-open the stream after it failed or ended", STREAM),
    MetricSpec("frames", "vqa_frames_decoded", COUNTER, "Frames decoded", STREAM),
    MetricSpec("decode_errors", "vqa_decode_errors", COUNTER, "Packets that failed to decode", STREAM),
    MetricSpec("scored", "vqa_windows_scored", COUNTER, "7-frame windows scored", STREAM),
    MetricSpec("dropped", "vqa_windows_dropped", COUNTER, "Windows dropped unscored because scoring fell behind",
               STREAM),
    MetricSpec("last_scored", "vqa_last_window_scored_timestamp_seconds", GAUGE,
               "Unix time when the stream's last window was scored", STREAM),
    MetricSpec("inference_seconds", "vqa_inference_seconds", HISTOGRAM, "Engine time per inference batch",
               ("engine",), INFERENCE_BUCKETS),
    MetricSpec("inference_batch", "vqa_inference_batch_windows", HISTOGRAM, "Windows per inference batch",
               ("engine",), BATCH_BUCKETS),
    MetricSpec("latency", "vqa_window_latency_seconds", HISTOGRAM,
               "Time from a window's last frame being decoded to its score being published", STREAM, LATENCY_BUCKETS),
    MetricSpec("engine_info", "vqa_engine_info", GAUGE, "The inference engine in use (value 1)",
               ("engine", "model", "provider")),
    MetricSpec("config_reload_ok", "vqa_config_last_reload_successful", GAUGE,
               "1 if the last config (re)load succeeded, 0 if it was rejected"),
    MetricSpec("config_reloads", "vqa_config_reloads", COUNTER, "Config reloads (SIGHUP) by result", ("result",)),
    MetricSpec("quality_state", "vqa_quality_state", GAUGE, "Quality state with hysteresis: 0 ok, 1 warn, 2 crit",
               STREAM),
    MetricSpec("black", "vqa_black", GAUGE, "1 while the picture is black (after the black check's min_duration)",
               STREAM),
    MetricSpec("frozen", "vqa_frozen", GAUGE,
               "1 while the picture is frozen (after the freeze check's min_duration)", STREAM),
    MetricSpec("no_video", "vqa_no_video", GAUGE, "1 while the source is connected but delivers no decoded frame",
               STREAM),
    MetricSpec("frame_rate_deviation", "vqa_frame_rate_deviation", GAUGE,
               "1 while the measured frame rate deviates from the expected one beyond the tolerance", STREAM),
    MetricSpec("frame_rate", "vqa_frame_rate", GAUGE,
               "Measured frame rate (frames/s) over the frame-rate check's window; absent until measured",
               STREAM, absent_until_set=True),
    MetricSpec("expected_frame_rate", "vqa_expected_frame_rate", GAUGE,
               "Expected frame rate (frames/s): configured, or else declared by the stream; absent if unknown",
               STREAM, absent_until_set=True),
    MetricSpec("bitrate", "vqa_bitrate_bits_per_second", GAUGE,
               "Video bitrate from demuxed packet sizes over the bitrate window; absent until measured",
               STREAM, absent_until_set=True),
    # Audio (monitor/audio.py): series only for streams with an audio track or `checks.audio.expected`.
    MetricSpec("audio_momentary", "vqa_audio_loudness_momentary_lufs", GAUGE,
               "EBU R128 momentary loudness (last 400 ms) of the first audio track, LUFS", STREAM,
               absent_until_set=True),
    MetricSpec("audio_short_term", "vqa_audio_loudness_short_term_lufs", GAUGE,
               "EBU R128 short-term loudness (last 3 s), LUFS", STREAM, absent_until_set=True),
    MetricSpec("audio_integrated", "vqa_audio_loudness_integrated_lufs", GAUGE,
               "EBU R128 integrated loudness since the audio was opened, LUFS; absent until a block passed the gate",
               STREAM, absent_until_set=True),
    MetricSpec("audio_loudness_range", "vqa_audio_loudness_range_lu", GAUGE,
               "EBU R128 loudness range (LRA) since the audio was opened, LU", STREAM, absent_until_set=True),
    MetricSpec("audio_true_peak", "vqa_audio_true_peak_dbtp", GAUGE,
               "Maximum true peak since the audio was opened, dBTP; absent while all samples were 0", STREAM,
               absent_until_set=True),
    MetricSpec("audio_silence", "vqa_audio_silence", GAUGE,
               "1 while the audio is silent (after the silence check's min_duration)", STREAM, absent_until_set=True),
    MetricSpec("audio_loudness_out_of_range", "vqa_audio_loudness_out_of_range", GAUGE,
               "1 while the loudness is off the target by more than the tolerance (after min_duration)", STREAM,
               absent_until_set=True),
    MetricSpec("audio_clipping", "vqa_audio_clipping", GAUGE,
               "1 while the audio clips: 100 ms blocks reach the clipping peak level (after min_duration)", STREAM,
               absent_until_set=True),
    MetricSpec("audio_missing", "vqa_audio_missing", GAUGE,
               "1 while audio is expected (checks.audio.expected) but the source has no audio track or delivers none",
               STREAM, absent_until_set=True),
    MetricSpec("audio_decode_errors", "vqa_audio_decode_errors", COUNTER,
               "Audio packets that failed to decode", STREAM, absent_until_set=True),
    MetricSpec("snapshots", "vqa_snapshots", COUNTER,
               "Snapshot pictures by result: written, dropped (the encoder's queue was full) or failed (e.g. disk full)",
               ("result",)),
    MetricSpec("shard_info", "vqa_shard_info", GAUGE,
               "This instance's shard (value 1): shard number (from 0) of shards instances sharing the config",
               ("shard", "shards")),
    MetricSpec("streams_owned", "vqa_streams_owned", GAUGE,
               "Streams this instance runs: its shard of the configured streams"),
    MetricSpec("hls_stale", "vqa_hls_playlist_stale", GAUGE,
               "1 while the live media playlist has gained no segment for hls.stale_target_durations target "
               "durations; absent until the playlist was first read", STREAM, absent_until_set=True, hls=True),
    MetricSpec("hls_unchanged", "vqa_hls_playlist_unchanged_seconds", GAUGE,
               "Seconds since the media playlist last gained a segment", STREAM, absent_until_set=True, hls=True),
    MetricSpec("hls_target_duration", "vqa_hls_target_duration_seconds", GAUGE,
               "The media playlist's EXT-X-TARGETDURATION", STREAM, absent_until_set=True, hls=True),
    MetricSpec("hls_discontinuities", "vqa_hls_discontinuities", COUNTER,
               "Discontinuities in the media playlist: EXT-X-DISCONTINUITY on new segments, or a media sequence "
               "that went back (the producer restarted)", STREAM, hls=True),
    MetricSpec("hls_fetch_errors", "vqa_hls_playlist_fetch_errors", COUNTER,
               "Media playlist fetches that failed (HTTP error, timeout, not a playlist)", STREAM, hls=True),
    MetricSpec("hls_rendition_info", "vqa_hls_rendition_info", GAUGE,
               "A stream that is one rendition of an HLS ladder (value 1): the ladder's stream name and the "
               "rendition WIDTHxHEIGHT@KBPSk", ("stream", "ladder", "rendition"), absent_until_set=True),
    MetricSpec("hls_ladder_variants", "vqa_hls_ladder_variants", GAUGE,
               "Variants of the HLS ladder monitored now (0 until its master playlist was read)", ("ladder",)),
    MetricSpec("hls_master_fetch_errors", "vqa_hls_master_fetch_errors", COUNTER,
               "Fetches of the HLS ladder's master playlist that failed (the ladder keeps its variants)",
               ("ladder",)),
)
STREAM_METRICS = tuple(spec for spec in METRICS if spec.per_stream)


class StreamGauge:
    """The current value of one stream's gauge, read at scrape time; None: the stream has no series.

    A gauge labelled by artifact holds a sequence of values in :data:`engines.contract.ARTIFACTS` order.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def set(self, value: Any) -> None:
        self.value = value


class StreamCounter:
    """A stream's counter that has no series until its first :meth:`inc`; read at scrape time.
    Only the stream's reader thread increments it."""

    __slots__ = ("value", "created")

    def __init__(self) -> None:
        self.value: float | None = None
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        self.value = (self.value or 0.0) + amount


class StreamMetrics:
    """One stream's series, so hot paths update them without looking labels up.

    One attribute per per-stream row of :data:`METRICS`, named by its ``attr``: a prometheus_client
    child for counters (``inc``) and histograms (``observe``), a :class:`StreamGauge` for gauges (``set``).
    """

    __slots__ = ("name", *(spec.attr for spec in STREAM_METRICS))

    def __init__(self, name: str, series: dict[str, Any]) -> None:
        self.name = name
        for attr, value in series.items():
            setattr(self, attr, value)


class Metrics:
    """The daemon's metrics in ``registry``. Each row of :data:`METRICS` that is not per stream is an
    attribute named by its ``attr`` (a prometheus_client metric); per-stream series go through
    :meth:`stream` handles."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._streams: dict[str, StreamMetrics] = {}
        self._lock = threading.Lock()
        self._stream_families: dict[str, MetricWrapperBase] = {}  # per-stream counters and histograms
        for spec in METRICS:  # in table order, which is the order of the exposition
            if spec.per_stream and spec.kind == GAUGE:
                registry.register(_StreamGaugeCollector(spec, self._live_streams))
            elif spec.per_stream and spec.kind == COUNTER and spec.absent_until_set:
                registry.register(_StreamCounterCollector(spec, self._live_streams))
            elif spec.per_stream:
                self._stream_families[spec.attr] = _build(spec, registry)
            else:
                setattr(self, spec.attr, _build(spec, registry))
        self.config_reload_ok.set(1)

    # per-stream series ---------------------------------------------------------------------------
    def stream(self, name: str, hls: bool | None = None) -> StreamMetrics:
        """Create (or return) the series of stream ``name``: counters at 0, gauges at 0 or absent.
        ``hls``: whether it has the ``hls`` series (added or removed on an existing stream; None: as is)."""
        with self._lock:
            handle = self._streams.get(name)
            if handle is None:
                handle = self._streams[name] = StreamMetrics(name, {
                    spec.attr: self._new_series(spec, name) if hls or not spec.hls else None
                    for spec in STREAM_METRICS})
            elif hls is not None:
                self._set_hls_series(handle, hls)
            return handle

    def _set_hls_series(self, handle: StreamMetrics, hls: bool) -> None:
        for spec in STREAM_METRICS:
            if not spec.hls or (getattr(handle, spec.attr) is not None) == hls:
                continue
            if not hls and spec.kind != GAUGE:
                self._stream_families[spec.attr].remove(handle.name)
            setattr(handle, spec.attr, self._new_series(spec, handle.name) if hls else None)

    def _new_series(self, spec: MetricSpec, name: str) -> Any:
        if spec.kind == GAUGE:
            return StreamGauge(None if spec.absent_until_set else 0.0)
        if spec.kind == COUNTER and spec.absent_until_set:
            return StreamCounter()
        return self._stream_families[spec.attr].labels(name)

    def remove_stream(self, name: str) -> None:
        """Remove every series of stream ``name`` (it was removed from the config)."""
        with self._lock:
            if self._streams.pop(name, None) is None:
                return
            for family in self._stream_families.values():
                family.remove(name)

    def _live_streams(self) -> list[StreamMetrics]:
        with self._lock:
            return list(self._streams.values())

    def _is_live(self, handle: StreamMetrics) -> bool:
        """False once the stream was removed (or replaced): its handle then publishes nothing."""
        return self._streams.get(handle.name) is handle

    def publish_score(self, handle: StreamMetrics, aqs: float, quality: float,
                      probabilities: Sequence[float], intensities: Sequence[float]) -> bool:
        """Set the score gauges of one stream. They are absent until a stream's first window is scored."""
        if not self._is_live(handle):
            return False
        handle.aqs.set(aqs)
        handle.quality.set(quality)
        handle.artifact_probability.set(tuple(probabilities))
        handle.artifact_intensity.set(tuple(intensities))
        return True

    def publish_signals(self, handle: StreamMetrics, state: SignalState) -> bool:
        """Set the signal-check gauges of one stream; a value not measured (None) has no series."""
        if not self._is_live(handle):
            return False
        handle.black.set(state.black)
        handle.frozen.set(state.frozen)
        handle.no_video.set(state.no_video)
        handle.frame_rate_deviation.set(state.frame_rate_deviation)
        handle.frame_rate.set(state.frame_rate)
        handle.expected_frame_rate.set(state.expected_frame_rate)
        handle.bitrate.set(state.bitrate_bps)
        return True

    def publish_audio(self, handle: StreamMetrics, state: AudioState) -> bool:
        """Set the audio gauges of one stream: none without audio (``state.active`` false); the missing
        flag only where audio is expected."""
        if not self._is_live(handle):
            return False
        active = state.active
        for attr in ("silence", "loudness_out_of_range", "clipping"):
            getattr(handle, f"audio_{attr}").set(getattr(state, attr) if active else None)
        handle.audio_missing.set(state.missing if active and state.expected else None)
        for attr in ("momentary", "short_term", "integrated", "loudness_range", "true_peak"):
            getattr(handle, f"audio_{attr}").set(getattr(state, attr) if active else None)
        return True

    def publish_quality_state(self, handle: StreamMetrics, level: int) -> bool:
        if not self._is_live(handle):
            return False
        handle.quality_state.set(level)
        return True

    # engine ---------------------------------------------------------------------------------------
    def set_engine(self, engine: str, model: str, provider: str) -> None:
        self.engine_info.clear()
        self.engine_info.labels(engine, model, provider).set(1)

    # sharding -------------------------------------------------------------------------------------
    def set_shard(self, index: int, count: int, owned: int) -> None:
        self.shard_info.clear()
        self.shard_info.labels(str(index), str(count)).set(1)
        self.streams_owned.set(owned)


def _build(spec: MetricSpec, registry: CollectorRegistry) -> MetricWrapperBase:
    extra = {"buckets": spec.buckets} if spec.kind == HISTOGRAM else {}
    return _WRAPPERS[spec.kind](spec.name, spec.help, spec.labels, registry=registry, **extra)


class _StreamGaugeCollector:
    """One per-stream gauge, collected at scrape time from the live streams' :class:`StreamGauge` values."""

    def __init__(self, spec: MetricSpec, streams: Callable[[], list[StreamMetrics]]) -> None:
        self.spec = spec
        self.streams = streams

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield self._family()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = self._family()
        for handle in self.streams():
            series = getattr(handle, self.spec.attr)
            value = None if series is None else series.value  # series None: an hls metric of a non-HLS stream
            if value is None:
                continue
            if isinstance(value, dict):  # {values of the labels after "stream": value}
                for labels, v in value.items():
                    family.add_metric([handle.name, *labels], float(v))
            elif self.spec.labels == STREAM_ARTIFACT:
                for artifact, v in zip(ARTIFACTS, value):
                    family.add_metric([handle.name, artifact], float(v))
            else:
                family.add_metric([handle.name], float(value))
        yield family

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self.spec.name, self.spec.help, labels=self.spec.labels)


class _StreamCounterCollector:
    """One per-stream counter that is absent until its first increment (:class:`StreamCounter`)."""

    def __init__(self, spec: MetricSpec, streams: Callable[[], list[StreamMetrics]]) -> None:
        self.spec = spec
        self.streams = streams

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.spec.name, self.spec.help, labels=self.spec.labels)

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.spec.name, self.spec.help, labels=self.spec.labels)
        for handle in self.streams():
            counter = getattr(handle, self.spec.attr)
            if counter.value is not None:
                family.add_metric([handle.name], counter.value, created=counter.created)
        yield family


# reference ----------------------------------------------------------------------------------------
def reference_markdown() -> str:
    """docs/metrics.md: every metric of :data:`METRICS` with its type, labels and help."""
    per_stream = [_row(spec, series=_series_start(spec)) for spec in STREAM_METRICS]
    per_instance = [_row(spec) for spec in METRICS if not spec.per_stream]
    return "\n".join([
        "# Metrics reference",
        "",
        "<!-- Generated from METRICS in monitor/metrics.py by docs/build_metrics_reference.py; do not edit. -->",
        "",
        "Every metric the daemon serves on `/metrics` (`metrics.listen`). Counters carry the `_total` suffix;",
        "each histogram also exposes `_bucket`, `_count` and `_sum`, and each counter and histogram a `_created`",
        "timestamp.",
        "",
        "## Per stream",
        "",
        "A stream's series appear when it starts and are all removed when it leaves the configuration. "
        "`artifact` is one of " + ", ".join(f"`{a}`" for a in ARTIFACTS) + ".",
        "",
        "| Metric | Type | Labels | Series from | Help |",
        "|---|---|---|---|---|",
        *per_stream,
        "",
        "## Per instance",
        "",
        "| Metric | Type | Labels | Help |",
        "|---|---|---|---|",
        *per_instance,
        "",
    ])


def _series_start(spec: MetricSpec) -> str:
    start = "its first value" if spec.absent_until_set else "stream start"
    return f"HLS streams: {start}" if spec.hls else start


def _row(spec: MetricSpec, series: str | None = None) -> str:
    kind = spec.kind
    if spec.buckets:
        kind += " (buckets " + ", ".join(f"{b:g}" for b in spec.buckets) + ")"
    labels = ", ".join(f"`{label}`" for label in spec.labels) or "none"
    cells = [f"`{spec.exposed_name}`", kind, labels, *([series] if series else []), spec.help.replace("|", "\\|")]
    return "| " + " | ".join(cells) + " |"
