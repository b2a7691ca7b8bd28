"""Competition mode: runs (with TTA, on PyTorch or ONNX Runtime) -> class probabilities for a list of files ->
ensemble -> submission; and the evaluation of a run on labelled people. Photos of any kind (every face): see
facemask.inference.api and facemask.inference.photos."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from facemask.config import Config
from facemask.data.corrections import load_samples
from facemask.data.faces import trust_detector
from facemask.data.labels import NUM_CLASSES, marginals
from facemask.data.layout import read_eval, read_train
from facemask.data.loaders import load_pixels, make_loader
from facemask.data.transforms import build_transforms
from facemask.errors import ConfigError, DataError
from facemask.evaluation.metrics import probs_metrics
from facemask.inference.engines import Engine, load_engine
from facemask.inference.tta import parse_tta
from facemask.io import atomic_write_text
from facemask.runs import BEST, Run


def _pixels(files, cfg: Config, progress: bool):
    """Decoded images; every image must decode (a prediction needs a row for each)."""
    pixels, bad = load_pixels(files, cfg, progress)
    if bad:
        raise DataError(f"{bad[0][1]} ({len(bad)} bad images in all)")
    return pixels


def open_engine(run: str | Path | Run, engine: str = "auto", device: str = "auto", precision: str = "fp32",
                checkpoint: str = BEST, trust_run_code: bool = False) -> Engine:
    """A run's engine; its face detector may be a ``module:factory`` import only with ``trust_run_code``."""
    loaded = load_engine(run, engine, device, precision, checkpoint)
    if trust_run_code:
        trust_detector(loaded.cfg.data.face_crop)
    return loaded


@torch.inference_mode()
def engine_probs(engine: Engine, files: Sequence[str], tta: str | None = None, progress: bool = True) -> np.ndarray:
    """Class probabilities (N, 18) of one engine for ``files`` (decoded through the cache), averaged over TTA."""
    views = parse_tta(tta)
    cfg = engine.cfg
    _, eval_tf = build_transforms(cfg.data.augment, cfg.aug)
    loader = make_loader(files, None, cfg, eval_tf, _pixels(files, cfg, progress),
                         batch_size=cfg.data.batch_size * 2)
    out = []
    for images, _ in tqdm(loader, desc=f"predict {engine.run.name}", unit="batch", disable=not progress,
                          leave=False):
        probs = sum(engine(view(images)).float().softmax(1).cpu() for _, view in views)
        out.append(probs / len(views))
    return torch.cat(out).numpy() if out else np.zeros((0, NUM_CLASSES), np.float32)


def run_probs(run: str | Path | Run, files: Sequence[str], tta: str | None = None, engine: str = "auto",
              checkpoint: str = BEST, device: str = "auto", progress: bool = True, precision: str = "fp32",
              trust_run_code: bool = False) -> np.ndarray:
    """Class probabilities (N, 18) of one run for ``files``, averaged over the TTA views."""
    parse_tta(tta)  # a bad view is an error before the model is loaded
    loaded = open_engine(run, engine, device, precision, checkpoint, trust_run_code)
    return engine_probs(loaded, files, tta, progress)


