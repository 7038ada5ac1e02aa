"""monitor.metrics: the table, the per-stream handles, their removal, and docs/metrics.md generated from the table."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from engines.contract import ARTIFACTS
from monitor.metrics import HISTOGRAM, METRICS, STREAM_METRICS, Metrics, StreamMetrics, reference_markdown
from monitor.audio_checks import AudioState
from monitor.signals import SignalState

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "docs"))
import build_metrics_reference  # noqa: E402

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(registry: CollectorRegistry) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value for family in registry.collect() for s in family.samples}


def of_stream(all_samples: Samples, name: str) -> Samples:
    return {key: value for key, value in all_samples.items() if ("stream", name) in key[1]}


def families_with_stream(registry: CollectorRegistry, name: str) -> set[str]:
    return {family.name for family in registry.collect()
            if any(s.labels.get("stream") == name for s in family.samples)}


def populate(metrics: Metrics, name: str) -> StreamMetrics:
    """Give stream ``name`` a value in every per-stream metric, the way the daemon's threads do."""
    handle = metrics.stream(name, hls=True)  # with the series of a watched HLS playlist (monitor.hls)
    handle.hls_stale.set(0.0)
    handle.hls_unchanged.set(1.0)
    handle.hls_target_duration.set(2.0)
    handle.hls_discontinuities.inc()
    handle.hls_fetch_errors.inc()
    handle.hls_rendition_info.set({("tv", "640x360@800k"): 1.0})
    handle.up.set(1)
    for counter in (handle.reconnects, handle.frames, handle.decode_errors, handle.scored, handle.dropped):
        counter.inc()
    handle.last_scored.set(1.7e9)
    handle.latency.observe(0.3)
    assert metrics.publish_score(handle, 0.8, 0.7, [0.1] * len(ARTIFACTS), [0.2] * len(ARTIFACTS))
    assert metrics.publish_signals(handle, SignalState(black=True, frame_rate=24.0, expected_frame_rate=25.0,
                                                       bitrate_bps=1e6))
    assert metrics.publish_quality_state(handle, 2)
    assert metrics.publish_audio(handle, AudioState(active=True, expected=True, momentary=-20.0, short_term=-21.0,
                                                    integrated=-22.0, loudness_range=3.0, true_peak=-1.5))
    handle.audio_decode_errors.inc()
    return handle


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


def test_registry_exposes_exactly_the_table(metrics: Metrics) -> None:
    populate(metrics, "a")
    exposed = {f.name: (f.type, f.documentation) for f in metrics.registry.collect()}
    assert exposed == {spec.name: (spec.kind, spec.help) for spec in METRICS}


def test_every_metric_of_rules_and_dashboards_is_declared() -> None:
    suffixes = {HISTOGRAM: ("_bucket", "_count", "_sum")}
    declared = {spec.exposed_name + suffix for spec in METRICS for suffix in suffixes.get(spec.kind, ("",))}
    sources = [*(ROOT / "prometheus").glob("*.yml"), *(ROOT / "grafana" / "dashboards").glob("*.json")]
    # `$externalLabels.vqa_web_url` in the alert links is an external label of Prometheus, not a metric
    texts = [re.sub(r"\$externalLabels\.vqa_\w+", "", path.read_text()) for path in sources]
    used = {name for text in texts for name in re.findall(r"vqa_[a-z_]+", text)}
    assert len(sources) >= 3 and "vqa_aqs" in used
    assert used <= declared, sorted(used - declared)


def test_a_new_stream_has_counters_at_zero_and_no_score_yet(metrics: Metrics) -> None:
    metrics.stream("a")
    value = metrics.registry.get_sample_value
    assert value("vqa_frames_decoded_total", {"stream": "a"}) == 0
    assert value("vqa_stream_up", {"stream": "a"}) == 0
    assert value("vqa_quality_state", {"stream": "a"}) == 0
    for absent in ("vqa_aqs", "vqa_quality", "vqa_frame_rate", "vqa_expected_frame_rate", "vqa_bitrate_bits_per_second"):
        assert value(absent, {"stream": "a"}) is None, absent
    assert value("vqa_artifact_probability", {"stream": "a", "artifact": ARTIFACTS[0]}) is None
    assert metrics.stream("a") is metrics.stream("a")


