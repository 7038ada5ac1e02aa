"""The scheduler with real engines (the classical engine; ONNX Runtime for the failing batch): batching
across streams, max_wait, full batches, round-robin fairness, failed batches. Every wait is bounded."""
from __future__ import annotations

import threading
import time
from typing import Iterator

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from engines import classical
from engines.contract import WINDOW_FRAMES
from monitor.metrics import Metrics
from monitor.observers import WindowObserver, WindowScore
from monitor.scheduler import Batching, ScheduledStream, Scheduler
from monitor.windows import WindowRing

FRAME_SIZE = (360, 640)
WAIT_S = 30.0  # upper bound of every wait for scores (the machine may be busy)
SLACK_S = 1.0  # scheduling delay allowed beyond max_wait and inference on a busy machine


class Recorder(WindowObserver):
    """Collects every published score (the scheduler's own observer interface)."""

    def __init__(self) -> None:
        self.scores: list[WindowScore] = []
        self._changed = threading.Condition()

    def on_window(self, score: WindowScore) -> None:
        with self._changed:
            self.scores.append(score)
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = WAIT_S) -> list[WindowScore]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.scores) >= count, timeout):
                raise TimeoutError(f"{count} scores not published within {timeout} s (got {len(self.scores)})")
            return list(self.scores)

    def batches(self) -> list[list[WindowScore]]:
        """Scores grouped by batch: the windows of one batch share their publication time."""
        groups: dict[float, list[WindowScore]] = {}
        for score in self.scores:
            groups.setdefault(score.published_time, []).append(score)
        return [groups[t] for t in sorted(groups)]


@pytest.fixture(scope="module")
def engine():
    eng = classical.load()
    yield eng
    eng.close()


class Harness:
    """A real scheduler, its metrics and one ring per stream."""

    def __init__(self, engine, *, max_batch: int, max_wait_s: float, streams: dict[str, int], localiser=None) -> None:
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.recorder = Recorder()
        self.scheduler = Scheduler(engine, self.metrics, max_batch=max_batch, max_wait_s=max_wait_s,
                                   observers=[self.recorder], localiser=localiser)
        self.rings = {name: WindowRing(capacity, on_window=self.scheduler.notify) for name, capacity in streams.items()}
        self.scheduler.set_streams([ScheduledStream(name, ring, self.metrics.stream(name))
                                    for name, ring in self.rings.items()])
        self._rng = np.random.default_rng(0)

    def push(self, stream: str, windows: int = 1) -> float:
        """Complete ``windows`` windows of noise frames in the stream's ring; returns when the last completed."""
        ring = self.rings[stream]
        for _ in range(windows * WINDOW_FRAMES):
            out = ring.frame_slot()
            assert out is not None
            out[...] = self._rng.integers(0, 256, out.shape, dtype=np.uint8)
            ring.frame_done(time.monotonic(), FRAME_SIZE)
        return time.monotonic()

    def inference_seconds(self, engine_name: str = "classical") -> float:
        return self.registry.get_sample_value("vqa_inference_seconds_sum", {"engine": engine_name}) or 0.0

    def dropped(self, stream: str) -> float:
        return self.registry.get_sample_value("vqa_windows_dropped_total", {"stream": stream}) or 0.0

    def stop(self) -> None:
        self.scheduler.stop()
        assert self.scheduler.join(10), "scheduler thread did not stop"


@pytest.fixture
def harness(engine) -> Iterator:
    made: list[Harness] = []

    def factory(**kwargs) -> Harness:
        made.append(Harness(kwargs.pop("engine", engine), **kwargs))
        return made[-1]

    yield factory
    for h in made:
        h.stop()


def test_windows_of_several_streams_share_one_batch(harness) -> None:
    h = harness(max_batch=8, max_wait_s=2.0, streams={"a": 4, "b": 4, "c": 4})
    h.scheduler.start()
    for name in ("a", "b", "c"):  # arriving one after the other, well within max_wait
        h.push(name)
    scores = h.recorder.wait_for(3)
    assert {s.stream for s in scores} == {"a", "b", "c"}
    assert len(h.recorder.batches()) == 1 and h.scheduler.batches == 1
    assert h.registry.get_sample_value("vqa_inference_batch_windows_sum", {"engine": "classical"}) == 3


