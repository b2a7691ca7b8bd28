"""Choose ensemble weights on validation predictions to maximise macro F1."""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from facemask.errors import DataError
from facemask.evaluation.metrics import macro_f1
from facemask.inference.predict import combine, run_probs, validation_samples


def simplex_grid(n: int, step: float) -> list[np.ndarray]:
    """All weight vectors with entries in multiples of ``step`` summing to 1."""
    units = int(round(1 / step))
    grid = []
    for cut in itertools.combinations(range(units + n - 1), n - 1):  # stars and bars
        parts = np.diff([-1, *cut, units + n - 1]) - 1
        grid.append(parts / units)
    return grid


def search_weights(probs: Sequence[np.ndarray], labels: np.ndarray, vote: str = "soft",
                   step: float | None = None) -> tuple[np.ndarray, float]:
    """(weights, macro F1) of the best weighting on a simplex grid (exhaustive: macro F1 has no gradient).

    The grid is 0.05 for up to 3 runs and coarser beyond, to keep the search to a few thousand evaluations.
    """
    n = len(probs)
    step = step or {1: 1.0, 2: 0.05, 3: 0.05, 4: 0.1}.get(n, 0.25)
    best_weights, best_f1 = np.full(n, 1 / n), -1.0
    for weights in simplex_grid(n, step):
        score = macro_f1(labels, combine(probs, vote, weights).argmax(1)) if weights.sum() > 0 else -1.0
        if score > best_f1 + 1e-12:
            best_weights, best_f1 = weights, score
    return best_weights, best_f1


def _report(runs, probs: list[np.ndarray], labels: np.ndarray, vote: str, source: str, tta: str | None) -> dict:
    singles = [macro_f1(labels, p.argmax(1)) for p in probs]
    equal = macro_f1(labels, combine(probs, vote).argmax(1))
    weights, best = search_weights(probs, labels, vote)
    return {"runs": [str(r) for r in runs], "source": source, "vote": vote, "tta": tta or "", "images": len(labels),
            "single_macro_f1": singles, "equal_weights_macro_f1": equal, "weights": weights.tolist(),
            "ensemble_macro_f1": best, "gain_over_best_single": best - max(singles)}


def oof_search(kfold_dirs: Sequence[str | Path], vote: str = "soft") -> dict:
    """Weights picked on the out-of-fold predictions of k-fold runs (``facemask train --folds``)."""
    frames = [pd.read_csv(Path(d) / "oof.csv") for d in kfold_dirs]
    common = set(frames[0]["file"])
    for frame in frames[1:]:
        common &= set(frame["file"])
    if not common:
        raise DataError("the k-fold runs share no out-of-fold images")
    frames = [f[f["file"].isin(common)].sort_values("file").reset_index(drop=True) for f in frames]
    columns = [f"p{i}" for i in range(18)]
    return _report(kfold_dirs, [f[columns].to_numpy() for f in frames], frames[0]["label"].to_numpy(), vote,
                   "out-of-fold", None)


def ensemble_search(runs: Sequence[str | Path], tta: str | None = None, engine: str = "torch", vote: str = "soft",
                    device: str = "cpu", progress: bool = True) -> dict:
    """Weights for ``runs`` picked on the validation images they all held out (or, for k-fold folders, on their
    out-of-fold predictions); the gain over the best single run."""
    if all((Path(r) / "oof.csv").is_file() for r in runs):
        return oof_search(runs, vote)
    samples = None
    for run in runs:
        val = validation_samples(run)
        samples = val if samples is None else samples[samples["file"].isin(set(val["file"]))]
    if samples is None or samples.empty:
        raise DataError("the runs share no validation images (train them on the same data with the same "
                        "train.seed and data.val_fraction)")
    files, labels = samples["file"].tolist(), samples["label"].to_numpy()
    probs = [run_probs(run, files, tta, engine, device=device, progress=progress) for run in runs]
    return _report(runs, probs, labels, vote, "validation", tta)
