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
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from timm.utils import ModelEmaV3
from torch.nn.parallel import DistributedDataParallel

from facemask.config import Config
from facemask.data.corrections import load_samples, training_labels
from facemask.data.covers import covers_found, load_covers, uses_covers
from facemask.data.faces import trust_detector
from facemask.data.images import cache_faces
from facemask.data.layout import read_train
from facemask.data.loaders import augment_on_device, batch_augment, decoding_of, load_pixels, make_loader
from facemask.data.samplers import EpochSampler
from facemask.data.split import kfold_by_person, split_by_person
from facemask.data.transforms import build_transforms
from facemask.errors import ConfigError, DataError, FacemaskError, TrainingInterrupted
from facemask.evaluation.metrics import classification_metrics, probs_metrics
from facemask.io import atomic_write_text, cpu_count
from facemask.models.factory import check_model_names, create_model
from facemask.models.freeze import freeze, melt
from facemask.models.heads import AGE_BINS
from facemask.models.runtime import PRECISIONS, predict_probs
from facemask.runs import (
    BEST,
    CHECKPOINT_FORMAT,
    CONFIG,
    CORRECTIONS,
    EVAL,
    KFOLD,
    LAST,
    METRICS,
    NO_FACE,
    OOF,
    SKIPPED,
    VAL_PREDICTIONS,
    Run,
    TrainState,
    load_checkpoint,
)
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
from facemask.training.engine import LOG_EVERY, EpochProgress, train_one_epoch
from facemask.training.losses import create_loss, pack_ages
from facemask.training.mixing import BatchMixer
from facemask.training.optim import check_names, create_optimizer, create_scheduler
from facemask.utils import resolve_device, seed_everything

log = logging.getLogger("facemask")


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


VAL_METRICS = ("loss", "accuracy", "macro_f1", "mask_f1", "gender_f1", "age_f1")


def metric_columns(ema: bool = False) -> list[str]:
    columns = ["epoch", "lr", "train_loss", "train_accuracy", "train_macro_f1", *(f"val_{m}" for m in VAL_METRICS)]
    if ema:
        columns += [f"ema_val_{m}" for m in VAL_METRICS]
    return columns + ["epoch_seconds", "train_images_per_second"]


def run_loss(cfg: Config, train_labels: np.ndarray | None = None) -> torch.nn.Module:
    """The loss for the run's head (the multi heads get theirs); ``train_labels`` for class weights."""
    return create_loss(cfg.loss, train_labels, multihead=cfg.model.head == "multi",
                       age_bins=AGE_BINS if cfg.model.head == "multi_age" else 0)


def check_config(cfg: Config, resuming: bool = False) -> None:
    """Every option, before any data is read or folder written: ranges (Config.validate), then every name that
    picks a component from a registry, and the face detector itself (dlib installed? a plug-in allowed?). A
    resumed run needs no pretrained weights (its checkpoint has the weights)."""
    cfg.validate()
    if cfg.train.select_mode not in ("max", "min"):
        raise ConfigError(f"option train.select_mode must be max or min, got {cfg.train.select_mode!r}")
    if cfg.data.corrections and not Path(cfg.data.corrections).is_file():
        raise ConfigError(f"option data.corrections: file {cfg.data.corrections} does not exist")
    build_transforms(cfg.data.augment, cfg.aug)
    augment_on_device(cfg.data, torch.device("cpu"))  # validates data.augment_on
    batch_augment(cfg, torch.device("cpu"))  # validates data.augment_mode and the batch presets' parameters
    decoding_of(cfg)  # data.resize, data.face_* and the face detector itself (dlib installed?)
    EpochSampler([0], 0, cfg.data.sampler)
    run_loss(cfg)
    if cfg.model.head == "multi_age" and BatchMixer(cfg.aug).active:
        raise ConfigError("model.head=multi_age trains on exact ages, which batch mixing would blur: set "
                          "aug.mixup_alpha, aug.cutmix_alpha and aug.halfmix_p to 0")
    check_names(cfg.optim, cfg.sched)
    check_model_names(dataclasses.replace(cfg.model, pretrained="none") if resuming else cfg.model)
    if cfg.train.precision not in PRECISIONS:
        raise ConfigError(f"option train.precision must be one of {', '.join(PRECISIONS)}, got {cfg.train.precision!r}")
    if cfg.data.on_bad_image not in ("error", "skip"):
        raise ConfigError(f"option data.on_bad_image must be error or skip, got {cfg.data.on_bad_image!r}")
    if cfg.train.device != "auto":
        resolve_device(cfg.train.device)
    columns = metric_columns(ema=cfg.train.ema_decay > 0)[1:]
    if cfg.train.select_metric not in columns:
        raise ConfigError(f"option train.select_metric={cfg.train.select_metric!r} is not a metrics column "
                          f"(known: {', '.join(columns)})")