def combine(probs: Sequence[np.ndarray], vote: str = "soft", weights: Sequence[float] | None = None,
            mask_weights: Sequence[float] | None = None) -> np.ndarray:
    """Ensemble scores (N, 18): their top class is the answer (with ``mask_weights``, see :func:`answers`).

    soft: weighted mean of probabilities. hard: each run votes for its top class with its weight; ties are broken
    by the summed (weighted) probability. ``mask_weights`` (soft only): the mask answer comes from its own weighting
    of the runs, p(mask) = sum_r mask_weights[r] * p_r(mask), and gender and age from ``weights``, as
    p(gender, age | mask) of their weighted mean; e.g. the mask from a run whose backbone was kept closer to
    ImageNet (it travels better to unfamiliar masks), gender and age from a fully fine-tuned one. The class ids
    to submit come from :func:`answers`, which takes the mask first.
    """
    weights = check_weights(weights, len(probs))
    mean = sum(w * p for w, p in zip(weights, probs))
    mask_weights = check_mask_weights(mask_weights, len(probs), vote)
    if mask_weights is not None:
        mask = sum(w * marginals(p)["mask"] for w, p in zip(mask_weights, probs))
        grid = mean.reshape(len(mean), 3, NUM_CLASSES // 3)
        totals = grid.sum(2, keepdims=True)
        # gender and age given the mask; uniform where the gender-and-age runs give that mask no probability at all
        given_mask = np.where(totals > 0, grid / np.maximum(totals, 1e-30), 1 / grid.shape[2])
        mean = (mask[:, :, None] * given_mask).reshape(len(mean), NUM_CLASSES)
    if vote == "soft":
        return mean
    if vote == "hard":
        votes = sum(w * np.eye(NUM_CLASSES)[p.argmax(1)] for w, p in zip(weights, probs))
        return votes + mean * 1e-6  # probabilities only decide between classes with equal votes
    raise ConfigError(f"unknown --vote {vote!r} (known: soft, hard)")


def answers(probs: Sequence[np.ndarray], vote: str = "soft", weights: Sequence[float] | None = None,
            mask_weights: Sequence[float] | None = None, scores: np.ndarray | None = None) -> np.ndarray:
    """Class ids (N,) of an ensemble: the top class of :func:`combine`. With ``mask_weights``, the mask answer is
    the one the mask runs give on their own (the mask of their soft vote's top class, weighted by
    ``mask_weights``), and gender and age are the top pair of the ``weights`` runs given that mask; so the mask
    answer is never overruled by how sure the other runs are about gender and age. ``scores``: combine()'s output
    for these arguments, when the caller has it already."""
    scores = combine(probs, vote, weights, mask_weights) if scores is None else scores
    if mask_weights is None:
        return scores.argmax(1)
    mask_weights = check_mask_weights(mask_weights, len(probs), vote)
    per_mask = NUM_CLASSES // 3
    mask = sum(w * p for w, p in zip(mask_weights, probs)).argmax(1) // per_mask
    grid = scores.reshape(len(scores), 3, per_mask)
    return mask * per_mask + grid[np.arange(len(grid)), mask].argmax(1)


def check_weights(weights: Sequence[float] | None, runs: int, option: str = "--weights") -> np.ndarray:
    """One non-negative weight per run (default equal), normalised to sum 1."""
    weights = np.ones(runs) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(weights) != runs:
        raise ConfigError(f"{option} has {len(weights)} values for {runs} runs")
    if not np.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
        raise ConfigError(f"{option} must be finite, non-negative and not all zero")
    return weights / weights.sum()


def check_mask_weights(mask_weights: Sequence[float] | None, runs: int, vote: str) -> np.ndarray | None:
    """None, or one non-negative weight per run for the mask answer, normalised; only with the soft vote."""
    if mask_weights is None:
        return None
    if vote != "soft":
        raise ConfigError("--mask-weights needs --vote soft (the mask is a weighted mean of probabilities)")
    return check_weights(mask_weights, runs, option="--mask-weights")


def check_runs(runs: Sequence[str | Path], checkpoint: str = BEST) -> list[Run]:
    """Every run folder (or checkpoint) exists, before any image is read."""
    if not runs:
        raise ConfigError("name at least one run folder")
    return [Run.open(run, checkpoint) for run in runs]


def predict_folder(runs: Sequence[str | Path], data: str, *, tta: str | None = None, engine: str = "auto",
                   vote: str = "soft", weights: Sequence[float] | None = None,
                   mask_weights: Sequence[float] | None = None, checkpoint: str = BEST, device: str = "auto",
                   progress: bool = True, precision: str = "fp32",
                   trust_run_code: bool = False) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(info.csv rows, ensemble scores (N, 18), answers (N,) class ids) for an eval folder (info.csv + images/)."""
    parse_tta(tta)
    check_weights(weights, len(runs))
    if vote not in ("soft", "hard"):
        raise ConfigError(f"unknown --vote {vote!r} (known: soft, hard)")
    check_mask_weights(mask_weights, len(runs), vote)
    runs = check_runs(runs, checkpoint)
    info, table = read_eval(data)
    if info.empty:
        raise DataError(f"{Path(data)}: info.csv lists no images")
    # every run's model is loaded before any image is read: a bad second run fails before the first one's work
    engines = [open_engine(run, engine, device, precision, checkpoint, trust_run_code) for run in runs]
    probs = [engine_probs(loaded, table["file"].tolist(), tta, progress) for loaded in engines]
    scores = combine(probs, vote, weights, mask_weights)
    return info, scores, answers(probs, vote, weights, mask_weights, scores=scores)


def save_probs(image_ids: Sequence[str], probs: np.ndarray, path: str | Path) -> None:
    """Per-image class probabilities: ImageID, p0..p17 (for ensembling later without re-running models)."""
    frame = pd.DataFrame(probs, columns=[f"p{i}" for i in range(NUM_CLASSES)])
    frame.insert(0, "ImageID", list(image_ids))
    atomic_write_text(Path(path), frame.to_csv(index=False, float_format="%.7g"))


def evaluate_run(run: str | Path, data: str | None = None, checkpoint: str = BEST, device: str = "auto",
                 progress: bool = True, trust_run_code: bool = False) -> dict:
    """Metrics of a run's checkpoint on its validation people (default) or on every image of ``data``."""
    run = Run.open(run, checkpoint)
    cfg = run.config()
    if trust_run_code:
        trust_detector(cfg.data.face_crop)
    samples = validation_samples(run, cfg) if data is None else read_train(data, cfg.data.age_thresholds)
    # the precision the run was validated with, so that the figures are the training's own
    loaded = load_engine(run, "torch", device, cfg.train.precision, checkpoint)
    probs = engine_probs(loaded, samples["file"].tolist(), None, progress)
    return {"run": str(run.path), "checkpoint": run.checkpoint, "data": data or f"{cfg.data.root} (val split)",
            **probs_metrics(samples["label"].to_numpy(), probs)}


def validation_samples(run: str | Path | Run, cfg: Config | None = None) -> pd.DataFrame:
    """The images of a run's validation people (from its split.csv), labelled with the true age rule."""
    run = Run.open(run)
    cfg = cfg or run.config()
    samples, _ = load_samples(cfg)
    split = run.split()
    samples = samples[samples["person"].isin(set(split.loc[split.side == "val", "person"]))].reset_index(drop=True)
    if samples.empty:
        raise DataError(f"none of the validation people of {run.path} are in {cfg.data.root}")
    return samples
