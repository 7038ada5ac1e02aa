"""Fit how a model's outputs combine into AQS (the per-artifact weights of :mod:`engines.aqs`).

    python -m export.fit_aqs --model engines/models/aqs_effnet_lite0.onnx \
        --data data/dataset,data/v2/dataset --out engines/models/aqs.json

AQS = quality x prod_k (1 - w_k p_k s_k). The weights are fitted by least squares against VMAF / 100
on the calibration shards (``export.train.is_calibration_shard``: training sources, but windows the
model was never trained on, so its quality estimate is no better there than on new content), with
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


def calibration_outputs(model: Path, datasets: list[Path], threads: int) -> dict[str, np.ndarray]:
    from export.quantize import run, session
    from export.train import ShardCache, is_calibration_shard

    split = ShardCache(*(d / "train" for d in datasets), use=is_calibration_shard).refresh()
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
    parser.add_argument("--out", type=Path, default=WEIGHTS_FILE)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    data = calibration_outputs(args.model, args.data, args.threads)
    previous = np.array([json.loads(args.out.read_text())["weights"][a] for a in ARTIFACTS]) if args.out.exists() else None
    weights = fit_weights(data["quality"], data["evidence"], data["target"])
    fitted = {"model": args.model.name, "calibration_windows": int(len(data["target"])),
              "datasets": [str(d) for d in args.data], "after": report(weights, data),
              "before": report(previous, data) if previous is not None else None}
    args.out.write_text(json.dumps({"weights": {a: round(float(w), 4) for a, w in zip(ARTIFACTS, weights)},
                                    "fitted": fitted}, indent=2) + "\n")
    print(json.dumps(fitted, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
