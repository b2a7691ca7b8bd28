"""fit(cfg) / fit(resume=RUN): the run folder, data, model, optimizer and schedule around the engine's loops.

A run folder holds ``config.yaml`` (resolved), ``split.csv`` (person -> train/val), ``metrics.csv`` (one row per
epoch), ``best.pt`` (chosen by ``train.select_metric``), ``last.pt`` (everything needed to resume, also
mid-epoch) and ``eval.json`` (best model on val). SIGINT/SIGTERM save a resumable ``last.pt`` and stop cleanly;
a resumed run ends with the same metrics and weights as an uninterrupted one.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import signal
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from timm.utils import ModelEmaV3
from torch.nn.parallel import DistributedDataParallel

from facemask.config import Config, config_from_dict, save_config
from facemask.data.corrections import load_samples, training_labels
from facemask.data.images import cache_faces
from facemask.data.loaders import augment_on_device, decoding_of, load_pixels, make_loader
from facemask.data.samplers import EpochSampler
from facemask.data.split import kfold_by_person, split_by_person
from facemask.data.transforms import build_transforms
from facemask.errors import ConfigError, DataError, FacemaskError, TrainingInterrupted
from facemask.evaluation.metrics import classification_metrics
from facemask.models.factory import create_model
from facemask.models.freeze import freeze, melt
from facemask.tracking import Tracker
from facemask.training.distributed import (
    Dist,
    any_rank,
    broadcast_object,
    gather_list,
    gather_rows,
    init_from_env,
    shard,
    shutdown,
    sync_buffers,
)
from facemask.training.engine import LOG_EVERY, PRECISIONS, EpochProgress, predict_probs, probs_metrics, train_one_epoch
from facemask.training.losses import create_loss
from facemask.training.mixing import BatchMixer
from facemask.training.optim import check_names, create_optimizer, create_scheduler
from facemask.utils import (
    atomic_torch_save,
    atomic_write_text,
    cpu_count,
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
)

log = logging.getLogger("facemask")
CHECKPOINT_FORMAT = 1


class StopFlag:
    """Set by SIGINT/SIGTERM; the loop checks it after every step. A second signal stops at once."""

    def __init__(self):
        self.signum: int | None = None

    def __call__(self) -> bool:
        return self.signum is not None

    @contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum, _frame):
            if self.signum is not None:  # asked twice: give up on the clean stop
                signal.signal(signum, signal.SIG_DFL)
                signal.raise_signal(signum)
            self.signum = signum
            log.warning("%s received: finishing this step and saving a resumable checkpoint",
                        signal.Signals(signum).name)

        for sig in previous:
            signal.signal(sig, handler)
        try:
            yield self
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


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


VAL_METRICS = ("loss", "accuracy", "macro_f1", "mask_f1", "gender_f1", "age_f1")


def metric_columns(ema: bool = False) -> list[str]:
    columns = ["epoch", "lr", "train_loss", "train_accuracy", "train_macro_f1", *(f"val_{m}" for m in VAL_METRICS)]
    if ema:
        columns += [f"ema_val_{m}" for m in VAL_METRICS]
    return columns + ["epoch_seconds", "train_images_per_second"]


def check_config(cfg: Config) -> None:
    """Catch what would otherwise fail an hour in."""
    if cfg.train.select_mode not in ("max", "min"):
        raise ConfigError(f"option train.select_mode must be max or min, got {cfg.train.select_mode!r}")
    if cfg.train.epochs < 1:
        raise ConfigError(f"option train.epochs must be at least 1, got {cfg.train.epochs}")
    for key, ages in (("age_thresholds", cfg.data.age_thresholds), ("train_age_thresholds",
                                                                   cfg.data.train_age_thresholds)):
        if ages is not None and (len(ages) != 2 or ages[0] >= ages[1]):
            raise ConfigError(f"option data.{key} must be two increasing ages, got {ages}")
    if not 0.0 < cfg.data.val_fraction < 1.0:
        raise ConfigError(f"option data.val_fraction must be between 0 and 1, got {cfg.data.val_fraction}")
    if cfg.data.fold >= cfg.data.folds or cfg.data.folds < 2:
        raise ConfigError(f"option data.fold={cfg.data.fold} needs 0 <= fold < data.folds ({cfg.data.folds}, >= 2)")
    if cfg.data.corrections and not Path(cfg.data.corrections).is_file():
        raise ConfigError(f"option data.corrections: file {cfg.data.corrections} does not exist")
    build_transforms(cfg.data.augment, cfg.aug)
    augment_on_device(cfg.data, torch.device("cpu"))  # validates data.augment_on
    decoding_of(cfg)  # data.resize, data.face_* and the face detector itself (dlib installed?)
    EpochSampler([0], 0, cfg.data.sampler)
    create_loss(cfg.loss, multihead=cfg.model.head == "multi")
    check_names(cfg.optim, cfg.sched)
    if cfg.train.precision not in PRECISIONS:
        raise ConfigError(f"option train.precision must be one of {', '.join(PRECISIONS)}, got {cfg.train.precision!r}")
    if cfg.data.on_bad_image not in ("error", "skip"):
        raise ConfigError(f"option data.on_bad_image must be error or skip, got {cfg.data.on_bad_image!r}")
    columns = metric_columns(ema=cfg.train.ema_decay > 0)[1:]
    if cfg.train.select_metric not in columns:
        raise ConfigError(f"option train.select_metric={cfg.train.select_metric!r} is not a metrics column "
                          f"(known: {', '.join(columns)})")


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise FacemaskError(f"{path} not found") from err
    except Exception as err:  # noqa: BLE001 - corrupt or foreign file: one clear line
        raise FacemaskError(f"cannot load checkpoint {path}: {str(err).splitlines()[0]}") from err


def split_samples(samples: pd.DataFrame, cfg: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Person-level (train, val): a stratified hold-out, or fold ``data.fold`` of ``data.folds``."""
    if cfg.data.fold >= 0:
        return list(kfold_by_person(samples, cfg.data.folds, cfg.train.seed))[cfg.data.fold]
    return split_by_person(samples, cfg.data.val_fraction, cfg.train.seed)