def test_published_values_are_exposed_as_floats(metrics: Metrics) -> None:
    populate(metrics, "a")
    value = metrics.registry.get_sample_value
    assert value("vqa_black", {"stream": "a"}) == 1.0 and isinstance(value("vqa_black", {"stream": "a"}), float)
    assert value("vqa_frozen", {"stream": "a"}) == 0.0
    assert value("vqa_aqs", {"stream": "a"}) == 0.8
    assert value("vqa_artifact_intensity", {"stream": "a", "artifact": ARTIFACTS[-1]}) == 0.2
    assert value("vqa_quality_state", {"stream": "a"}) == 2.0
    assert value("vqa_window_latency_seconds_count", {"stream": "a"}) == 1.0


def test_a_value_no_longer_measured_loses_its_series(metrics: Metrics) -> None:
    handle = populate(metrics, "a")
    assert metrics.publish_signals(handle, SignalState(expected_frame_rate=25.0))
    value = metrics.registry.get_sample_value
    assert value("vqa_frame_rate", {"stream": "a"}) is None
    assert value("vqa_bitrate_bits_per_second", {"stream": "a"}) is None
    assert value("vqa_expected_frame_rate", {"stream": "a"}) == 25.0
    assert value("vqa_black", {"stream": "a"}) == 0.0


def test_remove_stream_removes_every_series_of_the_stream_and_nothing_of_another(metrics: Metrics) -> None:
    populate(metrics, "a")
    populate(metrics, "b")
    per_stream = {spec.name for spec in STREAM_METRICS}
    assert families_with_stream(metrics.registry, "a") == per_stream  # the populated stream has every series
    before = samples(metrics.registry)
    metrics.remove_stream("a")
    after = samples(metrics.registry)
    assert of_stream(after, "a") == {}
    assert of_stream(after, "b") == of_stream(before, "b")
    assert {k: v for k, v in after.items() if "stream" not in dict(k[1])} == \
        {k: v for k, v in before.items() if "stream" not in dict(k[1])}
    metrics.remove_stream("a")  # again, and one never seen: nothing to do
    metrics.remove_stream("never")
    assert samples(metrics.registry) == after


def test_a_removed_streams_handle_never_brings_its_series_back(metrics: Metrics) -> None:
    old = populate(metrics, "a")
    metrics.remove_stream("a")
    assert not metrics.publish_score(old, 0.5, 0.5, [0.0] * len(ARTIFACTS), [0.0] * len(ARTIFACTS))
    assert not metrics.publish_signals(old, SignalState(black=True, frame_rate=10.0))
    assert not metrics.publish_quality_state(old, 1)
    old.up.set(1)
    old.frames.inc()
    assert of_stream(samples(metrics.registry), "a") == {}
    new = metrics.stream("a")  # added again: a fresh handle, fresh series
    assert new is not old
    assert not metrics.publish_score(old, 0.5, 0.5, [0.0] * len(ARTIFACTS), [0.0] * len(ARTIFACTS))
    value = metrics.registry.get_sample_value
    assert value("vqa_frames_decoded_total", {"stream": "a"}) == 0
    assert value("vqa_stream_up", {"stream": "a"}) == 0
    assert value("vqa_aqs", {"stream": "a"}) is None


def test_per_window_updates_look_no_labels_up(metrics: Metrics, monkeypatch: pytest.MonkeyPatch) -> None:
    handle = metrics.stream("a", hls=True)

    def no_lookup(*args: object, **kwargs: object) -> None:
        raise AssertionError("a label lookup on the hot path")

    monkeypatch.setattr(MetricWrapperBase, "labels", no_lookup)
    populate(metrics, "a")  # the same handle: stream() returns it without creating series
    assert metrics.stream("a") is handle
    assert metrics.registry.get_sample_value("vqa_windows_scored_total", {"stream": "a"}) == 1


def test_docs_metrics_md_is_generated_from_the_table() -> None:
    committed = build_metrics_reference.OUT.read_text() if build_metrics_reference.OUT.exists() else ""
    assert committed == reference_markdown(), f"docs/metrics.md is stale: run {build_metrics_reference.COMMAND}"
    assert build_metrics_reference.main(["--check"]) == 0
    for spec in METRICS:
        assert f"| `{spec.exposed_name}` |" in committed, spec.name
