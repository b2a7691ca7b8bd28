"""The only loops: one training epoch and one evaluation pass."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from facemask.evaluation.metrics import classification_metrics

LOG_EVERY = 10  # steps between host syncs for the progress bar


def to_device(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    images = images.to(device, non_blocking=True)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


@dataclass
class EpochResult:
    loss: float
    metrics: dict
    seconds: float
    images_per_second: float


def train_one_epoch(model: nn.Module, loader: DataLoader, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler, device: torch.device, epoch: int, channels_last: bool = True,
                    progress: bool = True) -> EpochResult:
    """One pass over ``loader``; the scheduler is stepped per iteration (timm's ``step_update``)."""
    model.train()
    updates_per_epoch = len(loader)
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    seen = 0
    preds, targets = [], []
    start = time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch + 1} train", unit="batch", disable=not progress, leave=False)
    for step, (images, labels) in enumerate(bar):
        images = to_device(images, device, channels_last)
        labels = labels.to(device, non_blocking=True)
        logits = model(images)
        loss = loss_fn(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step_update(num_updates=epoch * updates_per_epoch + step + 1)
        total_loss += loss.detach().double() * len(labels)
        seen += len(labels)
        preds.append(logits.detach().argmax(1))
        targets.append(labels)
        if progress and (step + 1) % LOG_EVERY == 0:
            elapsed = time.perf_counter() - start
            bar.set_postfix(loss=f"{total_loss.item() / seen:.4f}", img_s=f"{seen / elapsed:.1f}")
    seconds = time.perf_counter() - start
    y_pred = torch.cat(preds).cpu().numpy()
    y_true = torch.cat(targets).cpu().numpy()
    return EpochResult(total_loss.item() / max(seen, 1), classification_metrics(y_true, y_pred), seconds,
                       seen / seconds if seconds else 0.0)


@torch.inference_mode()
def predict_probs(model: nn.Module, loader: DataLoader, device: torch.device, channels_last: bool = True,
                  progress: bool = True, desc: str = "predict") -> tuple[np.ndarray, np.ndarray]:
    """(class probabilities (N, 18) float32, labels (N,)) over the whole loader, in its order."""
    model.eval()
    probs, labels_out = [], []
    for images, labels in tqdm(loader, desc=desc, unit="batch", disable=not progress, leave=False):
        logits = model(to_device(images, device, channels_last))
        probs.append(logits.float().softmax(1))
        labels_out.append(labels)
    return torch.cat(probs).cpu().numpy(), torch.cat(labels_out).numpy()


def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, channels_last: bool = True,
             progress: bool = True) -> tuple[dict, np.ndarray]:
    """Metrics (with ``loss``: mean cross-entropy) over the whole split, and the probabilities."""
    probs, labels = predict_probs(model, loader, device, channels_last, progress, desc="validate")
    metrics = classification_metrics(labels, probs.argmax(1))
    picked = probs[np.arange(len(labels)), labels]
    metrics["loss"] = float(-np.log(np.clip(picked, 1e-12, None)).mean())
    return metrics, probs