def fit(cfg: Config | None = None, resume: str | Path | None = None, on_step=None, on_epoch=None) -> Path:
    """Train one model as configured (or continue the run folder ``resume``); returns the run folder.

    ``on_step(step)`` is called after every optimizer step (tests use it to interrupt at a chosen point);
    ``on_epoch(row)`` after every epoch with its metrics row (sweeps use it to prune).
    SIGINT/SIGTERM from the start on stop the run at the next step with a resumable checkpoint.
    """
    stop = StopFlag()
    with stop.installed():
        return _fit(cfg, resume, (on_step, on_epoch), stop)


def _fit(cfg: Config | None, resume: str | Path | None, hooks, stop: StopFlag) -> Path:
    ddp, ddp_device = init_from_env(cfg.train.device if cfg is not None else "auto")
    try:
        return _fit_process(cfg, resume, hooks, stop, ddp, ddp_device)
    finally:
        shutdown(ddp)


def _fit_process(cfg: Config | None, resume: str | Path | None, hooks, stop: StopFlag, ddp: Dist,
                 ddp_device: torch.device | None) -> Path:
    state = None
    if resume is not None:
        run_dir = Path(resume)
        state = load_checkpoint(run_dir / "last.pt")
        cfg = config_from_dict(state["config"])
        if state.get("finished", False):
            raise FacemaskError(f"run {run_dir} already finished (epoch {state['epoch']} of {cfg.train.epochs})")
    assert cfg is not None
    check_config(cfg)
    device = ddp_device or resolve_device(cfg.train.device)
    torch.set_num_threads(max(1, (cfg.train.threads or cpu_count()) // (ddp.world if device.type == "cpu" else 1)))
    seed_everything(cfg.train.seed)

    samples, changes = load_samples(cfg)
    train_df, val_df = split_samples(samples, cfg)
    if train_df.empty or val_df.empty:
        raise FacemaskError(f"{cfg.data.root}: too few people to hold out data.val_fraction={cfg.data.val_fraction}")
    if not ddp.main:
        any_rank(False, ddp)  # wait for rank 0 to build the cache, then read it
    pixels, bad = load_pixels(samples["file"], cfg, progress=cfg.train.progress and ddp.main)
    if ddp.main:
        any_rank(False, ddp)
    if bad:
        if cfg.data.on_bad_image == "error":
            raise DataError(f"{bad[0][1]} ({len(bad)} bad images in all; data.on_bad_image=skip leaves them out)")
        bad_files = {file for file, _ in bad}
        train_df = train_df[~train_df["file"].isin(bad_files)].reset_index(drop=True)
        val_df = val_df[~val_df["file"].isin(bad_files)].reset_index(drop=True)
    model = create_model(cfg.model, cfg.data.mean, cfg.data.std).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)

    if state is None:
        if ddp.main:
            run_dir = new_run_dir(cfg)
            save_config(cfg, run_dir / "config.yaml")
            split = pd.concat([train_df[["person"]].drop_duplicates().assign(side="train"),
                               val_df[["person"]].drop_duplicates().assign(side="val")])
            atomic_write_text(run_dir / "split.csv", split.to_csv(index=False))
        run_dir = broadcast_object(run_dir if ddp.main else None, ddp)
    if not ddp.main:
        return _train(cfg, state, run_dir, samples, train_df, val_df, pixels, model, device, Tracker.disabled(),
                      hooks, stop, ddp)
    if bad and cfg.data.on_bad_image == "skip":
        atomic_write_text(run_dir / "skipped_images.csv",
                          pd.DataFrame(bad, columns=["file", "problem"]).to_csv(index=False))
        log.warning("skipped %d images that cannot be decoded (listed in %s)", len(bad),
                    run_dir / "skipped_images.csv")
    if cfg.data.face_crop != "none" and cfg.data.cache:
        faceless = cache_faces(samples["file"].tolist(), (cfg.data.height, cfg.data.width), cfg.data.cache_dir or None,
                               progress=False, decoding=decoding_of(cfg))  # read from the cache just built
        atomic_write_text(run_dir / "no_face.csv", pd.DataFrame({"file": faceless}).to_csv(index=False))
        log.info("face crop (%s): face found in %d of %d photos; the others are cropped where faces usually are (%s)",
                 cfg.data.face_crop, len(samples) - len(faceless), len(samples), run_dir / "no_face.csv")
    if changes:
        atomic_write_text(run_dir / "corrections_applied.txt", "\n".join(changes) + "\n")
        log.info("label corrections from %s: %d changes (%s)", cfg.data.corrections, len(changes),
                 "; ".join(changes[:5]) + (" ..." if len(changes) > 5 else ""))
    tracker = Tracker(cfg.track, run_dir, cfg.to_dict(), resume=state is not None)
    try:
        return _train(cfg, state, run_dir, samples, train_df, val_df, pixels, model, device, tracker, hooks, stop,
                      ddp)
    except TrainingInterrupted:
        tracker.stop("KILLED")
        raise
    except BaseException:
        tracker.stop("FAILED")
        raise


def _train(cfg: Config, state: dict | None, run_dir: Path, samples: pd.DataFrame, train_df: pd.DataFrame,
           val_df: pd.DataFrame, pixels, model: torch.nn.Module, device: torch.device, tracker: Tracker, hooks,
           stop: StopFlag, ddp: Dist = Dist()) -> Path:
    on_step, on_epoch = hooks
    train_df = training_labels(train_df, cfg.data.train_age_thresholds, cfg.data.drop_ages)
    log.info("run %s: %d train images (%d people), %d val images (%d people)", run_dir, len(train_df),
             train_df.person.nunique(), len(val_df), val_df.person.nunique())
    row_of = {f: i for i, f in enumerate(samples["file"])}
    train_tf, eval_tf = build_transforms(cfg.data.augment, cfg.aug)
    pin = device.type == "cuda"
    sampler = EpochSampler(train_df["label"].to_numpy(), cfg.train.seed, cfg.data.sampler, ddp.world, ddp.rank)
    on_device = augment_on_device(cfg.data, device)
    train_loader = make_loader(train_df["file"], train_df["label"], cfg, train_tf, pixels,
                               [row_of[f] for f in train_df["file"]], sampler=sampler, pin_memory=pin,
                               defer_augment=on_device)
    val_rows = shard(len(val_df), ddp)  # this rank's share of validation, gathered back in order
    val_part = val_df.iloc[val_rows]
    val_loader = make_loader(val_part["file"], val_part["label"], cfg, eval_tf, pixels,
                             [row_of[f] for f in val_part["file"]], batch_size=cfg.data.batch_size * 2,
                             pin_memory=pin)
    val_labels = val_df["label"].to_numpy()

    def validate(net: torch.nn.Module) -> tuple[dict, np.ndarray]:
        probs, _ = predict_probs(net, val_loader, device, cfg.train.channels_last, cfg.train.progress and ddp.main,
                                 "validate", cfg.train.precision)
        probs = gather_rows(val_rows, probs, len(val_df), ddp)
        return probs_metrics(val_labels, probs), probs
    updates_per_epoch = len(train_loader)

    loss_fn = create_loss(cfg.loss, train_df["label"].to_numpy(), multihead=cfg.model.head == "multi")
    optimizer = create_optimizer(model, cfg.optim)  # before freezing: frozen tensors must be there when melted
    frozen = freeze(model, cfg.model.freeze)
    if frozen:
        log.info("frozen: %d backbone tensors (model.freeze=%d)", len(frozen), cfg.model.freeze)
    scheduler = create_scheduler(optimizer, cfg.sched, cfg.train.epochs, updates_per_epoch)
    mixer = BatchMixer(cfg.aug)
    train_model = model
    if ddp.enabled:
        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    ema = ModelEmaV3(model, decay=cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
    sign = 1.0 if cfg.train.select_mode == "max" else -1.0
    metric = cfg.train.select_metric
    best_score, best_epoch, best_val, rows, melted = -math.inf, -1, None, [], False
    first_epoch, progress = 0, EpochProgress()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        if ema is not None:
            ema.module.load_state_dict(state["ema"])
        set_rng_state(state["rng"], device)
        rows, best_score, best_epoch, best_val = state["rows"], state["best_score"], state["best_epoch"], \
            state["best_val"]
        melted = state["melted"]
        if melted:
            melt(model)
        first_epoch = state["epoch"]
        if state["progress"] is not None:
            progress = EpochProgress.from_state(state["progress"])
        log.info("resuming %s at epoch %d step %d", run_dir, first_epoch + 1, progress.step)

    def save_last(epoch_done: int, partial: EpochProgress | None, finished: bool = False) -> None:
        if not ddp.main:
            return
        atomic_torch_save({
            "format": CHECKPOINT_FORMAT, "config": cfg.to_dict(), "epoch": epoch_done, "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict() if scheduler else {},
            "ema": ema.module.state_dict() if ema is not None else None, "rng": rng_state(device),
            "rows": rows, "best_score": best_score, "best_epoch": best_epoch, "best_val": best_val,
            "melted": melted, "finished": finished,
            "progress": None if partial is None else partial.state_dict(),
            "metrics": rows[-1] if rows else {}}, run_dir / "last.pt")

    def do_melt(reason: str) -> None:
        nonlocal melted
        melt(model)
        melted = True
        log.info("melted the frozen backbone (%s)", reason)

    def should_stop() -> bool:
        """This process's signal flag; under DDP agreed by all ranks every LOG_EVERY steps (one collective)."""
        if not ddp.enabled:
            return stop()
        return progress.step % LOG_EVERY == 0 and any_rank(stop(), ddp)

    start = time.perf_counter()
    stopped_early = False
    for epoch in range(first_epoch, cfg.train.epochs):
        if frozen and not melted and cfg.model.melt_epoch and epoch + 1 >= cfg.model.melt_epoch:
            do_melt(f"model.melt_epoch={cfg.model.melt_epoch}")
        sampler.set_epoch(epoch, start=progress.step * cfg.data.batch_size)
        complete = train_one_epoch(train_model, train_loader, loss_fn, optimizer, scheduler, device, epoch,
                                   progress, updates_per_epoch, cfg.train.channels_last,
                                   cfg.train.progress and ddp.main, should_stop, on_step,
                                   mixer, ema, cfg.train.precision, train_tf if on_device else None)
        if not complete:
            save_last(epoch, progress)
            raise TrainingInterrupted(run_dir, stop.signum or signal.SIGINT, epoch, progress.step)
        sync_buffers(model, ddp)
        val, val_probs = validate(model)
        train_loss, train_metrics = epoch_train_metrics(progress, ddp)
        row = {"epoch": epoch + 1, "lr": progress.lr, "train_loss": train_loss,
               "train_accuracy": train_metrics["accuracy"], "train_macro_f1": train_metrics["macro_f1"],
               **{f"val_{m}": val[m] for m in VAL_METRICS}}
        chosen, chosen_probs = model, val_probs
        if ema is not None:
            ema_val, ema_probs = validate(ema.module)
            row |= {f"ema_val_{m}": ema_val[m] for m in VAL_METRICS}
            if metric.startswith("ema_"):
                chosen, val, chosen_probs = ema.module, ema_val, ema_probs
        row |= {"epoch_seconds": progress.seconds,
                "train_images_per_second": ddp.world * progress.seen / progress.seconds if progress.seconds else 0.0}
        if scheduler is not None:
            scheduler.step(epoch + 1, row["val_macro_f1"])
        rows.append(row)
        tracker.log_epoch(row)
        if on_epoch is not None:
            on_epoch(row)
        if ddp.main:
            atomic_write_text(run_dir / "metrics.csv",
                              pd.DataFrame(rows, columns=metric_columns(ema is not None)).to_csv(index=False))
        if sign * row[metric] > best_score:
            best_score, best_epoch, best_val = sign * row[metric], epoch + 1, val
        if best_epoch == epoch + 1 and ddp.main:
            atomic_torch_save({"format": CHECKPOINT_FORMAT, "config": cfg.to_dict(), "epoch": epoch + 1,
                               "metrics": row, "model": chosen.state_dict()}, run_dir / "best.pt")
            predictions = pd.DataFrame({"file": val_df["file"], "person": val_df["person"], "label": val_df["label"],
                                        "pred": chosen_probs.argmax(1)})
            predictions[[f"p{i}" for i in range(chosen_probs.shape[1])]] = chosen_probs
            atomic_write_text(run_dir / "val_predictions.csv", predictions.to_csv(index=False, float_format="%.6g"))
        since_best = epoch + 1 - best_epoch
        if frozen and not melted and cfg.model.melt_patience and since_best >= cfg.model.melt_patience:
            do_melt(f"{metric} did not improve for {since_best} epochs")
        stopped_early = bool(cfg.train.early_stop) and since_best >= cfg.train.early_stop
        progress = EpochProgress()
        finished = stopped_early or epoch + 1 == cfg.train.epochs
        save_last(epoch + 1, None, finished)
        log.info("epoch %d/%d  loss %.4f  val macro F1 %.4f  acc %.4f  (mask %.3f gender %.3f age %.3f)  "
                 "%.0f img/s", epoch + 1, cfg.train.epochs, row["train_loss"], row["val_macro_f1"],
                 row["val_accuracy"], row["val_mask_f1"], row["val_gender_f1"], row["val_age_f1"],
                 row["train_images_per_second"])
        if stopped_early:
            log.info("early stop: %s did not improve for %d epochs (train.early_stop=%d)", metric, since_best,
                     cfg.train.early_stop)
            break
        if any_rank(stop(), ddp) and not finished:
            raise TrainingInterrupted(run_dir, stop.signum, epoch + 1, 0)
    if not ddp.main:
        return run_dir
    summary = {"run": str(run_dir), "split": "val", "checkpoint": "best.pt", "epoch": best_epoch,
               "epochs_run": len(rows), "stopped_early": stopped_early,
               "train_seconds": time.perf_counter() - start, **best_val}
    atomic_write_text(run_dir / "eval.json", json.dumps(summary, indent=2))
    if cfg.train.report:
        from facemask.evaluation.report import make_report

        log.info("report: %s", make_report(run_dir))
    tracker.finish(summary)
    return run_dir


def epoch_train_metrics(progress: EpochProgress, ddp: Dist) -> tuple[float, dict]:
    """(mean loss, metrics) of the epoch's training predictions, over all ranks."""
    if not ddp.enabled:
        return progress.loss, progress.metrics()
    state = progress.state_dict()
    parts = gather_list([(state["losses"].numpy(), state["preds"].numpy(), state["targets"].numpy())], ddp)
    losses = np.concatenate([p[0] for p in parts])
    preds, targets = np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])
    return float(losses.sum() / len(targets)), classification_metrics(targets, preds)


