"""Fit the classical engine's regressor on the dataset shards and write ``engines/models/classical.json``.

    .venv/bin/python -m export.train_classical [--data data/dataset] [--out engines/models/classical.json]

Features come from :func:`engines.classical.extract_features` (the very code the engine runs); the fit
uses scikit-learn here, on the training side, but the file stores plain arrays only (means, scales,
coefficients, calibration knots) so that the runtime needs nothing but numpy:

- quality: ridge regression on the expanded standardised features, then an isotonic (monotone
  piecewise-linear) calibration fitted on cross-validated predictions, against VMAF / 100;
- presence: one L2 logistic regression per artifact (its probabilities are calibrated by construction);
- intensity: one ridge regression per artifact, fitted on the windows where the artifact is present.

Held-out metrics (SROCC / PLCC of quality and of AQS against VMAF, per-artifact ROC-AUC) are printed
for the model card and recorded in the JSON under ``metrics``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from engines import classical
from engines.aqs import aqs
from engines.classical import (
    FEATURE_NAMES,
    FEATURES_VERSION,
    FORMAT,
    MODEL_FILE,
    ClassicalModel,
    expand,
    extract_features,
    payload_sha256,
)
from engines.contract import ARTIFACTS, NUM_ARTIFACTS, sigmoid
from engines.modelfiles import DEFAULT_MODEL_DIR

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO / "data" / "dataset"
DEFAULT_OUT = DEFAULT_MODEL_DIR / MODEL_FILE
CLIP_Z = 5.0
RIDGE_ALPHAS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0)
LOGISTIC_CS = (0.01, 0.03, 0.1, 0.3, 1.0)
CALIBRATION_KNOTS = 48
MIN_POSITIVES = 8


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
def read_shard(path: Path) -> dict[str, np.ndarray]:
    """One shard of :mod:`export.build_dataset`: windows [M,7,3,224,224] uint8, quality [M] (VMAF/100),
    presence and intensity [M,10], source [M]."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: (npz[k] if k in npz.files else None) for k in (*LABELS, "source")}
    n = len(arrays["quality"])
    source = arrays["source"]
    arrays["source"] = np.asarray(source).astype(str) if source is not None else np.full(n, f"{path.name}")
    return {k: np.asarray(v) for k, v in arrays.items()}


LABELS = ("windows", "quality", "presence", "intensity")


def split_features(split_dir: Path, cache_dir: Path | None, progress: bool = True,
                   exclude_generators: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
    """Features and labels of one split, cached per shard (keyed by shard size, mtime and feature names),
    without the windows any of ``exclude_generators`` made."""
    paths = sorted(split_dir.glob("shard_*.npz"))
    if not paths:
        raise SystemExit(f"no shard_*.npz in {split_dir}")
    parts: dict[str, list[np.ndarray]] = {"features": [], "quality": [], "presence": [], "intensity": [], "source": []}
    started = time.monotonic()
    for index, path in enumerate(paths):
        cached = cache_dir / f"{split_dir.name}_{path.stem}_{_cache_key(path)}.npz" if cache_dir else None
        if cached is not None and cached.exists():
            with np.load(cached) as npz:
                item = {k: npz[k] for k in parts}
        else:
            shard = read_shard(path)
            item = {
                "features": extract_features(shard["windows"]),
                "quality": shard["quality"].astype(np.float32).reshape(-1),
                "presence": shard["presence"].astype(np.float32),
                "intensity": shard["intensity"].astype(np.float32),
                "source": shard["source"],
            }
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                np.savez(cached, **item)
        keep = _without_generators(path, exclude_generators)
        for k in parts:
            parts[k].append(item[k][keep])
        if progress:
            done = sum(len(q) for q in parts["quality"])
            print(
                f"\r{split_dir.name}: shard {index + 1}/{len(paths)}, {done} windows, "
                f"{time.monotonic() - started:.0f} s",
                end="",
                file=sys.stderr,
                flush=True,
            )
    if progress:
        print(file=sys.stderr)
    return {k: np.concatenate(v) for k, v in parts.items()}


def _without_generators(path: Path, exclude_generators: frozenset[str]) -> np.ndarray | slice:
    """Rows of a shard's windows made by none of ``exclude_generators``."""
    if not exclude_generators:
        return slice(None)
    from export.build_dataset import tag_generators

    with np.load(path, allow_pickle=False) as npz:
        tags = npz["degradation"] if "degradation" in npz.files else np.full(len(npz["quality"]), "")
    return np.array([not tag_generators(str(tag)) & exclude_generators for tag in tags], dtype=bool)


def _cache_key(path: Path) -> str:
    """Shard identity plus the feature code's own hash, so a changed feature never reads a stale cache."""
    stat = path.stat()
    code = hashlib.sha256(Path(classical.__file__).read_bytes()).hexdigest()
    text = f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}:{code}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------------------------
