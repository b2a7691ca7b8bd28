"""Choose ensemble weights on validation predictions to maximise macro F1, and say what that is worth on people the
weights were not chosen on (the in-sample gain overstates it: weights and score come from the same images)."""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from facemask.errors import DataError
from facemask.evaluation.metrics import macro_f1
from facemask.inference.predict import check_runs, combine, run_probs, validation_samples
from facemask.runs import OOF


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


def person_halves(people: np.ndarray, seed: int = 0) -> np.ndarray:
    """A boolean mask: True for the images of a random half of the people (every image of a person together)."""
    unique = np.unique(people)
    chosen = set(np.random.default_rng(seed).permutation(unique)[: len(unique) // 2])
    return np.array([p in chosen for p in people])


def cross_validated_gain(probs: list[np.ndarray], labels: np.ndarray, people: np.ndarray, vote: str) -> dict:
    """Weights chosen on half of the people and scored on the other half, and the other way round: the gain over
    the single run that is best on the choosing half, measured on the held-out half, averaged over both."""
    first = person_halves(people)
    gains, chosen = [], []
    for choose in (first, ~first):
        score = ~choose
        weights, _ = search_weights([p[choose] for p in probs], labels[choose], vote)
        best_single = int(np.argmax([macro_f1(labels[choose], p[choose].argmax(1)) for p in probs]))
        ensemble = macro_f1(labels[score], combine([p[score] for p in probs], vote, weights).argmax(1))
        single = macro_f1(labels[score], probs[best_single][score].argmax(1))
        gains.append(ensemble - single)
        chosen.append(weights.tolist())
    return {"cv_gain": float(np.mean(gains)), "cv_gains": [float(g) for g in gains], "cv_weights": chosen,
            "cv_people": [int(len(np.unique(people[first]))), int(len(np.unique(people[~first])))]}


def _report(runs, probs: list[np.ndarray], labels: np.ndarray, people: np.ndarray, vote: str, source: str,
            tta: str | None) -> dict:
    singles = [macro_f1(labels, p.argmax(1)) for p in probs]
    equal = macro_f1(labels, combine(probs, vote).argmax(1))
    weights, best = search_weights(probs, labels, vote)
    return {"runs": [str(r) for r in runs], "source": source, "vote": vote, "tta": tta or "", "images": len(labels),
            "people": int(len(np.unique(people))), "single_macro_f1": singles, "equal_weights_macro_f1": equal,
            "weights": weights.tolist(), "ensemble_macro_f1": best, "gain_over_best_single": best - max(singles),
            **cross_validated_gain(probs, labels, people, vote)}


def oof_search(kfold_dirs: Sequence[str | Path], vote: str = "soft") -> dict:
    """Weights picked on the out-of-fold predictions of k-fold runs (``facemask train --folds``)."""
    frames = [pd.read_csv(Path(d) / OOF, dtype={"person": str}) for d in kfold_dirs]
    common = set(frames[0]["file"])
    for frame in frames[1:]:
        common &= set(frame["file"])
    if not common:
        raise DataError("the k-fold runs share no out-of-fold images")
    frames = [f[f["file"].isin(common)].sort_values("file").reset_index(drop=True) for f in frames]
    columns = [f"p{i}" for i in range(18)]
    return _report(kfold_dirs, [f[columns].to_numpy() for f in frames], frames[0]["label"].to_numpy(),
                   frames[0]["person"].to_numpy(), vote, "out-of-fold", None)


def ensemble_search(runs: Sequence[str | Path], tta: str | None = None, engine: str = "auto", vote: str = "soft",
                    device: str = "auto", progress: bool = True, checkpoint: str = "best.pt",
                    trust_run_code: bool = False) -> dict:
    """Weights for ``runs`` picked on the validation images they all held out (or, for k-fold folders, on their
    out-of-fold predictions); the gain over the best single run, in-sample and cross-validated by person."""
    if len(runs) < 2:
        raise DataError("ensemble-search needs at least two runs")
    if vote not in ("soft", "hard"):
        raise DataError(f"unknown --vote {vote!r} (known: soft, hard)")
    if all((Path(r) / OOF).is_file() for r in runs):
        return oof_search(runs, vote)
    opened = check_runs(runs, checkpoint)
    samples = None
    for run in opened:
        val = validation_samples(run)
        samples = val if samples is None else samples[samples["file"].isin(set(val["file"]))]
    if samples is None or samples.empty:
        raise DataError("the runs share no validation images (train them on the same data with the same "
                        "train.seed and data.val_fraction)")
    files, labels = samples["file"].tolist(), samples["label"].to_numpy()
    probs = [run_probs(run, files, tta, engine, checkpoint, device, progress, trust_run_code=trust_run_code)
             for run in opened]
    return _report(runs, probs, labels, samples["person"].to_numpy(), vote, "validation", tta)