def test_max_wait_bounds_the_wait_of_a_lone_window(harness) -> None:
    max_wait = 0.4
    h = harness(max_batch=8, max_wait_s=max_wait, streams={"lone": 4})
    h.scheduler.start()
    h.push("lone")
    (score,) = h.recorder.wait_for(1)
    waited = score.latency - h.inference_seconds()
    assert waited >= max_wait - 0.05  # it did wait for company ...
    assert waited <= max_wait + SLACK_S  # ... but no longer than max_wait
    assert h.scheduler.batches == 1


def test_a_full_batch_goes_without_waiting(harness) -> None:
    max_wait = 20.0
    h = harness(max_batch=4, max_wait_s=max_wait, streams={"a": 4, "b": 4})
    h.scheduler.start()
    h.push("a", 2)
    h.push("b", 2)
    scores = h.recorder.wait_for(4, timeout=max_wait / 2)  # long before max_wait
    last = max(s.last_frame_time for s in scores)
    assert scores[0].published_time - last - h.inference_seconds() < SLACK_S
    assert len(h.recorder.batches()) == 1


def test_round_robin_no_stream_starves(harness) -> None:
    h = harness(max_batch=4, max_wait_s=0.05, streams={"busy": 8, "quiet1": 8, "quiet2": 8})
    h.push("busy", 8)  # a backlog of 8 windows ...
    h.push("quiet1")  # ... must not delay the single windows of the other streams
    h.push("quiet2")
    h.scheduler.start()
    h.recorder.wait_for(10)
    first, *rest = h.recorder.batches()
    assert sorted(s.stream for s in first) == ["busy", "busy", "quiet1", "quiet2"]
    assert all(s.stream == "busy" for batch in rest for s in batch)
    busy_seqs = [s.seq for s in h.recorder.scores if s.stream == "busy"]
    assert busy_seqs == sorted(busy_seqs) == list(range(8))  # oldest first, none lost


def test_alternates_between_streams_within_a_batch(harness) -> None:
    h = harness(max_batch=4, max_wait_s=0.05, streams={"a": 8, "b": 8})
    h.push("a", 4)
    h.push("b", 4)
    h.scheduler.start()
    h.recorder.wait_for(8)
    for batch in h.recorder.batches():
        assert sorted(s.stream for s in batch) == ["a", "a", "b", "b"]


def test_a_failing_batch_counts_drops_and_the_scheduler_goes_on(harness, engine) -> None:
    from engines import onnxruntime_engine

    broken = onnxruntime_engine.load("aqs_mnv3_small", threads=1)
    broken.close()  # a real engine whose session is gone: infer raises
    h = harness(engine=broken, max_batch=4, max_wait_s=0.05, streams={"a": 4, "b": 4})
    h.scheduler.start()
    h.push("a")
    h.push("b")
    deadline = time.monotonic() + WAIT_S
    while (h.dropped("a"), h.dropped("b")) != (1.0, 1.0):
        assert time.monotonic() < deadline, (h.dropped("a"), h.dropped("b"))
        time.sleep(0.05)
    assert h.recorder.scores == [] and h.scheduler.batches == 0
    assert h.registry.get_sample_value("vqa_windows_scored_total", {"stream": "a"}) == 0
    assert h.scheduler.join(0) is False  # still running

    h.scheduler.swap_engine(engine)
    h.push("a")
    (score,) = h.recorder.wait_for(1)
    assert score.stream == "a" and score.engine == "classical" and h.dropped("a") == 1.0


def test_reconfigure_applies_from_the_next_batch_within_the_buffer(harness) -> None:
    max_wait = 20.0
    h = harness(max_batch=4, max_wait_s=max_wait, streams={"a": 8, "b": 8})
    assert h.scheduler.reconfigure(max_batch=64, max_wait_s=max_wait) == Batching(4, max_wait)  # the buffer holds 4
    assert h.scheduler.reconfigure(max_batch=2, max_wait_s=max_wait) == h.scheduler.batching == Batching(2, max_wait)
    h.scheduler.start()
    h.push("a")
    h.push("b")
    h.recorder.wait_for(2, timeout=max_wait / 2)  # two windows fill a batch now: no wait for company
    assert [len(batch) for batch in h.recorder.batches()] == [2]

    h.scheduler.reconfigure(max_batch=4, max_wait_s=0.05)
    last = h.push("a")
    scores = h.recorder.wait_for(3, timeout=max_wait / 2)  # a lone window waits 0.05 s, not 20
    assert [len(batch) for batch in h.recorder.batches()] == [2, 1]
    assert scores[-1].published_time - last - h.inference_seconds() < 0.05 + SLACK_S


