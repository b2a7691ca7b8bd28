"""fit(cfg): the run folder, data, model, optimizer and schedule around the engine's loops.

A run folder holds ``config.yaml`` (resolved), ``split.csv`` (person -> train/val), ``metrics.csv`` (one row per
epoch), ``best.pt`` (chosen by ``train.select_metric``), ``last.pt`` and ``eval.json`` (best model on val).
"""
from __future__ import annotations

import json
import logging
import math
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import torch

from facemask.config import Config, save_config
from facemask.data.layout import read_train
from facemask.data.loaders import load_pixels, make_loader
from facemask.data.split import split_by_person
from facemask.data.transforms import build_transforms
from facemask.errors import ConfigError, FacemaskError
from facemask.models.factory import create_model
from facemask.training.engine import evaluate, train_one_epoch
from facemask.training.losses import create_loss
from facemask.training.optim import check_names, create_optimizer, create_scheduler
from facemask.utils import atomic_torch_save, atomic_write_text, cpu_count, resolve_device, seed_everything

log = logging.getLogger("facemask")
CHECKPOINT_FORMAT = 1


def new_run_dir(cfg: Config) -> Path:
    base = Path(cfg.train.output_dir)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = base / f"{cfg.train.name}-{stamp}"
    suffix = 2
    while run_dir.exists():
        run_dir = base / f"{cfg.train.name}-{stamp}-{suffix}"
        suffix += 1
    try:
        run_dir.mkdir(parents=True)
    except OSError as err:
        raise FacemaskError(f"cannot create run folder {run_dir}: {err.strerror or err}") from err
    return run_dir


def check_config(cfg: Config) -> None:
    """Catch what would otherwise fail an hour in."""
    if cfg.train.select_mode not in ("max", "min"):
        raise ConfigError(f"option train.select_mode must be max or min, got {cfg.train.select_mode!r}")
    if cfg.train.epochs < 1:
        raise ConfigError(f"option train.epochs must be at least 1, got {cfg.train.epochs}")
    if len(cfg.data.age_thresholds) != 2 or cfg.data.age_thresholds[0] >= cfg.data.age_thresholds[1]:
        raise ConfigError(f"option data.age_thresholds must be two increasing ages, got {cfg.data.age_thresholds}")
    if not 0.0 < cfg.data.val_fraction < 1.0:
        raise ConfigError(f"option data.val_fraction must be between 0 and 1, got {cfg.data.val_fraction}")
    build_transforms(cfg.data.augment)
    create_loss(cfg.loss)
    check_names(cfg.optim, cfg.sched)
    if cfg.train.select_metric not in metric_columns()[1:]:
        raise ConfigError(f"option train.select_metric={cfg.train.select_metric!r} is not a metrics column "
                          f"(known: {', '.join(metric_columns()[1:])})")


def metric_columns() -> list[str]:
    return ["epoch", "lr", "train_loss", "train_accuracy", "train_macro_f1", "val_loss", "val_accuracy",
            "val_macro_f1", "val_mask_f1", "val_gender_f1", "val_age_f1", "epoch_seconds", "train_images_per_second"]