def fit_folds(cfg: Config, folds: int) -> Path:
    """Train one run per person-level fold into ``<output_dir>/<name>-kfold-<time>/`` and write ``oof.csv``
    (every training image predicted by the fold model that did not see it) and ``kfold.json`` (fold macro F1,
    mean ± std, and the out-of-fold macro F1 over the whole training set)."""
    if folds < 2:
        raise ConfigError(f"--folds must be at least 2, got {folds}")
    parent = new_run_dir(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, name=f"{cfg.train.name}-kfold")))
    runs, frames = [], []
    for fold in range(folds):
        fold_cfg = copy.deepcopy(cfg)
        fold_cfg.data.fold, fold_cfg.data.folds = fold, folds
        fold_cfg.train.name, fold_cfg.train.output_dir = f"{cfg.train.name}-fold{fold}", str(parent)
        log.info("fold %d/%d", fold + 1, folds)
        run = fit(fold_cfg)
        runs.append(run)
        frames.append(pd.read_csv(run / "val_predictions.csv").assign(fold=fold))
    oof = pd.concat(frames, ignore_index=True)
    atomic_write_text(parent / "oof.csv", oof.to_csv(index=False, float_format="%.6g"))
    scores = [json.loads((run / "eval.json").read_text())["macro_f1"] for run in runs]
    from facemask.evaluation.metrics import classification_metrics

    summary = {"runs": [str(r) for r in runs], "fold_macro_f1": scores, "mean_macro_f1": float(np.mean(scores)),
               "std_macro_f1": float(np.std(scores)),
               "oof": classification_metrics(oof["label"].to_numpy(), oof["pred"].to_numpy())}
    atomic_write_text(parent / "kfold.json", json.dumps(summary, indent=2))
    return parent
