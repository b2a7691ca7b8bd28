"""Augmentation presets by name. They act on uint8 CHW tensors already resized to the input size; scaling to
float and normalising happen inside the model (facemask.models.factory.FaceClassifier), so training, evaluation,
prediction and exported models all share one preprocessing.

A preset returns (train_transform, eval_transform); the eval transform is the deterministic part only.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torchvision.transforms import v2

from facemask.errors import ConfigError

Transform = Callable[[torch.Tensor], torch.Tensor]
PRESETS: dict[str, Callable[[], tuple[Transform, Transform]]] = {}


def register_preset(name: str):
    def wrap(fn):
        PRESETS[name] = fn
        return fn
    return wrap


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


@register_preset("base")
def _base() -> tuple[Transform, Transform]:
    """Resize (done at decode time) and normalise (done in the model): no randomness."""
    return _identity, _identity


@register_preset("flip")
def _flip() -> tuple[Transform, Transform]:
    """base + random horizontal flip."""
    return v2.RandomHorizontalFlip(p=0.5), _identity


def build_transforms(preset: str) -> tuple[Transform, Transform]:
    if preset not in PRESETS:
        raise ConfigError(f"unknown option data.augment={preset!r} (known: {', '.join(sorted(PRESETS))})")
    return PRESETS[preset]()