# Fit
# ----------------------------------------------------------------------------------------------
def fit(
    features: np.ndarray,
    quality: np.ndarray,
    presence: np.ndarray,
    intensity: np.ndarray,
    groups: np.ndarray | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit the regressor; returns the JSON payload (without sha256 and metrics).

    Cross-validation (for the ridge alpha, the logistic C and the out-of-fold predictions the
    quality calibration is fitted on) keeps each ``groups`` value (the source photograph) in one
    fold, so windows of one scene never validate each other.
    """
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.model_selection import GroupKFold, KFold, cross_val_predict

    features = np.nan_to_num(features.astype(np.float64))
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale = np.where(scale > 1e-6, scale, 1.0)
    x = expand(np.clip((features - mean) / scale, -CLIP_Z, CLIP_Z))
    if groups is not None and len(np.unique(groups)) >= 5:
        folds = list(GroupKFold(n_splits=5).split(features, groups=groups))
    else:
        folds = list(KFold(n_splits=5, shuffle=True, random_state=seed).split(features))

    # quality: ridge, alpha by cross-validation, then isotonic calibration on out-of-fold predictions
    best = None
    for alpha in RIDGE_ALPHAS:
        pred = cross_val_predict(Ridge(alpha=alpha), x, quality, cv=folds)
        err = float(np.mean((pred - quality) ** 2))
        if best is None or err < best[0]:
            best = (err, alpha, pred)
    assert best is not None
    _, q_alpha, oof = best
    ridge = Ridge(alpha=q_alpha).fit(x, quality)
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(oof, quality)
    lo, hi = np.percentile(oof, [0.5, 99.5])
    knots_x = np.unique(np.concatenate([[oof.min()], np.linspace(lo, hi, CALIBRATION_KNOTS), [oof.max()]]))
    knots_y = np.maximum.accumulate(iso.predict(knots_x))

    # presence: logistic regression per artifact, C by cross-validated log-loss (shared over artifacts)
    p_coef = np.zeros((NUM_ARTIFACTS, x.shape[1]))
    p_intercept = np.zeros(NUM_ARTIFACTS)
    best_c, best_loss = LOGISTIC_CS[0], np.inf
    usable = [k for k in range(NUM_ARTIFACTS) if MIN_POSITIVES <= presence[:, k].sum() <= len(presence) - MIN_POSITIVES]
    for c in LOGISTIC_CS:
        loss = 0.0
        for k in usable:
            y = presence[:, k] > 0.5
            try:
                prob = cross_val_predict(
                    LogisticRegression(C=c, max_iter=2000), x, y, cv=folds, method="predict_proba"
                )[:, 1]
            except ValueError:  # a fold without one of the classes: this artifact does not vote on C
                continue
            loss -= float(np.mean(np.where(y, np.log(prob + 1e-9), np.log(1 - prob + 1e-9))))
        if loss < best_loss:
            best_c, best_loss = c, loss
    for k in range(NUM_ARTIFACTS):
        y = presence[:, k] > 0.5
        if k in usable:
            model = LogisticRegression(C=best_c, max_iter=2000).fit(x, y)
            p_coef[k], p_intercept[k] = model.coef_[0], model.intercept_[0]
        else:  # too few examples of one class: a constant prevalence
            rate = np.clip(y.mean(), 1e-3, 1 - 1e-3)
            p_intercept[k] = np.log(rate / (1 - rate))

    # intensity given presence: ridge per artifact on the positive windows
    s_coef = np.zeros((NUM_ARTIFACTS, x.shape[1]))
    s_intercept = np.zeros(NUM_ARTIFACTS)
    for k in range(NUM_ARTIFACTS):
        pos = presence[:, k] > 0.5
        if pos.sum() >= MIN_POSITIVES:
            model = Ridge(alpha=max(q_alpha, 10.0)).fit(x[pos], intensity[pos, k])
            s_coef[k], s_intercept[k] = model.coef_, model.intercept_
        else:
            s_intercept[k] = float(intensity[pos, k].mean()) if pos.any() else 0.5

    return {
        "format": FORMAT,
        "feature_names": list(FEATURE_NAMES),
        "features_version": FEATURES_VERSION,
        "artifacts": list(ARTIFACTS),
        "expansion": "[z, z**2 - 1], z = clip((x - mean) / scale, -clip_z, clip_z)",
        "clip_z": CLIP_Z,
        "mean": _floats(mean),
        "scale": _floats(scale),
        "quality": {
            "coef": _floats(ridge.coef_),
            "intercept": float(ridge.intercept_),
            "alpha": q_alpha,
            "calibration_x": _floats(knots_x),
            "calibration_y": _floats(knots_y),
        },
        "presence": {"coef": _floats(p_coef), "intercept": _floats(p_intercept), "C": best_c},
        "intensity": {"coef": _floats(s_coef), "intercept": _floats(s_intercept)},
    }


def _floats(arr: Any) -> Any:
    """Arrays as nested lists of floats rounded to 7 significant digits (keeps the file small)."""
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 0:
        return float(f"{float(arr):.7g}")
    return [_floats(v) for v in arr]


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------
def evaluate(model: ClassicalModel, features: np.ndarray, quality: np.ndarray, presence: np.ndarray) -> dict[str, Any]:
    """SROCC / PLCC against VMAF for quality and AQS, and ROC-AUC per artifact."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import roc_auc_score

    out = model.predict(features)
    score = aqs(out.quality, sigmoid(out.artifact_logits), out.intensity)
    metrics: dict[str, Any] = {
        "windows": int(len(quality)),
        "quality_srocc": float(spearmanr(out.quality, quality).statistic),
        "quality_plcc": float(pearsonr(out.quality, quality).statistic),
        "aqs_srocc": float(spearmanr(score, quality).statistic),
        "aqs_plcc": float(pearsonr(score, quality).statistic),
        "quality_rmse": float(np.sqrt(np.mean((out.quality - quality) ** 2))),
        "auc": {},
    }
    for k, name in enumerate(ARTIFACTS):
        y = presence[:, k] > 0.5
        if 0 < y.sum() < len(y):
            metrics["auc"][name] = float(roc_auc_score(y, out.artifact_logits[:, k]))
        else:
            metrics["auc"][name] = None
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()} | {
        "auc": {k: (round(v, 4) if v is not None else None) for k, v in metrics["auc"].items()}
    }


