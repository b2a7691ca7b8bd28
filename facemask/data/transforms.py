"""Augmentation presets by name, composed in the order listed (``data.augment: flip,affine,colour,erasing``), except
that the presets drawn in the face crop's frame run first (``FACE_FRAME``), with their parameters in the ``aug``
config section. They act on uint8 CHW tensors already resized to the input size
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
from facemask.data.images import FILL
from facemask.errors import ConfigError

Transform = Callable[[torch.Tensor], torch.Tensor]


class ColourTemperature:
    """Warmer or cooler light: red scaled by (1 + t) and blue by (1 - t), t uniform in [-strength, strength].
    Written by hand: torchvision has no white-balance jitter."""

    def __init__(self, strength: float):
        self.strength = strength

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        t = (torch.rand(()) * 2 - 1) * self.strength
        gains = torch.stack([1 + t, torch.ones(()), 1 - t]).view(3, 1, 1).to(image.device)
        return (image.float() * gains).round_().clamp_(0, 255).to(torch.uint8)


class LowResolution:
    """With probability p, shrink by a factor drawn from ``factors`` and enlarge back: a photo from a worse camera
    or a small face enlarged. (v2.RandomResize resizes but does not come back to the input size.)"""

    def __init__(self, factors: tuple[float, float], p: float):
        if len(factors) != 2 or not 0 < factors[0] <= factors[1] <= 1:
            raise ValueError(f"aug.lowres_factor must be [low, high] with 0 < low <= high <= 1, got {list(factors)}")
        self.factors, self.p = factors, p

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if torch.rand(()) >= self.p:
            return image
        factor = self.factors[0] + torch.rand(()).item() * (self.factors[1] - self.factors[0])
        height, width = image.shape[-2:]
        small = v2.functional.resize(image, [max(4, round(height * factor)), max(4, round(width * factor))],
                                     antialias=True)
        return v2.functional.resize(small, [height, width], antialias=True)


class GaussianNoise:
    """Additive Gaussian noise on uint8 pixels (torchvision's GaussianNoise wants floats in 0..1)."""

    def __init__(self, std: float):
        self.std = std

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(image.shape).to(image.device)  # drawn on the CPU: the same noise on any device
        return (image.float() + noise * self.std).clamp_(0, 255).to(torch.uint8)


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
    # framing: zoom out (upper-body shot) to zoom in (tight face crop) with translation, grey where the photo ends
    "framing": (lambda a: v2.RandomAffine(0, translate=(a.framing_translate, a.framing_translate),
                                          scale=tuple(a.framing_scale), fill=FILL), False),
    # resized_crop: a random part of the photo with a random aspect ratio, stretched to the input size
    "resized_crop": (lambda a: _ResizedCrop(a), False),
    "blur": (lambda a: v2.RandomApply([v2.GaussianBlur(5, sigma=tuple(a.blur_sigma))], p=a.blur_p), False),
    "jpeg": (lambda a: v2.RandomApply([_CpuOnly(v2.JPEG(quality=tuple(a.jpeg_quality)))], p=a.jpeg_p), False),
    "temperature": (lambda a: ColourTemperature(a.temperature), False),
    "lowres": (lambda a: LowResolution(tuple(a.lowres_factor), a.lowres_p), False),
    # the lower face (where a mask is), for masks of styles training never saw (facemask.data.batch_transforms)
    "mask_colour": (lambda a: _one_image("mask_colour", a), False),
    "mask_texture": (lambda a: _one_image("mask_texture", a), False),
    # changes labels (a mask drawn on a bare face): only with data.augment_mode=batch (facemask.data.loaders)
    "synthetic_mask": (lambda a: None, False),
    # a hand over a bare face's mouth (reads labels): only with data.augment_mode=batch
    "hand": (lambda a: None, False),
    # redraws the training photos' own masks from their person's bare photo: batch mode and the image cache only
    "mask_restyle": (lambda a: None, False),
}


def _one_image(name: str, aug: AugConfig) -> Transform:
    from facemask.data.batch_transforms import BATCH_PRESETS, OneImage

    return OneImage(BATCH_PRESETS[name](aug))


class _CpuOnly:
    """Run a CPU transform (JPEG re-encoding) on a CPU copy when augmentation happens on a GPU."""

    def __init__(self, transform: Transform):
        self.transform = transform

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return self.transform(image.cpu()).to(image.device)


class _ResizedCrop:
    """v2.RandomResizedCrop back to the image's own size (the input size is only known from the image)."""

    def __init__(self, aug: AugConfig):
        self.scale, self.ratio = tuple(aug.crop_scale), tuple(aug.crop_ratio)
        if len(self.scale) != 2 or len(self.ratio) != 2 or not 0 < self.scale[0] <= self.scale[1] <= 1 \
                or not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"aug.crop_scale must be [low, high] in (0, 1] and aug.crop_ratio [low, high] > 0, "
                             f"got {list(self.scale)}, {list(self.ratio)}")

        self.by_size: dict[tuple[int, int], Transform] = {}

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        size = tuple(image.shape[-2:])
        if size not in self.by_size:  # built once per input size, not per image
            self.by_size[size] = v2.RandomResizedCrop(list(size), scale=self.scale, ratio=self.ratio)
        return self.by_size[size](image)


# Presets drawn in the face crop's own frame (``aug.lower_face`` is where the mask is before anything moves the face):
# they run first, whatever their place in data.augment, so that framing moves what they drew along with the face and
# blur, low resolution, JPEG and colour presets degrade it like the rest of the photo.
# mask_restyle comes first of all: it redraws the photo's own mask from the bare face beside it, which is aligned
# with the photo as decoded, so nothing may move or draw over the photo before it.
FACE_FRAME = ("mask_restyle", "synthetic_mask", "hand", "mask_colour", "mask_texture")  # in this order


def preset_names(augment: str) -> list[str]:
    """The presets of ``data.augment`` in the order they run: the face-frame presets first (masks drawn, then the
    lower face recoloured and patterned), then the others as listed."""
    names = [name.strip() for name in augment.replace("+", ",").split(",") if name.strip()]
    for name in names:
        if name not in PRESETS:
            raise ConfigError(f"unknown option data.augment={name!r} (known: {', '.join(sorted(PRESETS))})")
    return sorted((name for name in names if name in FACE_FRAME), key=FACE_FRAME.index) + \
        [name for name in names if name not in FACE_FRAME]


def build_transforms(augment: str, aug: AugConfig | None = None) -> tuple[Transform, Transform]:
    """(train transform, eval transform) for a comma-separated list of preset names."""
    aug = aug or AugConfig()
    train, evaluation = [], []
    for name in preset_names(augment):
        factory, deterministic = PRESETS[name]
        try:
            transform = factory(aug)
        except (ValueError, TypeError, IndexError) as err:  # torchvision's own checks of the parameters
            raise ConfigError(f"bad aug.* parameters for data.augment preset {name!r}: {err}") from err
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
