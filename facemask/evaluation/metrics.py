"""Metrics over a whole split, from scikit-learn: macro F1 is exactly ``f1_score(average="macro")``."""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from facemask.data.labels import ATTRIBUTES, CLASS_NAMES, NUM_CLASSES, decode


def macro_f1(y_true, y_pred) -> float:
    """scikit-learn's ``f1_score(average="macro")``: the mean F1 of the classes present in the labels or the
    predictions (its default, and the competition's); a class absent from both is left out of the mean."""
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def classification_metrics(y_true, y_pred) -> dict[str, Any]:
    """macro F1, accuracy, macro F1 per attribute (mask, gender, age), F1 per class (all 18, 0 when absent) and
    ``averaged_classes``: the class names the macro F1 averages (present in the labels or the predictions)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    out: dict[str, Any] = {
        "macro_f1": macro_f1(y_true, y_pred),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "count": int(len(y_true)),
    }
    true_parts, pred_parts = decode(y_true), decode(y_pred)
    for (attribute, _), t, p in zip(ATTRIBUTES.items(), true_parts, pred_parts):
        out[f"{attribute}_f1"] = macro_f1(t, p)
    per_class = f1_score(y_true, y_pred, labels=list(range(NUM_CLASSES)), average=None, zero_division=0)
    out["f1_per_class"] = {name: float(v) for name, v in zip(CLASS_NAMES, per_class)}
    out["support_per_class"] = {name: int((y_true == i).sum()) for i, name in enumerate(CLASS_NAMES)}
    present = set(np.unique(y_true).tolist()) | set(np.unique(y_pred).tolist())
    out["averaged_classes"] = [name for i, name in enumerate(CLASS_NAMES) if i in present]
    return out


def probs_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Metrics of a whole split from its class probabilities, with ``loss``: the mean cross-entropy."""
    metrics = classification_metrics(labels, probs.argmax(1))
    picked = probs[np.arange(len(labels)), labels]
    metrics["loss"] = float(-np.log(np.clip(picked, 1e-12, None)).mean())
    return metrics
