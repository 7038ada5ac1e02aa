"""Fit how a model's outputs combine into AQS (the per-artifact caps and the dead zone of :mod:`engines.aqs`).

    python -m export.fit_aqs --model engines/models/aqs_effnet_b0.int8.onnx --all-shards \
        --data data/art/dataset,data/v2/dataset,data/v8/dataset --floor blocking=0.95,ringing=0.95 --clean-weight 0.25

AQS = min(quality, prod_k (1 - c_k d(p_k s_k))), d(e) = max(0, e - z) / (1 - z). The caps and the
dead zone z are fitted together against VMAF / 100 on windows the model never trained on: the
calibration shards (``export.train.is_calibration_shard``, kept out of training by ``--calibration``),
or with ``--all-shards`` every training shard of datasets the model never saw. Each dataset is a
group, and the fit maximises the *smallest* gain in rank correlation (SROCC) over the quality output
alone across the groups, so a cap that helps on one kind of content and hurts on another is not
bought. ``--mse-weight`` adds the squared error (absolute levels); ``--sparsity`` charges every unit
of cap, so an artifact whose evidence does not clearly help gets none; ``--clean-weight`` charges the
share of clean windows (no artifact present) that the quality output reads as excellent (>= 0.85)
and AQS pushes below it: false alarms the combination itself makes, which a rank correlation over
all windows barely sees; ``--floor`` sets lowest caps for damage the fit data under-represents. Each
cap stays in 0..1 and the dead zone in 0..``MAX_DEAD_ZONE``, so the score keeps its range and more
artifact evidence never raises it. SROCC is piecewise constant in z, so the search starts from
several dead zones (``DEAD_ZONE_STARTS``) and keeps the best.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from engines.aqs import CAPS_FILE, aqs
from engines.contract import ARTIFACTS
from export.metrics import plcc, srocc


# At most 0.3: with a wider dead zone the fit escapes the floors (evidence of a starved encode then
# falls mostly inside it): at 0.4 the held-out x264 CRF 46 encodes read <= 0.4 on 26 of 56, at 0.3 on 39-40.
MAX_DEAD_ZONE = 0.3
EXCELLENT = 0.85  # engines.aqs.QUALITY_BANDS' top band: what a clean window should read
DEAD_ZONE_STARTS = (0.0, 0.1, 0.2, 0.3)


def _aqs(caps: np.ndarray, dead_zone: float, data: dict[str, np.ndarray]) -> np.ndarray:
    return aqs(data["quality"], data["evidence"], np.ones_like(data["evidence"]), caps, dead_zone)


def _split(params: np.ndarray) -> tuple[np.ndarray, float]:
    """The search's ``params`` (the 10 caps, then the dead zone) -> (caps, dead zone), each in its range."""
    return np.clip(params[: len(ARTIFACTS)], 0.0, 1.0), float(np.clip(params[len(ARTIFACTS)], 0.0, MAX_DEAD_ZONE))


def objective(params: np.ndarray, groups: list[dict[str, np.ndarray]], baselines: list[float], mse_weight: float,
              sparsity: float, clean_weight: float = 0.0) -> float:
    """What the fit minimises: minus the smallest gain in SROCC against VMAF / 100 over the quality output
    alone (``baselines``, one per group), across ``groups`` (AQS must rank at least as well on every kind
    of content, not on average), plus ``mse_weight`` x the mean squared error, plus ``sparsity`` x the sum
    of the caps, plus ``clean_weight`` x the mean across groups of :func:`clean_windows_lost`."""
    caps, dead_zone = _split(params)
    scores = [_aqs(caps, dead_zone, g) for g in groups]
    gain = min(srocc(s, g["target"]) - base for s, g, base in zip(scores, groups, baselines))
    error = float(np.mean([((s - g["target"]) ** 2).mean() for s, g in zip(scores, groups)]))
    lost = float(np.mean([clean_windows_lost(s, g) for s, g in zip(scores, groups)])) if clean_weight else 0.0
    return -gain + mse_weight * error + sparsity * float(caps.sum()) + clean_weight * lost


def clean_windows_lost(score: np.ndarray, data: dict[str, np.ndarray]) -> float:
    """Share of the clean windows that the quality output reads as excellent and ``score`` does not."""
    clean = data.get("clean")
    if clean is None or not clean.any():
        return 0.0
    return float(np.mean((data["quality"][clean] >= EXCELLENT) & (score[clean] < EXCELLENT)))


def fit(groups: list[dict[str, np.ndarray]], floor: np.ndarray | None = None, mse_weight: float = 0.0,
        sparsity: float = 0.001, clean_weight: float = 0.0, evaluations: int = 4000) -> tuple[np.ndarray, float]:
    """(caps in ``floor``..1, dead zone) minimising :func:`objective`, by Powell's derivative-free search
    from the floor and each of :data:`DEAD_ZONE_STARTS` (SROCC is piecewise constant, so there is no
    gradient)."""
    low = np.zeros(len(ARTIFACTS)) if floor is None else np.clip(np.asarray(floor, dtype=np.float64), 0.0, 1.0)
    baselines = [srocc(g["quality"], g["target"]) for g in groups]  # the same for every candidate
    bounds = [*zip(low, np.ones_like(low)), (0.0, MAX_DEAD_ZONE)]
    best = None
    for start in DEAD_ZONE_STARTS:
        result = minimize(objective, np.append(low, start), args=(groups, baselines, mse_weight, sparsity, clean_weight),
                          method="Powell", bounds=bounds, options={"maxfev": evaluations, "xtol": 1e-3})
        if best is None or result.fun < best.fun:
            best = result
    caps, dead_zone = _split(best.x)
    return np.maximum(caps, low).astype(np.float32), round(dead_zone, 4)


