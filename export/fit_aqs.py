"""Fit how a model's outputs combine into AQS (the per-artifact weights of :mod:`engines.aqs`).

    python -m export.fit_aqs --model engines/models/aqs_effnet_lite0.onnx \
        --data data/dataset,data/v2/dataset --out engines/models/aqs.json

AQS = quality x prod_k (1 - w_k p_k s_k). The weights are fitted against VMAF / 100 (by default to
rank windows as VMAF does, maximising SROCC; or by least squares) on windows the model was never trained on (so its quality estimate is no better there than on new
content): the calibration shards (``export.train.is_calibration_shard``, kept out of training by
``--calibration``), or with ``--all-shards`` every training shard of datasets the model never saw, with
each w_k bounded to 0..1: the score keeps its range and more artifact evidence never raises it.
If the quality output already accounts for an artifact, its weight comes out near 0 rather than
counting the damage twice.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from engines.aqs import WEIGHTS_FILE
from engines.contract import ARTIFACTS
from engines.contract import sigmoid as np_sigmoid
from export.metrics import plcc, srocc


def aqs_with(weights: np.ndarray, quality: np.ndarray, evidence: np.ndarray) -> np.ndarray:
    return np.clip(quality, 0.0, 1.0) * np.prod(1.0 - weights * evidence, axis=1)


def fit_rank_weights(quality: np.ndarray, evidence: np.ndarray, target: np.ndarray, start: np.ndarray,
                     evaluations: int = 3000) -> np.ndarray:
    """Weights in 0..1 maximising the rank correlation (SROCC) of AQS with ``target``, by Powell's
    derivative-free search from ``start`` (SROCC is piecewise constant, so no gradient)."""
    result = minimize(lambda w: -srocc(aqs_with(np.clip(w, 0.0, 1.0), quality, evidence), target),
                      np.clip(start, 0.0, 1.0), method="Powell", bounds=[(0.0, 1.0)] * evidence.shape[1],
                      options={"maxfev": evaluations, "xtol": 1e-3})
    return np.clip(result.x, 0.0, 1.0)


def fit_weights(quality: np.ndarray, evidence: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Weights in 0..1 minimising the squared error of AQS against ``target`` (VMAF / 100)."""

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        factors = 1.0 - w * evidence  # [N, K]
        score = np.clip(quality, 0.0, 1.0) * np.prod(factors, axis=1)
        err = score - target
        # d score / d w_k = -score * e_k / (1 - w_k e_k)
        grad = (2.0 * err[:, None] * -score[:, None] * evidence / np.maximum(factors, 1e-6)).mean(0)
        return float((err ** 2).mean()), grad

    start = np.full(evidence.shape[1], 0.3)
    result = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=[(0.0, 1.0)] * evidence.shape[1])
    return np.clip(result.x, 0.0, 1.0)


def calibration_outputs(model: Path, datasets: list[Path], threads: int,
                        exclude_generators: frozenset[str] = frozenset(), all_shards: bool = False) -> dict[str, np.ndarray]:
    from export.quantize import run, session
    from export.train import ShardCache, is_calibration_shard

    split = ShardCache(*(d / "train" for d in datasets), use=(lambda p: True) if all_shards else is_calibration_shard,
                       exclude_generators=exclude_generators).refresh()
    if split is None:
        raise SystemExit(f"no calibration shards under {', '.join(str(d / 'train') for d in datasets)}")
    quality, logits, intensity = run(session(model, threads), split.windows)
    return {"quality": quality, "evidence": np_sigmoid(logits) * np.clip(intensity, 0.0, 1.0), "target": split.quality}


def report(weights: np.ndarray, data: dict[str, np.ndarray]) -> dict:
    score = aqs_with(weights, data["quality"], data["evidence"])
    return {"aqs_srocc": srocc(score, data["target"]), "aqs_plcc": plcc(score, data["target"]),
            "quality_srocc": srocc(data["quality"], data["target"]), "mse": float(((score - data["target"]) ** 2).mean())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="the ONNX file whose outputs AQS combines")
    parser.add_argument("--data", type=lambda s: [Path(p) for p in s.split(",") if p], required=True,
                        help="datasets (comma-separated) whose calibration shards are fitted on")
    parser.add_argument("--exclude-generators", type=lambda v: frozenset(g for g in v.split(",") if g), default=frozenset(),
                        help="leave out windows these generators made (those the model was trained without)")
    parser.add_argument("--all-shards", action="store_true",
                        help="fit on every training shard of --data: for a model that was never trained on those datasets")
    parser.add_argument("--objective", choices=("srocc", "mse"), default="srocc",
                        help="srocc: rank AQS as VMAF ranks (from the current weights); mse: least squares")
    parser.add_argument("--out", type=Path, default=WEIGHTS_FILE)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    data = calibration_outputs(args.model, args.data, args.threads, args.exclude_generators, args.all_shards)
    previous = np.array([json.loads(args.out.read_text())["weights"][a] for a in ARTIFACTS]) if args.out.exists() else None
    if args.objective == "srocc":
        weights = fit_rank_weights(data["quality"], data["evidence"], data["target"],
                                   previous if previous is not None else np.full(len(ARTIFACTS), 0.3))
    else:
        weights = fit_weights(data["quality"], data["evidence"], data["target"])
    fitted = {"model": args.model.name, "objective": args.objective, "calibration_windows": int(len(data["target"])),
              "shards": "every training shard" if args.all_shards else "calibration shards",
              "datasets": [str(d) for d in args.data], "excluded_generators": sorted(args.exclude_generators),
              "after": report(weights, data),
              "before": report(previous, data) if previous is not None else None}
    args.out.write_text(json.dumps({"weights": {a: round(float(w), 4) for a, w in zip(ARTIFACTS, weights)},
                                    "fitted": fitted}, indent=2) + "\n")
    print(json.dumps(fitted, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
