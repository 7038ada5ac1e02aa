"""Fitting the AQS caps and dead zone (export/fit_aqs.py): recovers known ones, stays in range, gives no cap
to damage the quality output already saw, does not buy a gain on one group with a loss on another, keeps floors."""
from __future__ import annotations

import numpy as np
import pytest

from engines.aqs import aqs
from export.fit_aqs import clean_windows_lost, fit, objective, parse_floor, report
from export.metrics import srocc

K = 10


def _group(seed: int, caps_truth: np.ndarray, n: int = 3000, noise: float = 0.0, dead_zone: float = 0.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    evidence = rng.random((n, K)) * (rng.random((n, K)) < 0.3)
    quality = rng.uniform(0.3, 1.0, n)
    target = aqs(quality, evidence, np.ones_like(evidence), caps_truth, dead_zone) + rng.normal(0, noise, n)
    return {"quality": quality, "evidence": evidence, "target": target}


def test_fit_recovers_the_caps_that_made_the_target():
    truth = np.array([0.7, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.6, 0.0, 0.0])
    group = _group(0, truth)
    caps, dead_zone = fit([group], mse_weight=1.0, sparsity=0.0)
    assert report(caps, dead_zone, group)["aqs_srocc"] > 0.99
    assert np.abs(caps - truth)[truth > 0].max() < 0.1 and dead_zone < 0.05


def test_fit_recovers_a_dead_zone():
    truth = np.array([0.7, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.6, 0.0, 0.0])
    group = _group(5, truth, dead_zone=0.25)
    caps, dead_zone = fit([group], mse_weight=1.0, sparsity=0.0)
    assert report(caps, dead_zone, group)["aqs_srocc"] > 0.99
    assert abs(dead_zone - 0.25) < 0.05 and np.abs(caps - truth)[truth > 0].max() < 0.1


def test_damage_the_quality_output_already_saw_gets_no_cap():
    group = _group(1, np.zeros(K))  # the target is the quality estimate: it accounts for every artifact
    caps, dead_zone = fit([group])
    assert ((caps >= 0) & (caps <= 1)).all() and caps.max() < 0.02 and 0.0 <= dead_zone <= 0.3


def test_a_cap_that_helps_one_group_and_hurts_another_is_not_taken():
    helps = _group(2, np.eye(K)[0] * 0.8)  # blocking evidence means damage here...
    misleads = _group(3, np.zeros(K))  # ...and nothing there
    assert fit([helps])[0][0] > 0.5
    assert fit([helps, misleads])[0][0] < 0.05


def test_a_floor_is_kept_and_parsed():
    caps, _ = fit([_group(4, np.zeros(K))], floor=parse_floor("blocking=0.6,ringing=0.3"))
    assert 0.6 <= caps[0] < 0.61 and 0.3 <= caps[1] < 0.31  # kept, and not raised where it does not help
    for bad in ("flicker=0.5", "blocking=1.5", "blocking"):
        with pytest.raises(SystemExit, match="--floor"):
            parse_floor(bad)


def test_clean_weight_keeps_excellent_clean_windows_excellent():
    """Clean windows with weak false evidence: ranking alone barely sees them, the clean weight does."""
    rng = np.random.default_rng(6)
    truth = np.eye(K)[0] * 0.8
    damaged = _group(7, truth)
    n = 600
    clean = {"quality": rng.uniform(0.86, 1.0, n), "evidence": rng.uniform(0.0, 0.25, (n, K)), "clean": np.ones(n, bool)}
    clean["target"] = clean["quality"]
    group = {key: np.concatenate([damaged[key], clean[key]]) for key in ("quality", "evidence", "target")}
    group["clean"] = np.concatenate([np.zeros(len(damaged["target"]), bool), clean["clean"]])
    caps, dead_zone = fit([group], clean_weight=1.0)
    assert report(caps, dead_zone, group)["clean_windows_lost"] < 0.01 and dead_zone > 0.1
    assert caps[0] > 0.5  # the real damage still caps the score
    counted = np.append(truth, 0.0)  # the same caps without a dead zone: clean windows pushed below 0.85
    lost = clean_windows_lost(aqs(group["quality"], group["evidence"], np.ones_like(group["evidence"]), truth, 0.0), group)
    base = [srocc(group["quality"], group["target"])]
    assert lost > 0.05
    assert objective(counted, [group], base, 0.0, 0.0, 1.0) == pytest.approx(objective(counted, [group], base, 0.0, 0.0) + lost)
    assert clean_windows_lost(group["quality"], group) == 0.0


def test_every_shard_of_names_the_datasets_it_takes_whole(tmp_path, capsys):
    from pathlib import Path

    from export.fit_aqs import main, shards_used

    assert shards_used(False, set()) == "calibration shards"
    assert shards_used(True, {Path("data/v8/dataset")}) == "every training shard"
    assert shards_used(False, {Path("data/v8/dataset")}) == "calibration shards; every training shard of `data/v8/dataset`"
    with pytest.raises(SystemExit):
        main(["--model", str(tmp_path / "m.onnx"), "--data", "data/a", "--every-shard-of", "data/b"])
    assert "--every-shard-of data/b: not in --data" in capsys.readouterr().err
