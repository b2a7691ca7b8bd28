"""Losses by name. Each factory takes the LossConfig and returns ``loss(logits, targets)``."""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from facemask.config import LossConfig
from facemask.errors import ConfigError

LOSSES: dict[str, Callable[[LossConfig], nn.Module]] = {}


def register_loss(name: str):
    def wrap(fn):
        LOSSES[name] = fn
        return fn
    return wrap


@register_loss("ce")
def cross_entropy(cfg: LossConfig) -> nn.Module:
    """Cross-entropy, with optional label smoothing (loss.label_smoothing)."""
    return nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)


def create_loss(cfg: LossConfig) -> nn.Module:
    if cfg.name not in LOSSES:
        raise ConfigError(f"unknown option loss.name={cfg.name!r} (known: {', '.join(sorted(LOSSES))})")
    return LOSSES[cfg.name](cfg)