def format_metrics(name: str, metrics: dict[str, Any]) -> str:
    lines = [
        f"{name}: {metrics['windows']} windows",
        f"  quality vs VMAF: SROCC {metrics['quality_srocc']:.3f}  PLCC {metrics['quality_plcc']:.3f}  "
        f"RMSE {metrics['quality_rmse']:.3f}",
        f"  AQS vs VMAF:     SROCC {metrics['aqs_srocc']:.3f}  PLCC {metrics['aqs_plcc']:.3f}",
        "  ROC-AUC per artifact:",
    ]
    for artifact, auc in metrics["auc"].items():
        lines.append(f"    {artifact:<15} {'n/a (one class only)' if auc is None else f'{auc:.3f}'}")
    return "\n".join(lines)


def finalize(payload: dict[str, Any]) -> dict[str, Any]:
    """Add the sha256 of the payload (verified by the engine on load)."""
    payload = dict(payload)
    payload.pop("sha256", None)
    payload["sha256"] = payload_sha256(payload)
    return payload


def write_model(payload: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(finalize(payload), indent=1, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(out)


def counts(presence: np.ndarray) -> dict[str, int]:
    return {name: int((presence[:, k] > 0.5).sum()) for k, name in enumerate(ARTIFACTS)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="dataset folder with train/ and heldout/")
    parser.add_argument("--extra-train", type=lambda v: [Path(x) for x in v.split(",") if x], default=[],
                        help="more datasets (comma-separated) whose train/ shards are fitted on too")
    parser.add_argument("--exclude-generators", type=lambda v: frozenset(g for g in v.split(",") if g), default=frozenset(),
                        help="comma-separated export.build_dataset.GENERATORS whose windows are left out of training")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="model file to write")
    parser.add_argument("--cache", type=Path, default=REPO / "data" / "cache" / "classical", help="feature cache folder")
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cache = None if args.no_cache else args.cache

    started = time.monotonic()
    parts = [split_features(d / "train", cache, exclude_generators=args.exclude_generators)
             for d in (args.data, *args.extra_train)]
    train = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    feature_seconds = time.monotonic() - started
    payload = fit(
        train["features"], train["quality"], train["presence"], train["intensity"], groups=train["source"], seed=args.seed
    )
    model = ClassicalModel(payload)
    metrics = {"train": evaluate(model, train["features"], train["quality"], train["presence"])}
    heldout_dir = args.data / "heldout"
    heldout = None
    if any(heldout_dir.glob("shard_*.npz")):
        heldout = split_features(heldout_dir, cache)
        metrics["heldout"] = evaluate(model, heldout["features"], heldout["quality"], heldout["presence"])
    import sklearn

    payload["training"] = {
        "command": "python -m export.train_classical " + " ".join(argv if argv is not None else sys.argv[1:]),
        "seed": args.seed,
        "train_windows": int(len(train["quality"])),
        "heldout_windows": int(len(heldout["quality"])) if heldout is not None else 0,
        "train_positives": counts(train["presence"]),
        "heldout_positives": counts(heldout["presence"]) if heldout is not None else {},
        "feature_seconds": round(feature_seconds, 1),
        "total_seconds": round(time.monotonic() - started, 1),
        "machine": f"{platform.machine()} {platform.processor() or ''} python {platform.python_version()}".strip(),
        "sklearn": sklearn.__version__,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    payload["metrics"] = metrics
    write_model(payload, args.out)
    for split, values in metrics.items():
        print(format_metrics(split, values))
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