def calibration_outputs(model: Path, datasets: list[Path], threads: int,
                        exclude_generators: frozenset[str] = frozenset(), all_shards: bool = False) -> dict[str, np.ndarray]:
    from engines.contract import sigmoid
    from export.quantize import run, session
    from export.train import ShardCache, is_calibration_shard

    split = ShardCache(*(d / "train" for d in datasets), use=(lambda p: True) if all_shards else is_calibration_shard,
                       exclude_generators=exclude_generators).refresh()
    if split is None:
        raise SystemExit(f"no calibration shards under {', '.join(str(d / 'train') for d in datasets)}")
    quality, logits, intensity = run(session(model, threads), split.windows)
    return {"quality": quality, "evidence": sigmoid(logits) * np.clip(intensity, 0.0, 1.0), "target": split.quality,
            "clean": split.presence.sum(axis=1) == 0}


def report(caps: np.ndarray, dead_zone: float, data: dict[str, np.ndarray]) -> dict:
    score = _aqs(caps, dead_zone, data)
    return {"aqs_srocc": srocc(score, data["target"]), "aqs_plcc": plcc(score, data["target"]),
            "quality_srocc": srocc(data["quality"], data["target"]), "mse": float(((score - data["target"]) ** 2).mean()),
            "clean_windows_lost": clean_windows_lost(score, data)}


def parse_floor(text: str) -> np.ndarray:
    """``blocking=0.6,ringing=0.6`` -> lower bounds [10] (0 for the others); SystemExit naming a bad entry."""
    floor = np.zeros(len(ARTIFACTS))
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        try:
            floor[ARTIFACTS.index(name)] = float(value)
        except ValueError:
            raise SystemExit(f"--floor: {item!r} is not ARTIFACT=VALUE with an artifact of {', '.join(ARTIFACTS)}")
        if not 0.0 <= float(value) <= 1.0:
            raise SystemExit(f"--floor: {item!r}: the value must be in 0..1")
    return floor


def shards_used(all_shards: bool, every_shard_of: set[Path]) -> str:
    if all_shards:
        return "every training shard"
    if every_shard_of:
        return f"calibration shards; every training shard of {', '.join(f'`{d}`' for d in sorted(every_shard_of))}"
    return "calibration shards"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="the ONNX file whose outputs AQS combines")
    parser.add_argument("--data", type=lambda s: [Path(p) for p in s.split(",") if p], required=True,
                        help="datasets (comma-separated), each a group AQS must not rank worse on than quality alone")
    parser.add_argument("--exclude-generators", type=lambda v: frozenset(g for g in v.split(",") if g), default=frozenset(),
                        help="leave out windows these generators made (those the model was trained without)")
    parser.add_argument("--all-shards", action="store_true",
                        help="fit on every training shard of --data: for a model that was never trained on those datasets")
    parser.add_argument("--every-shard-of", type=lambda s: {Path(p) for p in s.split(",") if p}, default=set(),
                        help="datasets of --data (comma-separated) the model never trained on: every training shard of "
                             "these, the calibration shards of the others")
    parser.add_argument("--floor", type=parse_floor, default=np.zeros(len(ARTIFACTS)),
                        help="lowest caps, e.g. blocking=0.6,ringing=0.6: for damage the quality output is known to "
                             "underrate on content the fit data lacks")
    parser.add_argument("--mse-weight", type=float, default=0.0,
                        help="weight of the squared error against VMAF/100 beside the rank correlation (0: rank only)")
    parser.add_argument("--sparsity", type=float, default=0.001, help="cost of each unit of cap (0: none)")
    parser.add_argument("--clean-weight", type=float, default=0.0,
                        help="cost of the share of excellent clean windows AQS pushes below 0.85 (0: none)")
    parser.add_argument("--out", type=Path, default=CAPS_FILE)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    unknown = args.every_shard_of - set(args.data)
    if unknown:
        parser.error(f"--every-shard-of {', '.join(map(str, sorted(unknown)))}: not in --data")
    groups = [calibration_outputs(args.model, [d], args.threads, args.exclude_generators,
                                  args.all_shards or d in args.every_shard_of) for d in args.data]
    caps, dead_zone = fit(groups, args.floor, args.mse_weight, args.sparsity, args.clean_weight)
    fitted = {"model": args.model.name,
              "objective": (f"-(smallest SROCC gain over quality alone across the datasets) + {args.mse_weight:g} x MSE "
                            f"+ {args.sparsity:g} x sum of caps + {args.clean_weight:g} x share of excellent clean windows lost"),
              "floor": {a: float(f) for a, f in zip(ARTIFACTS, args.floor) if f > 0},
              "windows": int(sum(len(g["target"]) for g in groups)),
              "shards": shards_used(args.all_shards, args.every_shard_of),
              "datasets": [str(d) for d in args.data], "excluded_generators": sorted(args.exclude_generators),
              "after": {str(d): report(caps, dead_zone, g) for d, g in zip(args.data, groups)}}
    args.out.write_text(json.dumps({"caps": {a: round(float(c), 4) for a, c in zip(ARTIFACTS, caps)},
                                    "dead_zone": dead_zone, "fitted": fitted}, indent=2) + "\n")
    print(json.dumps(fitted, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
