"""The training loop: one epoch, resumable at any batch (evaluation passes: facemask.models.runtime)."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from facemask.data.labels import NUM_CLASSES
from facemask.errors import FacemaskError
from facemask.evaluation.metrics import classification_metrics
from facemask.models.runtime import autocast, to_device

LOG_EVERY = 10  # steps between host syncs (progress bar, non-finite loss check on GPU)


class NonFiniteLoss(FacemaskError):
    """The loss became NaN or infinite; the optimizer step was not taken."""


@dataclass
class EpochProgress:
    """What one (possibly interrupted) epoch has done so far; saved in checkpoints to resume mid-epoch."""

    step: int = 0
    lr: float = float("nan")  # learning rate when the epoch started
    seen: int = 0
    seconds: float = 0.0
    losses: list = field(default_factory=list)  # per-batch loss sums, summed in order at the end (exact resume)
    preds: list = field(default_factory=list)
    targets: list = field(default_factory=list)

    def state_dict(self) -> dict:
        def cat(xs, dtype):
            return torch.cat([x.reshape(-1).cpu() for x in xs]) if xs else torch.zeros(0, dtype=dtype)
        return {"step": self.step, "lr": self.lr, "seen": self.seen, "seconds": self.seconds,
                "losses": cat(self.losses, torch.float64), "preds": cat(self.preds, torch.long),
                "targets": cat(self.targets, torch.long)}

    @classmethod
    def from_state(cls, state: dict) -> "EpochProgress":
        return cls(state["step"], state["lr"], state["seen"], state["seconds"], [state["losses"]], [state["preds"]],
                   [state["targets"]])

    @property
    def loss(self) -> float:
        if not self.losses:
            return float("nan")
        return torch.cat([x.reshape(-1).cpu() for x in self.losses]).sum().item() / max(self.seen, 1)

    def metrics(self) -> dict:
        targets = torch.cat([t.cpu() for t in self.targets]).numpy()
        return classification_metrics(targets, torch.cat([p.cpu() for p in self.preds]).numpy())


def train_one_epoch(model: nn.Module, loader: DataLoader, *, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler, device: torch.device, epoch: int, progress: EpochProgress,
                    updates_per_epoch: int, channels_last: bool = True, show_progress: bool = True,
                    should_stop: Callable[[], bool] = lambda: False,
                    on_step: Callable[[int], None] | None = None, mixer=None, ema=None,
                    precision: str = "fp32",
                    augment: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None) -> bool:
    """Continue ``progress`` through ``loader`` (which starts at batch ``progress.step``); True when the epoch is
    complete, False when ``should_stop()`` ended it early. The scheduler is stepped per iteration. With
    ``augment(images, seeds, labels) -> (images, labels)``, the loader yields (images, labels, seeds) and the batch
    is augmented on the device, each image from its own seed (a preset may change labels: synthetic_mask)."""
    model.train()
    if progress.step == 0:
        # optim.lr's scheduled rate: a group that learns at it (with optim.layer_decay, the head's), not the stem's
        groups = optimizer.param_groups
        at_lr = next((g for g in groups if g.get("lr_factor", 1.0) == 1.0), groups[0])
        progress.lr = at_lr["lr"] / at_lr.get("lr_factor", 1.0)
    check_every = 1 if device.type == "cpu" else LOG_EVERY  # a CPU check is free; on GPU it is a host sync
    recent: list[torch.Tensor] = []
    start, seen_before = time.perf_counter(), progress.seen
    bar = tqdm(loader, desc=f"epoch {epoch + 1} train", unit="batch", disable=not show_progress, leave=False,
               initial=progress.step, total=progress.step + len(loader))
    for images, labels, *seeds in bar:
        labels = labels.to(device, non_blocking=True)
        if augment is not None:
            images, labels = augment(images.to(device, non_blocking=True), seeds[0], labels)
        images = to_device(images, device, channels_last)
        targets = labels
        if mixer is not None and mixer.active:
            images, targets = mixer(images, labels)
        with autocast(device, precision):
            logits = model(images)
        loss = loss_fn(logits.float(), targets)
        recent.append(loss.detach())
        if len(recent) >= check_every:
            losses = torch.stack(recent)
            if not torch.isfinite(losses).all():
                bad = int((~torch.isfinite(losses)).nonzero()[0])
                at = progress.step - len(recent) + bad + 1
                raise NonFiniteLoss(f"loss is {losses[bad].item()} at epoch {epoch + 1} step {at + 1}; "
                                    f"the run stopped, the last good checkpoint is kept")
            recent.clear()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        progress.step += 1
        if ema is not None:
            ema.update(model, step=epoch * updates_per_epoch + progress.step)
        if scheduler is not None:
            scheduler.step_update(num_updates=epoch * updates_per_epoch + progress.step)
        progress.losses.append(loss.detach().double() * len(labels))
        progress.seen += len(labels)
        # the first NUM_CLASSES columns are the classes (the age head adds its age distribution after them, and its
        # targets carry the exact age: class + NUM_CLASSES * age)
        progress.preds.append(logits.detach()[:, :NUM_CLASSES].argmax(1))  # on the device: no per-step host sync
        progress.targets.append(labels % NUM_CLASSES)
        if show_progress and progress.step % LOG_EVERY == 0:
            elapsed = time.perf_counter() - start
            bar.set_postfix(loss=f"{progress.loss:.4f}",
                            img_s=f"{(progress.seen - seen_before) / elapsed:.1f}")
        if on_step is not None:
            on_step(progress.step)
        if should_stop():
            break
    bar.close()
    progress.seconds += time.perf_counter() - start
    return progress.step >= updates_per_epoch