def split_samples(samples: pd.DataFrame, cfg: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Person-level (train, val): a stratified hold-out, or fold ``data.fold`` of ``data.folds``."""
    if cfg.data.fold >= 0:
        return list(kfold_by_person(samples, cfg.data.folds, cfg.train.seed))[cfg.data.fold]
    return split_by_person(samples, cfg.data.val_fraction, cfg.train.seed)


def fit(cfg: Config | None = None, resume: str | Path | None = None, on_step=None, on_epoch=None,
        trust_run_code: bool = False) -> Path:
    """Train one model as configured (or continue the run folder ``resume``); returns the run folder.

    ``on_step(step)`` is called after every optimizer step (tests use it to interrupt at a chosen point);
    ``on_epoch(row)`` after every epoch with its metrics row (sweeps use it to prune). A resumed run's saved
    config may import a ``module:factory`` face detector only with ``trust_run_code``.
    SIGINT/SIGTERM from the start on stop the run at the next step with a resumable checkpoint.
    """
    checkpoint = None
    if resume is not None:
        cfg, checkpoint = _resume_point(resume)
        if trust_run_code:
            trust_detector(cfg.data.face_crop)
    elif cfg is not None:
        trust_detector(cfg.data.face_crop)  # the user's own config: they named the detector
    else:
        raise ConfigError("fit() needs a config or a run folder to resume")
    check_config(cfg, resuming=checkpoint is not None)
    stop = StopFlag()
    with stop.installed():
        ddp, ddp_device = init_from_env(cfg.train.device)
        try:
            return _fit_process(cfg, checkpoint, resume, (on_step, on_epoch), stop, ddp, ddp_device)
        finally:
            shutdown(ddp)


def _resume_point(resume: str | Path) -> tuple[Config, dict]:
    """(the run's config, its last.pt) for ``facemask train --resume RUN``; one line for every way it can't be."""
    run = Run(resume)
    if not run.path.is_dir():
        raise FacemaskError(f"run folder {run.path} not found")
    if not (run / LAST).exists():
        if (run / CONFIG).is_file():
            raise FacemaskError(f"run {run.path} never finished an epoch or was stopped before its first checkpoint "
                                f"(no {LAST}); start it again: facemask train -c {run / CONFIG}")
        raise FacemaskError(f"{run / LAST} not found (is {run.path} a facemask run folder?)")
    checkpoint = load_checkpoint(run / LAST, keys=("config", "model", "epoch"))
    cfg = Run._config_of(checkpoint, run / LAST)
    if checkpoint.get("finished", False):
        raise FacemaskError(f"run {run.path} already finished (epoch {checkpoint['epoch']} of {cfg.train.epochs})")
    return cfg, checkpoint


@dataclass
class RunData:
    """The samples of a run and its person-level split, with the decoded-image cache."""

    samples: pd.DataFrame
    train: pd.DataFrame
    val: pd.DataFrame
    pixels: np.ndarray | None
    bad: list[tuple[str, str]]
    changes: list[str]
    covers: np.ndarray | None = None  # bare faces and covers per row of ``pixels`` (the mask_restyle preset)


def prepare_data(cfg: Config, ddp: Dist) -> RunData:
    """Read the layout, split by person, decode every image once (rank 0 builds the cache, the others read it)."""
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
    covers = None
    if uses_covers(cfg.data.augment):  # rank 0 finds them (cached), the others wait, then read them
        bad_files = {file for file, _ in bad}
        if ddp.main:
            failed = True
            try:
                covers = load_covers(pixels, samples, bad_files, progress=cfg.train.progress)
                failed = False
            finally:
                any_rank(failed, ddp)  # the others wait here, and learn whether it worked
            masked, found = covers_found(pixels, samples, bad_files)
            log.info("mask_restyle: the mask found (from the person's bare photo) in %d of %d masked photos; the "
                     "others are left as they are", found, masked)
        else:
            if any_rank(False, ddp):
                raise DataError("rank 0 could not find the mask covers (mask_restyle); its error says why")
            covers = load_covers(pixels, samples, bad_files, progress=False)
    return RunData(samples, train_df, val_df, pixels, bad, changes, covers)


def _start_run(cfg: Config, data: RunData) -> Run:
    """A new run folder with its config, split and the data notes (skipped images, faces found, corrections)."""
    run = Run.create(cfg.train.output_dir, cfg.train.name)
    run.save_config(cfg)
    run.save_split(data.train, data.val)
    if data.bad and cfg.data.on_bad_image == "skip":
        run.write_csv(SKIPPED, pd.DataFrame(data.bad, columns=["file", "problem"]))
        log.warning("skipped %d images that cannot be decoded (listed in %s)", len(data.bad), run / SKIPPED)
    if cfg.data.face_crop != "none" and cfg.data.cache:
        faceless = cache_faces(data.samples["file"].tolist(), (cfg.data.height, cfg.data.width),
                               cfg.data.cache_dir or None, progress=False, decoding=decoding_of(cfg))  # cached
        run.write_csv(NO_FACE, pd.DataFrame({"file": faceless}))
        log.info("face crop (%s): face found in %d of %d photos; the others are cropped where faces usually are (%s)",
                 cfg.data.face_crop, len(data.samples) - len(faceless), len(data.samples), run / NO_FACE)
    if data.changes:
        run.write_text(CORRECTIONS, "\n".join(data.changes) + "\n")
        log.info("label corrections from %s: %d changes (%s)", cfg.data.corrections, len(data.changes),
                 "; ".join(data.changes[:5]) + (" ..." if len(data.changes) > 5 else ""))
    return run


def _fit_process(cfg: Config, checkpoint: dict | None, resume: str | Path | None, hooks, stop: StopFlag, ddp: Dist,
                 ddp_device: torch.device | None) -> Path:
    device = ddp_device or resolve_device(cfg.train.device)
    torch.set_num_threads(max(1, (cfg.train.threads or cpu_count()) // (ddp.world if device.type == "cpu" else 1)))
    seed_everything(cfg.train.seed)
    data = prepare_data(cfg, ddp)
    # resuming: last.pt has the weights, so the pretrained ones are not needed (they may be gone or offline)
    architecture = dataclasses.replace(cfg.model, pretrained="none") if checkpoint is not None else cfg.model
    model = create_model(architecture, cfg.data.mean, cfg.data.std, cfg.data.age_thresholds).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if checkpoint is not None:
        run = Run(resume)
    else:
        run = broadcast_object(_start_run(cfg, data) if ddp.main else None, ddp)
    tracker = Tracker(cfg.track, run.path, cfg.to_dict(), resume=checkpoint is not None) if ddp.main \
        else Tracker.disabled()
    try:
        return _train(cfg, checkpoint, run, data, model, device, tracker, hooks, stop, ddp)
    except TrainingInterrupted:
        tracker.stop("KILLED")
        raise
    except BaseException:
        tracker.stop("FAILED")
        raise


@dataclass
class Loaders:
    train: Any
    sampler: EpochSampler
    val: Any
    val_rows: np.ndarray  # this rank's share of the validation table
    augment: Any  # augment(images, seeds) in the training loop, or None when the loader augments


def build_loaders(cfg: Config, data: RunData, train_df: pd.DataFrame, device: torch.device, ddp: Dist) -> Loaders:
    row_of = {f: i for i, f in enumerate(data.samples["file"])}
    train_tf, eval_tf = build_transforms(cfg.data.augment, cfg.aug)
    pin = device.type == "cuda"
    sampler = EpochSampler(train_df["label"].to_numpy(), cfg.train.seed, cfg.data.sampler, ddp.world, ddp.rank)
    augment = batch_augment(cfg, device)
    targets = train_df["label"] if cfg.model.head != "multi_age" else \
        pack_ages(train_df["label"], train_df["age"], AGE_BINS)  # the age head learns the exact age too
    train_loader = make_loader(train_df["file"], targets, cfg, train_tf, data.pixels,
                               [row_of[f] for f in train_df["file"]], sampler=sampler, pin_memory=pin,
                               defer_augment=augment is not None, covers=data.covers)
    val_rows = shard(len(data.val), ddp)  # this rank's share of validation, gathered back in order
    val_part = data.val.iloc[val_rows]
    val_loader = make_loader(val_part["file"], val_part["label"], cfg, eval_tf, data.pixels,
                             [row_of[f] for f in val_part["file"]], batch_size=cfg.data.batch_size * 2,
                             pin_memory=pin)
    return Loaders(train_loader, sampler, val_loader, val_rows, augment)


@dataclass
class Optimisation:
    """What the loop trains with: the loss, optimizer, schedule, batch mixer, EMA and the frozen parameters."""

    loss_fn: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    mixer: BatchMixer
    ema: ModelEmaV3 | None
    frozen: list[str]
    train_model: torch.nn.Module  # the model, wrapped for DDP when distributed


def build_optimisation(cfg: Config, model: torch.nn.Module, train_labels: np.ndarray, updates_per_epoch: int,
                       device: torch.device, ddp: Dist) -> Optimisation:
    loss_fn = run_loss(cfg, train_labels)
    optimizer = create_optimizer(model, cfg.optim)  # before freezing: frozen tensors must be there when melted
    frozen = freeze(model, cfg.model.freeze)
    if frozen:
        log.info("frozen: %d backbone tensors (model.freeze=%d)", len(frozen), cfg.model.freeze)
    scheduler = create_scheduler(optimizer, cfg.sched, cfg.train.epochs, updates_per_epoch)
    train_model = model
    if ddp.enabled:
        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    ema = ModelEmaV3(model, decay=cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
    return Optimisation(loss_fn, optimizer, scheduler, BatchMixer(cfg.aug), ema, frozen, train_model)


def _train(cfg: Config, checkpoint: dict | None, run: Run, data: RunData, model: torch.nn.Module,
           device: torch.device, tracker: Tracker, hooks, stop: StopFlag, ddp: Dist = Dist()) -> Path:
    """The epoch loop: train, validate (model and EMA), log, keep the best, save a resumable state."""
    on_step, on_epoch = hooks
    train_df = training_labels(data.train, cfg.data.train_age_thresholds, cfg.data.drop_ages)
    log.info("run %s: %d train images (%d people), %d val images (%d people)", run.path, len(train_df),
             train_df.person.nunique(), len(data.val), data.val.person.nunique())
    loaders = build_loaders(cfg, data, train_df, device, ddp)
    updates_per_epoch = len(loaders.train)
    opt = build_optimisation(cfg, model, train_df["label"].to_numpy(), updates_per_epoch, device, ddp)
    state = TrainState(cfg.to_dict(), model, opt.optimizer, opt.scheduler, opt.ema, device)
    progress = EpochProgress()
    if checkpoint is not None:
        state.load_state_dict(checkpoint)
        if state.melted:
            melt(model)
        if state.progress is not None:
            progress = EpochProgress.from_state(state.progress)
        log.info("resuming %s at epoch %d step %d", run.path, state.epoch + 1, progress.step)
    val_labels = data.val["label"].to_numpy()
    sign = 1.0 if cfg.train.select_mode == "max" else -1.0
    metric = cfg.train.select_metric

    def validate(net: torch.nn.Module) -> tuple[dict, np.ndarray]:
        probs, _ = predict_probs(net, loaders.val, device, cfg.train.channels_last, cfg.train.progress and ddp.main,
                                 "validate", cfg.train.precision)
        probs = gather_rows(loaders.val_rows, probs, len(data.val), ddp)
        return probs_metrics(val_labels, probs), probs

    def save_last(partial: EpochProgress | None) -> None:
        if ddp.main:
            state.progress = None if partial is None else partial.state_dict()
            run.save_checkpoint(LAST, state.state_dict())

    def do_melt(reason: str) -> None:
        melt(model)
        state.melted = True
        log.info("melted the frozen backbone (%s)", reason)

    def should_stop() -> bool:
        """This process's signal flag; under DDP agreed by all ranks every LOG_EVERY steps (one collective)."""
        if not ddp.enabled:
            return stop()
        return progress.step % LOG_EVERY == 0 and any_rank(stop(), ddp)

    start = time.perf_counter()
    stopped_early = False
    for epoch in range(state.epoch, cfg.train.epochs):
        if opt.frozen and not state.melted and cfg.model.melt_epoch and epoch + 1 >= cfg.model.melt_epoch:
            do_melt(f"model.melt_epoch={cfg.model.melt_epoch}")
        loaders.sampler.set_epoch(epoch, start=progress.step * cfg.data.batch_size)
        complete = train_one_epoch(
            opt.train_model, loaders.train, loss_fn=opt.loss_fn, optimizer=opt.optimizer, scheduler=opt.scheduler,
            device=device, epoch=epoch, progress=progress, updates_per_epoch=updates_per_epoch,
            channels_last=cfg.train.channels_last, show_progress=cfg.train.progress and ddp.main,
            should_stop=should_stop, on_step=on_step, mixer=opt.mixer, ema=opt.ema, precision=cfg.train.precision,
            augment=loaders.augment)
        if not complete:
            save_last(progress)
            raise TrainingInterrupted(run.path, stop.signum or signal.SIGINT, epoch, progress.step)
        sync_buffers(model, ddp)
        val, val_probs = validate(model)
        train_loss, train_metrics = epoch_train_metrics(progress, ddp)
        row = {"epoch": epoch + 1, "lr": progress.lr, "train_loss": train_loss,
               "train_accuracy": train_metrics["accuracy"], "train_macro_f1": train_metrics["macro_f1"],
               **{f"val_{m}": val[m] for m in VAL_METRICS}}
        chosen, chosen_probs = model, val_probs
        if opt.ema is not None:
            sync_buffers(opt.ema.module, ddp)
            ema_val, ema_probs = validate(opt.ema.module)
            row |= {f"ema_val_{m}": ema_val[m] for m in VAL_METRICS}
            if metric.startswith("ema_"):
                chosen, val, chosen_probs = opt.ema.module, ema_val, ema_probs
        row |= {"epoch_seconds": progress.seconds,
                "train_images_per_second": ddp.world * progress.seen / progress.seconds if progress.seconds else 0.0}
        if opt.scheduler is not None:
            opt.scheduler.step(epoch + 1, row["val_macro_f1"])
        state.rows.append(row)
        tracker.log_epoch(row)
        if on_epoch is not None:
            on_epoch(row)
        if ddp.main:
            run.write_csv(METRICS, pd.DataFrame(state.rows, columns=metric_columns(opt.ema is not None)))
        if sign * row[metric] > state.best_score:
            state.best_score, state.best_epoch, state.best_val = sign * row[metric], epoch + 1, val
        if state.best_epoch == epoch + 1 and ddp.main:
            run.save_checkpoint(BEST, {"format": CHECKPOINT_FORMAT, "config": cfg.to_dict(), "epoch": epoch + 1,
                                       "metrics": row, "model": chosen.state_dict()})
            predictions = pd.DataFrame({"file": data.val["file"], "person": data.val["person"],
                                        "label": data.val["label"], "pred": chosen_probs.argmax(1)})
            predictions[[f"p{i}" for i in range(chosen_probs.shape[1])]] = chosen_probs
            run.write_csv(VAL_PREDICTIONS, predictions, float_format="%.6g")
        since_best = epoch + 1 - state.best_epoch
        if opt.frozen and not state.melted and cfg.model.melt_patience and since_best >= cfg.model.melt_patience:
            do_melt(f"{metric} did not improve for {since_best} epochs")
        stopped_early = bool(cfg.train.early_stop) and since_best >= cfg.train.early_stop
        progress = EpochProgress()
        state.epoch, state.finished = epoch + 1, stopped_early or epoch + 1 == cfg.train.epochs
        save_last(None)
        log.info("epoch %d/%d  loss %.4f  val macro F1 %.4f  acc %.4f  (mask %.3f gender %.3f age %.3f)  "
                 "%.0f img/s", epoch + 1, cfg.train.epochs, row["train_loss"], row["val_macro_f1"],
                 row["val_accuracy"], row["val_mask_f1"], row["val_gender_f1"], row["val_age_f1"],
                 row["train_images_per_second"])
        if stopped_early:
            log.info("early stop: %s did not improve for %d epochs (train.early_stop=%d)", metric, since_best,
                     cfg.train.early_stop)
            break
        if any_rank(stop(), ddp) and not state.finished:
            raise TrainingInterrupted(run.path, stop.signum, epoch + 1, 0)
    if not ddp.main:
        return run.path
    summary = {"run": str(run.path), "split": "val", "checkpoint": BEST, "epoch": state.best_epoch,
               "epochs_run": len(state.rows), "stopped_early": stopped_early,
               "train_seconds": time.perf_counter() - start, **state.best_val}
    run.write_text(EVAL, json.dumps(summary, indent=2))
    if cfg.train.report:
        from facemask.evaluation.report import make_report

        log.info("report: %s", make_report(run.path))
    tracker.finish(summary)
    return run.path


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
    trust_detector(cfg.data.face_crop)
    check_config(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, fold=0, folds=folds)))
    next(kfold_by_person(read_train(cfg.data.root, cfg.data.age_thresholds), folds, cfg.train.seed))  # enough people?
    parent = Run.create(cfg.train.output_dir, f"{cfg.train.name}-kfold").path
    runs, frames = [], []
    for fold in range(folds):
        fold_cfg = copy.deepcopy(cfg)
        fold_cfg.data.fold, fold_cfg.data.folds = fold, folds
        fold_cfg.train.name, fold_cfg.train.output_dir = f"{cfg.train.name}-fold{fold}", str(parent)
        log.info("fold %d/%d", fold + 1, folds)
        run = fit(fold_cfg)
        runs.append(run)
        frames.append(pd.read_csv(run / VAL_PREDICTIONS).assign(fold=fold))
    oof = pd.concat(frames, ignore_index=True)
    atomic_write_text(parent / OOF, oof.to_csv(index=False, float_format="%.6g"))
    scores = [json.loads((run / EVAL).read_text())["macro_f1"] for run in runs]
    summary = {"runs": [str(r) for r in runs], "fold_macro_f1": scores, "mean_macro_f1": float(np.mean(scores)),
               "std_macro_f1": float(np.std(scores)),
               "oof": classification_metrics(oof["label"].to_numpy(), oof["pred"].to_numpy())}
    atomic_write_text(parent / KFOLD, json.dumps(summary, indent=2))
    return parent
