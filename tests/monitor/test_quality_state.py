from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from pydantic import ValidationError

from engines.contract import ARTIFACTS
from monitor.quality_state import Level, QualityConfig, QualityState

CFG = QualityConfig(warn=0.6, crit=0.4, enter_windows=3, exit_windows=4)


def feed(state, scores, t0=0.0, dt=0.5, probabilities=None):
    events = []
    for i, score in enumerate(scores):
        events += state.update(t0 + i * dt, score, probabilities)
    return events


def test_enter_after_n_windows_and_exit_after_m():
    q = QualityState(CFG)
    assert feed(q, [0.5, 0.5]) == [] and q.level == Level.OK
    (start,) = q.update(1.0, 0.5)
    assert start.kind == "start" and start.level == Level.WARN and q.level == 1
    assert start.started_at == 0.0 and start.duration == 1.0 and start.worst_aqs == 0.5
    assert feed(q, [0.9, 0.9, 0.9], t0=1.5) == [] and q.level == Level.WARN
    (end,) = q.update(3.0, 0.9)
    assert end.kind == "end" and end.level == Level.OK and end.duration == 3.0


def test_clear_windows_must_be_consecutive_and_above_margin():
    q = QualityState(CFG)
    feed(q, [0.5] * 3)
    assert feed(q, [0.9, 0.9, 0.9, 0.5, 0.9, 0.9, 0.9], t0=2) == [] and q.level == Level.WARN
    assert feed(q, [0.61] * 10, t0=10) == [] and q.level == Level.WARN  # within the exit margin
    assert [e.kind for e in feed(q, [0.63] * 4, t0=20)] == ["end"]


def test_crit_directly_and_step_down_through_warn():
    q = QualityState(CFG)
    events = feed(q, [0.2, 0.3, 0.1])
    assert [(e.kind, e.level) for e in events] == [("start", Level.CRIT)]
    events = feed(q, [0.5] * 4, t0=10)  # clear of crit, still below warn
    assert [(e.kind, e.level) for e in events] == [("deescalate", Level.WARN)]
    events = feed(q, [0.3] * 3, t0=20)
    assert [(e.kind, e.level) for e in events] == [("escalate", Level.CRIT)]
    events = feed(q, [0.95] * 4, t0=30)  # clear of both: straight back to ok
    assert [(e.kind, e.level, e.worst_aqs) for e in events] == [("end", Level.OK, pytest.approx(0.1))]


def test_warn_streak_then_crit_streak():
    q = QualityState(CFG)
    events = feed(q, [0.5, 0.5, 0.5, 0.3, 0.3, 0.3])
    assert [(e.kind, e.level) for e in events] == [("start", Level.WARN), ("escalate", Level.CRIT)]


def test_minimum_duration_as_well_as_windows():
    q = QualityState(QualityConfig(enter_windows=2, enter_seconds=10.0, exit_windows=2))
    assert feed(q, [0.5] * 20, dt=0.5) == [] and q.level == Level.OK  # 20 windows, but only 9.5 s
    q = QualityState(QualityConfig(enter_windows=2, enter_seconds=10.0, exit_windows=2))
    events = feed(q, [0.5] * 30, dt=0.5)
    assert len(events) == 1 and events[0].t == 10.0  # 21st window: the streak spans 10 s


def test_dominant_artifact_and_worst_tracked():
    q = QualityState(CFG)
    blur = {"defocus_blur": 0.9, "blocking": 0.2}
    blocks = np.zeros(len(ARTIFACTS))
    blocks[ARTIFACTS.index("blocking")] = 0.95
    feed(q, [0.5, 0.45, 0.5], probabilities=blur)
    events = feed(q, [0.3] * 3 + [0.9] * 4, t0=5, probabilities=blocks)
    end = events[-1]
    assert end.kind == "end" and end.dominant_artifact == "blocking" and end.worst_aqs == pytest.approx(0.3)
    assert end.fields()["dominant_artifact"] == "blocking" and end.fields()["worst_aqs"] == 0.3  # the log line
    q = QualityState(CFG)
    (start,) = feed(q, [0.5, 0.45, 0.5], probabilities=blur)
    assert start.dominant_artifact == "defocus_blur" and start.worst_aqs == pytest.approx(0.45)


def test_close_ends_open_incident():
    q = QualityState(CFG)
    feed(q, [0.3] * 3)
    (end,) = q.close(9.0, reason="stream removed")
    assert end.kind == "end" and end.reason == "stream removed" and q.level == Level.OK
    assert math.isnan(end.aqs) and q.close(10.0) == []


def test_config_validation():
    with pytest.raises(ValidationError):
        QualityConfig(warn=0.4, crit=0.5)
    with pytest.raises(ValidationError):
        QualityConfig(warn_level=0.5)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=200), st.integers(1, 6), st.integers(1, 6))
def test_properties(scores, enter, exit_):
    cfg = QualityConfig(enter_windows=enter, exit_windows=exit_)
    q = QualityState(cfg)
    below_warn = below_crit = clear = 0
    previous = Level.OK
    for i, s in enumerate(scores):
        below_warn = below_warn + 1 if s < cfg.warn else 0
        below_crit = below_crit + 1 if s < cfg.crit else 0
        events = q.update(float(i), s)
        assert len(events) <= 1
        if q.level > previous:  # entered: the streak of that level is long enough
            assert (below_crit if q.level == Level.CRIT else below_warn) >= enter
        if q.level < previous:  # left: enough clear windows
            assert s >= cfg.threshold(previous) + cfg.exit_margin
        if events:
            assert events[0].level == q.level and events[0].previous == previous
            if events[0].kind != "end":
                assert events[0].worst_aqs <= s
        previous = q.level


@pytest.mark.parametrize("a,b", [(0.3, 0.9), (0.5, 0.7), (0.1, 0.65)])
def test_alternating_values_never_flap(a, b):
    q = QualityState(QualityConfig(enter_windows=2, exit_windows=2))
    assert feed(q, [a, b] * 100) == [] and q.level == Level.OK
