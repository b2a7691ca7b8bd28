"""Augmentation presets by name, composed in the order listed (``data.augment: flip,affine,colour,erasing``) with
their parameters in the ``aug`` config section. They act on uint8 CHW tensors already resized to the input size
(torchvision v2 transforms); scaling to float and normalising happen inside the model, so training, evaluation,
prediction and exported models share one preprocessing.

Validation and prediction use the deterministic part only: ``always_grayscale`` and ``centercrop`` (the baseline's
centre crop, applied when the photo is decoded, so that the cache holds the cropped pixels).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torchvision.transforms import v2

from facemask.config import AugConfig
from facemask.errors import ConfigError

Transform = Callable[[torch.Tensor], torch.Tensor]


class GaussianNoise:
    """Additive Gaussian noise on uint8 pixels (torchvision's GaussianNoise wants floats in 0..1)."""

    def __init__(self, std: float):
        self.std = std

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return (image.float() + torch.randn(image.shape) * self.std).clamp_(0, 255).to(torch.uint8)


# name -> (train transform factory, deterministic: also used for validation/prediction)
PRESETS: dict[str, tuple[Callable[[AugConfig], Transform | None], bool]] = {
    "base": (lambda a: None, True),
    "centercrop": (lambda a: None, True),  # done at decode time, see decode_crop()
    "flip": (lambda a: v2.RandomHorizontalFlip(a.flip_p), False),
    "affine": (lambda a: v2.RandomAffine(a.degrees, translate=(a.translate, a.translate), scale=tuple(a.scale),
                                         shear=a.shear), False),
    "colour": (lambda a: v2.ColorJitter(a.brightness, a.contrast, a.saturation, a.hue), False),
    "contrast": (lambda a: v2.ColorJitter(contrast=a.contrast), False),
    "grayscale": (lambda a: v2.RandomGrayscale(a.grayscale_p), False),
    "always_grayscale": (lambda a: v2.Grayscale(num_output_channels=3), True),
    "noise": (lambda a: GaussianNoise(a.noise_std), False),
    "erasing": (lambda a: v2.RandomErasing(a.erasing_p, value=0), False),
}


def preset_names(augment: str) -> list[str]:
    names = [name.strip() for name in augment.replace("+", ",").split(",") if name.strip()]
    for name in names:
        if name not in PRESETS:
            raise ConfigError(f"unknown option data.augment={name!r} (known: {', '.join(sorted(PRESETS))})")
    return names


def build_transforms(augment: str, aug: AugConfig | None = None) -> tuple[Transform, Transform]:
    """(train transform, eval transform) for a comma-separated list of preset names."""
    aug = aug or AugConfig()
    train, evaluation = [], []
    for name in preset_names(augment):
        factory, deterministic = PRESETS[name]
        transform = factory(aug)
        if transform is None:
            continue
        train.append(transform)
        if deterministic:
            evaluation.append(transform)
    return (v2.Compose(train) if train else _identity), (v2.Compose(evaluation) if evaluation else _identity)


def decode_crop(augment: str, aug: AugConfig | None = None) -> tuple[int, int] | None:
    """The centre crop (height, width in source pixels) to apply when decoding, if ``centercrop`` is listed."""
    aug = aug or AugConfig()
    return (aug.crop_height, aug.crop_width) if "centercrop" in preset_names(augment) else None


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x
