"""Classifier heads by name, put on a timm backbone that returns pooled features (``num_classes=0``).

Every head returns 18 values whose softmax is the class distribution, so evaluation, prediction, ensembles and
ONNX treat all heads alike. The multi-head returns log p(mask) + log p(gender) + log p(age) for each class.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from facemask.config import ModelConfig
from facemask.data.labels import NUM_CLASSES, SHAPE
from facemask.errors import ConfigError

HEADS: dict[str, Callable[[int, int, ModelConfig], nn.Module]] = {}


def register_head(name: str):
    def wrap(fn):
        HEADS[name] = fn
        return fn
    return wrap


@register_head("linear")
def linear_head(in_features: int, num_classes: int, cfg: ModelConfig) -> nn.Module:
    """Dropout + one linear layer."""
    return nn.Sequential(nn.Dropout(cfg.drop_rate), nn.Linear(in_features, num_classes))


@register_head("shallow")
def shallow_head(in_features: int, num_classes: int, cfg: ModelConfig) -> nn.Module:
    """Two layers: linear -> ReLU -> dropout -> linear."""
    return nn.Sequential(nn.Dropout(cfg.drop_rate), nn.Linear(in_features, cfg.hidden), nn.ReLU(inplace=True),
                         nn.Dropout(cfg.drop_rate), nn.Linear(cfg.hidden, num_classes))


class MultiHead(nn.Module):
    """Separate mask (3), gender (2) and age (3) classifiers joined into 18 joint log-probabilities."""

    def __init__(self, in_features: int, drop_rate: float):
        super().__init__()
        self.drop = nn.Dropout(drop_rate)
        self.mask = nn.Linear(in_features, SHAPE[0])
        self.gender = nn.Linear(in_features, SHAPE[1])
        self.age = nn.Linear(in_features, SHAPE[2])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.drop(features)
        mask = self.mask(x).log_softmax(1)[:, :, None, None]
        gender = self.gender(x).log_softmax(1)[:, None, :, None]
        age = self.age(x).log_softmax(1)[:, None, None, :]
        return (mask + gender + age).flatten(1)  # row-major over SHAPE: the class ids of facemask.data.labels


@register_head("multi")
def multi_head(in_features: int, num_classes: int, cfg: ModelConfig) -> nn.Module:
    if num_classes != NUM_CLASSES:
        raise ConfigError(f"model.head=multi needs the {NUM_CLASSES} mask x gender x age classes")
    return MultiHead(in_features, cfg.drop_rate)


def create_head(cfg: ModelConfig, in_features: int, num_classes: int) -> nn.Module:
    if cfg.head not in HEADS:
        raise ConfigError(f"unknown option model.head={cfg.head!r} (known: {', '.join(sorted(HEADS))})")
    return HEADS[cfg.head](in_features, num_classes, cfg)
