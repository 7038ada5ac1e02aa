"""AQS: range, monotonicity in artifact evidence, clean windows, reachable extremes, bands; for the
shipped caps and dead zone and for any others (a fit may choose any caps in 0..1, any dead zone below 1)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from engines.aqs import (QUALITY_BANDS, SHIPPED_CAPS, SHIPPED_DEAD_ZONE, aqs, dominant_artifact, load_caps,
                         load_dead_zone, quality_level)
from engines.contract import ARTIFACTS, NUM_ARTIFACTS

unit = st.floats(0.0, 1.0, allow_nan=False, width=32)
loose = st.floats(-5.0, 5.0, allow_nan=False, width=32)  # out-of-range inputs are clipped
vectors = arrays(np.float32, NUM_ARTIFACTS, elements=unit)
cap_sets = st.one_of(st.just(SHIPPED_CAPS), vectors)
dead_zones = st.one_of(st.just(SHIPPED_DEAD_ZONE), st.floats(0.0, 0.95, allow_nan=False))


@settings(max_examples=300, deadline=None)
@given(q=loose, p=arrays(np.float32, NUM_ARTIFACTS, elements=loose), s=arrays(np.float32, NUM_ARTIFACTS, elements=loose),
       c=cap_sets, z=dead_zones)
def test_output_is_in_unit_range(q, p, s, c, z):
    value = aqs(np.array([q]), p[None], s[None], c, z)
    assert value.shape == (1,) and value.dtype == np.float32
    assert 0.0 <= float(value[0]) <= 1.0


@settings(max_examples=300, deadline=None)
@given(q=unit, p=vectors, s=vectors, k=st.integers(0, NUM_ARTIFACTS - 1), dp=unit, ds=unit, c=cap_sets, z=dead_zones)
def test_more_evidence_never_raises_the_score(q, p, s, k, dp, ds, c, z):
    base = aqs(np.array([q]), p[None], s[None], c, z)[0]
    more_p, more_s = p.copy(), s.copy()
    more_p[k] = min(1.0, more_p[k] + dp)
    more_s[k] = min(1.0, more_s[k] + ds)
    assert aqs(np.array([q]), more_p[None], s[None], c, z)[0] <= base + 1e-7
    assert aqs(np.array([q]), p[None], more_s[None], c, z)[0] <= base + 1e-7
    assert aqs(np.array([q]), more_p[None], more_s[None], c, z)[0] <= base + 1e-7


@settings(max_examples=200, deadline=None)
@given(q=unit, s=vectors, p=vectors, c=cap_sets, z=dead_zones)
def test_clean_window_scores_its_quality(q, s, p, c, z):
    assert aqs(np.array([q]), np.zeros((1, NUM_ARTIFACTS)), s[None], c, z)[0] == pytest.approx(q, abs=1e-6)
    assert aqs(np.array([q]), p[None], np.zeros((1, NUM_ARTIFACTS)), c, z)[0] == pytest.approx(q, abs=1e-6)
    weak = np.minimum(p, z)[None]  # evidence p * 1 up to the dead zone is not counted
    assert aqs(np.array([q]), weak, np.ones((1, NUM_ARTIFACTS)), c, z)[0] == pytest.approx(q, abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(q1=unit, q2=unit, p=vectors, s=vectors, c=cap_sets, z=dead_zones)
def test_monotone_in_quality(q1, q2, p, s, c, z):
    lo, hi = sorted((q1, q2))
    assert aqs(np.array([lo]), p[None], s[None], c, z)[0] <= aqs(np.array([hi]), p[None], s[None], c, z)[0] + 1e-7


@pytest.mark.parametrize(("caps", "dead_zone"), [(SHIPPED_CAPS, SHIPPED_DEAD_ZONE), (np.linspace(0, 1, NUM_ARTIFACTS), 0.0),
                                                (np.linspace(0, 1, NUM_ARTIFACTS), 0.7)])
def test_full_range_is_reachable(caps, dead_zone):
    zeros, ones = np.zeros((1, NUM_ARTIFACTS)), np.ones((1, NUM_ARTIFACTS))
    assert aqs(np.array([1.0]), zeros, zeros, caps, dead_zone)[0] == pytest.approx(1.0)
    assert aqs(np.array([0.0]), zeros, zeros, caps, dead_zone)[0] == 0.0
    assert aqs(np.array([1.0]), ones, ones, caps, dead_zone)[0] == pytest.approx(np.prod(1.0 - caps), abs=1e-6)
    for k in range(NUM_ARTIFACTS):  # each artifact alone, fully present, on a perfect picture: 1 - its cap
        p = np.zeros((1, NUM_ARTIFACTS))
        p[0, k] = 1.0
        assert aqs(np.array([1.0]), p, p, caps, dead_zone)[0] == pytest.approx(1.0 - caps[k], abs=1e-6)


def test_the_dead_zone_leaves_weak_evidence_out():
    blocking = ARTIFACTS.index("blocking")
    caps = np.eye(NUM_ARTIFACTS)[blocking] * 0.6
    p = np.zeros((3, NUM_ARTIFACTS))
    p[:, blocking] = [0.3, 0.65, 1.0]
    # dead zone 0.3: evidence 0.3 is not counted, 0.65 counts half (cap 0.6 -> 1 - 0.3), 1.0 counts whole
    np.testing.assert_allclose(aqs(np.ones(3), p, np.ones_like(p), caps, 0.3), [1.0, 0.7, 0.4], atol=1e-6)


def test_a_cap_only_bites_above_it():
    blocking = ARTIFACTS.index("blocking")
    caps = np.eye(NUM_ARTIFACTS)[blocking] * 0.6
    p = np.zeros((2, NUM_ARTIFACTS))
    p[:, blocking] = 1.0
    # full blocking caps the score at 0.4: a quality estimate of 0.9 comes down, one of 0.3 already saw it
    np.testing.assert_allclose(aqs(np.array([0.9, 0.3]), p, p, caps), [0.4, 0.3], atol=1e-6)


def test_batch_shape():
    rng = np.random.default_rng(0)
    out = aqs(rng.random(5), rng.random((5, NUM_ARTIFACTS)), rng.random((5, NUM_ARTIFACTS)))
    assert out.shape == (5,)


@pytest.mark.parametrize(
    ("score", "band"),
    [(1.0, "excellent"), (0.85, "excellent"), (0.8499, "good"), (0.70, "good"), (0.6999, "fair"), (0.5, "fair"),
     (0.4999, "poor"), (0.3, "poor"), (0.2999, "very_poor"), (0.0, "very_poor")],
)
def test_quality_bands(score, band):
    assert quality_level(score) == band


@given(st.floats(0.0, 1.0, allow_nan=False))
def test_bands_are_ordered(score):
    names = [name for _, name in QUALITY_BANDS]
    assert names.index(quality_level(score)) >= names.index(quality_level(min(1.0, score + 0.1)))


def test_dominant_artifact_is_the_most_evident_whatever_its_cap():
    p = np.zeros(NUM_ARTIFACTS)
    s = np.zeros(NUM_ARTIFACTS)
    p[ARTIFACTS.index("judder")] = s[ARTIFACTS.index("judder")] = 0.9
    p[ARTIFACTS.index("blocking")] = s[ARTIFACTS.index("blocking")] = 0.5
    assert dominant_artifact(p, s) == "judder"
    p[ARTIFACTS.index("blocking")], s[ARTIFACTS.index("blocking")] = 1.0, 0.85
    assert dominant_artifact(p, s) == "blocking"


def test_caps_file_is_validated(tmp_path):
    path = tmp_path / "aqs.json"
    good = {name: float(c) for name, c in zip(ARTIFACTS, SHIPPED_CAPS)}
    path.write_text(json.dumps({"caps": good}))
    np.testing.assert_array_equal(load_caps(path), SHIPPED_CAPS)
    for caps, named in (({**good, "blocking": 1.5}, "blocking"), ({**good, "ringing": "high"}, "ringing"),
                        ({k: v for k, v in good.items() if k != "judder"}, "judder"), ({**good, "flicker": 0.1}, "flicker")):
        path.write_text(json.dumps({"caps": caps}))
        with pytest.raises(ValueError, match=f"aqs.json.*caps.*{named}"):
            load_caps(path)
    path.write_text(json.dumps({"weights": good}))
    with pytest.raises(ValueError, match="aqs.json.*'caps'"):
        load_caps(path)
    path.write_text(json.dumps({"caps": good}))
    assert load_dead_zone(path) == 0.0  # a file from before the dead zone: none
    for bad in (1.0, -0.1, "wide", True):
        path.write_text(json.dumps({"caps": good, "dead_zone": bad}))
        with pytest.raises(ValueError, match="aqs.json.*'dead_zone'"):
            load_dead_zone(path)