def fit(cfg: Config) -> Path:
    """Train one model as configured; returns the run folder."""
    check_config(cfg)
    device = resolve_device(cfg.train.device)
    torch.set_num_threads(cfg.train.threads or cpu_count())
    seed_everything(cfg.train.seed)

    samples = read_train(cfg.data.root, cfg.data.age_thresholds)
    train_df, val_df = split_by_person(samples, cfg.data.val_fraction, cfg.train.seed)
    if train_df.empty or val_df.empty:
        raise FacemaskError(f"{cfg.data.root}: too few people to hold out data.val_fraction={cfg.data.val_fraction}")
    metric = cfg.train.select_metric

    model = create_model(cfg.model, cfg.data.mean, cfg.data.std).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    run_dir = new_run_dir(cfg)
    save_config(cfg, run_dir / "config.yaml")
    split = pd.concat([train_df[["person"]].drop_duplicates().assign(side="train"),
                       val_df[["person"]].drop_duplicates().assign(side="val")])
    atomic_write_text(run_dir / "split.csv", split.to_csv(index=False))
    log.info("run %s: %d train images (%d people), %d val images (%d people)", run_dir, len(train_df),
             train_df.person.nunique(), len(val_df), val_df.person.nunique())

    pixels = load_pixels(samples["file"], cfg.data, progress=cfg.train.progress)
    row_of = {f: i for i, f in enumerate(samples["file"])}
    train_tf, eval_tf = build_transforms(cfg.data.augment)
    pin = device.type == "cuda"
    train_loader = make_loader(train_df["file"], train_df["label"], cfg.data, train_tf, pixels,
                               [row_of[f] for f in train_df["file"]], shuffle=True, seed=cfg.train.seed,
                               pin_memory=pin)
    val_loader = make_loader(val_df["file"], val_df["label"], cfg.data, eval_tf, pixels,
                             [row_of[f] for f in val_df["file"]], batch_size=cfg.data.batch_size * 2, pin_memory=pin)

    loss_fn = create_loss(cfg.loss)
    optimizer = create_optimizer(model, cfg.optim)
    scheduler = create_scheduler(optimizer, cfg.sched, cfg.train.epochs, len(train_loader))
    sign = 1.0 if cfg.train.select_mode == "max" else -1.0
    best_score, best_epoch = -math.inf, -1
    rows: list[dict] = []
    start = time.perf_counter()
    for epoch in range(cfg.train.epochs):
        lr = optimizer.param_groups[0]["lr"]
        result = train_one_epoch(model, train_loader, loss_fn, optimizer, scheduler, device, epoch,
                                 cfg.train.channels_last, cfg.train.progress)
        val, val_probs = evaluate(model, val_loader, device, cfg.train.channels_last, cfg.train.progress)
        if not math.isfinite(result.loss):
            raise FacemaskError(f"training loss became {result.loss} in epoch {epoch + 1}; "
                                f"last good checkpoint: {run_dir / 'last.pt'}")
        if scheduler is not None:
            scheduler.step(epoch + 1, val["macro_f1"])
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": result.loss,
               "train_accuracy": result.metrics["accuracy"], "train_macro_f1": result.metrics["macro_f1"],
               "val_loss": val["loss"], "val_accuracy": val["accuracy"], "val_macro_f1": val["macro_f1"],
               "val_mask_f1": val["mask_f1"], "val_gender_f1": val["gender_f1"], "val_age_f1": val["age_f1"],
               "epoch_seconds": result.seconds, "train_images_per_second": result.images_per_second}
        rows.append(row)
        atomic_write_text(run_dir / "metrics.csv", pd.DataFrame(rows, columns=metric_columns()).to_csv(index=False))
        state = {"format": CHECKPOINT_FORMAT, "config": cfg.to_dict(), "epoch": epoch + 1,
                 "metrics": row, "model": model.state_dict()}
        score = sign * row[metric]
        if score > best_score:
            best_score, best_epoch = score, epoch + 1
            atomic_torch_save(state, run_dir / "best.pt")
            best_val = val
            predictions = pd.DataFrame({"file": val_df["file"], "label": val_df["label"], "pred": val_probs.argmax(1)})
            atomic_write_text(run_dir / "val_predictions.csv", predictions.to_csv(index=False))
        atomic_torch_save({**state, "optimizer": optimizer.state_dict(),
                           "scheduler": scheduler.state_dict() if scheduler is not None else {}},
                          run_dir / "last.pt")
        log.info("epoch %d/%d  loss %.4f  val macro F1 %.4f  acc %.4f  (mask %.3f gender %.3f age %.3f)  %.0f img/s",
                 epoch + 1, cfg.train.epochs, result.loss, val["macro_f1"], val["accuracy"], val["mask_f1"],
                 val["gender_f1"], val["age_f1"], result.images_per_second)
    summary = {"run": str(run_dir), "split": "val", "checkpoint": "best.pt", "epoch": best_epoch,
               "train_seconds": time.perf_counter() - start, **best_val}
    atomic_write_text(run_dir / "eval.json", json.dumps(summary, indent=2))
    return run_dir
