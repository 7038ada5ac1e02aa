"""Agreement measures shared by training (per-epoch logs) and evaluation (the model card)."""
from __future__ import annotations

import numpy as np
from scipy import stats

from engines.contract import ARTIFACTS


def srocc(pred: np.ndarray, target: np.ndarray) -> float:
    """Spearman rank correlation; nan when either side is constant."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    if len(pred) < 3 or np.ptp(pred) == 0 or np.ptp(target) == 0:
        return float("nan")
    return float(stats.spearmanr(pred, target).statistic)


def plcc(pred: np.ndarray, target: np.ndarray) -> float:
    """Pearson linear correlation (no logistic fitting); nan when either side is constant."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    if len(pred) < 3 or np.ptp(pred) == 0 or np.ptp(target) == 0:
        return float("nan")
    return float(stats.pearsonr(pred, target).statistic)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum formula (ties get mid-ranks); nan for one class."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels) > 0.5
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = stats.rankdata(scores)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def artifact_aucs(logits: np.ndarray, presence: np.ndarray) -> dict[str, float]:
    return {name: roc_auc(logits[:, k], presence[:, k]) for k, name in enumerate(ARTIFACTS)}


def mean_defined(values) -> float:
    values = [v for v in values if v == v]
    return float(np.mean(values)) if values else float("nan")