# ---------------------------------------------------------------------------------------------
# Artifact maps for windows in trouble
# ---------------------------------------------------------------------------------------------
def test_windows_in_trouble_get_a_map_at_most_once_per_interval_per_stream(harness) -> None:
    from monitor.localise import Localiser

    localiser = Localiser.load(interval_s=3600.0)
    for name in ("a", "b", "c"):
        localiser.watch(name, 0.95)
    h = harness(max_batch=8, max_wait_s=0.2, streams={"a": 8, "b": 8}, localiser=localiser)
    h.scheduler.start()
    h.push("a", 3)
    h.push("b", 1)
    scores = h.recorder.wait_for(4)
    assert all(s.aqs < 0.95 for s in scores), [s.aqs for s in scores]  # noise frames: below warn, in trouble
    by_stream = {name: [s for s in scores if s.stream == name] for name in ("a", "b")}
    assert [s.artifact_map is not None for s in sorted(by_stream["a"], key=lambda s: s.seq)] == [True, False, False]
    assert by_stream["b"][0].artifact_map is not None
    amap = by_stream["b"][0].artifact_map
    assert amap.shape == (10, 7, 7) and ((amap >= 0) & (amap <= 1)).all()
    assert localiser.maps == 2


def test_no_localiser_no_maps(harness) -> None:
    h = harness(max_batch=4, max_wait_s=0.2, streams={"a": 4})
    h.scheduler.start()
    h.push("a", 2)
    assert all(s.artifact_map is None for s in h.recorder.wait_for(2))


def test_only_windows_below_their_streams_warning_threshold_get_a_map() -> None:
    from monitor.localise import Localiser

    clock = [0.0]
    localiser = Localiser(engine=None, interval_s=2.0, clock=lambda: clock[0])
    localiser.watch("a", 0.6)
    localiser.watch("b", 0.5)
    assert not localiser.wanted("a", 0.6) and localiser.wanted("a", 0.59)
    assert not localiser.wanted("b", 0.55) and localiser.wanted("b", 0.49)
    assert not localiser.wanted("unwatched", 0.0)
    localiser.forget("a")
    assert not localiser.wanted("a", 0.1)


def test_the_interval_is_per_stream_and_a_failing_map_loses_no_score() -> None:
    from monitor.localise import Localiser

    class Broken:
        def artifact_map(self, windows):
            raise RuntimeError("boom")

    clock = [0.0]
    localiser = Localiser(engine=Broken(), interval_s=2.0, clock=lambda: clock[0])
    localiser.watch("a", 0.6)
    localiser.watch("b", 0.6)
    window = np.zeros((WINDOW_FRAMES, 3, 224, 224), np.uint8)
    assert localiser.locate("a", window) is None and localiser.maps == 0
    assert not localiser.wanted("a", 0.1) and localiser.wanted("b", 0.1)
    clock[0] = 2.0
    assert localiser.wanted("a", 0.1)


def test_an_engine_no_faster_in_big_batches_gets_small_ones(harness) -> None:
    from engines.onnxruntime_engine import CPU_RUN_BATCH, load

    ort_engine = load("aqs_mnv3_small", threads=1)
    assert ort_engine.preferred_batch == CPU_RUN_BATCH
    h = harness(engine=ort_engine, max_batch=16, max_wait_s=0.5, streams={"a": 16, "b": 16})
    h.push("a", 6)
    h.push("b", 6)
    h.scheduler.start()  # 12 windows waiting: one batch of 16 would take them all
    h.recorder.wait_for(12)
    sizes = [len(batch) for batch in h.recorder.batches()]
    assert sum(sizes) == 12 and max(sizes) == CPU_RUN_BATCH, sizes
    # round-robin still: every batch holds windows of both streams
    assert all({s.stream for s in batch} == {"a", "b"} for batch in h.recorder.batches())
