"""Fitting the AQS caps (export/fit_aqs.py): recovers known ones, stays in 0..1, gives no cap to damage
the quality output already saw, does not buy a gain on one group with a loss on another, keeps floors."""
from __future__ import annotations

import numpy as np
import pytest

from engines.aqs import aqs
from export.fit_aqs import fit, parse_floor, report

K = 10


def _group(seed: int, caps_truth: np.ndarray, n: int = 3000, noise: float = 0.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    evidence = rng.random((n, K)) * (rng.random((n, K)) < 0.3)
    quality = rng.uniform(0.3, 1.0, n)
    target = aqs(quality, evidence, np.ones_like(evidence), caps_truth) + rng.normal(0, noise, n)
    return {"quality": quality, "evidence": evidence, "target": target}


def test_fit_recovers_the_caps_that_made_the_target():
    truth = np.array([0.7, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.6, 0.0, 0.0])
    group = _group(0, truth)
    caps = fit([group], mse_weight=1.0, sparsity=0.0)
    assert report(caps, group)["aqs_srocc"] > 0.99
    assert np.abs(caps - truth)[truth > 0].max() < 0.1


def test_damage_the_quality_output_already_saw_gets_no_cap():
    group = _group(1, np.zeros(K))  # the target is the quality estimate: it accounts for every artifact
    caps = fit([group])
    assert ((caps >= 0) & (caps <= 1)).all() and caps.max() < 0.02


def test_a_cap_that_helps_one_group_and_hurts_another_is_not_taken():
    helps = _group(2, np.eye(K)[0] * 0.8)  # blocking evidence means damage here...
    misleads = _group(3, np.zeros(K))  # ...and nothing there
    assert fit([helps])[0] > 0.5
    assert fit([helps, misleads])[0] < 0.05


def test_a_floor_is_kept_and_parsed():
    caps = fit([_group(4, np.zeros(K))], floor=parse_floor("blocking=0.6,ringing=0.3"))
    assert 0.6 <= caps[0] < 0.61 and 0.3 <= caps[1] < 0.31  # kept, and not raised where it does not help
    for bad in ("flicker=0.5", "blocking=1.5", "blocking"):
        with pytest.raises(SystemExit, match="--floor"):
            parse_floor(bad)
