"""Load trained runs, predict class probabilities (with TTA, PyTorch or ONNX Runtime), ensemble them, and write /
validate / score submissions."""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from facemask.config import Config, config_from_dict
from facemask.data.corrections import load_samples
from facemask.data.labels import NUM_CLASSES
from facemask.data.layout import read_eval, read_train
from facemask.data.loaders import load_pixels, make_loader
from facemask.data.transforms import build_transforms
from facemask.errors import ConfigError, DataError, FacemaskError
from facemask.evaluation.metrics import classification_metrics
from facemask.inference.tta import parse_tta
from facemask.models.factory import create_model
from facemask.training.engine import autocast, evaluate, to_device
from facemask.utils import atomic_write_text, cpu_count, resolve_device

ENGINES = ("torch", "onnx")


def run_dir_of(run: str | Path) -> Path:
    path = Path(run)
    return path if path.is_dir() else path.parent


def load_run(run: str | Path, checkpoint: str = "best.pt", device: str = "cpu") -> tuple[Config, torch.nn.Module]:
    """(config, model in eval mode) from a run folder or a checkpoint file."""
    path = Path(run)
    ckpt_path = path / checkpoint if path.is_dir() else path
    if not ckpt_path.is_file():
        raise FacemaskError(f"{ckpt_path} not found (is {run} a facemask run folder?)")
    try:
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a corrupt or foreign file: one clear line
        raise FacemaskError(f"cannot load checkpoint {ckpt_path}: {str(err).splitlines()[0]}") from err
    if not isinstance(state, dict) or "config" not in state or "model" not in state:
        raise FacemaskError(f"{ckpt_path} is not a facemask checkpoint")
    cfg = config_from_dict(state["config"])
    cfg.model.pretrained = "none"  # the checkpoint carries the weights
    model = create_model(cfg.model)
    try:
        model.load_state_dict(state["model"], strict=True)
    except RuntimeError as err:
        raise FacemaskError(f"checkpoint {ckpt_path} does not fit model {cfg.model.name}: "
                            f"{str(err).splitlines()[0]}") from err
    model = model.to(resolve_device(device)).eval()
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    torch.set_num_threads(cfg.train.threads or cpu_count())
    return cfg, model


def _pixels(files, cfg: Config, progress: bool):
    """Decoded images; every image must decode (a prediction needs a row for each)."""
    pixels, bad = load_pixels(files, cfg, progress)
    if bad:
        raise DataError(f"{bad[0][1]} ({len(bad)} bad images in all)")
    return pixels


@torch.inference_mode()
def run_probs(run: str | Path, files: Sequence[str], tta: str | None = None, engine: str = "torch",
              checkpoint: str = "best.pt", device: str = "cpu", progress: bool = True,
              precision: str = "fp32") -> np.ndarray:
    """Class probabilities (N, 18) of one run for ``files``, averaged over the TTA views."""
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r} (known: {', '.join(ENGINES)})")
    views = parse_tta(tta)
    cfg, model = load_run(run, checkpoint, device)
    dev = resolve_device(device)
    forward: Callable[[torch.Tensor], torch.Tensor]
    if engine == "onnx":
        from facemask.inference.export import ONNX_NAME, OnnxEngine

        forward = OnnxEngine(run_dir_of(run) / ONNX_NAME, cfg.train.threads)
    else:
        def forward(images: torch.Tensor) -> torch.Tensor:
            with autocast(dev, precision):
                return model(to_device(images, dev, cfg.train.channels_last))
    _, eval_tf = build_transforms(cfg.data.augment, cfg.aug)
    loader = make_loader(files, None, cfg, eval_tf, _pixels(files, cfg, progress),
                         batch_size=cfg.data.batch_size * 2)
    out = []
    for images, _ in tqdm(loader, desc=f"predict {run_dir_of(run).name}", unit="batch", disable=not progress,
                          leave=False):
        probs = sum(forward(view(images)).float().softmax(1).cpu() for _, view in views)
        out.append(probs / len(views))
    return torch.cat(out).numpy()


def combine(probs: Sequence[np.ndarray], vote: str = "soft", weights: Sequence[float] | None = None) -> np.ndarray:
    """Ensemble scores (N, 18) whose argmax is the answer.

    soft: weighted mean of probabilities. hard: each run votes for its top class with its weight; ties are broken
    by the summed (weighted) probability.
    """
    weights = np.ones(len(probs)) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(weights) != len(probs):
        raise ConfigError(f"--weights has {len(weights)} values for {len(probs)} runs")
    if (weights < 0).any() or weights.sum() <= 0:
        raise ConfigError("--weights must be non-negative and not all zero")
    weights = weights / weights.sum()
    mean = sum(w * p for w, p in zip(weights, probs))
    if vote == "soft":
        return mean
    if vote == "hard":
        votes = sum(w * np.eye(NUM_CLASSES)[p.argmax(1)] for w, p in zip(weights, probs))
        return votes + mean * 1e-6  # probabilities only decide between classes with equal votes
    raise ConfigError(f"unknown vote {vote!r} (known: soft, hard)")


def predict_folder(runs: Sequence[str | Path], data: str, tta: str | None = None, engine: str = "torch",
                   vote: str = "soft", weights: Sequence[float] | None = None, checkpoint: str = "best.pt",
                   device: str = "cpu", progress: bool = True, precision: str = "fp32"
                   ) -> tuple[pd.DataFrame, np.ndarray]:
    """(info.csv rows, ensemble scores (N, 18)) for an eval folder (info.csv + images/)."""
    info, table = read_eval(data)
    probs = [run_probs(run, table["file"].tolist(), tta, engine, checkpoint, device, progress, precision)
             for run in runs]
    return info, combine(probs, vote, weights)


