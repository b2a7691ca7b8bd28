"""Optimizers and LR schedules from timm's factories (thin wrappers that turn bad names into ConfigErrors)."""
from __future__ import annotations

import torch
from timm.optim import create_optimizer_v2, list_optimizers
from timm.scheduler import create_scheduler_v2
from timm.scheduler.scheduler import Scheduler

from facemask.config import OptimConfig, SchedConfig
from facemask.errors import ConfigError

SCHEDULES = ("none", "cosine", "tanh", "step", "multistep", "plateau", "poly")


def check_names(optim: OptimConfig, sched: SchedConfig) -> None:
    """Fail before a run starts on an unknown optimizer or schedule name."""
    if optim.name.lower() not in list_optimizers():
        raise ConfigError(f"unknown option optim.name={optim.name!r} (known: e.g. adamw, adam, sgd, nadam, adamp)")
    if sched.name not in SCHEDULES:
        raise ConfigError(f"unknown option sched.name={sched.name!r} (known: {', '.join(SCHEDULES)})")


def create_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """timm's optimizer factory; no weight decay on norms and biases (filter_bias_and_bn)."""
    kwargs = {"momentum": cfg.momentum} if cfg.name.lower() in ("sgd", "nesterov", "momentum", "rmsprop") else {}
    return create_optimizer_v2(model, opt=cfg.name, lr=cfg.lr, weight_decay=cfg.weight_decay, **kwargs)


def create_scheduler(optimizer: torch.optim.Optimizer, cfg: SchedConfig, epochs: int,
                     updates_per_epoch: int) -> Scheduler | None:
    """A timm scheduler stepped per iteration (``step_update``) and per epoch (``step``); None for 'none'."""
    if cfg.name == "none":
        return None
    scheduler, _ = create_scheduler_v2(
        optimizer, sched=cfg.name, num_epochs=epochs, min_lr=cfg.min_lr, warmup_epochs=cfg.warmup_epochs,
        warmup_lr=cfg.min_lr, step_on_epochs=False, updates_per_epoch=updates_per_epoch)
    return scheduler
