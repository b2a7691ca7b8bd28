"""Optimizers and LR schedules from timm's factories.

Parameter groups: no weight decay on norms and biases (timm's param_groups_weight_decay), and the head can have its
own learning rate (optim.head_lr), and with optim.layer_decay each backbone stage learns more slowly than the one
above it (layer-wise learning-rate decay: the early stages keep more of their ImageNet features). Schedules are
timm's, stepped per iteration (``step_update``) where the schedule is defined over time (warmup, cosine, step,
multistep, exponential) and per epoch on the validation macro F1 for plateau; their state is saved in last.pt and
restored on resume.
"""
from __future__ import annotations

import torch
from timm.optim import create_optimizer_v2, list_optimizers, param_groups_weight_decay
from timm.scheduler import create_scheduler_v2
from timm.scheduler.scheduler import Scheduler

from facemask.config import OptimConfig, SchedConfig
from facemask.errors import ConfigError
from facemask.models.freeze import backbone_stages

SCHEDULES = ("none", "step", "multistep", "exponential", "cosine", "plateau")


def check_names(optim: OptimConfig, sched: SchedConfig) -> None:
    """Fail before a run starts on an unknown optimizer or schedule name."""
    if optim.name.lower() not in list_optimizers():
        raise ConfigError(f"unknown option optim.name={optim.name!r} (known: e.g. adamw, adam, sgd, nadam, adamp)")
    if sched.name not in SCHEDULES:
        raise ConfigError(f"unknown option sched.name={sched.name!r} (known: {', '.join(SCHEDULES)})")


def param_groups(model: torch.nn.Module, cfg: OptimConfig) -> list[dict]:
    """Weight-decay groups of the backbone and the head; with optim.layer_decay < 1, one pair per backbone stage.

    Written here rather than with create_optimizer_v2's own layer_decay because that one needs the model itself to
    have timm's group_matcher, and ours wraps the backbone with its preprocessing and head."""
    head_lr = cfg.head_lr if cfg.head_lr is not None else cfg.lr
    parts = [(model.backbone, cfg.lr, None)]
    if cfg.layer_decay < 1:
        stages = backbone_stages(model.backbone)
        if len(stages) < 2:
            raise ConfigError(f"option optim.layer_decay={cfg.layer_decay}: {type(model.backbone).__name__} has no "
                              "stages to decay over (it has no timm group_matcher)")
        parts = [(model.backbone, cfg.lr * cfg.layer_decay ** (len(stages) - k), set(names))
                 for k, names in enumerate(stages)]
    groups = []
    for part, lr, names in parts + [(model.head, head_lr, None)]:
        for group in param_groups_weight_decay(part, cfg.weight_decay):
            if names is not None:
                named = {id(p): n for n, p in part.named_parameters()}
                group = {**group, "params": [p for p in group["params"] if named[id(p)] in names]}
            # lr_factor: this group's rate over optim.lr, so that the rate logged is optim.lr's whatever the group
            groups.append({**group, "lr": lr, "lr_factor": lr / cfg.lr})
    return [g for g in groups if g["params"]]


def create_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """timm's optimizer factory over the facemask parameter groups."""
    name = cfg.name.lower()
    if name == "sgd" and not cfg.nesterov:
        name = "momentum"  # timm: 'sgd' is Nesterov SGD, 'momentum' is plain momentum SGD
    kwargs = {"momentum": cfg.momentum} if name in ("sgd", "nesterov", "momentum", "rmsprop") else {}
    return create_optimizer_v2(param_groups(model, cfg), opt=name, lr=cfg.lr, weight_decay=cfg.weight_decay,
                               **kwargs)


class PlateauSchedule:
    """Linear warmup per iteration, then torch's ReduceLROnPlateau on the validation macro F1 per epoch.

    Written here because timm's plateau scheduler is deprecated and does not save its state; this one's
    ``state_dict`` holds the plateau counters, so a resumed run continues exactly.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: SchedConfig, updates_per_epoch: int):
        self.optimizer = optimizer
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.warmup_updates = int(round(cfg.warmup_epochs * updates_per_epoch))
        self.min_lr = cfg.min_lr
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=cfg.decay_rate, patience=cfg.patience, min_lr=cfg.min_lr)
        self.step_update(0)

    def step_update(self, num_updates: int) -> None:
        if num_updates < self.warmup_updates:
            for group, base in zip(self.optimizer.param_groups, self.base_lrs):
                group["lr"] = self.min_lr + (base - self.min_lr) * num_updates / self.warmup_updates
        elif num_updates == self.warmup_updates and self.warmup_updates:
            for group, base in zip(self.optimizer.param_groups, self.base_lrs):
                group["lr"] = base

    def step(self, epoch: int, metric: float | None = None) -> None:
        if metric is not None:
            self.plateau.step(metric)

    def state_dict(self) -> dict:
        return {"plateau": self.plateau.state_dict(), "base_lrs": self.base_lrs}

    def load_state_dict(self, state: dict) -> None:
        self.plateau.load_state_dict(state["plateau"])
        self.base_lrs = state["base_lrs"]


def create_scheduler(optimizer: torch.optim.Optimizer, cfg: SchedConfig, epochs: int,
                     updates_per_epoch: int) -> Scheduler | PlateauSchedule | None:
    """A timm scheduler (None for 'none'); 'exponential' is timm's step schedule decaying every epoch."""
    if cfg.name == "none":
        return None
    if cfg.name == "plateau":
        return PlateauSchedule(optimizer, cfg, updates_per_epoch)
    name, decay_epochs = cfg.name, cfg.decay_epochs
    if name == "exponential":
        name, decay_epochs = "step", 1
    scheduler, _ = create_scheduler_v2(
        optimizer, sched=name, num_epochs=epochs, min_lr=cfg.min_lr, warmup_epochs=cfg.warmup_epochs,
        warmup_lr=cfg.min_lr, decay_epochs=decay_epochs, decay_milestones=list(cfg.milestones),
        decay_rate=cfg.decay_rate, step_on_epochs=False, updates_per_epoch=updates_per_epoch)
    return scheduler
