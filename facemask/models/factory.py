"""create_model(cfg): a timm backbone by name + a head by name, with pretrained weights from a named source.

The model takes uint8-range images (N, 3, H, W) and does the scaling and normalisation itself, so that training,
prediction and exported models can never disagree on preprocessing.
"""
from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from facemask.config import ModelConfig
from facemask.data.labels import DEFAULT_AGE_THRESHOLDS, NUM_CLASSES
from facemask.errors import ConfigError, FacemaskError
from facemask.models.heads import HEADS, create_head
from facemask.models.pretrained import LITE_MEAN, LITE_MODELS, LITE_STD, load_lite_weights

PRETRAINED_SOURCES = ("imagenet-lite", "hub", "none")


class FaceClassifier(nn.Module):
    """Normalise -> backbone features -> head. ``mean``/``std`` are buffers saved with the weights."""

    def __init__(self, backbone: nn.Module, head: nn.Module, mean, std):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)

        self.frozen_norms: list[nn.Module] = []  # BatchNorm layers of a frozen backbone part (facemask.models.freeze)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float() - self.mean) / self.std
        return self.head(self.backbone(x))

    def train(self, mode: bool = True) -> "FaceClassifier":
        super().train(mode)
        for module in self.frozen_norms:
            module.eval()
        return self


def check_model_names(cfg: ModelConfig) -> None:
    """model.name, model.head and model.pretrained, checked without building anything."""
    if not timm.is_model(cfg.name.split(".")[0]):
        raise ConfigError(f"unknown option model.name={cfg.name!r}: not a timm model")
    if cfg.head not in HEADS:
        raise ConfigError(f"unknown option model.head={cfg.head!r} (known: {', '.join(sorted(HEADS))})")
    if cfg.pretrained not in PRETRAINED_SOURCES and not Path(cfg.pretrained).is_file():
        raise ConfigError(f"model.pretrained={cfg.pretrained!r} is neither {', '.join(PRETRAINED_SOURCES)} nor a file")
    if cfg.pretrained == "imagenet-lite" and cfg.name not in LITE_MODELS:
        raise ConfigError(f"model.pretrained=imagenet-lite is available for {', '.join(sorted(LITE_MODELS))}, "
                          f"not {cfg.name!r}; use pretrained=hub, a weights file or none")


def _backbone(name: str, pretrained: str) -> nn.Module:
    """A timm model returning pooled features (no classifier; dropout lives in the head)."""
    if not timm.is_model(name.split(".")[0]):
        raise ConfigError(f"unknown option model.name={name!r}: not a timm model")
    if pretrained == "hub":
        try:
            return timm.create_model(name, pretrained=True, num_classes=0)
        except Exception as err:  # noqa: BLE001 - any download/offline failure becomes one clear line
            raise FacemaskError(f"model.pretrained=hub: could not get {name} weights from the timm hub "
                                f"(offline, or no weights for this name): {str(err).splitlines()[0]}") from err
    if pretrained == "imagenet-lite":
        model = timm.create_model(name, pretrained=False, num_classes=1000)
        load_lite_weights(model, name)
        model.reset_classifier(0)
        return model
    return timm.create_model(name, pretrained=False, num_classes=0)


def normalization(cfg: ModelConfig, backbone: nn.Module) -> tuple[tuple, tuple]:
    if cfg.pretrained == "imagenet-lite":
        return LITE_MEAN, LITE_STD
    data_cfg = timm.data.resolve_data_config({}, model=backbone)
    return tuple(data_cfg["mean"]), tuple(data_cfg["std"])


def create_model(cfg: ModelConfig, mean=None, std=None, age_thresholds=DEFAULT_AGE_THRESHOLDS) -> FaceClassifier:
    """Build the classifier; ``mean``/``std`` override the backbone's pretrained statistics; ``age_thresholds``
    (data.age_thresholds) group the age head's exact ages."""
    source = cfg.pretrained
    is_file = source not in PRETRAINED_SOURCES
    if is_file and not Path(source).is_file():
        raise ConfigError(f"model.pretrained={source!r} is neither {', '.join(PRETRAINED_SOURCES)} nor a file")
    backbone = _backbone(cfg.name, "none" if is_file else source)
    default_mean, default_std = normalization(cfg, backbone)
    head = create_head(cfg, backbone.num_features, NUM_CLASSES, tuple(age_thresholds))
    model = FaceClassifier(backbone, head, mean or default_mean, std or default_std)
    if is_file:
        load_weights_file(model, source)
    return model


def load_weights_file(model: FaceClassifier, path: str | Path) -> None:
    """Load a facemask checkpoint (whole model) or a plain backbone state dict, strictly; errors name the file."""
    from facemask.runs import load_checkpoint

    state = load_checkpoint(path, keys=())
    target = model
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    elif isinstance(state, dict) and not any(k.startswith("backbone.") for k in state):
        target = model.backbone
        state = {k: v for k, v in state.items() if not k.startswith(("classifier.", "fc.", "head.fc."))}
    try:
        target.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
        raise FacemaskError(f"weights file {path} does not fit model: {' '.join(lines[:2])}") from err