def save_probs(image_ids: Sequence[str], probs: np.ndarray, path: str | Path) -> None:
    """Per-image class probabilities: ImageID, p0..p17 (for ensembling later without re-running models)."""
    frame = pd.DataFrame(probs, columns=[f"p{i}" for i in range(NUM_CLASSES)])
    frame.insert(0, "ImageID", list(image_ids))
    atomic_write_text(Path(path), frame.to_csv(index=False, float_format="%.7g"))


def evaluate_run(run: str | Path, data: str | None = None, checkpoint: str = "best.pt", device: str = "cpu",
                 progress: bool = True) -> dict:
    """Metrics of a run's checkpoint on its validation people (default) or on every image of ``data``."""
    cfg, model = load_run(run, checkpoint, device)
    samples = validation_samples(run, cfg) if data is None else read_train(data, cfg.data.age_thresholds)
    _, eval_tf = build_transforms(cfg.data.augment, cfg.aug)
    loader = make_loader(samples["file"], samples["label"], cfg, eval_tf, _pixels(samples["file"], cfg, progress),
                         batch_size=cfg.data.batch_size * 2)
    metrics, _ = evaluate(model, loader, resolve_device(device), cfg.train.channels_last, progress,
                          cfg.train.precision)  # the precision the run was validated with
    return {"run": str(run_dir_of(run)), "checkpoint": checkpoint, "data": data or f"{cfg.data.root} (val split)",
            **metrics}


def validation_samples(run: str | Path, cfg: Config | None = None) -> pd.DataFrame:
    """The images of a run's validation people (from its split.csv), labelled with the true age rule."""
    if cfg is None:
        cfg = config_from_dict(torch.load(run_dir_of(run) / "best.pt", map_location="cpu",
                                          weights_only=True)["config"])
    samples, _ = load_samples(cfg)
    split = pd.read_csv(run_dir_of(run) / "split.csv", dtype=str)
    samples = samples[samples["person"].isin(set(split.loc[split.side == "val", "person"]))].reset_index(drop=True)
    if samples.empty:
        raise DataError(f"none of the validation people of {run} are in {cfg.data.root}")
    return samples


def validate_submission(submission: pd.DataFrame, info: pd.DataFrame, name: str = "submission",
                        check_order: bool = True) -> list[str]:
    """Every problem with a submission against info.csv, one message each (empty list = valid)."""
    problems = []
    for column in ("ImageID", "ans"):
        if column not in submission.columns:
            return [f"{name}: no column {column!r} (columns: {', '.join(map(str, submission.columns))})"]
    if len(submission) != len(info):
        problems.append(f"{name}: {len(submission)} rows, info.csv has {len(info)}")
    ids, expected = submission["ImageID"].astype(str).tolist(), info["ImageID"].astype(str).tolist()
    missing = sorted(set(expected) - set(ids))
    extra = sorted(set(ids) - set(expected))
    if missing:
        problems.append(f"{name}: {len(missing)} ImageIDs of info.csv are missing, e.g. {missing[0]}")
    if extra:
        problems.append(f"{name}: {len(extra)} ImageIDs are not in info.csv, e.g. {extra[0]}")
    duplicated = submission["ImageID"][submission["ImageID"].duplicated()]
    if len(duplicated):
        problems.append(f"{name}: ImageID {duplicated.iloc[0]} appears more than once")
    if check_order and not missing and not extra and len(ids) == len(expected) and ids != expected:
        first = next(i for i, (a, b) in enumerate(zip(ids, expected)) if a != b)
        problems.append(f"{name}: rows are not in info.csv's order (row {first + 1}: {ids[first]}, expected "
                        f"{expected[first]})")
    answers = pd.to_numeric(submission["ans"], errors="coerce")
    bad = submission["ans"][answers.isna() | (answers % 1 != 0) | (answers < 0) | (answers >= NUM_CLASSES)]
    if len(bad):
        value, row = str(bad.iloc[0]), bad.index[0] + 1
        problems.append(f"{name}: ans {value!r} (row {row}) is not a class 0..{NUM_CLASSES - 1}")
    return problems


def read_csv_file(path: str | Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype={"ImageID": str}, keep_default_na=False)
    except (FileNotFoundError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {path}: {str(err).splitlines()[0]}") from err


def write_submission(info: pd.DataFrame, labels: np.ndarray, path: str | Path) -> pd.DataFrame:
    """info.csv's rows in order with ``ans`` filled; validated, then written atomically."""
    submission = info.copy()
    submission["ans"] = np.asarray(labels, dtype=np.int64)
    problems = validate_submission(submission, info)
    if problems:
        raise FacemaskError(problems[0])
    atomic_write_text(Path(path), submission.to_csv(index=False))
    return submission


def score_submission(submission_path: str | Path, answers_path: str | Path) -> dict:
    """Metrics of a submission against an answers file (both ImageID,ans), matched by ImageID."""
    submission, answers = read_csv_file(submission_path), read_csv_file(answers_path)
    problems = validate_submission(submission, answers, str(submission_path), check_order=False)
    if problems:
        raise DataError(problems[0])
    merged = answers.merge(submission, on="ImageID", suffixes=("_true", "_pred"))
    return classification_metrics(merged["ans_true"].to_numpy(), merged["ans_pred"].to_numpy())


def save_json(data: dict, path: str | Path) -> None:
    atomic_write_text(Path(path), json.dumps(data, indent=2))
