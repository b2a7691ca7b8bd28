"""Classifier heads by name, put on a timm backbone that returns pooled features (``num_classes=0``)."""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from facemask.errors import ConfigError

HEADS: dict[str, Callable[[int, int, float], nn.Module]] = {}


def register_head(name: str):
    def wrap(fn):
        HEADS[name] = fn
        return fn
    return wrap


@register_head("linear")
def linear_head(in_features: int, num_classes: int, drop_rate: float) -> nn.Module:
    """Dropout + one linear layer: timm's own classifier."""
    return nn.Sequential(nn.Dropout(drop_rate), nn.Linear(in_features, num_classes))


def create_head(name: str, in_features: int, num_classes: int, drop_rate: float) -> nn.Module:
    if name not in HEADS:
        raise ConfigError(f"unknown option model.head={name!r} (known: {', '.join(sorted(HEADS))})")
    return HEADS[name](in_features, num_classes, drop_rate)
