"""Fitting the AQS weights (export/fit_aqs.py): recovers known weights, stays in 0..1."""
from __future__ import annotations

import numpy as np

from export.fit_aqs import aqs_with, fit_weights


def test_fit_recovers_the_weights_that_made_the_target():
    rng = np.random.default_rng(0)
    quality = rng.uniform(0.3, 1.0, 4000)
    evidence = rng.random((4000, 10)) * (rng.random((4000, 10)) < 0.3)
    truth = np.array([0.8, 0.0, 0.5, 0.2, 0.6, 0.9, 0.1, 0.4, 0.3, 0.0])
    target = aqs_with(truth, quality, evidence) + rng.normal(0, 0.01, 4000)
    assert np.abs(fit_weights(quality, evidence, target) - truth).max() < 0.05


def test_damage_the_quality_output_already_saw_gets_no_weight():
    rng = np.random.default_rng(1)
    evidence = rng.random((3000, 10)) * (rng.random((3000, 10)) < 0.3)
    target = rng.uniform(0.2, 1.0, 3000)
    quality = target  # a quality estimate that already accounts for every artifact
    weights = fit_weights(quality, evidence, target)
    assert ((0.0 <= weights) & (weights <= 1.0)).all() and weights.max() < 0.02
